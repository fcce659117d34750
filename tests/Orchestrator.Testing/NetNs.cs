using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Orchestrator.Testing;

/// <summary>
/// A network namespace of the test's own (<c>ip netns add</c>, loopback up): several "hosts"
/// share it on loopback addresses (one node on 127.0.0.2, another on 127.0.0.3, …), and nft
/// rules inside it drop one host's packets without touching the machine's own network.
/// Programs run inside through <c>nsenter --net</c>, which execs them (same pid, same mount
/// namespace: cgroups and mounts stay visible, unlike <c>ip netns exec</c>, which remounts /sys).
/// The test process itself reaches a server inside through sockets made in the namespace
/// (<see cref="ConnectAsync"/>), for instance behind a <see cref="TcpProxy"/> on the host's 127.0.0.1.
/// Disposing deletes the nft tables it added and the namespace.
/// </summary>
public sealed partial class NetNs : IAsyncDisposable
{
    private const int CLONE_NEWNET = 0x40000000;
    private readonly List<string> _tables = [];

    private NetNs(string name, string ip, string nsenter)
    {
        Name = name;
        Ip = ip;
        Nsenter = nsenter;
    }

    public string Name { get; }
    public string Path => $"/run/netns/{Name}";
    private string Ip { get; }
    private string Nsenter { get; }

    /// <summary>Creates the namespace and brings its loopback up; skips (or fails in CI) without root, ip or nsenter.</summary>
    public static async Task<NetNs> CreateAsync()
    {
        Requires.Root();
        var ip = Requires.Program("ip", "iproute2");
        var nsenter = Requires.Program("nsenter", "util-linux");
        var ns = new NetNs("orchft-" + Guid.NewGuid().ToString("N")[..8], ip, nsenter);
        await RunAsync(ip, ["netns", "add", ns.Name]);
        try
        {
            await RunAsync(ip, ["-n", ns.Name, "link", "set", "lo", "up"]);
        }
        catch
        {
            await ns.DisposeAsync();
            throw;
        }
        return ns;
    }

    /// <summary>The program and arguments that run <paramref name="program"/> inside (nsenter execs it: the pid is the program's).</summary>
    public (string Program, string[] Args) Wrap(string program, IEnumerable<string> args) => (Nsenter, ["--net=" + Path, "--", program, .. args]);

    /// <summary>Runs a command inside and returns its exit code and output (stdout then stderr).</summary>
    public Task<(int Code, string Output)> ExecAsync(string program, params string[] args)
    {
        var (p, a) = Wrap(program, args);
        return RunQuietAsync(p, a);
    }

    /// <summary>
    /// Drops, silently (no RST, no ICMP: the packets vanish on the receiving side), every TCP
    /// packet to or from <paramref name="address"/>:<paramref name="port"/> inside the namespace:
    /// one node's connection to the server it reached on that address. Returns the nft table's
    /// name, for <see cref="HealAsync"/>.
    /// </summary>
    public async Task<string> BlackholeAsync(string address, int port)
    {
        var nft = Requires.Program("nft", "nftables");
        var table = "orchft_" + Guid.NewGuid().ToString("N")[..8];
        var p = port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var rules = $$"""
            table ip {{table}} {
                chain in {
                    type filter hook prerouting priority -300; policy accept;
                    ip daddr {{address}} tcp dport {{p}} drop
                    ip saddr {{address}} tcp sport {{p}} drop
                }
            }
            """;
        var file = System.IO.Path.Combine(System.IO.Path.GetTempPath(), table + ".nft");
        await File.WriteAllTextAsync(file, rules);
        try
        {
            var (code, output) = await ExecAsync(nft, "-f", file);
            if (code != 0)
            {
                throw new InvalidOperationException($"nft -f in {Name} failed ({code}): {output}\n{rules}");
            }
        }
        finally
        {
            File.Delete(file);
        }
        lock (_tables)
        {
            _tables.Add(table);
        }
        return table;
    }

    /// <summary>Deletes a table <see cref="BlackholeAsync"/> added: the packets flow again.</summary>
    public async Task HealAsync(string table)
    {
        var nft = Requires.Program("nft", "nftables");
        var (code, output) = await ExecAsync(nft, "delete", "table", "ip", table);
        if (code != 0)
        {
            throw new InvalidOperationException($"nft delete table ip {table} in {Name} failed ({code}): {output}");
        }
        lock (_tables)
        {
            _tables.Remove(table);
        }
    }

    /// <summary>
    /// A TCP connection to <paramref name="address"/>:<paramref name="port"/> inside the namespace,
    /// from this process: the socket is made on a thread of its own that enters the namespace
    /// (setns affects only the calling thread) and leaves it again; a socket keeps the namespace
    /// it was made in.
    /// </summary>
    public async Task<Socket> ConnectAsync(IPAddress address, int port, CancellationToken cancellationToken = default)
    {
        var made = new TaskCompletionSource<Socket>(TaskCreationOptions.RunContinuationsAsynchronously);
        var path = Path;
        var thread = new Thread(() =>
        {
            try
            {
                made.SetResult(CreateSocketIn(path, address.AddressFamily));
            }
            catch (Exception e)
            {
                made.SetException(e);
            }
        }) { IsBackground = true, Name = "netns-socket" };
        thread.Start();
        var socket = await made.Task;
        try
        {
            await socket.ConnectAsync(new IPEndPoint(address, port), cancellationToken);
            socket.NoDelay = true;
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Waits until something inside accepts connections on address:port.</summary>
    public async Task WaitListeningAsync(IPAddress address, int port, TimeSpan timeout, Func<bool>? stillAlive = null)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            try
            {
                using var socket = await ConnectAsync(address, port);
                return;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline && (stillAlive?.Invoke() ?? true))
            {
                await Task.Delay(20);
            }
        }
    }

    private static Socket CreateSocketIn(string nsPath, AddressFamily family)
    {
        var original = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (original < 0)
        {
            throw new IOException($"open /proc/thread-self/ns/net: errno {Marshal.GetLastPInvokeError()}");
        }
        try
        {
            var target = open(nsPath, O_RDONLY | O_CLOEXEC);
            if (target < 0)
            {
                throw new IOException($"open {nsPath}: errno {Marshal.GetLastPInvokeError()}");
            }
            try
            {
                if (setns(target, CLONE_NEWNET) != 0)
                {
                    throw new IOException($"setns {nsPath}: errno {Marshal.GetLastPInvokeError()}");
                }
            }
            finally
            {
                close(target);
            }
            try
            {
                return new Socket(family, SocketType.Stream, ProtocolType.Tcp);
            }
            finally
            {
                if (setns(original, CLONE_NEWNET) != 0)
                {
                    // This thread ends right after; nothing else runs on it in the other namespace.
                    Debug.WriteLine($"setns back failed: errno {Marshal.GetLastPInvokeError()}");
                }
            }
        }
        finally
        {
            close(original);
        }
    }

    private const int O_RDONLY = 0, O_CLOEXEC = 0x80000;

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setns(int fd, int nstype);

    private static async Task RunAsync(string program, string[] args)
    {
        var (code, output) = await RunQuietAsync(program, args);
        if (code != 0)
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', args)} failed ({code}): {output}");
        }
    }

    private static async Task<(int Code, string Output)> RunQuietAsync(string program, string[] args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            psi.ArgumentList.Add(arg);
        }
        using var process = Process.Start(psi) ?? throw new InvalidOperationException($"{program} did not start");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout + await stderr);
    }

    public async ValueTask DisposeAsync()
    {
        string[] tables;
        lock (_tables)
        {
            tables = [.. _tables];
            _tables.Clear();
        }
        foreach (var table in tables)
        {
            try
            {
                await ExecAsync("nft", "delete", "table", "ip", table);
            }
            catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception or OperationCanceledException)
            {
            }
        }
        // Processes still inside keep the namespace alive, unnamed, until they end; the name goes now.
        await RunQuietAsync(Ip, ["netns", "del", Name]);
    }
}

using System.Diagnostics;

namespace Orchestrator.Testing;

/// <summary>
/// A private containerd (Debian's package) with its root, state and sockets in a temp dir and
/// the CRI plugin off. `Ctr` runs Debian's ctr against it. Its restart monitor (tasks of
/// containers labelled containerd.io/restart.status=running are started again) looks every second.
/// </summary>
public sealed class ContainerdServer : IAsyncDisposable
{
    private readonly TempDir _dir = new("orch-containerd");
    private DaemonProcess? _process;

    public string Socket => _dir.Combine("containerd.sock");
    public string Root => _dir.Combine("root");
    /// <summary>containerd's volatile state (on a real host under /run: empty after a reboot).</summary>
    public string State => _dir.Combine("state");
    public string LogFile => _dir.Combine("containerd.log");

    public static async Task<ContainerdServer> StartAsync()
    {
        Requires.Program("containerd", "containerd");
        Requires.Program("ctr", "containerd");
        Requires.Program("containerd-shim-runc-v2", "containerd");
        var server = new ContainerdServer();
        var config = server._dir.Combine("config.toml");
        await File.WriteAllTextAsync(config, $"""
            version = 2
            root = "{server.Root}"
            state = "{server._dir.Combine("state")}"
            disabled_plugins = ["io.containerd.grpc.v1.cri"]
            [grpc]
              address = "{server.Socket}"
            [ttrpc]
              address = "{server.Socket}.ttrpc"
            [plugins."io.containerd.internal.v1.restart"]
              interval = "1s"
            """);
        await server.LaunchAsync();
        return server;
    }

    private async Task LaunchAsync()
    {
        _process = DaemonProcess.Start(Requires.Program("containerd", "containerd"), ["--config", _dir.Combine("config.toml"), "--log-level", "info"]);
        for (var i = 0; i < 500 && !File.Exists(Socket); i++)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"containerd exited at start:\n{_process.Output}");
            }
            await Task.Delay(20);
        }
        if (!File.Exists(Socket))
        {
            throw new InvalidOperationException($"containerd did not create {Socket}:\n{_process.Output}");
        }
        // The socket file exists a moment before containerd listens on it.
        for (var i = 0; ; i++)
        {
            using var probe = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
            try
            {
                await probe.ConnectAsync(new System.Net.Sockets.UnixDomainSocketEndPoint(Socket));
                return;
            }
            catch (System.Net.Sockets.SocketException) when (i < 250 && !_process.HasExited)
            {
                await Task.Delay(20);
            }
        }
    }

    /// <summary>Stops containerd (SIGTERM) and starts it again on the same root, state and socket: its shims, and their tasks, live on.</summary>
    /// <param name="whileDown">Runs after containerd has exited and before it starts again.</param>
    public async Task RestartAsync(Func<Task>? whileDown = null)
    {
        _process!.Signal(Signals.SIGTERM);
        await _process.WaitForExitAsync(TimeSpan.FromSeconds(10), drainOutput: false);
        await _process.DisposeAsync();
        File.Delete(Socket);
        if (whileDown is not null)
        {
            await whileDown();
        }
        await LaunchAsync();
    }

    /// <summary>Runs ctr against this containerd in the given namespace; returns exit code and output.</summary>
    public async Task<(int Code, string Stdout, string Stderr)> Ctr(string ns, params string[] args)
    {
        var process = DaemonProcess.Start(Requires.Program("ctr", "containerd"), ["--address", Socket, "--namespace", ns, .. args]);
        var code = await process.WaitForExitAsync(TimeSpan.FromSeconds(120));
        var result = (code, string.Join("\n", process.Stdout), string.Join("\n", process.Stderr));
        await process.DisposeAsync();
        return result;
    }

    public string DaemonOutput => _process?.Output ?? "";

    public async ValueTask DisposeAsync()
    {
        if (_process is not null)
        {
            if (!_process.HasExited)
            {
                // Tasks (and their shims) outlive containerd: remove whatever a test left, in every namespace.
                try
                {
                    foreach (var ns in (await Ctr("default", "namespaces", "ls", "-q")).Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                    {
                        foreach (var id in (await Ctr(ns, "containers", "ls", "-q")).Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                        {
                            await Ctr(ns, "task", "rm", "-f", id);
                            await Ctr(ns, "containers", "rm", id);
                        }
                        // The runc v2 shim keeps runc's state under /run/containerd/runc/<namespace>, whatever containerd's state dir.
                        try
                        {
                            Directory.Delete(Path.Combine("/run/containerd/runc", ns));
                        }
                        catch (IOException)
                        {
                        }
                        // runc (cgroupfs driver) made /<namespace>/<id> in every hierarchy and leaves the empty
                        // directories behind: a test's namespace is its own ("default" may be the host's).
                        if (ns != "default")
                        {
                            EngineSupport.RemoveCgroupTree("/" + ns);
                        }
                    }
                }
                catch (Exception e) when (e is TimeoutException or IOException or InvalidOperationException)
                {
                }
                _process.Signal(Signals.SIGTERM);
                try
                {
                    await _process.WaitForExitAsync(TimeSpan.FromSeconds(10), drainOutput: false);
                }
                catch (TimeoutException)
                {
                }
            }
            await _process.DisposeAsync();
        }
        // Snapshots are overlay mounts under the root: unmount anything left before removing.
        foreach (var line in File.ReadAllLines("/proc/self/mountinfo").Reverse())
        {
            var mountPoint = line.Split(' ')[4];
            if (mountPoint.StartsWith(_dir.Path, StringComparison.Ordinal))
            {
                using var umount = Process.Start("umount", ["-l", mountPoint]);
                await umount!.WaitForExitAsync();
            }
        }
        _dir.Dispose();
    }
}

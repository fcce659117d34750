using System.Diagnostics;

namespace Orchestrator.Testing;

/// <summary>
/// A real nats-server with JetStream (Debian's package), on a free 127.0.0.1 port with its
/// store in a temp dir. Stop/Start keep the port and the store, to test reconnects;
/// <see cref="RestartAsync"/> can also start it on an empty store (a hub that lost its disk).
/// In a <see cref="NetNs"/> it listens on every address inside (127.0.0.X), and a relay on
/// the host's 127.0.0.1:<see cref="Port"/> lets the test's own clients reach it at <see cref="Url"/>.
/// </summary>
public sealed class NatsServer : IAsyncDisposable
{
    private readonly TempDir _dir = new("orch-nats");
    private Process? _process;
    private TcpProxy? _relay;

    private NatsServer(string binary, int port, NetNs? netns)
    {
        Binary = binary;
        Port = port;
        Namespace = netns;
    }

    /// <summary>The network namespace it runs in, or null (the host's, on 127.0.0.1).</summary>
    public NetNs? Namespace { get; }

    /// <summary>The url a program inside <see cref="Namespace"/> uses to reach it on <paramref name="address"/> (127.0.0.X).</summary>
    public string UrlInside(string address) => $"nats://{address}:{Port}";

    /// <summary>The pid of the running server (0 when stopped).</summary>
    public int Pid => _process is { HasExited: false } p ? p.Id : 0;

    public string Binary { get; }
    public int Port { get; }
    public string Url => $"nats://127.0.0.1:{Port}";
    public string StoreDir => _dir.Combine("jetstream");
    public string LogFile => _dir.Combine("nats-server.log");
    public bool IsRunning => _process is { HasExited: false };

    /// <summary>Starts a server; skips (or, in CI, fails) when nats-server is not installed.</summary>
    /// <param name="netns">Run it inside this namespace (listening on 0.0.0.0 there), reached from the host through a relay.</param>
    public static async Task<NatsServer> StartAsync(string? extraConfig = null, int? port = null, NetNs? netns = null)
    {
        var binary = Requires.Program("nats-server", "nats-server");
        var server = new NatsServer(binary, port ?? FreePort.Next(), netns);
        if (extraConfig is not null)
        {
            await File.WriteAllTextAsync(server._dir.Combine("extra.conf"), extraConfig);
        }
        if (netns is not null)
        {
            server._relay = new TcpProxy(server.Port, cancellationToken => netns.ConnectAsync(System.Net.IPAddress.Loopback, server.Port, cancellationToken));
        }
        await server.StartAgainAsync();
        return server;
    }

    /// <summary>
    /// Stops the server and starts it again on the same port: with the same store, or with
    /// <paramref name="emptyStore"/> on an empty one (every bucket and stream gone).
    /// <paramref name="whileDown"/> runs between the two (the outage).
    /// </summary>
    public async Task RestartAsync(bool emptyStore = false, Func<Task>? whileDown = null)
    {
        await StopAsync();
        if (emptyStore && Directory.Exists(StoreDir))
        {
            Directory.Delete(StoreDir, recursive: true);
        }
        if (whileDown is not null)
        {
            await whileDown();
        }
        await StartAgainAsync();
    }

    public async Task StartAgainAsync()
    {
        if (IsRunning)
        {
            return;
        }
        var args = new List<string> { "-a", Namespace is null ? "127.0.0.1" : "0.0.0.0", "-p", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-js", "-sd", StoreDir, "-l", LogFile };
        if (File.Exists(_dir.Combine("extra.conf")))
        {
            args.Add("-c");
            args.Add(_dir.Combine("extra.conf"));
        }
        var (program, programArgs) = Namespace is null ? (Binary, args.ToArray()) : Namespace.Wrap(Binary, args);
        var psi = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in programArgs)
        {
            psi.ArgumentList.Add(arg);
        }
        _process = Process.Start(psi) ?? throw new InvalidOperationException("nats-server did not start");
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var process = _process;
        try
        {
            if (Namespace is null)
            {
                await FreePort.WaitListeningAsync(Port, TimeSpan.FromSeconds(10), () => !process.HasExited);
            }
            else
            {
                await Namespace.WaitListeningAsync(System.Net.IPAddress.Loopback, Port, TimeSpan.FromSeconds(10), () => !process.HasExited);
            }
        }
        catch (Exception e)
        {
            var log = File.Exists(LogFile) ? await File.ReadAllTextAsync(LogFile) : "(no log)";
            throw new InvalidOperationException($"nats-server on port {Port} did not come up: {e.Message}\n{log}", e);
        }
    }

    /// <summary>Stops the server (SIGTERM, then SIGKILL after 5 s) and waits for it to exit.</summary>
    public async Task StopAsync()
    {
        if (_process is not { } process)
        {
            return;
        }
        _process = null;
        if (!process.HasExited)
        {
            Signals.Send(process.Id, Signals.SIGTERM);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill();
                await process.WaitForExitAsync();
            }
        }
        process.Dispose();
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        if (_relay is not null)
        {
            await _relay.DisposeAsync();
        }
        _dir.Dispose();
    }
}

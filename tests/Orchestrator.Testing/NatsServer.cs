using System.Diagnostics;

namespace Orchestrator.Testing;

/// <summary>
/// A real nats-server with JetStream (Debian's package), on a free 127.0.0.1 port with its
/// store in a temp dir. Stop/Start keep the port and the store, to test reconnects.
/// </summary>
public sealed class NatsServer : IAsyncDisposable
{
    private readonly TempDir _dir = new("orch-nats");
    private Process? _process;

    private NatsServer(string binary, int port)
    {
        Binary = binary;
        Port = port;
    }

    public string Binary { get; }
    public int Port { get; }
    public string Url => $"nats://127.0.0.1:{Port}";
    public string StoreDir => _dir.Combine("jetstream");
    public string LogFile => _dir.Combine("nats-server.log");
    public bool IsRunning => _process is { HasExited: false };

    /// <summary>Starts a server; skips (or, in CI, fails) when nats-server is not installed.</summary>
    public static async Task<NatsServer> StartAsync(string? extraConfig = null, int? port = null)
    {
        var binary = Requires.Program("nats-server", "nats-server");
        var server = new NatsServer(binary, port ?? FreePort.Next());
        if (extraConfig is not null)
        {
            await File.WriteAllTextAsync(server._dir.Combine("extra.conf"), extraConfig);
        }
        await server.StartAgainAsync();
        return server;
    }

    public async Task StartAgainAsync()
    {
        if (IsRunning)
        {
            return;
        }
        var psi = new ProcessStartInfo(Binary)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[] { "-a", "127.0.0.1", "-p", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-js", "-sd", StoreDir, "-l", LogFile })
        {
            psi.ArgumentList.Add(arg);
        }
        if (File.Exists(_dir.Combine("extra.conf")))
        {
            psi.ArgumentList.Add("-c");
            psi.ArgumentList.Add(_dir.Combine("extra.conf"));
        }
        _process = Process.Start(psi) ?? throw new InvalidOperationException("nats-server did not start");
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var process = _process;
        try
        {
            await FreePort.WaitListeningAsync(Port, TimeSpan.FromSeconds(10), () => !process.HasExited);
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
        _dir.Dispose();
    }
}

namespace Orchestrator.Daemon.Tests;

/// <summary>
/// orchd processes as systemd starts them: NOTIFY_SOCKET pointing at a socket of the test's
/// (systemd's end of sd_notify), files in a temp dir of their own; every process this started
/// (or was given with <see cref="Adopt"/>) is stopped, and the dir removed, when disposed.
/// </summary>
internal sealed class NotifiedDaemons(string prefix) : IAsyncDisposable
{
    private readonly List<DaemonProcess> _processes = [];

    public TempDir Dir { get; } = new(prefix);

    public NotifySocket Notify { get; } = new();

    /// <summary>Starts orchd with <paramref name="args"/>; with <paramref name="notify"/>, NOTIFY_SOCKET is the test's socket.</summary>
    public DaemonProcess Start(IEnumerable<string> args, Dictionary<string, string?>? env = null, bool notify = true)
    {
        env ??= [];
        if (notify)
        {
            env["NOTIFY_SOCKET"] = Notify.Path;
        }
        return Adopt(DaemonProcess.Start(Repo.Binary("orchd"), args, env));
    }

    /// <summary>Another process to stop with the daemons.</summary>
    public DaemonProcess Adopt(DaemonProcess process)
    {
        _processes.Add(process);
        return process;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var process in _processes)
        {
            await process.DisposeAsync();
        }
        Notify.Dispose();
        Dir.Dispose();
    }
}

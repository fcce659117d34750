namespace Orchestrator.Testing;

/// <summary>Busy loops (`sh -c 'while :; do :; done'`) that keep CPUs busy until disposed.</summary>
public sealed class CpuLoad : IAsyncDisposable
{
    private readonly List<DaemonProcess> _loops;

    private CpuLoad(List<DaemonProcess> loops) => _loops = loops;

    public static CpuLoad Start(int loops)
        => new(Enumerable.Range(0, loops).Select(_ => DaemonProcess.Start("/bin/sh", ["-c", "while :; do :; done"])).ToList());

    public async ValueTask DisposeAsync()
    {
        foreach (var loop in _loops)
        {
            await loop.DisposeAsync();
        }
    }
}

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

/// <summary>Runs a command many times, a few at a time, and collects what failed.</summary>
public static class Repeated
{
    /// <summary>
    /// Runs <paramref name="run"/> for 0 … count-1 with at most <paramref name="parallel"/> at once;
    /// returns one line per run that did not exit 0.
    /// </summary>
    public static async Task<List<string>> RunAsync(int count, int parallel, Func<int, Task<CliResult>> run)
    {
        var failures = new List<string>();
        using var slots = new SemaphoreSlim(parallel);
        await Task.WhenAll(Enumerable.Range(0, count).Select(async i =>
        {
            await slots.WaitAsync();
            try
            {
                var result = await run(i);
                if (result.Code != 0)
                {
                    lock (failures)
                    {
                        failures.Add($"run {i}: {result}");
                    }
                }
            }
            finally
            {
                slots.Release();
            }
        }));
        return failures;
    }
}

using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Daemon.Hosting;

/// <summary>
/// Gives the memory that served containers back to the kernel once they are gone. What they
/// used (log pumps, pipes, records, probe loops) is garbage when they go, but an idle daemon
/// allocates too little for the GC to run again, so the heap stayed at its peak: 70 MiB after
/// 100 containers came and went, 36 MiB before (issue 23, make bench's node section). After a
/// removal followed by <see cref="Quiet"/> with no other, when the GC's committed memory is more
/// than <see cref="Threshold"/> above what it was after the last give-back, one blocking,
/// compacting, aggressive collection returns the free pages. Its cost (a few tens of
/// milliseconds, once per burst of removals) is paid when nothing else is going on.
/// </summary>
internal sealed partial class MemoryGiveBack(Supervisor supervisor, ILogger<MemoryGiveBack> logger) : BackgroundService
{
    public static readonly TimeSpan Quiet = TimeSpan.FromSeconds(10);
    public const long Threshold = 4L << 20;

    private readonly SemaphoreSlim _removed = new(0, 1);
    private long _lastRemovalMs;
    private long _baseline = GC.GetGCMemoryInfo().TotalCommittedBytes;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        supervisor.Emitted += OnEvent;
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                await _removed.WaitAsync(stoppingToken).ConfigureAwait(false);
                // Wait out the burst: a drain or a deleted deployment removes many in a row.
                TimeSpan since;
                while ((since = TimeSpan.FromMilliseconds(Environment.TickCount64 - Interlocked.Read(ref _lastRemovalMs))) < Quiet)
                {
                    await Task.Delay(Quiet - since, stoppingToken).ConfigureAwait(false);
                }
                GiveBack();
            }
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            supervisor.Emitted -= OnEvent;
        }
    }

    private void OnEvent(string kind, string name, string message)
    {
        if (kind == "container.removed")
        {
            Interlocked.Exchange(ref _lastRemovalMs, Environment.TickCount64);
            if (_removed.CurrentCount == 0)
            {
                try
                {
                    _removed.Release();
                }
                catch (SemaphoreFullException)
                {
                }
            }
        }
    }

    private void GiveBack()
    {
        var before = GC.GetGCMemoryInfo().TotalCommittedBytes;
        if (before - _baseline < Threshold)
        {
            return;
        }
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        // What native code freed meanwhile (the runtime's own allocations, OpenSSL's) sits in
        // glibc's arenas until trimmed.
        Orchestrator.Linux.Libc.malloc_trim(0);
        var info = GC.GetGCMemoryInfo();
        var after = info.TotalCommittedBytes;
        _baseline = after;
        LogGaveBack(logger, (before - after) / 1048576.0, after / 1048576.0, info.HeapSizeBytes / 1048576.0);
    }

    public override void Dispose()
    {
        _removed.Dispose();
        base.Dispose();
    }

    [LoggerMessage(EventId = 1090, Level = LogLevel.Debug, Message = "memory: gave {Freed:0.0} MiB back after containers went (GC committed now {Committed:0.0} MiB, heap {Heap:0.0} MiB)")]
    private static partial void LogGaveBack(ILogger logger, double freed, double committed, double heap);
}

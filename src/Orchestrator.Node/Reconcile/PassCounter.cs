namespace Orchestrator.Node.Reconcile;

/// <summary>
/// Counts the passes of a level-triggered loop (the Supervisor's reconcile, the fleet scheduler)
/// and lets a caller await the next N: "two passes went by and nothing changed" is a fact a test
/// can wait for, where a sleep only guesses at it. Safe to read and await from any thread.
/// </summary>
public sealed class PassCounter
{
    private readonly Lock _lock = new();
    private readonly List<(long Target, TaskCompletionSource Done)> _waiters = [];
    private long _completed;

    /// <summary>Passes completed since the loop started.</summary>
    public long Completed => Interlocked.Read(ref _completed);

    /// <summary>Called by the loop at the end of each pass.</summary>
    public void PassCompleted()
    {
        lock (_lock)
        {
            _completed++;
            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                if (_waiters[i].Target <= _completed)
                {
                    _waiters[i].Done.TrySetResult();
                    _waiters.RemoveAt(i);
                }
            }
        }
    }

    /// <summary>Completes when <paramref name="passes"/> more passes have completed after this call (a pass under way counts as the first).</summary>
    public Task WaitForPassesAsync(int passes, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(passes);
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lock)
        {
            _waiters.Add((_completed + passes, done));
        }
        return done.Task.WaitAsync(cancellationToken);
    }
}

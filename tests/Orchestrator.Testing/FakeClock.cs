namespace Orchestrator.Testing;

/// <summary>
/// A clock a test moves by hand. Timers made through it (Task.Delay, PeriodicTimer, WaitAsync
/// with this provider) fire inside <see cref="Advance"/>, in the order they are due, on the
/// caller's thread, with the clock showing their due time: a test that advances a minute sees
/// every timer of that minute fire, and nothing of real time matters.
/// (Microsoft.Extensions.TimeProvider.Testing's FakeTimeProvider does the same; this one adds
/// <see cref="PendingTimers"/> and needs no package.)
/// </summary>
public sealed class FakeClock : TimeProvider
{
    private readonly Lock _lock = new();
    private readonly List<Timer> _timers = [];
    private DateTimeOffset _now;

    public FakeClock(DateTimeOffset? start = null) => _now = start ?? new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    public override DateTimeOffset GetUtcNow()
    {
        lock (_lock)
        {
            return _now;
        }
    }

    public override long GetTimestamp() => GetUtcNow().UtcTicks;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override TimeZoneInfo LocalTimeZone => TimeZoneInfo.Utc;

    /// <summary>Timers armed now (each Task.Delay under way is one; a PeriodicTimer is one while it runs).</summary>
    public int PendingTimers
    {
        get
        {
            lock (_lock)
            {
                return _timers.Count(t => t.Due is not null);
            }
        }
    }

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var timer = new Timer(this, callback, state);
        timer.Change(dueTime, period);
        return timer;
    }

    /// <summary>Moves the clock forward, firing every timer due by then in due order (periodic ones as often as they fall due).</summary>
    public void Advance(TimeSpan by)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(by, TimeSpan.Zero);
        DateTimeOffset target;
        lock (_lock)
        {
            target = _now + by;
        }
        while (true)
        {
            Timer? next = null;
            lock (_lock)
            {
                foreach (var timer in _timers)
                {
                    if (timer.Due is { } due && due <= target && (next is null || due < next.Due))
                    {
                        next = timer;
                    }
                }
                if (next is null)
                {
                    _now = target;
                    return;
                }
                if (next.Due > _now)
                {
                    _now = next.Due.Value;
                }
                next.Due = next.Period is { } period ? _now + period : null;
            }
            next.Callback(next.State);
        }
    }

    private sealed class Timer(FakeClock clock, TimerCallback callback, object? state) : ITimer
    {
        public TimerCallback Callback { get; } = callback;
        public object? State { get; } = state;
        public DateTimeOffset? Due { get; set; }
        public TimeSpan? Period { get; set; }

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            lock (clock._lock)
            {
                Due = dueTime == Timeout.InfiniteTimeSpan ? null : clock._now + dueTime;
                Period = period == Timeout.InfiniteTimeSpan || period <= TimeSpan.Zero ? null : period;
                if (!clock._timers.Contains(this))
                {
                    clock._timers.Add(this);
                }
            }
            return true;
        }

        public void Dispose()
        {
            lock (clock._lock)
            {
                clock._timers.Remove(this);
            }
        }

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}

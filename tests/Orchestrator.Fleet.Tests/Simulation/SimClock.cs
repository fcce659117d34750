namespace Orchestrator.Fleet.Tests.Simulation;

/// <summary>
/// A manual clock for simulation: time moves only when <see cref="Advance"/> says so. Timestamps
/// (<see cref="GetTimestamp"/>) are the simulated time's ticks, so elapsed-time arithmetic follows
/// it too. No timers: a simulator drives time itself.
/// </summary>
public sealed class SimClock : TimeProvider
{
    /// <summary>The default start: 2026-01-01T00:00:00Z.</summary>
    public static readonly DateTimeOffset DefaultStart = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private DateTimeOffset _now;

    public SimClock()
        : this(DefaultStart)
    {
    }

    public SimClock(DateTimeOffset start) => _now = start.ToUniversalTime();

    public override DateTimeOffset GetUtcNow() => _now;

    public override TimeZoneInfo LocalTimeZone => TimeZoneInfo.Utc;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp() => _now.UtcTicks;

    /// <summary>Moves time forward (never back).</summary>
    public void Advance(TimeSpan by)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(by, TimeSpan.Zero);
        _now += by;
    }

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        => throw new NotSupportedException("SimClock has no timers: the simulator advances time and runs what is due itself");
}

using Orchestrator.Api.Workloads;

namespace Orchestrator.Node.Reconcile;

/// <summary>What to do after a container's process ended.</summary>
public enum RestartDecision
{
    /// <summary>Restart at <see cref="RestartPlan.At"/>.</summary>
    Restart,
    /// <summary>Leave it stopped: the policy says so (never, or on-failure after a clean exit).</summary>
    Done,
    /// <summary>on-failure ran out of retries.</summary>
    GiveUp,
}

public readonly record struct RestartPlan(RestartDecision Decision, DateTimeOffset At, TimeSpan Delay);

/// <summary>
/// The restart policy as arithmetic: exponential backoff from <c>backoff</c> doubling up to
/// <c>maxBackoff</c>, the count of failures in a row reset by a run of at least
/// <c>resetAfter</c>, and on-failure's retry limit. No clocks or I/O: the supervisor passes times.
/// </summary>
public static class RestartTracker
{
    public static readonly TimeSpan DefaultBackoff = TimeSpan.FromSeconds(1);
    public static readonly TimeSpan DefaultMaxBackoff = TimeSpan.FromMinutes(5);
    public static readonly TimeSpan DefaultResetAfter = TimeSpan.FromMinutes(10);

    /// <summary>Updates the record's counters for an exit and says what happens next.</summary>
    public static RestartPlan OnExit(RestartPolicy? policy, SupervisedContainerRecord record, int? exitCode, DateTimeOffset startedAt, DateTimeOffset exitedAt)
    {
        policy ??= new RestartPolicy();
        var backoff = Duration(policy.Backoff, DefaultBackoff);
        var maxBackoff = Duration(policy.MaxBackoff, DefaultMaxBackoff);
        var resetAfter = Duration(policy.ResetAfter, DefaultResetAfter);

        if (exitedAt - startedAt >= resetAfter)
        {
            record.ConsecutiveFailures = 0; // it ran long enough to count as healthy
        }
        var failed = exitCode != 0; // an unknown code (null) counts as a failure
        if (policy.Policy == RestartPolicyKind.Never || (policy.Policy == RestartPolicyKind.OnFailure && !failed))
        {
            return new RestartPlan(RestartDecision.Done, exitedAt, TimeSpan.Zero);
        }
        if (policy.Policy == RestartPolicyKind.OnFailure && policy.MaxRetries > 0 && record.ConsecutiveFailures >= policy.MaxRetries)
        {
            return new RestartPlan(RestartDecision.GiveUp, exitedAt, TimeSpan.Zero);
        }
        var exponent = Math.Min(record.ConsecutiveFailures, 30);
        var delay = TimeSpan.FromTicks((long)Math.Min(backoff.Ticks * Math.Pow(2, exponent), maxBackoff.Ticks));
        record.ConsecutiveFailures++;
        return new RestartPlan(RestartDecision.Restart, exitedAt + delay, delay);
    }

    private static TimeSpan Duration(string? text, TimeSpan fallback)
        => Orchestrator.Syntax.Duration.TryParse(text, out var d) ? d : fallback;
}

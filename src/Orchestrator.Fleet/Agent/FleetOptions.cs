namespace Orchestrator.Fleet.Agent;

/// <summary>Timings of membership and scheduling (orchd's fleet.* settings).</summary>
public sealed record FleetOptions
{
    public TimeSpan Heartbeat { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>A node silent this long is unreachable: its replicas stay where they are.</summary>
    public TimeSpan UnreachableAfter { get; init; } = TimeSpan.FromSeconds(15);
    /// <summary>A node silent this long is lost: its replicas are placed elsewhere.</summary>
    public TimeSpan LostAfter { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>The scheduler's lease: another node takes over when it has not been renewed for this long.</summary>
    public TimeSpan LeaderLease { get; init; } = TimeSpan.FromSeconds(6);
    /// <summary>How often the scheduler looks at the fleet (it is level-triggered).</summary>
    public TimeSpan SchedulePeriod { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Public user nkeys whose signatures on a deployment this node accepts. Empty: signatures
    /// are not required (and not checked); set: unsigned, forged and replayed deployments are refused.
    /// </summary>
    public IReadOnlyList<string> TrustedKeys { get; init; } = [];
    /// <summary>Whether this node may take the scheduler lease.</summary>
    public bool Scheduler { get; init; } = true;

    public string StateOf(TimeSpan heartbeatAge)
        => heartbeatAge <= UnreachableAfter ? "ready" : heartbeatAge <= LostAfter ? "unreachable" : "lost";
}

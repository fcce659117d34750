namespace Orchestrator.Client;

/// <summary>Timings of membership and scheduling (orchd's fleet.* settings). The rules they serve are in docs/protocol.md.</summary>
public sealed record FleetOptions
{
    public TimeSpan Heartbeat { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>A node silent this long is unreachable: its replicas stay where they are.</summary>
    public TimeSpan UnreachableAfter { get; init; } = TimeSpan.FromSeconds(15);
    /// <summary>A node silent this long is lost: its replicas are placed elsewhere.</summary>
    public TimeSpan LostAfter { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>
    /// The scheduler's lease: another node takes over when it has seen no renewal for this long.
    /// The holder renews every <see cref="LeaseRenewal"/> and stops scheduling once its last
    /// renewal is older than the lease less two renewal periods, so a slow holder steps down
    /// before anyone else may step up.
    /// </summary>
    public TimeSpan LeaderLease { get; init; } = TimeSpan.FromSeconds(15);
    /// <summary>How often the scheduler looks at the fleet (it is level-triggered).</summary>
    public TimeSpan SchedulePeriod { get; init; } = TimeSpan.FromSeconds(2);
    /// <summary>
    /// A node that has not renewed its presence (its heartbeat accepted by NATS) for this long
    /// stops the replicas of deployments with <c>fence: true</c>: the fleet has placed them elsewhere.
    /// Null: <see cref="LostAfter"/>.
    /// </summary>
    public TimeSpan? FenceAfter { get; init; }

    /// <summary>
    /// The binary to run as <c>FenceKeeperPath fence-keeper RUN_DIR</c> while fenced replicas run
    /// (orchd gives its own path; null: no keeper). The keeper fences for an orchd that is down.
    /// </summary>
    public string? FenceKeeperPath { get; init; }

    /// <summary>
    /// The range deployment names take on this node when their replicas run on other nodes only
    /// (network.services): no interface has these addresses; the bridge sends TCP to them to the
    /// node's service proxy. Null: names reach the replicas on this node only.
    /// </summary>
    public string? ServicesCidr { get; init; } = "10.89.0.0/16";

    /// <summary>The clock (the simulator's in tests).</summary>
    public TimeProvider Clock { get; init; } = TimeProvider.System;

    /// <summary>
    /// Public user nkeys whose signatures on a deployment this node accepts. Empty: signatures
    /// are not required (and not checked); set: unsigned, forged and replayed deployments are refused.
    /// </summary>
    public IReadOnlyList<string> TrustedKeys { get; init; } = [];
    /// <summary>Whether this node may take the scheduler lease.</summary>
    public bool Scheduler { get; init; } = true;

    /// <summary>The lease holder renews this often: a fifth of the lease (at least 200 ms).</summary>
    public TimeSpan LeaseRenewal => TimeSpan.FromTicks(Math.Max(TimeSpan.FromMilliseconds(200).Ticks, LeaderLease.Ticks / 5));

    /// <summary>
    /// How long a scheduler that has just taken over, or whose view of the fleet just came back
    /// (a reconnect, a store recreated, a stall), watches heartbeats before it judges any node
    /// lost: the unreachable grace, and at least three heartbeats.
    /// </summary>
    public TimeSpan SettleTime => TimeSpan.FromTicks(Math.Max(UnreachableAfter.Ticks, 3 * Heartbeat.Ticks));

    /// <summary>The fence: <see cref="FenceAfter"/>, or <see cref="LostAfter"/>.</summary>
    public TimeSpan EffectiveFenceAfter => FenceAfter ?? LostAfter;

    public NodeCondition StateOf(TimeSpan heartbeatAge)
        => heartbeatAge <= UnreachableAfter ? NodeCondition.Ready : heartbeatAge <= LostAfter ? NodeCondition.Unreachable : NodeCondition.Lost;
}

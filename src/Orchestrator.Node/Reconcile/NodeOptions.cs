using Orchestrator.Node.Logs;

namespace Orchestrator.Node.Reconcile;

/// <summary>The supervisor's settings, from orchd's config.</summary>
public sealed record NodeOptions
{
    public required string StateDir { get; init; }
    public required string RunDir { get; init; }
    public required string NodeId { get; init; }
    /// <summary>Workload manifests applied with no NATS at all (a standalone device); null: none.</summary>
    public string? ManifestDir { get; init; }
    public LogOptions Logs { get; init; } = new();
    /// <summary>How often the reconcile loop runs without being asked (level-triggered).</summary>
    public TimeSpan Resync { get; init; } = TimeSpan.FromSeconds(2);
    public TimeSpan DefaultStopGrace { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>The node's bridge for network: bridge; null when bridge networking is off.</summary>
    public Network.BridgeOptions? Bridge { get; init; }
    /// <summary>What workloads may ask for beyond an isolated container (host paths, host network, unconfined seccomp).</summary>
    public NodePolicy Policy { get; init; } = new();

    /// <summary>
    /// Containers' cgroups: one subtree per node, so that two orchd on one host never collide
    /// (NodeCgroup: /orchestrator/ID12, or the node's delegated systemd scope on cgroup v2).
    /// </summary>
    public string CgroupParent
    {
        get => _cgroupParent ?? Orchestrator.Runtime.Cgroups.NodeCgroup.LegacyParent(NodeId);
        init => _cgroupParent = value;
    }

    private readonly string? _cgroupParent;
}

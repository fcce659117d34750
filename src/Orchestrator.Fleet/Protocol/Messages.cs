using System.Text.Json.Serialization;

namespace Orchestrator.Fleet.Protocol;

/// <summary>What a node says about itself. Schema version 1; fields are only ever added.</summary>
public sealed record NodeInfo
{
    public int SchemaVersion { get; init; } = 1;
    public required string Node { get; init; }
    public required string NodeId { get; init; }
    public required string Version { get; init; }
    public required string Arch { get; init; }
    public required string Kernel { get; init; }
    public required string Runtime { get; init; }
    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>();
    public DateTimeOffset StartedAt { get; init; }
    public double UptimeSeconds { get; init; }
    /// <summary>Capacity, allocatable, requested and used; null when the node runs no supervisor.</summary>
    public Orchestrator.Node.Reconcile.NodeStatus? Status { get; init; }
    /// <summary>In heartbeats: the node's containers (the scheduler gates rollouts on their readiness).</summary>
    public IReadOnlyList<ContainerBrief>? Containers { get; init; }
    /// <summary>What makes this node unsafe to run as it is (no NATS authentication, no trusted keys), one sentence each; null when nothing.</summary>
    public IReadOnlyList<string>? Warnings { get; init; }
}

/// <summary>One container in a heartbeat.</summary>
public sealed record ContainerBrief
{
    public required string Name { get; init; }
    public required string State { get; init; }
    public bool Ready { get; init; }
    public string? SpecHash { get; init; }
    public string? Message { get; init; }
    /// <summary>CPU use since the previous heartbeat, 100 = one CPU (the autoscaler reads it).</summary>
    public double CpuPercent { get; init; }
}

/// <summary>The reply to a request that could not be served: a sentence naming the object and the fix.</summary>
public sealed record ErrorReply
{
    public int SchemaVersion { get; init; } = 1;
    public required string Error { get; init; }
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(NodeInfo))]
[JsonSerializable(typeof(Assignment))]
[JsonSerializable(typeof(NodeAssignments))]
[JsonSerializable(typeof(Orchestrator.Fleet.Agent.FenceFile))]
[JsonSerializable(typeof(Dictionary<string, Orchestrator.Fleet.Agent.SignatureLedger.Entry>))]
[JsonSerializable(typeof(ErrorReply))]
[JsonSerializable(typeof(Orchestrator.Node.Workloads.Workload))]
[JsonSerializable(typeof(NameRequest))]
[JsonSerializable(typeof(LogsRequest))]
[JsonSerializable(typeof(LogsReply))]
[JsonSerializable(typeof(ExecRequest))]
[JsonSerializable(typeof(ExecReply))]
[JsonSerializable(typeof(ExecStreamReply))]
[JsonSerializable(typeof(StatsRequest))]
[JsonSerializable(typeof(StatsReply))]
[JsonSerializable(typeof(ContainerListReply))]
[JsonSerializable(typeof(Orchestrator.Node.Reconcile.ContainerStatus))]
[JsonSerializable(typeof(Orchestrator.Node.Reconcile.NodeStatus))]
[JsonSerializable(typeof(OkReply))]
[JsonSerializable(typeof(string))]
[JsonSerializable(typeof(NodeEntry))]
[JsonSerializable(typeof(NodeSettings))]
[JsonSerializable(typeof(ContainerBrief))]
[JsonSerializable(typeof(NodeEvent))]
[JsonSerializable(typeof(List<NodeEntry>))]
[JsonSerializable(typeof(DeploymentStatus))]
[JsonSerializable(typeof(DeploymentView))]
[JsonSerializable(typeof(List<DeploymentView>))]
[JsonSerializable(typeof(PullRequest))]
[JsonSerializable(typeof(PullStreamReply))]
[JsonSerializable(typeof(ImageListReply))]
[JsonSerializable(typeof(Orchestrator.Node.Reconcile.ImageSummary))]
[JsonSerializable(typeof(Orchestrator.Node.Reconcile.ImageGcResult))]
public sealed partial class FleetJsonContext : JsonSerializerContext;

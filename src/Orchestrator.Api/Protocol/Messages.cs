using System.Text.Json.Serialization;

namespace Orchestrator.Api;

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
    public NodeStatus? Status { get; init; }
    /// <summary>In heartbeats: the node's containers (the scheduler gates rollouts on their readiness).</summary>
    public IReadOnlyList<ContainerBrief>? Containers { get; init; }
    /// <summary>What makes this node unsafe to run as it is (no NATS authentication, no trusted keys), one sentence each; null when nothing.</summary>
    public IReadOnlyList<string>? Warnings { get; init; }
    /// <summary>The node's curve (x25519) public key, which the fleet's secrets are sealed to; null from a node before secrets.</summary>
    public string? SealKey { get; init; }
}

/// <summary>One container in a heartbeat.</summary>
public sealed record ContainerBrief
{
    public required string Name { get; init; }
    public required ContainerState State { get; init; }
    public bool Ready { get; init; }
    public string? SpecHash { get; init; }
    public string? Message { get; init; }
    /// <summary>
    /// CPU use since the previous heartbeat, 100 = one CPU (the autoscaler reads it); absent when the
    /// node has no sample (the container does not run, or its cgroup could not be read). A node from
    /// before this rule sends 0 then.
    /// </summary>
    public double? CpuPercent { get; init; }

    /// <summary>
    /// Whether it counts as up for a rollout: ready and not going away. A service is ready only while
    /// it runs; a job (workload.job) is ready while it waits for its time, runs, or after a run that
    /// succeeded, so a job need not be running to be up.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool Up => Ready && State is not (ContainerState.Stopping or ContainerState.Stopped or ContainerState.Failed or ContainerState.Backoff);
}

/// <summary>
/// The reply to a request that could not be served: a sentence naming the object and the fix,
/// and what kind of failure it is for programs (<see cref="ErrorKind"/>: not-found, invalid,
/// conflict, unavailable, forbidden, internal). A node from before codes sends none: read that as
/// internal. A client from before codes ignores it.
/// </summary>
public sealed record ErrorReply
{
    public int SchemaVersion { get; init; } = 1;
    public required string Error { get; init; }
    public ErrorKind? Code { get; init; }
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(NodeInfo))]
[JsonSerializable(typeof(Assignment))]
[JsonSerializable(typeof(NodeAssignments))]
[JsonSerializable(typeof(ErrorReply))]
[JsonSerializable(typeof(Workloads.Workload))]
[JsonSerializable(typeof(NameRequest))]
[JsonSerializable(typeof(LogsRequest))]
[JsonSerializable(typeof(LogsReply))]
[JsonSerializable(typeof(ExecRequest))]
[JsonSerializable(typeof(AttachRequest))]
[JsonSerializable(typeof(ExecReply))]
[JsonSerializable(typeof(ExecStreamReply))]
[JsonSerializable(typeof(StatsRequest))]
[JsonSerializable(typeof(StatsReply))]
[JsonSerializable(typeof(ContainerListReply))]
[JsonSerializable(typeof(ContainerStatus))]
[JsonSerializable(typeof(NodeStatus))]
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
[JsonSerializable(typeof(ImageSummary))]
[JsonSerializable(typeof(ImageGcResult))]
[JsonSerializable(typeof(CopyRequest))]
[JsonSerializable(typeof(SessionOpened))]
[JsonSerializable(typeof(CopyDone))]
[JsonSerializable(typeof(PortForwardRequest))]
[JsonSerializable(typeof(LabelRequest))]
[JsonSerializable(typeof(LabelReply))]
[JsonSerializable(typeof(NodeEndpoints))]
public sealed partial class FleetJsonContext : JsonSerializerContext;

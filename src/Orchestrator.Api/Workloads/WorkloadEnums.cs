using System.Text.Json.Serialization;

namespace Orchestrator.Api.Workloads;

// The closed sets of the workload model, by their manifest and wire names. A name this version does
// not know (a newer orchctl's) reads as Unknown, which the validator refuses with the allowed values;
// manifests are checked by name before that (ManifestReader), so their errors name the value written.

/// <summary>When a container that ended is started again (<see cref="RestartPolicy.Policy"/>).</summary>
[JsonConverter(typeof(WireEnumConverter<RestartPolicyKind>))]
public enum RestartPolicyKind
{
    [JsonStringEnumMemberName("unknown")] Unknown,
    [JsonStringEnumMemberName("always")] Always,
    [JsonStringEnumMemberName("on-failure")] OnFailure,
    [JsonStringEnumMemberName("never")] Never,
}

/// <summary>A workload's network (<see cref="Workload.Network"/>; absent means bridge).</summary>
[JsonConverter(typeof(WireEnumConverter<NetworkMode>))]
public enum NetworkMode
{
    [JsonStringEnumMemberName("unknown")] Unknown,
    /// <summary>Its own network namespace on the node's bridge, with published ports (the default).</summary>
    [JsonStringEnumMemberName("bridge")] Bridge,
    /// <summary>The node's own network namespace.</summary>
    [JsonStringEnumMemberName("host")] Host,
    /// <summary>Its own network namespace with loopback only.</summary>
    [JsonStringEnumMemberName("none")] None,
}

/// <summary>Which backend runs a workload (<see cref="Workload.Runtime"/>; absent means the node's default).</summary>
[JsonConverter(typeof(WireEnumConverter<WorkloadRuntime>))]
public enum WorkloadRuntime
{
    [JsonStringEnumMemberName("unknown")] Unknown,
    /// <summary>orchd's own runtime.</summary>
    [JsonStringEnumMemberName("native")] Native,
    [JsonStringEnumMemberName("containerd")] Containerd,
}

/// <summary>How a deployment's copies are counted (<see cref="Deployment.Mode"/>; absent means replicated).</summary>
[JsonConverter(typeof(WireEnumConverter<DeploymentMode>))]
public enum DeploymentMode
{
    [JsonStringEnumMemberName("unknown")] Unknown,
    /// <summary><see cref="Deployment.Replicas"/> copies, placed by the scheduler (the default).</summary>
    [JsonStringEnumMemberName("replicated")] Replicated,
    /// <summary>One copy on every node that matches the selector (Kubernetes' DaemonSet, Nomad's system jobs, balena's fleet release).</summary>
    [JsonStringEnumMemberName("global")] Global,
}

/// <summary>What a dependency must be before its dependant starts (<see cref="Dependency.Condition"/>; absent means started).</summary>
[JsonConverter(typeof(WireEnumConverter<DependencyCondition>))]
public enum DependencyCondition
{
    [JsonStringEnumMemberName("unknown")] Unknown,
    /// <summary>Running (compose's service_started).</summary>
    [JsonStringEnumMemberName("started")] Started,
    /// <summary>Running and ready by its readiness probe, or running when it has none (compose's service_healthy).</summary>
    [JsonStringEnumMemberName("ready")] Ready,
    /// <summary>Ran and exited with code 0 (compose's service_completed_successfully).</summary>
    [JsonStringEnumMemberName("completed")] Completed,
}

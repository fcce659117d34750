using System.Text.Json.Serialization;

namespace Orchestrator.Api;

/// <summary>
/// A node as the fleet judges it from its heartbeat's age (docs/protocol.md): ready within
/// unreachable_after, unreachable until lost_after, then lost (its replicas move). A state a newer
/// version writes that this one does not know reads as <see cref="Unknown"/>.
/// </summary>
[JsonConverter(typeof(WireEnumConverter<NodeCondition>))]
public enum NodeCondition
{
    [JsonStringEnumMemberName("unknown")] Unknown,
    [JsonStringEnumMemberName("ready")] Ready,
    [JsonStringEnumMemberName("unreachable")] Unreachable,
    [JsonStringEnumMemberName("lost")] Lost,
}

/// <summary>Where a deployment's rollout stands, as the scheduler reports it in the status bucket.</summary>
[JsonConverter(typeof(WireEnumConverter<RolloutPhase>))]
public enum RolloutPhase
{
    [JsonStringEnumMemberName("unknown")] Unknown,
    /// <summary>Replicas are being moved to the current template, wave by wave.</summary>
    [JsonStringEnumMemberName("progressing")] Progressing,
    /// <summary>Held by `orchctl rollout pause`.</summary>
    [JsonStringEnumMemberName("paused")] Paused,
    /// <summary>Every replica runs the current template and is ready.</summary>
    [JsonStringEnumMemberName("complete")] Complete,
    /// <summary>Every placed replica is updated and ready, but some replica has no node.</summary>
    [JsonStringEnumMemberName("degraded")] Degraded,
    /// <summary>The new template did not get ready in time; the previous one is back.</summary>
    [JsonStringEnumMemberName("rolled-back")] RolledBack,
    /// <summary>The new template did not get ready, and there is no earlier one that ran ready to go back to.</summary>
    [JsonStringEnumMemberName("failed")] Failed,
}

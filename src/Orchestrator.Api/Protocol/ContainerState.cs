using System.Text.Json.Serialization;

namespace Orchestrator.Api;

/// <summary>
/// Where a container is in its life, as a node reports it (ps, inspect, heartbeats) and keeps it on
/// disk. A state a newer node reports that this version does not know reads as <see cref="Unknown"/>.
/// </summary>
[JsonConverter(typeof(WireEnumConverter<ContainerState>))]
public enum ContainerState
{
    [JsonStringEnumMemberName("unknown")] Unknown,
    /// <summary>Made, not (yet) started.</summary>
    [JsonStringEnumMemberName("created")] Created,
    [JsonStringEnumMemberName("running")] Running,
    /// <summary>Ended; waiting to be restarted.</summary>
    [JsonStringEnumMemberName("backoff")] Backoff,
    /// <summary>Ended and, by its restart policy, done.</summary>
    [JsonStringEnumMemberName("exited")] Exited,
    /// <summary>The restart policy gave up.</summary>
    [JsonStringEnumMemberName("failed")] Failed,
    /// <summary>Stopped by request.</summary>
    [JsonStringEnumMemberName("stopped")] Stopped,
    /// <summary>
    /// Told to stop (SIGTERM sent: stopped, removed, replaced or restarted) and still running its
    /// grace period; never ready. Reported, not kept on disk. An older peer reads it as unknown.
    /// </summary>
    [JsonStringEnumMemberName("stopping")] Stopping,
}

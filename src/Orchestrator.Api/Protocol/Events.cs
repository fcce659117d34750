namespace Orchestrator.Api;

/// <summary>
/// Something that happened, for operators (`orchctl events`): kept in the JetStream stream
/// <see cref="Stream"/> on subjects <c>orch.events.&lt;node&gt;.&lt;kind&gt;</c>, a week or 64 MiB,
/// whichever is less (an edge server's disk is small).
/// </summary>
public sealed record NodeEvent
{
    public const string Stream = "ORCH_EVENTS";
    public const string Subjects = "orch.events.>";

    public int SchemaVersion { get; init; } = 1;
    public DateTimeOffset At { get; init; }
    public required string Node { get; init; }
    /// <summary>container.started, container.exited, container.oom-killed, container.unhealthy, container.failed,
    /// container.start-failed, container.removed, container.device-added, container.device-removed, container.device-failed,
    /// job.succeeded, job.failed, workload.refused, deployment.rolled-back, deployment.scaled, scheduler.elected.</summary>
    public required string Kind { get; init; }
    /// <summary>The container or deployment it is about.</summary>
    public required string Subject { get; init; }
    public required string Message { get; init; }

    public static string SubjectFor(string node, string kind) => $"orch.events.{node}.{kind}";
}

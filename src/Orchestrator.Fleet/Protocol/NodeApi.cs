using Orchestrator.Node.Logs;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Fleet.Protocol;

/// <summary>The node API's operations: the last token of <c>orch.node.&lt;node&gt;.&lt;op&gt;</c>.</summary>
public static class NodeOps
{
    public const string Info = "info", Run = "run", Stop = "stop", Start = "start", Restart = "restart", Remove = "rm",
        List = "ps", Inspect = "inspect", Logs = "logs", Exec = "exec", Stats = "stats", Status = "status",
        Images = "images", ImageInspect = "image-inspect", Pull = "pull", RemoveImage = "rmi", ImageGc = "image-gc";

    public static readonly IReadOnlyList<string> All =
        [Info, Run, Stop, Start, Restart, Remove, List, Inspect, Logs, Exec, Stats, Status, Images, ImageInspect, Pull, RemoveImage, ImageGc];
}

/// <summary>stop, start, restart, rm, inspect: which container.</summary>
public sealed record NameRequest
{
    public int SchemaVersion { get; init; } = 1;
    public string Name { get; init; } = "";
}

public sealed record LogsRequest
{
    public int SchemaVersion { get; init; } = 1;
    public string Name { get; init; } = "";
    /// <summary>The last N lines only.</summary>
    public int? Tail { get; init; }
    /// <summary>Only lines written at or after this time.</summary>
    public DateTimeOffset? Since { get; init; }
    /// <summary>Keep sending new lines (each reply has more: true) for as long as the client answers on <see cref="AliveSubject"/>.</summary>
    public bool Follow { get; init; }
    /// <summary>follow: a subject the client answers; the node asks it every few seconds and stops when nobody does.</summary>
    public string? AliveSubject { get; init; }
}

public sealed record LogsReply
{
    public int SchemaVersion { get; init; } = 1;
    public required IReadOnlyList<LogLine> Lines { get; init; }
    /// <summary>
    /// More replies follow on the same inbox: a log bigger than one NATS message comes in
    /// several, oldest lines first; the last has <c>more: false</c>.
    /// </summary>
    public bool More { get; init; }
}

public sealed record ExecRequest
{
    public int SchemaVersion { get; init; } = 1;
    public string Name { get; init; } = "";
    public IReadOnlyList<string> Command { get; init; } = [];
    public double TimeoutSeconds { get; init; } = 30;
}

public sealed record ExecReply
{
    public int SchemaVersion { get; init; } = 1;
    public int ExitCode { get; init; }
    public string Stdout { get; init; } = "";
    public string Stderr { get; init; } = "";
    public bool TimedOut { get; init; }
}

public sealed record StatsRequest
{
    public int SchemaVersion { get; init; } = 1;
    /// <summary>One container; every container when absent.</summary>
    public string? Name { get; init; }
}

public sealed record ContainerListReply
{
    public int SchemaVersion { get; init; } = 1;
    public required IReadOnlyList<ContainerStatus> Containers { get; init; }
}

public sealed record StatsReply
{
    public int SchemaVersion { get; init; } = 1;
    public required IReadOnlyList<ContainerStats> Containers { get; init; }
}

/// <summary>pull: a registry reference, or nats:NAME for the fleet's bucket.</summary>
public sealed record PullRequest
{
    public int SchemaVersion { get; init; } = 1;
    public string Reference { get; init; } = "";
}

public sealed record ImageListReply
{
    public int SchemaVersion { get; init; } = 1;
    public required IReadOnlyList<ImageSummary> Images { get; init; }
}

/// <summary>An operation that changes nothing to report (rm).</summary>
public sealed record OkReply
{
    public int SchemaVersion { get; init; } = 1;
    public bool Ok { get; init; } = true;
}

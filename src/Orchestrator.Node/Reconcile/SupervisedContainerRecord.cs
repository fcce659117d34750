using System.Text.Json.Serialization;

namespace Orchestrator.Node.Reconcile;

/// <summary>
/// What the node knows about one workload's container, kept on disk (write-then-rename, fsync)
/// so that a new orchd knows which containers are its own and how they have fared.
/// </summary>
public sealed class SupervisedContainerRecord
{
    public string Name { get; set; } = "";
    /// <summary>The workload spec this container was made from (a hash): a change means replace.</summary>
    public string SpecHash { get; set; } = "";
    public string Image { get; set; } = "";
    /// <summary>created, running, backoff (waiting to restart), exited (done, by policy), failed (gave up), stopped (by request).</summary>
    public Orchestrator.Api.ContainerState State { get; set; } = Orchestrator.Api.ContainerState.Created;
    public int Pid { get; set; }
    public ulong PidStartTime { get; set; }
    public DateTimeOffset? StartedAt { get; set; }
    public DateTimeOffset? FinishedAt { get; set; }
    public int Restarts { get; set; }
    /// <summary>A hash of the operators' variables (orchctl env) it was started with: a change restarts it.</summary>
    public string? VariablesHash { get; set; }
    /// <summary>Failed runs in a row, for the backoff; reset after a stable run.</summary>
    public int ConsecutiveFailures { get; set; }
    public DateTimeOffset? NextRestartAt { get; set; }
    public ExitRecord? LastExit { get; set; }
    /// <summary>
    /// Where each run's lines are in the log, by the wall-clock times the log stamps them with
    /// (taken just before the spawn, so a run's first line is never before its own mark): the
    /// current (or last) run's from <see cref="LogFrom"/>, the run before it's from
    /// <see cref="PreviousLogFrom"/> to <see cref="PreviousLogTo"/>. `logs --previous` reads them.
    /// </summary>
    public DateTimeOffset? LogFrom { get; set; }
    public DateTimeOffset? PreviousLogFrom { get; set; }
    public DateTimeOffset? PreviousLogTo { get; set; }
    public bool Ready { get; set; }
    /// <summary>The container's address on the node's bridge (kept across restarts of the container).</summary>
    public string? Ip { get; set; }
    /// <summary>The ports this run published: withdrawn from these, whatever the spec says by then.</summary>
    public List<Orchestrator.Api.Workloads.PortMapping>? Published { get; set; }
    public bool Started { get; set; }
    /// <summary>The last problem in a sentence (image missing, probe failing, gave up…).</summary>
    public string? Message { get; set; }
    /// <summary>
    /// The workload this container was made from (its <see cref="SpecHash"/>): a damaged
    /// workloads/NAME.json is rebuilt from it, so a torn file never stops a running container.
    /// </summary>
    public Orchestrator.Api.Workloads.Workload? Workload { get; set; }
    /// <summary>A job: its finished runs (newest last), the number of the current or last run, when it began (its deadline counts from there, its log window too) and its attempts so far.</summary>
    public List<Orchestrator.Api.JobRun>? Runs { get; set; }
    public int RunNumber { get; set; }
    public DateTimeOffset? RunStartedAt { get; set; }
    public int RunAttempts { get; set; }
    /// <summary>A scheduled job: when its next run starts; kept so that a run missed while orchd was down happens when it is back.</summary>
    public DateTimeOffset? NextRunAt { get; set; }
}


[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, WriteIndented = true)]
[JsonSerializable(typeof(SupervisedContainerRecord))]
public sealed partial class ContainerRecordJsonContext : JsonSerializerContext;

using Microsoft.Extensions.Logging;

namespace Orchestrator.Node.Reconcile;

/// <summary>
/// What the node's supervisor and its parts (network, probes, images) log, with fixed event ids.
/// The parts log through the supervisor's own logger, so that a line's category stays
/// <c>Supervisor</c> whichever part wrote it.
/// </summary>
internal static partial class SupervisorLog
{
    [LoggerMessage(EventId = 2301, Level = LogLevel.Warning, Message = "refused workload {Name} from {Source}: {Refusal}")]
    internal static partial void LogRefused(ILogger logger, string name, string source, string refusal);

    [LoggerMessage(EventId = 2302, Level = LogLevel.Warning, Message = "stored workload {Name} does not start: {Refusal}")]
    internal static partial void LogRefusedAtStart(ILogger logger, string name, string refusal);

    [LoggerMessage(EventId = 2303, Level = LogLevel.Warning, Message = "workload {Name}: its file was damaged; rebuilt from its container's record, the container keeps running")]
    internal static partial void LogWorkloadRebuilt(ILogger logger, string name);

    [LoggerMessage(EventId = 2304, Level = LogLevel.Warning, Message = "container {Name}: {Message}")]
    internal static partial void LogLogsDropped(ILogger logger, string name, string message);

    [LoggerMessage(EventId = 2305, Level = LogLevel.Warning, Message = "container {Name}: its record is not saved ({Reason}); free space under the state directory")]
    internal static partial void LogRecordUnsaved(ILogger logger, string name, string reason);

    [LoggerMessage(EventId = 3001, Level = LogLevel.Information, Message = "re-adopted {Adopted} running containers; {Gone} had stopped while orchd was away")]
    internal static partial void LogRecovered(ILogger logger, int adopted, int gone);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Information, Message = "container {Name} started (pid {Pid}, restarts {Restarts})")]
    internal static partial void LogStarted(ILogger logger, string name, int pid, int restarts);

    [LoggerMessage(EventId = 3003, Level = LogLevel.Warning, Message = "container {Name} could not start: {Reason}")]
    internal static partial void LogStartFailed(ILogger logger, string name, string reason);

    [LoggerMessage(EventId = 3004, Level = LogLevel.Information, Message = "container {Name} exited (code {Code}, {Reason})")]
    internal static partial void LogExited(ILogger logger, string name, string code, string reason);

    [LoggerMessage(EventId = 3005, Level = LogLevel.Information, Message = "container {Name}: spec changed, replacing it")]
    internal static partial void LogReplacing(ILogger logger, string name);

    [LoggerMessage(EventId = 3006, Level = LogLevel.Information, Message = "container {Name}: no longer wanted, removing it")]
    internal static partial void LogRemoving(ILogger logger, string name);

    [LoggerMessage(EventId = 3007, Level = LogLevel.Error, Message = "state file {File} is corrupt ({Reason}); moved it to {Quarantine} and went on without it")]
    internal static partial void LogCorrupt(ILogger logger, string file, string reason, string quarantine);

    [LoggerMessage(EventId = 3008, Level = LogLevel.Warning, Message = "container {Name} re-adopted, but its record was lost; rebuilt it from the runtime's state")]
    internal static partial void LogRebuilt(ILogger logger, string name);

    [LoggerMessage(EventId = 3009, Level = LogLevel.Error, Message = "manifest: {Error}")]
    internal static partial void LogManifestError(ILogger logger, string error);

    [LoggerMessage(EventId = 3010, Level = LogLevel.Information, Message = "manifest directory {Dir}: {Count} workloads, {Errors} errors")]
    internal static partial void LogManifests(ILogger logger, string dir, int count, int errors);

    [LoggerMessage(EventId = 3011, Level = LogLevel.Warning, Message = "container {Name}: logs are not captured: {Reason}")]
    internal static partial void LogNoLogs(ILogger logger, string name, string reason);

    [LoggerMessage(EventId = 3012, Level = LogLevel.Warning, Message = "container {Name}: cleanup left something behind: {Reason}")]
    internal static partial void LogCleanup(ILogger logger, string name, string reason);

    [LoggerMessage(EventId = 3013, Level = LogLevel.Information, Message = "container {Name} ready={Ready} ({Detail})")]
    internal static partial void LogReadiness(ILogger logger, string name, bool ready, string detail);

    [LoggerMessage(EventId = 3014, Level = LogLevel.Warning, Message = "container {Name}: {Probe} failed ({Detail}); killing it")]
    internal static partial void LogProbeKill(ILogger logger, string name, string probe, string detail);

    [LoggerMessage(EventId = 3015, Level = LogLevel.Error, Message = "container {Name}: {Reason}; retrying with backoff")]
    internal static partial void LogStepFailed(ILogger logger, string name, string reason);

    [LoggerMessage(EventId = 3016, Level = LogLevel.Warning, Message = "container {Name}: its stdio holder (pid {Pid}) stays in orchd's own cgroup: {Reason}")]
    internal static partial void LogHolderUnplaced(ILogger logger, string name, int pid, string reason);

    [LoggerMessage(EventId = 3017, Level = LogLevel.Information, Message = "container {Name}: its variables (orchctl env) changed; restarting it")]
    internal static partial void LogVariablesChanged(ILogger logger, string name);

    [LoggerMessage(EventId = 3018, Level = LogLevel.Information, Message = "container {Name}: {Reason}")]
    internal static partial void LogWaiting(ILogger logger, string name, string reason);
}

using Microsoft.Extensions.Logging;

namespace Orchestrator.Daemon.Hosting;

/// <summary>orchd's own log lines, with fixed event ids (1xxx: host, 2xxx: fleet).</summary>
internal static partial class DaemonLog
{
    [LoggerMessage(EventId = 1001, Level = LogLevel.Information, Message = "orchd {Version} ready: node {Node} (id {NodeId}), state {StateDir}, runtime {Runtime}, config {ConfigFile}")]
    public static partial void Ready(ILogger logger, string version, string node, string nodeId, string stateDir, string runtime, string configFile);

    [LoggerMessage(EventId = 1008, Level = LogLevel.Warning, Message = "cgroups: {Problem}")]
    public static partial void CgroupScope(ILogger logger, string problem);

    [LoggerMessage(EventId = 1006, Level = LogLevel.Information, Message = "container backend: {Backend}")]
    public static partial void Backend(ILogger logger, string backend);

    [LoggerMessage(EventId = 1007, Level = LogLevel.Warning, Message = "container backend: {Backend}")]
    public static partial void BackendDespiteChecks(ILogger logger, string backend);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Information, Message = "stopping on request")]
    public static partial void Stopping(ILogger logger);

    [LoggerMessage(EventId = 1003, Level = LogLevel.Information, Message = "stopped cleanly in {ElapsedMs} ms")]
    public static partial void Stopped(ILogger logger, long elapsedMs);

    [LoggerMessage(EventId = 1099, Level = LogLevel.Critical, Message = "orchd failed: {Reason}")]
    public static partial void Failed(ILogger logger, string reason);

    [LoggerMessage(EventId = 1004, Level = LogLevel.Information, Message = "first boot: made node id {NodeId} in {StateDir}")]
    public static partial void FirstBoot(ILogger logger, string nodeId, string stateDir);

    [LoggerMessage(EventId = 1005, Level = LogLevel.Information, Message = "no config file at {Path}; running on defaults, flags and ORCHD_* variables")]
    public static partial void NoConfigFile(ILogger logger, string path);
}

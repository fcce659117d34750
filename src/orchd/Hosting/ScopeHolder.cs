using System.Globalization;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orchestrator.Runtime.Cgroups;

namespace Orchestrator.Daemon.Hosting;

/// <summary>
/// On cgroup v2 under systemd the node's containers live in a delegated scope (NodeCgroup), and a
/// scope ends with its last process. Its first process, and the one that keeps it while no
/// container runs, is <c>orchd scope-holder</c> in <c>SCOPE/.keeper</c>: orchd's binary stopped in
/// its C main before the .NET runtime starts (src/orchd/native/orchd_main.c), so it costs a few
/// pages, not a runtime. orchd starts one at start (before any container) when none is there, and
/// looks again every <see cref="Interval"/>, so a holder that was killed is replaced before the
/// scope can end with the last container and take the containers' parent cgroup with it.
/// </summary>
internal sealed partial class ScopeHolder(string binary, string nodeId, string scope, ILogger<ScopeHolder> logger) : BackgroundService
{
    public const string Argument = "scope-holder";

    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(5);

    /// <summary>
    /// A holder runs in the scope after this (one there already, or one started now, and the scope
    /// started with it when it was not there). Returns null, or the one sentence saying why not.
    /// </summary>
    public static string? Ensure(string binary, string nodeId, string scope)
    {
        if (Running(scope) is not null)
        {
            return null;
        }
        // A holder outside the scope holds nothing: StartKeeper stops it.
        var started = NodeCgroup.StartKeeper(binary, [Argument], nodeId, scope, stopIfUnplaced: true);
        started.Process?.Dispose();
        return started.Problem is { } problem ? $"no systemd scope for the containers: {problem}" : null;
    }

    /// <summary>The holder in SCOPE/.keeper (by its command line), or null.</summary>
    public static int? Running(string scope)
    {
        var procs = Path.Join(CgroupFactory.DefaultRoot, scope, NodeCgroup.KeeperName, "cgroup.procs");
        try
        {
            foreach (var line in File.ReadAllLines(procs))
            {
                if (int.TryParse(line, CultureInfo.InvariantCulture, out var pid)
                    && File.ReadAllText($"/proc/{line}/cmdline").Split('\0') is [_, Argument, ..])
                {
                    return pid;
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return null;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                if (Ensure(binary, nodeId, scope) is { } problem)
                {
                    LogProblem(logger, problem);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    [LoggerMessage(EventId = 1009, Level = LogLevel.Warning, Message = "cgroups: {Problem}")]
    private static partial void LogProblem(ILogger logger, string problem);
}

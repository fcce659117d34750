using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orchestrator.Fleet.Agent;

namespace Orchestrator.Daemon.Hosting;

/// <summary>
/// Under a systemd scope (cgroup v2) the node's keeper holds the scope open: one that died (the OOM
/// killer, an operator's kill) is started again within <see cref="Interval"/>, before the scope
/// can end with the last container and take the containers' parent cgroup with it.
/// </summary>
internal sealed partial class KeeperService(FenceKeeper keeper, ILogger<KeeperService> logger) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(5);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                if (keeper.Ensure() is { } problem)
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

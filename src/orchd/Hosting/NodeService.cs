using Microsoft.Extensions.Hosting;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Daemon.Hosting;

/// <summary>Runs the node's reconcile loop for the host's lifetime. Stopping it stops no container.</summary>
internal sealed class NodeService(Supervisor supervisor) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await supervisor.RunAsync(stoppingToken).ConfigureAwait(false);
        }
        finally
        {
            await supervisor.DisposeAsync().ConfigureAwait(false);
        }
    }
}

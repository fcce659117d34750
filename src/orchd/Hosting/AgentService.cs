using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Orchestrator.Fleet.Agent;

namespace Orchestrator.Daemon.Hosting;

/// <summary>Runs the fleet agent for the host's lifetime and mirrors its state into sd_notify STATUS=.</summary>
internal sealed class AgentService(NodeAgent agent, ISystemdNotifier notifier) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        agent.StatusChanged += OnStatus;
        try
        {
            // A failpoint (as etcd's gofail): lets the tests prove that a failing service ends
            // orchd with exit code 1, which is what makes systemd restart it.
            if (Environment.GetEnvironmentVariable("ORCHD_FAILPOINT") == "agent-crash")
            {
                await Task.Delay(100, stoppingToken).ConfigureAwait(false);
                throw new InvalidOperationException("failpoint agent-crash");
            }
            await agent.RunAsync(stoppingToken).ConfigureAwait(false);
        }
        finally
        {
            agent.StatusChanged -= OnStatus;
            await agent.DisposeAsync().ConfigureAwait(false);
        }
    }

    private void OnStatus(string status)
    {
        if (notifier.IsEnabled)
        {
            notifier.Notify(new ServiceState("STATUS=" + status.Replace('\n', ' ')));
        }
    }
}

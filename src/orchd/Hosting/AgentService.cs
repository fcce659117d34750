using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Orchestrator.Fleet.Agent;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Daemon.Hosting;

/// <summary>
/// Runs the fleet agent for the host's lifetime and keeps sd_notify STATUS= current with the
/// node's containers and its NATS connection ("3 containers, connected to nats://…"), which
/// `systemctl status orchd` shows.
/// </summary>
internal sealed class AgentService(NodeAgent agent, Supervisor supervisor, ISystemdNotifier notifier) : BackgroundService
{
    private readonly SemaphoreSlim _changed = new(0);
    private string _connection = "starting";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        agent.StatusChanged += OnConnection;
        supervisor.Changed += OnContainers;
        using var reporting = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        var reporter = notifier.IsEnabled ? ReportStatusAsync(reporting.Token) : Task.CompletedTask;
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
            agent.StatusChanged -= OnConnection;
            supervisor.Changed -= OnContainers;
            await agent.DisposeAsync().ConfigureAwait(false);
            // The agent may have ended by itself (a failure): the reporter must not outlive it.
            await reporting.CancelAsync().ConfigureAwait(false);
            await reporter.ConfigureAwait(false);
        }
    }

    private void OnConnection(string status)
    {
        Volatile.Write(ref _connection, status.Replace('\n', ' '));
        _changed.Release();
    }

    private void OnContainers(string name) => _changed.Release();

    /// <summary>
    /// One STATUS= line per change, never the same line twice. Container changes come in bursts
    /// (a start is several steps) and are raised before the loop publishes its view: wait a
    /// moment, then read. A slow timer catches anything else (a container that exited by itself).
    /// </summary>
    private async Task ReportStatusAsync(CancellationToken stoppingToken)
    {
        string? sent = null;
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                await _changed.WaitAsync(TimeSpan.FromSeconds(5), stoppingToken).ConfigureAwait(false);
                await Task.Delay(50, stoppingToken).ConfigureAwait(false);
                while (_changed.CurrentCount > 0)
                {
                    await _changed.WaitAsync(stoppingToken).ConfigureAwait(false);
                }
                var line = await StatusLineAsync().ConfigureAwait(false);
                if (line != sent)
                {
                    notifier.Notify(new ServiceState("STATUS=" + line));
                    sent = line;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task<string> StatusLineAsync()
    {
        var containers = await supervisor.ListAsync().ConfigureAwait(false);
        var running = containers.Count(c => c.State == ContainerState.Running);
        var count = containers.Count == 1 ? "1 container" : $"{containers.Count} containers";
        var detail = running == containers.Count ? "" : $" ({running} running)";
        return $"{count}{detail}, {Volatile.Read(ref _connection)}";
    }

    public override void Dispose()
    {
        _changed.Dispose();
        base.Dispose();
    }
}

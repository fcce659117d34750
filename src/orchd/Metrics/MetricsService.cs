using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using NATS.Client.Core;
using Orchestrator.Daemon.Configuration;
using Orchestrator.Fleet.Agent;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Daemon.Metrics;

/// <summary>
/// Serves the node's Prometheus text where the config asks: an HTTP listener (metrics.listen,
/// off by default, loopback when given a bare port) and a NATS subject (metrics.nats) that a
/// fleet-wide scraper requests node by node. Neither is needed to run containers: a listener
/// that cannot bind is logged and left off, and orchd runs on.
/// </summary>
internal sealed partial class MetricsService(OrchdConfig config, NodeIdentity identity, Supervisor supervisor, NodeAgent agent,
    ILogger<MetricsService> logger) : BackgroundService
{
    /// <summary>The NATS subject a node answers with its metrics text (five tokens: below the node API's orch.node.NODE.*).</summary>
    public static string Subject(string node) => $"orch.node.{node}.metrics.prometheus";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (config.MetricsListen is null && !config.MetricsNats)
        {
            return;
        }
        var metrics = new NodeMetrics(identity, supervisor, agent);
        MetricsHttpServer? http = null;
        if (config.MetricsListen is { } listen && ListenAddress.Endpoint(listen) is { } endpoint)
        {
            try
            {
                http = MetricsHttpServer.Start(endpoint, metrics.CollectAsync);
                LogListening(logger, $"http://{http.LocalEndPoint}/metrics");
            }
            catch (SocketException e)
            {
                LogListenFailed(logger, listen, e.Message);
            }
        }
        try
        {
            if (config.MetricsNats)
            {
                await ServeNatsAsync(metrics, stoppingToken).ConfigureAwait(false);
            }
            else
            {
                await Task.Delay(Timeout.Infinite, stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            if (http is not null)
            {
                await http.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>On the agent's connection, once it has one (the agent logs NATS trouble already).</summary>
    private async Task ServeNatsAsync(NodeMetrics metrics, CancellationToken stoppingToken)
    {
        var connection = await agent.ConnectionAsync(stoppingToken).ConfigureAwait(false);
        var subject = Subject(identity.NodeName);
        LogNats(logger, subject);
        await foreach (var msg in connection.SubscribeAsync<byte[]>(subject, cancellationToken: stoppingToken).ConfigureAwait(false))
        {
            if (msg.ReplyTo is null)
            {
                continue;
            }
            try
            {
                var text = await metrics.CollectAsync().ConfigureAwait(false);
                await msg.ReplyAsync(Encoding.UTF8.GetBytes(text), cancellationToken: stoppingToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException and not OutOfMemoryException)
            {
                LogScrapeFailed(logger, subject, e.Message);
            }
        }
    }

    [LoggerMessage(EventId = 1020, Level = LogLevel.Information, Message = "metrics: Prometheus text at {Url}")]
    private static partial void LogListening(ILogger logger, string url);

    [LoggerMessage(EventId = 1021, Level = LogLevel.Error, Message = "metrics: cannot listen on {Address}: {Reason}; metrics over HTTP are off until metrics.listen names a free local address and orchd restarts")]
    private static partial void LogListenFailed(ILogger logger, string address, string reason);

    [LoggerMessage(EventId = 1022, Level = LogLevel.Information, Message = "metrics: answering {Subject} on NATS")]
    private static partial void LogNats(ILogger logger, string subject);

    [LoggerMessage(EventId = 1023, Level = LogLevel.Warning, Message = "metrics: could not answer {Subject}: {Reason}")]
    private static partial void LogScrapeFailed(ILogger logger, string subject, string reason);
}

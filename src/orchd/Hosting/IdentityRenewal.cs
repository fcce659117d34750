using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orchestrator.Client.Identity;
using Orchestrator.Daemon.Configuration;
using Orchestrator.Fleet.Agent;

namespace Orchestrator.Daemon.Hosting;

/// <summary>
/// An enrolled node renews its own JWT over its connection once two thirds of its life have
/// passed (30 days by default: after 20), retrying every 10 minutes while the service does not
/// answer. The new JWT goes into the creds file the NATS client reads at its next connect; the
/// server ends the old one's connection at its expiry and the node reconnects with the new one.
/// A node offline past its JWT's expiry cannot connect and enrols again with a token
/// (docs/nats-security.md, "Rotation").
/// </summary>
internal sealed partial class IdentityRenewal(OrchdConfig config, NodeAgent agent, ILogger<IdentityRenewal> logger, TimeProvider clock) : BackgroundService
{
    private static readonly TimeSpan Retry = TimeSpan.FromMinutes(10);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (config.NatsCredsFile != DeviceIdentity.CredsPath(config.StateDir))
        {
            return; // credentials from the configuration: renewed by whoever made them
        }
        try
        {
            var connection = await agent.ConnectionAsync(stoppingToken).ConfigureAwait(false);
            while (!stoppingToken.IsCancellationRequested)
            {
                var current = DeviceIdentity.Read(config.StateDir);
                if (current is null)
                {
                    return;
                }
                var due = DeviceIdentity.RenewAt(current.Jwt) - clock.GetUtcNow();
                if (due > TimeSpan.Zero)
                {
                    // Task.Delay takes at most ~49 days; look again at least daily (the clock may jump).
                    await Task.Delay(due < TimeSpan.FromDays(1) ? due : TimeSpan.FromDays(1), clock, stoppingToken).ConfigureAwait(false);
                    continue;
                }
                try
                {
                    var renewed = await DeviceIdentity.RenewAsync(connection, config.StateDir, stoppingToken).ConfigureAwait(false);
                    LogRenewed(logger, renewed.Expires);
                }
                catch (Exception e) when (e is EnrolmentException or NATS.Client.Core.NatsException or IOException or FormatException && !stoppingToken.IsCancellationRequested)
                {
                    LogRenewFailed(logger, e.Message, current.Expires);
                    await Task.Delay(Retry, clock, stoppingToken).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "renewed this node's NATS credentials until {Expires:u}")]
    private static partial void LogRenewed(ILogger logger, DateTimeOffset expires);

    [LoggerMessage(Level = LogLevel.Warning, Message = "could not renew this node's NATS credentials ({Error}); they expire at {Expires:u}, trying again in 10 minutes")]
    private static partial void LogRenewFailed(ILogger logger, string error, DateTimeOffset expires);
}

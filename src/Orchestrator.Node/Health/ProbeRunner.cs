using Orchestrator.Api.Workloads;
using Orchestrator.Node.Drivers;

namespace Orchestrator.Node.Health;

/// <summary>
/// Runs a container's probes on their periods, off the supervisor's loop: the startup probe
/// until it passes (or its result ends the run), then liveness and readiness side by side. Each
/// result goes to a report callback that posts it to the supervisor's mailbox, where it is judged
/// (<see cref="ProbeTracker"/>) and acted on; the runner itself keeps no container state. Times
/// come from the <see cref="TimeProvider"/> the supervisor runs on (a test's fake clock).
/// </summary>
public sealed class ProbeRunner(ITaskDriver driver, TimeProvider clock) : IDisposable
{
    private readonly Prober _prober = new(driver);

    /// <summary>
    /// Starts probing container <paramref name="name"/> at <paramref name="host"/>. <paramref name="report"/>
    /// gets each result (kind: startup, liveness, readiness) and answers, for a startup result,
    /// whether the startup probe is done. Cancelling the returned source stops the probing.
    /// </summary>
    public CancellationTokenSource Start(Probes probes, string name, string host, Func<string, ProbeResult, Task<bool>> report)
    {
        var cts = new CancellationTokenSource();
        var token = cts.Token;
        _ = Task.Run(async () =>
        {
            try
            {
                if (probes.Startup is { } startup)
                {
                    await Task.Delay(TimeSpan.FromSeconds(startup.InitialDelaySeconds), clock, token).ConfigureAwait(false);
                    while (true)
                    {
                        var result = await ProbeOnceAsync(startup, name, host, token).ConfigureAwait(false);
                        if (await report("startup", result).ConfigureAwait(false))
                        {
                            break;
                        }
                        await Task.Delay(TimeSpan.FromSeconds(startup.PeriodSeconds), clock, token).ConfigureAwait(false);
                    }
                }
                await Task.WhenAll(
                    probes.Liveness is { } l ? LoopAsync(l, "liveness") : Task.CompletedTask,
                    probes.Readiness is { } r ? LoopAsync(r, "readiness") : Task.CompletedTask).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
            catch (InvalidOperationException)
            {
                // The mailbox refused the report: orchd is stopping, and so does the probing.
            }
        }, CancellationToken.None);
        return cts;

        async Task LoopAsync(Probe probe, string kind)
        {
            await Task.Delay(TimeSpan.FromSeconds(probe.InitialDelaySeconds), clock, token).ConfigureAwait(false);
            while (!token.IsCancellationRequested)
            {
                var result = await ProbeOnceAsync(probe, name, host, token).ConfigureAwait(false);
                await report(kind, result).ConfigureAwait(false);
                await Task.Delay(TimeSpan.FromSeconds(probe.PeriodSeconds), clock, token).ConfigureAwait(false);
            }
        }
    }

    /// <summary>One probe run; anything unexpected (a program missing from the image, a spawn error) is a failed probe, not a dead probe loop.</summary>
    private async Task<ProbeResult> ProbeOnceAsync(Probe probe, string name, string host, CancellationToken cancellationToken)
    {
        try
        {
            return await _prober.RunAsync(probe, name, host, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return new ProbeResult(false, e.Message);
        }
    }

    public void Dispose() => _prober.Dispose();
}

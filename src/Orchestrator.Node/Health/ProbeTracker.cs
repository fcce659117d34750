using Orchestrator.Api.Workloads;

namespace Orchestrator.Node.Health;

/// <summary>What one probe result means for a container's run.</summary>
/// <param name="Started">The startup probe passed.</param>
/// <param name="Kill">A startup or liveness probe failed its failureThreshold times: the run ends.</param>
/// <param name="Ready">Readiness as it now stands (for a readiness result; otherwise as it was).</param>
/// <param name="StartupDone">For a startup result: the startup probe stops (it passed, or the run ends).</param>
public readonly record struct ProbeVerdict(bool Started, bool Kill, bool Ready, bool StartupDone);

/// <summary>
/// The probes' thresholds as counting: failures and successes in a row per probe, for one run of
/// a container (a new run gets a new tracker). No clocks or I/O; the supervisor feeds it results
/// on its loop and acts on the verdict.
/// </summary>
public sealed class ProbeTracker(Probes probes)
{
    private int _startupFailures;
    private int _livenessFailures;
    private int _readinessFailures;
    private int _readinessSuccesses;

    /// <param name="kind">startup, liveness or readiness.</param>
    /// <param name="ready">Readiness before this result.</param>
    public ProbeVerdict Judge(string kind, ProbeResult result, bool ready)
    {
        switch (kind)
        {
            case "startup":
                if (result.Ok)
                {
                    return new ProbeVerdict(Started: true, Kill: false, ready, StartupDone: true);
                }
                var giveUp = ++_startupFailures >= probes.Startup!.FailureThreshold;
                return new ProbeVerdict(Started: false, Kill: giveUp, ready, StartupDone: giveUp);
            case "liveness":
                if (result.Ok)
                {
                    _livenessFailures = 0;
                    return new ProbeVerdict(false, false, ready, true);
                }
                return new ProbeVerdict(false, Kill: ++_livenessFailures >= probes.Liveness!.FailureThreshold, ready, true);
            default:
                if (result.Ok)
                {
                    _readinessFailures = 0;
                    if (++_readinessSuccesses >= probes.Readiness!.SuccessThreshold)
                    {
                        ready = true;
                    }
                }
                else
                {
                    _readinessSuccesses = 0;
                    if (++_readinessFailures >= probes.Readiness!.FailureThreshold)
                    {
                        ready = false;
                    }
                }
                return new ProbeVerdict(false, false, ready, true);
        }
    }
}

using Orchestrator.Node.Reconcile;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Node.Tests;

public sealed class RestartTrackerTests
{
    private static readonly DateTimeOffset s_t0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Backoff_doubles_up_to_the_cap()
    {
        var policy = new RestartPolicy { Backoff = "1s", MaxBackoff = "10s" };
        var record = new SupervisedContainerRecord();
        var delays = Enumerable.Range(0, 6).Select(_ => RestartTracker.OnExit(policy, record, 1, s_t0, s_t0.AddSeconds(1)).Delay.TotalSeconds).ToList();
        Assert.Equal([1, 2, 4, 8, 10, 10], delays);
    }

    [Fact]
    public void A_stable_run_resets_the_backoff()
    {
        var policy = new RestartPolicy { Backoff = "1s", ResetAfter = "1m" };
        var record = new SupervisedContainerRecord();
        RestartTracker.OnExit(policy, record, 1, s_t0, s_t0.AddSeconds(1));
        RestartTracker.OnExit(policy, record, 1, s_t0, s_t0.AddSeconds(1));
        var after = RestartTracker.OnExit(policy, record, 1, s_t0, s_t0.AddMinutes(2));
        Assert.Equal(TimeSpan.FromSeconds(1), after.Delay);
    }

    [Fact]
    public void On_failure_restarts_failures_only_and_gives_up_after_max_retries()
    {
        var policy = new RestartPolicy { Policy = RestartPolicyKind.OnFailure, MaxRetries = 2 };
        var record = new SupervisedContainerRecord();
        Assert.Equal(RestartDecision.Done, RestartTracker.OnExit(policy, record, 0, s_t0, s_t0).Decision);
        Assert.Equal(RestartDecision.Restart, RestartTracker.OnExit(policy, record, 1, s_t0, s_t0).Decision);
        Assert.Equal(RestartDecision.Restart, RestartTracker.OnExit(policy, record, null, s_t0, s_t0).Decision); // unknown counts as failed
        Assert.Equal(RestartDecision.GiveUp, RestartTracker.OnExit(policy, record, 1, s_t0, s_t0).Decision);
    }

    [Fact]
    public void Never_means_never_and_always_means_always()
    {
        Assert.Equal(RestartDecision.Done, RestartTracker.OnExit(new RestartPolicy { Policy = RestartPolicyKind.Never }, new SupervisedContainerRecord(), 1, s_t0, s_t0).Decision);
        Assert.Equal(RestartDecision.Restart, RestartTracker.OnExit(new RestartPolicy { Policy = RestartPolicyKind.Always }, new SupervisedContainerRecord(), 0, s_t0, s_t0).Decision);
        Assert.Equal(RestartDecision.Restart, RestartTracker.OnExit(null, new SupervisedContainerRecord(), 0, s_t0, s_t0).Decision);
    }
}

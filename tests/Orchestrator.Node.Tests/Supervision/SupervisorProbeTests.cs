using Orchestrator.Api.Workloads;
using Orchestrator.Node.Health;
using static Orchestrator.Node.Tests.Supervision.SupervisorHarness;

namespace Orchestrator.Node.Tests.Supervision;

/// <summary>
/// Probes through the Supervisor, in-process: the fake driver answers execs as the test says,
/// the fake clock runs the periods. The thresholds themselves are checked on ProbeTracker below.
/// </summary>
public sealed class SupervisorProbeTests
{
    private static readonly TimeSpan s_period = TimeSpan.FromSeconds(1);

    [Fact]
    public async Task Liveness_failing_fewer_times_in_a_row_than_its_threshold_never_kills()
    {
        await using var node = await StartAsync();
        // fail, fail, pass, fail, fail, pass, …: never three in a row.
        node.Driver.ExecExitCode = (_, _, n) => n % 3 == 0 ? 0 : 1;
        await node.Supervisor.ApplyAsync(App("wobbly", probes: new Probes { Liveness = ExecProbe("alive", failureThreshold: 3) }));
        await node.AdvanceUntilAsync("15 liveness probes", () => node.Driver.Execs("wobbly", "alive") >= 15, s_period);
        Assert.Empty(node.Driver.SignalsTo("wobbly"));
        Assert.Equal(1, node.Driver.Starts("wobbly"));
    }

    [Fact]
    public async Task Liveness_failing_its_threshold_kills_at_that_failure_and_the_restart_gets_fresh_counts()
    {
        await using var node = await StartAsync();
        node.Driver.ExecExitCode = (_, _, n) => n <= 3 ? 1 : 0; // the first run fails three times; then all pass
        await node.Supervisor.ApplyAsync(App("sick", new RestartPolicy { Backoff = "1s" }, new Probes { Liveness = ExecProbe("alive", failureThreshold: 3) }));
        await node.AdvanceUntilAsync("the kill", () => node.Driver.SignalsTo("sick").Count > 0, s_period);
        Assert.Equal(3, node.Driver.Execs("sick", "alive")); // not one probe more, not one less
        Assert.Equal([9], node.Driver.SignalsTo("sick"));

        var waiting = await node.UntilStateAsync("sick", ContainerState.Backoff);
        Assert.Equal("liveness-probe", waiting.LastExit!.Reason);
        Assert.Equal(137, waiting.LastExit.Code);
        Assert.Contains(node.Events("container.unhealthy"), e => e.Name == "sick" && e.Message.StartsWith("liveness-probe failed (exec alive exited 1)", StringComparison.Ordinal));

        await node.AdvanceUntilAsync("restarted", () => node.Driver.Starts("sick") == 2, s_period);
        await node.AdvanceUntilAsync("5 more probes", () => node.Driver.Execs("sick", "alive") >= 8, s_period);
        Assert.Equal([9], node.Driver.SignalsTo("sick"));
        Assert.Equal(1, (await node.InspectAsync("sick")).Restarts);
    }

    [Fact]
    public async Task A_startup_probe_that_fails_then_passes_holds_liveness_off_and_kills_nothing()
    {
        await using var node = await StartAsync();
        node.Driver.ExecExitCode = (_, program, n) => program == "started" && n <= 4 ? 1 : 0;
        var probes = new Probes
        {
            Startup = ExecProbe("started", failureThreshold: 5),
            Liveness = ExecProbe("alive", failureThreshold: 1),
        };
        await node.Supervisor.ApplyAsync(App("slow", probes: probes));
        await node.AdvanceUntilAsync("the startup probe's fifth run", () => node.Driver.Execs("slow", "started") == 5, s_period);
        await node.AdvanceUntilAsync("liveness probes", () => node.Driver.Execs("slow", "alive") >= 3, s_period);
        Assert.Equal(5, node.Driver.Execs("slow", "started")); // once passed, never run again
        Assert.Empty(node.Driver.SignalsTo("slow"));
        Assert.Equal(ContainerState.Running, (await node.InspectAsync("slow")).State);
    }

    [Fact]
    public async Task A_startup_probe_that_never_passes_kills_after_its_threshold()
    {
        await using var node = await StartAsync();
        node.Driver.ExecExitCode = (_, _, _) => 1;
        var probes = new Probes { Startup = ExecProbe("started", failureThreshold: 4), Liveness = ExecProbe("alive") };
        await node.Supervisor.ApplyAsync(App("stuck", new RestartPolicy { Policy = RestartPolicyKind.Never }, probes));
        await node.AdvanceUntilAsync("the kill", () => node.Driver.SignalsTo("stuck").Count > 0, s_period);
        var exited = await node.UntilStateAsync("stuck", ContainerState.Exited);
        Assert.Equal("startup-probe", exited.LastExit!.Reason);
        Assert.Equal(4, node.Driver.Execs("stuck", "started"));
        Assert.Equal(0, node.Driver.Execs("stuck", "alive"));
    }

    [Fact]
    public async Task Readiness_goes_up_after_its_successes_and_down_after_its_failures_and_says_why()
    {
        await using var node = await StartAsync();
        var failing = 0;
        node.Driver.ExecExitCode = (_, _, _) => Volatile.Read(ref failing);
        await node.Supervisor.ApplyAsync(App("api", probes: new Probes { Readiness = ExecProbe("ready", failureThreshold: 2, successThreshold: 2) }));
        Assert.False((await node.InspectAsync("api")).Ready);
        await node.AdvanceUntilAsync("ready", async () => (await node.InspectAsync("api")).Ready, s_period);
        Assert.True(node.Driver.Execs("api", "ready") >= 2);

        Volatile.Write(ref failing, 1);
        await node.AdvanceUntilAsync("not ready", async () => !(await node.InspectAsync("api")).Ready, s_period);
        var down = await node.InspectAsync("api");
        Assert.Equal("not ready: exec ready exited 1", down.Message);
        Assert.Equal(ContainerState.Running, down.State); // readiness never kills
        Assert.Empty(node.Driver.SignalsTo("api"));
    }

    [Fact]
    public async Task Probe_results_for_a_run_that_has_ended_change_nothing()
    {
        await using var node = await StartAsync();
        node.Driver.ExecExitCode = (_, _, _) => 1;
        await node.Supervisor.ApplyAsync(App("gone", new RestartPolicy { Policy = RestartPolicyKind.Never }, new Probes { Liveness = ExecProbe("alive", failureThreshold: 2) }));
        await node.AdvanceUntilAsync("one failed probe", () => node.Driver.Execs("gone", "alive") == 1, s_period);
        node.Driver.Exit("gone", 0);
        await node.UntilStateAsync("gone", ContainerState.Exited);
        node.Clock.Advance(TimeSpan.FromSeconds(30));
        await node.DrainAsync();
        Assert.Empty(node.Driver.SignalsTo("gone"));
        Assert.Equal("exited", (await node.InspectAsync("gone")).LastExit!.Reason);
    }
}

/// <summary>The probes' thresholds as counting, without a clock or a container.</summary>
public sealed class ProbeTrackerTests
{
    private static readonly ProbeResult s_ok = new(true, "ok");
    private static readonly ProbeResult s_bad = new(false, "bad");

    [Fact]
    public void Readiness_needs_successThreshold_passes_in_a_row_and_failureThreshold_failures_in_a_row()
    {
        var tracker = new ProbeTracker(new Probes { Readiness = new Probe { SuccessThreshold = 2, FailureThreshold = 2 } });
        var ready = false;
        bool Feed(ProbeResult r) => ready = tracker.Judge("readiness", r, ready).Ready;
        Assert.False(Feed(s_ok));
        Assert.False(Feed(s_bad));  // the run of passes is broken
        Assert.False(Feed(s_ok));
        Assert.True(Feed(s_ok));
        Assert.True(Feed(s_bad));
        Assert.True(Feed(s_ok));    // the run of failures is broken
        Assert.True(Feed(s_bad));
        Assert.False(Feed(s_bad));
    }

    [Fact]
    public void Liveness_kills_only_on_failureThreshold_failures_in_a_row()
    {
        var tracker = new ProbeTracker(new Probes { Liveness = new Probe { FailureThreshold = 3 } });
        var verdicts = new[] { s_bad, s_bad, s_ok, s_bad, s_bad, s_bad }.Select(r => tracker.Judge("liveness", r, true)).ToList();
        Assert.Equal([false, false, false, false, false, true], verdicts.Select(v => v.Kill));
        Assert.All(verdicts, v => Assert.True(v.StartupDone));
    }

    [Fact]
    public void Startup_goes_on_until_it_passes_or_runs_out()
    {
        var passes = new ProbeTracker(new Probes { Startup = new Probe { FailureThreshold = 3 } });
        Assert.Equal(new ProbeVerdict(false, false, false, false), passes.Judge("startup", s_bad, false));
        Assert.Equal(new ProbeVerdict(false, false, false, false), passes.Judge("startup", s_bad, false));
        Assert.Equal(new ProbeVerdict(true, false, false, true), passes.Judge("startup", s_ok, false));

        var fails = new ProbeTracker(new Probes { Startup = new Probe { FailureThreshold = 2 } });
        fails.Judge("startup", s_bad, false);
        Assert.Equal(new ProbeVerdict(false, true, false, true), fails.Judge("startup", s_bad, false));
    }
}

using Orchestrator.Api.Workloads;
using static Orchestrator.Node.Tests.Supervision.SupervisorHarness;

namespace Orchestrator.Node.Tests.Supervision;

/// <summary>
/// The reconcile loop and the restart policy, in-process: a fake driver, a fake clock, no root.
/// Each test drives time by hand, so "not before the backoff" is checked at the instant before it.
/// </summary>
public sealed class SupervisorReconcileTests
{
    private static readonly RestartPolicy s_crashLoop = new() { Backoff = "1s", MaxBackoff = "4s", ResetAfter = "1m" };

    [Fact]
    public async Task Apply_starts_the_container_and_a_stop_keeps_it_stopped_through_resyncs()
    {
        await using var node = await StartAsync();
        var status = await node.Supervisor.ApplyAsync(App("web"));
        Assert.Equal(ContainerState.Running, status.State);
        Assert.Equal(node.Driver.PidOf("web"), status.Pid);

        var stopped = await node.Supervisor.StopAsync("web");
        Assert.Equal(ContainerState.Stopped, stopped.State);
        Assert.Equal([15], node.Driver.SignalsTo("web"));
        for (var i = 0; i < 12; i++)
        {
            node.Clock.Advance(TimeSpan.FromSeconds(5)); // a resync pass each
            await node.DrainAsync();
        }
        await node.Supervisor.ReloadManifestsAsync(); // one more pass, for certain after the clock moved
        Assert.Equal(1, node.Driver.Starts("web"));
        Assert.Equal(ContainerState.Stopped, (await node.InspectAsync("web")).State);
    }

    [Fact]
    public async Task A_crash_loop_backs_off_doubling_to_the_cap_and_never_restarts_early()
    {
        await using var node = await StartAsync();
        await node.Supervisor.ApplyAsync(App("crashy", s_crashLoop));
        var starts = 1;
        foreach (var delay in new[] { 1, 2, 4, 4, 4 })
        {
            node.Driver.Exit("crashy", 1);
            var waiting = await node.UntilStateAsync("crashy", ContainerState.Backoff);
            Assert.Equal($"restarting in {delay}s (exited, code 1)", waiting.Message);

            // A resync pass (every 5 s) and an explicit one just before the time: still waiting.
            node.Clock.Advance(TimeSpan.FromSeconds(delay) - TimeSpan.FromMilliseconds(100));
            await node.Supervisor.ReloadManifestsAsync();
            Assert.Equal(starts, node.Driver.Starts("crashy"));
            Assert.Equal(ContainerState.Backoff, (await node.InspectAsync("crashy")).State);

            // The restart timer fires at the time, without waiting for a resync.
            node.Clock.Advance(TimeSpan.FromMilliseconds(200));
            starts++;
            await node.UntilAsync($"restart {starts - 1}", () => node.Driver.Starts("crashy") == starts);
            var running = await node.UntilStateAsync("crashy", ContainerState.Running);
            Assert.Equal(starts - 1, running.Restarts);
        }
    }

    [Fact]
    public async Task A_run_longer_than_resetAfter_starts_the_backoff_over()
    {
        await using var node = await StartAsync();
        await node.Supervisor.ApplyAsync(App("flappy", s_crashLoop));
        foreach (var delay in new[] { 1, 2, 4 })
        {
            node.Driver.Exit("flappy", 1);
            Assert.Equal($"restarting in {delay}s (exited, code 1)", (await node.UntilStateAsync("flappy", ContainerState.Backoff)).Message);
            await node.AdvanceUntilAsync("restarted", () => node.Driver.IsRunning("flappy"), TimeSpan.FromSeconds(1));
        }
        node.Clock.Advance(TimeSpan.FromSeconds(59)); // 59 s is not yet stable
        node.Driver.Exit("flappy", 1);
        Assert.Equal("restarting in 4s (exited, code 1)", (await node.UntilStateAsync("flappy", ContainerState.Backoff)).Message);
        await node.AdvanceUntilAsync("restarted", () => node.Driver.IsRunning("flappy"), TimeSpan.FromSeconds(1));

        node.Clock.Advance(TimeSpan.FromSeconds(61));
        node.Driver.Exit("flappy", 1);
        Assert.Equal("restarting in 1s (exited, code 1)", (await node.UntilStateAsync("flappy", ContainerState.Backoff)).Message);
        await node.AdvanceUntilAsync("restarted", () => node.Driver.IsRunning("flappy"), TimeSpan.FromSeconds(1));
        node.Driver.Exit("flappy", 1);
        Assert.Equal("restarting in 2s (exited, code 1)", (await node.UntilStateAsync("flappy", ContainerState.Backoff)).Message);
    }

    [Fact]
    public async Task On_failure_gives_up_after_maxRetries_stays_down_and_a_clean_exit_is_done()
    {
        await using var node = await StartAsync();
        await node.Supervisor.ApplyAsync(App("job", new RestartPolicy { Policy = RestartPolicyKind.OnFailure, MaxRetries = 2, Backoff = "1s" }));
        for (var i = 0; i < 2; i++)
        {
            node.Driver.Exit("job", 3);
            await node.UntilStateAsync("job", ContainerState.Backoff);
            await node.AdvanceUntilAsync("restarted", () => node.Driver.IsRunning("job"), TimeSpan.FromSeconds(1));
        }
        node.Driver.Exit("job", 3);
        var failed = await node.UntilStateAsync("job", ContainerState.Failed);
        Assert.Equal("gave up after 2 restarts in a row (restart.maxRetries)", failed.Message);
        Assert.Single(node.Events("container.failed"));

        node.Clock.Advance(TimeSpan.FromHours(1)); // 720 resyncs
        await node.Supervisor.ReloadManifestsAsync();
        Assert.Equal(3, node.Driver.Starts("job"));

        // A start by request starts over (a fresh backoff); a clean exit then is the end of it.
        Assert.Equal(ContainerState.Running, (await node.Supervisor.StartAsync("job")).State);
        node.Driver.Exit("job", 0);
        var done = await node.UntilStateAsync("job", ContainerState.Exited);
        Assert.Equal(0, done.LastExit!.Code);
        node.Clock.Advance(TimeSpan.FromMinutes(5));
        await node.Supervisor.ReloadManifestsAsync();
        Assert.Equal(4, node.Driver.Starts("job"));
    }

    [Fact]
    public async Task A_driver_that_throws_on_start_backs_off_and_the_container_runs_once_it_stops_throwing()
    {
        await using var node = await StartAsync();
        node.Driver.StartFails = (_, attempt) => attempt switch
        {
            1 => new InvalidOperationException("runtime exploded"),
            2 => new Linux.LinuxException("clone3", "/run/x", 5), // EIO
            3 => new ArgumentException("a bug in the driver"),     // not a kind the start expects
            _ => null,
        };
        var first = await node.Supervisor.ApplyAsync(App("fragile", s_crashLoop));
        Assert.Equal(ContainerState.Backoff, first.State);
        Assert.Equal("runtime exploded", first.Message);
        Assert.Contains(node.Events("container.start-failed"), e => e.Name == "fragile");

        await node.AdvanceUntilAsync("the fourth start", () => node.Driver.Starts("fragile") == 4, TimeSpan.FromMilliseconds(500));
        var running = await node.UntilStateAsync("fragile", ContainerState.Running);
        Assert.Null(running.Message);
        Assert.Equal(0, running.Restarts); // failed starts are not restarts of a run
    }

    [Fact]
    public async Task A_failed_start_is_retried_when_its_backoff_ends_not_at_the_next_resync()
    {
        await using var node = await StartAsync();
        node.Driver.StartFails = (_, attempt) => attempt == 1 ? new InvalidOperationException("runtime exploded") : null;
        var first = await node.Supervisor.ApplyAsync(App("fragile", s_crashLoop));
        Assert.Equal(ContainerState.Backoff, first.State);
        // The backoff is 1 s and the resync 5 s: just before the time, no retry; just after, the
        // retry's timer has fired (no resync pass in between).
        node.Clock.Advance(TimeSpan.FromMilliseconds(900));
        await node.Supervisor.ReloadManifestsAsync();
        Assert.Equal(1, node.Driver.Starts("fragile"));
        node.Clock.Advance(TimeSpan.FromMilliseconds(200));
        await node.UntilAsync("the retry at 1 s", () => node.Driver.Starts("fragile") == 2);
        await node.UntilStateAsync("fragile", ContainerState.Running);
    }

    [Fact]
    public async Task Failed_starts_leak_no_file_descriptors()
    {
        await using var node = await StartAsync();
        node.Driver.StartFails = (_, attempt) => attempt <= 40 ? new InvalidOperationException("no") : null;
        await node.Supervisor.ApplyAsync(App("leaky", new RestartPolicy { Backoff = "1s", MaxBackoff = "1s" }));
        await node.AdvanceUntilAsync("a few failed starts", () => node.Driver.Starts("leaky") >= 5, TimeSpan.FromSeconds(1));
        // Counted among the descriptors into this node's own directories: the process's whole count
        // moves with the tests that run beside this one (CI: 12 more, 145 → 157, none of them ours).
        var before = node.OpenFilesOfThisNode();
        await node.AdvanceUntilAsync("40 failed starts", () => node.Driver.Starts("leaky") >= 40, TimeSpan.FromSeconds(1));
        var after = node.OpenFilesOfThisNode();
        Assert.True(after - before < 3, $"{after - before} more fds into the node's directories after 35 failed starts ({before} → {after})");
    }

    [Fact]
    public async Task Stop_waits_out_the_grace_period_on_the_clock_then_kills()
    {
        await using var node = await StartAsync();
        await node.Supervisor.ApplyAsync(App("stubborn", grace: 5));
        node.Driver.IgnoreSigterm.Add("stubborn");
        var from = node.Clock.GetUtcNow();
        var stop = node.Supervisor.StopAsync("stubborn");
        await node.UntilAsync("SIGTERM", () => node.Driver.SignalsTo("stubborn").Contains(15));
        Assert.False(stop.IsCompleted);
        Assert.True(node.Driver.IsRunning("stubborn"));
        // What ps and the heartbeat say meanwhile: stopping, not ready (it said running, ready).
        var during = (await node.Supervisor.ListAsync()).Single(c => c.Name == "stubborn");
        Assert.Equal(ContainerState.Stopping, during.State);
        Assert.False(during.Ready);

        while (!stop.IsCompleted)
        {
            Assert.True(node.Clock.GetUtcNow() - from < TimeSpan.FromSeconds(30), "stop never finished");
            node.Clock.Advance(TimeSpan.FromSeconds(1));
            await Task.WhenAny(stop, Task.Delay(5));
        }
        Assert.True(node.Clock.GetUtcNow() - from >= TimeSpan.FromSeconds(5), "killed before the grace period was over");
        Assert.Equal([15, 9], node.Driver.SignalsTo("stubborn"));
        var stopped = await stop;
        Assert.Equal(ContainerState.Stopped, stopped.State);
        Assert.Equal("stopped", stopped.LastExit!.Reason);
    }

    /// <summary>
    /// The fleet takes six replicas away at once (a drain, a deleted deployment), each ignoring
    /// SIGTERM with a 10 s grace: their grace periods run side by side, so the loop is done in
    /// about one grace period, not six (60 s, the loop busy throughout, before this).
    /// </summary>
    [Fact]
    public async Task Containers_taken_away_together_are_stopped_side_by_side_not_one_grace_period_after_another()
    {
        await using var node = await StartAsync();
        var names = Enumerable.Range(0, 6).Select(i => $"rep-{i}").ToList();
        foreach (var name in names)
        {
            await node.Supervisor.ApplyAssignedAsync(App(name, grace: 10));
            node.Driver.IgnoreSigterm.Add(name);
        }
        var from = node.Clock.GetUtcNow();
        var sync = node.Supervisor.SyncAssignedAsync(new HashSet<string>(StringComparer.Ordinal));
        await node.UntilAsync("SIGTERM to all six", () => names.All(n => node.Driver.SignalsTo(n).Contains(15)));
        // The clock moves on in small steps while the loop works: a loaded machine reports the
        // kills' exits late in real time, and each step then adds fake time (18 s was seen with
        // 1 s steps). One after another, the six would take 60 s or more.
        while (!sync.IsCompleted)
        {
            Assert.True(node.Clock.GetUtcNow() - from < TimeSpan.FromSeconds(100), "the removal never finished");
            node.Clock.Advance(TimeSpan.FromMilliseconds(250));
            await Task.WhenAny(sync, Task.Delay(5));
        }
        await sync;
        var took = node.Clock.GetUtcNow() - from;
        Assert.True(took >= TimeSpan.FromSeconds(10), $"killed after {took.TotalSeconds} s, before the grace period was over");
        Assert.True(took < TimeSpan.FromSeconds(40), $"the six took {took.TotalSeconds} s of the clock: their grace periods ran one after another");
        foreach (var name in names)
        {
            Assert.Equal([15, 9], node.Driver.SignalsTo(name));
            Assert.False(node.Driver.IsRunning(name));
            Assert.Contains(node.Events("container.removed"), e => e.Name == name);
        }
        Assert.Empty(await node.Supervisor.ListAsync());
    }

    [Fact]
    public async Task Removing_a_workload_kills_it_and_removes_its_rootfs_and_a_spec_change_replaces_it()
    {
        await using var node = await StartAsync();
        await node.Supervisor.ApplyAsync(App("svc"));
        var oldPid = node.Driver.PidOf("svc");
        var changed = App("svc");
        changed.Env = new Dictionary<string, string> { ["MODE"] = "new" };
        var replaced = await node.Supervisor.ApplyAsync(changed);
        Assert.Equal(ContainerState.Running, replaced.State);
        Assert.NotEqual(oldPid, replaced.Pid);
        Assert.Equal(0, replaced.Restarts);
        Assert.Contains("svc", node.Driver.Images.RemovedRootfs);

        await node.Supervisor.RemoveAsync("svc");
        Assert.False(node.Driver.IsRunning("svc"));
        await Assert.ThrowsAsync<Orchestrator.Node.Reconcile.NodeApiException>(() => node.InspectAsync("svc"));
        Assert.False(File.Exists(Path.Combine(node.StateDir, "containers", "svc.json")));
    }

    [Fact]
    public async Task Removing_a_fleet_replica_makes_it_anew_while_the_fleet_still_assigns_it()
    {
        await using var node = await StartAsync();
        await node.Supervisor.ApplyAssignedAsync(App("web-0"));
        var oldPid = node.Driver.PidOf("web-0");

        await node.Supervisor.RemoveAsync("web-0");
        var again = await node.InspectAsync("web-0");
        Assert.Equal(ContainerState.Running, again.State);
        Assert.Equal("fleet", again.Source);
        Assert.NotEqual(oldPid, again.Pid);
        Assert.Equal(0, again.Restarts); // a new container, not a restart of the old one
        Assert.Equal(2, node.Driver.Starts("web-0"));
        Assert.Contains("web-0", node.Driver.Images.RemovedRootfs);
    }

    [Fact]
    public async Task Cpu_percent_is_measured_from_the_sample_the_loop_kept()
    {
        await using var node = await StartAsync();
        await node.Supervisor.ApplyAsync(App("busy"));
        var started = node.Clock.GetUtcNow();
        long cpu = 0;
        node.Driver.CpuNanoseconds = _ => Volatile.Read(ref cpu);

        node.Clock.Advance(TimeSpan.FromSeconds(10));
        Volatile.Write(ref cpu, 5_000_000_000); // half a CPU for 10 s
        Assert.Equal(50, Assert.Single(await node.Supervisor.StatsAsync("busy")).CpuPercent);
        await node.DrainAsync(); // the sample has reached the loop (and its view)

        node.Clock.Advance(TimeSpan.FromSeconds(2));
        Volatile.Write(ref cpu, 7_000_000_000); // a whole CPU for the last 2 s
        Assert.Equal(100, Assert.Single(await node.Supervisor.StatsAsync(null)).CpuPercent);
        Assert.True(node.Clock.GetUtcNow() - started == TimeSpan.FromSeconds(12));
    }

    [Fact]
    public async Task A_clients_reads_do_not_shorten_the_heartbeats_cpu_window()
    {
        await using var node = await StartAsync();
        await node.Supervisor.ApplyAsync(App("busy"));
        long cpu = 0;
        node.Driver.CpuNanoseconds = _ => Volatile.Read(ref cpu);
        node.Clock.Advance(TimeSpan.FromSeconds(5));
        Volatile.Write(ref cpu, 2_500_000_000); // half a CPU for 5 s
        Assert.Equal(50, Assert.Single(await node.Supervisor.StatsAsync(null, forHeartbeat: true)).CpuPercent);
        Assert.Equal(50, Assert.Single(await node.Supervisor.StatsAsync("busy")).CpuPercent);
        await node.DrainAsync();

        // `orchctl top` every second for 5 s: a burst in the first second, idle after it.
        node.Clock.Advance(TimeSpan.FromSeconds(1));
        Volatile.Write(ref cpu, 3_500_000_000); // a whole CPU for that second
        Assert.Equal(100, Assert.Single(await node.Supervisor.StatsAsync("busy")).CpuPercent);
        await node.DrainAsync();
        for (var i = 0; i < 4; i++)
        {
            node.Clock.Advance(TimeSpan.FromSeconds(1));
            Assert.Equal(0, Assert.Single(await node.Supervisor.StatsAsync("busy")).CpuPercent);
            await node.DrainAsync();
        }
        // The heartbeat's figure covers its whole period (1 s of CPU in 5 s), not the client's last second.
        Assert.Equal(20, Assert.Single(await node.Supervisor.StatsAsync(null, forHeartbeat: true)).CpuPercent);
    }

    [Fact]
    public async Task Cpu_percent_after_a_restart_counts_from_the_new_run_never_below_zero()
    {
        await using var node = await StartAsync();
        await node.Supervisor.ApplyAsync(App("busy", s_crashLoop));
        long cpu = 8_000_000_000;
        node.Driver.CpuNanoseconds = _ => Volatile.Read(ref cpu);
        node.Clock.Advance(TimeSpan.FromSeconds(10));
        Assert.Equal(80, Assert.Single(await node.Supervisor.StatsAsync("busy")).CpuPercent);
        await node.DrainAsync(); // the loop keeps that 8 s sample

        // The container crashes and restarts with a fresh cgroup: its counter starts again at 0.
        node.Driver.Exit("busy", 1);
        await node.UntilStateAsync("busy", ContainerState.Backoff);
        Volatile.Write(ref cpu, 0);
        node.Clock.Advance(TimeSpan.FromSeconds(2));
        await node.UntilStateAsync("busy", ContainerState.Running);
        node.Clock.Advance(TimeSpan.FromSeconds(4));
        Volatile.Write(ref cpu, 1_000_000_000); // a quarter of a CPU over the new run's 4 s
        Assert.Equal(25, Assert.Single(await node.Supervisor.StatsAsync("busy")).CpuPercent);
    }
}

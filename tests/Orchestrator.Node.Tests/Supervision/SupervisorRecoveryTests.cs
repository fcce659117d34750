using Orchestrator.Api.Workloads;
using static Orchestrator.Node.Tests.Supervision.SupervisorHarness;

namespace Orchestrator.Node.Tests.Supervision;

/// <summary>
/// Recovery, in-process: one Supervisor stops, another starts on the same state and the same fake
/// driver, whose containers ran on (or did not) meanwhile.
/// </summary>
public sealed class SupervisorRecoveryTests
{
    private static readonly RestartPolicy s_quick = new() { Backoff = "1s" };

    [Fact]
    public async Task Running_containers_are_readopted_not_restarted()
    {
        await using var node = await StartAsync();
        await node.Supervisor.ApplyAsync(App("a"));
        await node.Supervisor.ApplyAsync(App("b", probes: new Probes { Liveness = ExecProbe("alive") }));
        var pids = (node.Driver.PidOf("a"), node.Driver.PidOf("b"));

        await node.RestartOrchdAsync();
        var listed = await node.Supervisor.ListAsync();
        Assert.Equal(["a", "b"], listed.Select(c => c.Name));
        Assert.All(listed, c => Assert.Equal(ContainerState.Running, c.State));
        Assert.Equal(pids, (listed[0].Pid, listed[1].Pid));
        Assert.Equal(1, node.Driver.Starts("a"));
        Assert.Empty(node.Events("container.started"));

        // The adopted one is watched (an exit is seen and restarted) and probed again.
        node.Driver.Exit("a", 1);
        await node.UntilStateAsync("a", ContainerState.Backoff);
        await node.AdvanceUntilAsync("a restarted", () => node.Driver.Starts("a") == 2, TimeSpan.FromSeconds(1));
        var probesBefore = node.Driver.Execs("b", "alive");
        await node.AdvanceUntilAsync("b probed by the new orchd", () => node.Driver.Execs("b", "alive") > probesBefore, TimeSpan.FromSeconds(1));
    }

    [Fact]
    public async Task A_record_whose_container_is_gone_goes_to_the_restart_policy()
    {
        await using var node = await StartAsync();
        await node.Supervisor.ApplyAsync(App("always", s_quick));
        await node.Supervisor.ApplyAsync(App("never", new RestartPolicy { Policy = RestartPolicyKind.Never }));

        await node.RestartOrchdAsync(() =>
        {
            node.Driver.Vanish("always"); // a reboot while orchd was away
            node.Driver.Vanish("never");
        });
        var never = await node.UntilStateAsync("never", ContainerState.Exited);
        Assert.Null(never.LastExit!.Code); // nobody saw how it ended
        var always = await node.InspectAsync("always");
        Assert.True(always.State is ContainerState.Backoff or ContainerState.Running, WireNames.Of(always.State));
        await node.AdvanceUntilAsync("always restarted", () => node.Driver.IsRunning("always"), TimeSpan.FromSeconds(1));
        Assert.Equal(2, node.Driver.Starts("always"));
        Assert.Equal(1, node.Driver.Starts("never"));
        Assert.Contains(node.Events("container.exited"), e => e.Name == "never" && e.Message.Contains("code unknown", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_container_that_dies_during_recovery_is_restarted_not_lost()
    {
        await using var node = await StartAsync();
        await node.Supervisor.ApplyAsync(App("frail", s_quick));
        var died = 0;
        await node.RestartOrchdAsync(() => node.Driver.AfterRecover = id =>
        {
            if (Interlocked.Exchange(ref died, 1) == 0)
            {
                node.Driver.Exit(id, 1); // between Recover and Watch
            }
        });
        await node.AdvanceUntilAsync("frail restarted", () => node.Driver.Starts("frail") == 2 && node.Driver.IsRunning("frail"), TimeSpan.FromSeconds(1));
        var status = await node.UntilStateAsync("frail", ContainerState.Running);
        Assert.Equal(1, status.LastExit!.Code);
        Assert.Equal(1, status.Restarts);
    }

    [Fact]
    public async Task What_no_workload_wants_is_removed_and_a_stray_container_is_destroyed()
    {
        await using var node = await StartAsync();
        await node.Supervisor.ApplyAsync(App("kept"));
        await node.Supervisor.ApplyAsync(App("dropped"));
        await node.RestartOrchdAsync(() =>
        {
            File.Delete(Path.Combine(node.StateDir, "workloads", "dropped.json")); // its workload went while orchd was away
            node.Driver.Leave("stray"); // the runtime knows it; no record, no workload
        });
        await node.UntilAsync("dropped gone", () => !node.Driver.IsRunning("dropped"));
        Assert.False(node.Driver.IsRunning("stray"));
        Assert.True(node.Driver.IsRunning("kept"));
        Assert.Equal(["kept"], (await node.Supervisor.ListAsync()).Select(c => c.Name));
        Assert.Contains("dropped", node.Driver.Images.RemovedRootfs);
        Assert.False(File.Exists(Path.Combine(node.StateDir, "containers", "dropped.json")));
    }

    [Fact]
    public async Task A_lost_record_is_rebuilt_from_the_runtime_and_a_damaged_workload_from_the_record()
    {
        await using var node = await StartAsync();
        await node.Supervisor.ApplyAsync(App("norecord"));
        await node.Supervisor.ApplyAsync(App("tornfile"));
        var pids = (node.Driver.PidOf("norecord"), node.Driver.PidOf("tornfile"));
        await node.RestartOrchdAsync(() =>
        {
            File.Delete(Path.Combine(node.StateDir, "containers", "norecord.json"));
            File.WriteAllText(Path.Combine(node.StateDir, "workloads", "tornfile.json"), "{\"name\": \"tornf");
        });
        var norecord = await node.InspectAsync("norecord");
        Assert.Equal((ContainerState.Running, pids.Item1), (norecord.State, (int?)norecord.Pid));
        Assert.Equal("re-adopted without a record (the record was lost)", norecord.Message);
        Assert.True(File.Exists(Path.Combine(node.StateDir, "containers", "norecord.json")));

        var torn = await node.InspectAsync("tornfile");
        Assert.Equal((ContainerState.Running, pids.Item2), (torn.State, (int?)torn.Pid));
        Assert.Contains(node.Events("workload.rebuilt"), e => e.Name == "tornfile");
        Assert.Equal((1, 1), (node.Driver.Starts("norecord"), node.Driver.Starts("tornfile")));

        // And the next orchd finds both whole.
        await node.RestartOrchdAsync();
        Assert.All(await node.Supervisor.ListAsync(), c => Assert.Equal(ContainerState.Running, c.State));
        Assert.Empty(node.Events("workload.damaged"));
    }

    [Fact]
    public async Task A_stopped_container_stays_stopped_across_a_restart_of_orchd()
    {
        await using var node = await StartAsync();
        await node.Supervisor.ApplyAsync(App("parked", s_quick));
        await node.Supervisor.StopAsync("parked", "maintenance");
        await node.RestartOrchdAsync();
        node.Clock.Advance(TimeSpan.FromMinutes(1));
        await node.Supervisor.ReloadManifestsAsync();
        Assert.Equal(ContainerState.Stopped, (await node.InspectAsync("parked")).State);
        Assert.Equal(1, node.Driver.Starts("parked"));
        Assert.Equal("maintenance", (await node.Supervisor.StopReasonsAsync())["parked"]);
    }
}

using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Client;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// Jobs on a real orchd: a run retried until it succeeds (its attempts and log kept as one run),
/// one that uses up its retries, one past its deadline, and a scheduled job the node runs by its
/// own clock: while NATS is down, and once for a time missed while orchd was down, its history
/// capped, each run's log by its number.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class JobTests
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(60);

    [Theory(Timeout = 180_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task A_run_is_retried_until_it_succeeds_or_its_retries_or_deadline_run_out(string runtime)
    {
        await using var node = await NodeHost.StartAsync(runtime: runtime, extraArgs: NodeHost.MetricsOnNats);
        await using var connection = new NATS.Client.Core.NatsConnection(new NATS.Client.Core.NatsOpts { Url = node.Nats!.Url });
        await connection.ConnectAsync();
        var fleet = new FleetClient(connection);
        var since = DateTimeOffset.UtcNow.AddSeconds(-1);

        // Fails twice, then succeeds: one run of three attempts (the count is kept in a volume).
        await node.Client.RunAsync(NodeHost.Sh("migrate", "n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n; echo attempt $n; [ $n -ge 3 ]", w =>
        {
            w.Volumes = [new Volume { Name = "migrate-data", Target = "/data" }];
            w.Job = new JobSpec { Retries = 5 };
        }));
        var done = await node.WaitForAsync("migrate", c => c.Runs is { Count: 1 }, s_wait, "run 1 over");
        var run = Assert.Single(done.Runs!);
        Assert.Equal((1, "succeeded", (int?)0, 3), (run.Number, run.Outcome, run.ExitCode, run.Attempts));
        Assert.Equal(ContainerState.Exited, done.State);
        Assert.True(done.Ready); // a job that succeeded does not hold a rollout back
        Assert.Equal(["attempt 1", "attempt 2", "attempt 3"], (await node.Client.LogsAsync("migrate", run: 1)).Select(l => l.Text));
        // It stays done: no run 2 after a few passes.
        await node.WaitForReconcilePassesAsync(3);
        Assert.Single((await node.Client.InspectAsync("migrate")).Runs!);
        var missing = await Assert.ThrowsAsync<NodeRequestException>(() => node.Client.LogsAsync("migrate", run: 7));
        Assert.Contains("container 'migrate' has no run 7: runs 1-1 are kept (job.history)", missing.Message, StringComparison.Ordinal);

        // Fails every time: one retry, then the run has failed; the container is not ready.
        await node.Client.RunAsync(NodeHost.Sh("broken", "echo trying; exit 4", w => w.Job = new JobSpec { Retries = 1 }));
        var failed = await node.WaitForAsync("broken", c => c.Runs is { Count: 1 }, s_wait, "its run over");
        Assert.Equal(("failed", (int?)4, 2), (failed.Runs![0].Outcome, failed.Runs[0].ExitCode, failed.Runs[0].Attempts));
        Assert.Equal(ContainerState.Failed, failed.State);
        Assert.False(failed.Ready);
        Assert.StartsWith("run 1 failed: exited with code 4", failed.Message, StringComparison.Ordinal);

        // Hangs: stopped at its deadline, and that run has failed.
        await node.Client.RunAsync(NodeHost.Sh("hang", "echo started; exec sleep 600", w => w.Job = new JobSpec { DeadlineSeconds = 3, Retries = 3 }));
        var hung = await node.WaitForAsync("hang", c => c.Runs is { Count: 1 }, s_wait, "its deadline");
        Assert.Equal(("deadline-exceeded", 1), (hung.Runs![0].Outcome, hung.Runs[0].Attempts));
        Assert.InRange((hung.Runs[0].FinishedAt - hung.Runs[0].StartedAt).TotalSeconds, 2.5, 20);
        Assert.Equal(ContainerState.Failed, hung.State);

        var events = await Eventually.ValueAsync("job events", async () =>
        {
            var list = new List<NodeEvent>();
            await foreach (var e in fleet.EventsAsync(since, watch: false))
            {
                list.Add(e);
            }
            return list;
        }, l => l.Count(e => e.Kind.StartsWith("job.", StringComparison.Ordinal)) >= 3, TimeSpan.FromSeconds(20), TimeSpan.FromMilliseconds(200));
        Assert.Contains(events, e => e is { Kind: "job.succeeded", Subject: "migrate", Message: "run 1 succeeded after 3 attempts (exit code 0)" });
        Assert.Contains(events, e => e is { Kind: "job.failed", Subject: "broken" });
        Assert.Contains(events, e => e is { Kind: "job.failed", Subject: "hang" });
    }

    [Fact(Timeout = 180_000)]
    public async Task A_scheduled_job_runs_by_the_nodes_own_clock_without_nats_and_catches_up_a_time_missed_while_orchd_was_down()
    {
        await using var node = await NodeHost.StartAsync();
        await node.Client.RunAsync(NodeHost.Sh("tick", "echo tick $(date +%s)", w => w.Job = new JobSpec { Schedule = "@every 2s", History = 10 }));
        // Waiting for its time first: created, ready, a next run.
        var waiting = await node.Client.InspectAsync("tick");
        Assert.Equal(ContainerState.Created, waiting.State);
        Assert.NotNull(waiting.NextRunAt);
        Assert.True(waiting.Ready);
        Assert.Contains("next run at", waiting.Message, StringComparison.Ordinal);

        await node.WaitForAsync("tick", c => c.Runs is { Count: 2 }, s_wait, "two runs");

        // NATS down: the node keeps its schedule (nothing of it is the fleet's).
        var cut = DateTimeOffset.UtcNow;
        await node.Nats!.StopAsync();
        await Task.Delay(TimeSpan.FromSeconds(7));
        await node.Nats.StartAgainAsync();
        var afterCut = await Eventually.ValueAsync("the node API back", () => node.Client.InspectAsync("tick"), c => c.Runs is { Count: > 0 } r && r[^1].StartedAt > cut.AddSeconds(7), TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(300),
            transient: [typeof(NodeRequestException), typeof(NATS.Client.Core.NatsException), typeof(TimeoutException)]);
        Assert.True(afterCut.Runs!.Count(r => r.StartedAt > cut && r.StartedAt < cut.AddSeconds(7)) >= 2, "runs while NATS was down: " + string.Join(", ", afterCut.Runs!.Select(r => r.StartedAt.ToString("HH:mm:ss.fff", System.Globalization.CultureInfo.InvariantCulture))));
        // History: the last ten, numbered on.
        afterCut = await node.WaitForAsync("tick", c => c.Runs is { Count: 10 } r && r[0].Number > 1, s_wait, "more runs than its history keeps");
        Assert.Equal(Enumerable.Range(afterCut.Runs![0].Number, 10), afterCut.Runs.Select(r => r.Number));
        Assert.All(afterCut.Runs, r => Assert.Equal(("succeeded", (int?)0), (r.Outcome, r.ExitCode)));
        var last = afterCut.Runs[^1];
        var lines = await node.Client.LogsAsync("tick", run: last.Number);
        Assert.Single(lines);
        Assert.StartsWith("tick ", lines[0].Text, StringComparison.Ordinal);

        // orchd down past a time: the run it missed happens once it is back.
        await node.KillOrchdAsync();
        var down = DateTimeOffset.UtcNow;
        await Task.Delay(TimeSpan.FromSeconds(5));
        await node.StartOrchdAsync();
        var back = await node.WaitForAsync("tick", c => c.Runs is { Count: > 0 } r && r[^1].StartedAt > down, s_wait, "a run after the restart");
        Assert.True(back.Runs![^1].Number > last.Number);
    }
}

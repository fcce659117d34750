using NATS.Client.Core;
using Orchestrator.Client;
using Orchestrator.Api.Workloads;

using static Orchestrator.Daemon.Tests.Node.FleetHarness;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// Three real orchd nodes on one nats-server (JetStream): membership by heartbeat, deployments
/// in KV placed by one elected scheduler with spread and selectors, scaling, and a lost node
/// (the scheduler itself) replaced: another node takes the lease and its replicas move.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class FleetTests
{
    [Fact(Timeout = 240_000)]
    public async Task Deployments_spread_scale_follow_selectors_and_survive_the_loss_of_the_scheduler()
    {
        await using var nats = await NatsServer.StartAsync();
        var hosts = new List<NodeHost>();
        try
        {
            foreach (var (name, zone) in new[] { ("fa", "a"), ("fb", "b"), ("fc", "b") })
            {
                hosts.Add(await NodeHost.StartAsync(sharedNats: nats, name: $"{name}-{Guid.NewGuid().ToString("N")[..4]}", extraArgs: [.. Fast, "--label", $"zone={zone}"]));
            }
            await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
            await connection.ConnectAsync();
            var fleet = new FleetClient(connection);
            var fast = new Orchestrator.Client.FleetOptions { UnreachableAfter = TimeSpan.FromSeconds(3), LostAfter = TimeSpan.FromSeconds(6) };

            static string Show(IReadOnlyList<Orchestrator.Api.NodeEntry> nodes) => string.Join(", ", nodes.Select(n => $"{n.Info.Node} {n.State} leader={n.Leader}"));
            var nodes = await Eventually.ValueAsync("three ready nodes and a scheduler", () => fleet.GetNodesAsync(fast),
                nodes => nodes.Count(n => n.State == NodeCondition.Ready) >= 3 && nodes.Any(n => n.Leader), TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(200), Show);
            Assert.Single(nodes, n => n.Leader);
            Assert.All(nodes, n => Assert.NotNull(n.Info.Status));

            // Spread: three replicas, one per node.
            await fleet.ApplyAsync([Sleepers("web", 3)]);
            await WaitForRunningAsync(hosts, "web-", r => r.Values.All(v => v.Count == 1), "one web replica per node");
            // Scale to six: two on each node.
            await fleet.ScaleAsync("web", 6);
            var scaled = await WaitForRunningAsync(hosts, "web-", r => r.Values.Sum(v => v.Count) == 6, "six web replicas");
            Assert.All(scaled.Values, v => Assert.Equal(2, v.Count));

            // Selectors: only zone=a gets "edge"; nobody is zone=z, and the status says why.
            await fleet.ApplyAsync([Sleepers("edge", 2, selector: new() { ["zone"] = "a" }), Sleepers("nowhere", 1, selector: new() { ["zone"] = "z" })]);
            var edge = await WaitForRunningAsync(hosts, "edge-", r => r.Values.Sum(v => v.Count) == 2, "two edge replicas");
            Assert.Equal(2, edge[hosts[0].NodeName].Count);
            var nowhere = await Eventually.ValueAsync("nowhere reported unschedulable", async () => (await fleet.GetDeploymentsAsync()).Single(d => d.Deployment.Name == "nowhere"),
                d => d.Status is { Unschedulable.Count: 1 }, TimeSpan.FromSeconds(20), TimeSpan.FromMilliseconds(200), d => $"status {d.Status?.Phase}, unschedulable: {string.Join("; ", d.Status?.Unschedulable ?? [])}");
            Assert.Contains("lacks label zone=z", nowhere.Status!.Unschedulable[0], StringComparison.Ordinal);

            // Lose the scheduler's node: its containers keep running (autonomy), another node takes
            // the lease, and once the node counts as lost its web replicas run elsewhere.
            var leaderName = (await fleet.GetNodesAsync(fast)).Single(n => n.Leader).Info.Node;
            var leader = hosts.Single(h => h.NodeName == leaderName);
            var survivors = hosts.Where(h => h != leader).ToList();
            var before = (await leader.Client.ListAsync()).Where(c => c.State == ContainerState.Running).ToList();
            await leader.KillOrchdAsync();
            var killedAt = System.Diagnostics.Stopwatch.StartNew();
            await Eventually.ValueAsync("the lost node and a new scheduler", () => fleet.GetNodesAsync(fast),
                nodes => nodes.Single(n => n.Info.Node == leaderName).State == NodeCondition.Lost && nodes.Any(n => n.Leader && n.Info.Node != leaderName),
                TimeSpan.FromSeconds(40), TimeSpan.FromMilliseconds(250), Show);
            Assert.All(before, c => Assert.True(NodeHost.IsAlive(c.Pid), $"{c.Name} died with its orchd"));
            var moved = await WaitForRunningAsync(survivors, "web-", r => r.Values.Sum(v => v.Count) == 6, "all six web replicas on the two survivors");
            // Rescheduled within the grace (lost_after, 6 s here) + 9 s of the node's death: the dead
            // node held the lease (3 s to take it over), and a new scheduler judges a node lost only
            // after watching it for lost_after itself (docs/protocol.md, rule 1), so 9-11 s is the
            // design and a loaded CI run saw 12.1 s (the bound was 11 s).
            Assert.True(killedAt.Elapsed < TimeSpan.FromSeconds(6 + 9), $"replicas moved {killedAt.Elapsed.TotalSeconds:0.0} s after the node died (grace 6 s)");
            // Nothing moved off a live node (each survivor keeps its two), and the lost node's two
            // went to the survivors. Spread puts one on each when both are ready at that pass; a
            // survivor whose heartbeat lags past unreachable_after (3 s here) at that moment takes
            // none, by design (no new work for a node not heard from), and nothing is reshuffled
            // after: a CI run at load 10 saw 4/2 that way.
            Assert.All(survivors, h => Assert.True(moved[h.NodeName].Count >= 2, $"{h.NodeName} lost a replica: {string.Join(",", moved[h.NodeName])}"));
            Assert.All(survivors, h => Assert.Superset(scaled[h.NodeName].ToHashSet(), moved[h.NodeName].ToHashSet()));
            // One scheduler at a time: no replica is assigned to two nodes.
            var assignments = await new NATS.Client.KeyValueStore.NatsKVContext(new NATS.Client.JetStream.NatsJSContext(connection)).GetStoreAsync(Orchestrator.Api.Buckets.Assignments);
            var replicasAssigned = (await Orchestrator.Client.FleetState.ReadAllAsync(assignments, CancellationToken.None)).Values
                .SelectMany(e => Orchestrator.Api.NodeAssignments.Parse(e.Value).Replicas.Select(r => r.Replica)).ToList();
            Assert.Equal(replicasAssigned.Count, replicasAssigned.Distinct().Count());

            // Draining a node moves its replicas to the other one (and stops them where they were).
            await fleet.SetNodeAsync(survivors[0].NodeName, cordoned: false, draining: true);
            var drained = await WaitForRunningAsync(survivors, "web-", r => r[survivors[0].NodeName].Count == 0 && r[survivors[1].NodeName].Count == 6, "web drained off one node");
            Assert.True((await fleet.GetNodesAsync(fast)).Single(n => n.Info.Node == survivors[0].NodeName).Draining);
            await fleet.SetNodeAsync(survivors[0].NodeName, cordoned: false, draining: false);
            _ = drained;

            // Deleting a deployment removes its replicas everywhere.
            await fleet.DeleteDeploymentAsync("edge");
            await WaitForRunningAsync(survivors, "edge-", r => r.Values.All(v => v.Count == 0), "edge replicas removed");
        }
        finally
        {
            await DisposeAllAsync(hosts);
        }
    }

    [Fact(Timeout = 180_000)]
    public async Task A_node_cut_off_from_nats_keeps_running_and_restarting_its_assignments_and_converges_when_back()
    {
        await using var nats = await NatsServer.StartAsync();
        await using var node = await NodeHost.StartAsync(sharedNats: nats, extraArgs: Fast);
        await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
        await connection.ConnectAsync();
        var fleet = new FleetClient(connection);
        var flaky = Sleepers("flaky", 1);
        flaky.Template.Command = ["sh", "-c", "sleep 1; exit 3"];
        flaky.Template.Restart = new RestartPolicy { Policy = RestartPolicyKind.Always, Backoff = "100ms", MaxBackoff = "200ms" };
        await fleet.ApplyAsync([flaky, Sleepers("steady", 1)]);
        await WaitForRunningAsync([node], "steady-", r => r.Values.Sum(v => v.Count) == 1, "the steady replica running");
        var steadyPid = (await node.Client.InspectAsync("steady-0")).Pid;

        // NATS goes away: no heartbeats, no API, and the node carries on by itself.
        await nats.StopAsync();
        var record = Path.Combine(node.StateDir, "containers", "flaky-0.json");
        int Restarts() => System.Text.Json.JsonDocument.Parse(File.ReadAllText(record)).RootElement.GetProperty("restarts").GetInt32();
        var before = Restarts();
        await Eventually.ValueAsync("two restarts while offline", () => Task.FromResult(Restarts()), n => n >= before + 2, TimeSpan.FromSeconds(20),
            TimeSpan.FromMilliseconds(100), n => $"restarts went from {before} to {n}");
        Assert.True(NodeHost.IsAlive(steadyPid), "the steady replica died while NATS was away");

        // Back: the node answers again, heartbeats, and follows a change made meanwhile.
        await nats.StartAgainAsync();
        await using var again = new NatsConnection(new NatsOpts { Url = nats.Url });
        await again.ConnectAsync();
        var fleetAgain = new FleetClient(again);
        await fleetAgain.ScaleAsync("steady", 0);
        await WaitForRunningAsync([node], "steady-", r => r.Values.Sum(v => v.Count) == 0, "steady scaled to zero after the reconnect");
        var fast = new Orchestrator.Client.FleetOptions { UnreachableAfter = TimeSpan.FromSeconds(3), LostAfter = TimeSpan.FromSeconds(6) };
        await Eventually.ValueAsync("the node's heartbeat to resume (ready)", async () => (await fleetAgain.GetNodesAsync(fast)).Single().State, s => s == NodeCondition.Ready,
            TimeSpan.FromSeconds(15), TimeSpan.FromMilliseconds(200));
    }

    [Fact(Timeout = 420_000)]
    public async Task A_rolling_update_keeps_replicas_available_and_a_bad_one_rolls_back_by_itself()
    {
        await using var nats = await NatsServer.StartAsync();
        var hosts = new List<NodeHost>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                hosts.Add(await NodeHost.StartAsync(sharedNats: nats, name: $"r{i}-{Guid.NewGuid().ToString("N")[..4]}", extraArgs: Fast));
            }
            await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
            await connection.ConnectAsync();
            var fleet = new FleetClient(connection);
            Deployment Version(string version, bool healthy) => new()
            {
                Name = "roll",
                Replicas = 3,
                AntiAffinity = true,
                Rollout = new RolloutSpec { MaxUnavailable = 1, ProgressDeadlineSeconds = 6 },
                Template = ReadyWhenHealthy(version, healthy, probePeriodSeconds: 0.2),
            };
            async Task<List<Orchestrator.Api.ContainerStatus>> ReplicasAsync()
            {
                var all = new List<Orchestrator.Api.ContainerStatus>();
                foreach (var host in hosts)
                {
                    foreach (var c in await host.Client.ListAsync())
                    {
                        if (c.Name.StartsWith("roll-", StringComparison.Ordinal))
                        {
                            all.Add(await host.Client.InspectAsync(c.Name));
                        }
                    }
                }
                return all;
            }
            async Task<List<Orchestrator.Api.ContainerStatus>> SettledAsync(string version, int minReady, List<string> versionsSeen)
            {
                var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
                while (true)
                {
                    var replicas = await ReplicasAsync();
                    versionsSeen.AddRange(replicas.Where(r => r.State == ContainerState.Running).Select(r => r.Spec!.Env!["VERSION"]));
                    var ready = replicas.Count(r => r is { State: ContainerState.Running, Ready: true });
                    Assert.True(ready >= minReady || DateTime.UtcNow < deadline - TimeSpan.FromSeconds(85), $"only {ready} replicas ready during the rollout");
                    if (replicas.Count == 3 && replicas.All(r => r is { State: ContainerState.Running, Ready: true } && r.Spec!.Env!["VERSION"] == version))
                    {
                        return replicas;
                    }
                    Assert.True(DateTime.UtcNow < deadline, $"not settled on {version}: {string.Join(", ", replicas.Select(r => $"{r.Name} {r.State} ready={r.Ready} v{r.Spec!.Env!["VERSION"]}"))}");
                    await Task.Delay(100);
                }
            }

            await fleet.ApplyAsync([Version("1", healthy: true)]);
            await SettledAsync("1", minReady: 0, []);

            // v2: replaced one at a time; at least two of three stay ready all along.
            await fleet.ApplyAsync([Version("2", healthy: true)]);
            var readyCounts = new List<int>();
            var seen = new List<string>();
            using var stopWatching = new CancellationTokenSource(TimeSpan.FromSeconds(90));
            var watch = Task.Run(async () =>
            {
                while (!stopWatching.IsCancellationRequested)
                {
                    var replicas = await ReplicasAsync();
                    readyCounts.Add(replicas.Count(r => r is { State: ContainerState.Running, Ready: true }));
                    if (replicas.Count == 3 && replicas.All(r => r.Ready && r.Spec!.Env!["VERSION"] == "2"))
                    {
                        return true;
                    }
                    await Task.Delay(50);
                }
                return false;
            });
            if (!await watch.WaitAsync(TimeSpan.FromSeconds(95)))
            {
                // Say where it stands and what the nodes said, rather than only "timed out".
                var state = string.Join(", ", (await ReplicasAsync()).Select(r => $"{r.Name} {r.State} ready={r.Ready} v{r.Spec!.Env!["VERSION"]} {r.Message}"));
                var status = (await fleet.GetDeploymentsAsync()).Single().Status;
                Assert.Fail($"v2 did not roll out in 90 s: {state}; status {status?.Phase} {status?.Updated}/{status?.UpdatedReady}\n"
                    + string.Join("\n---\n", hosts.Select(h => string.Join("\n", h.Daemon.Stderr.TakeLast(40)))));
            }
            Assert.True(readyCounts.Min() >= 2, $"ready replicas during the rollout: {string.Join(",", readyCounts)}");

            // v3 never gets ready: after the deadline the fleet goes back to v2 by itself, and no
            // more than one replica ever ran v3.
            await fleet.ApplyAsync([Version("3", healthy: false)]);
            var view = await Eventually.ValueAsync("a rollback", async () =>
            {
                var view = (await fleet.GetDeploymentsAsync()).Single();
                if (view.Status?.RolledBack is null)
                {
                    seen.AddRange((await ReplicasAsync()).Where(r => r.State == ContainerState.Running).GroupBy(r => r.Spec!.Env!["VERSION"]).Where(g => g.Key == "3").Select(g => $"{g.Count()}"));
                }
                return view;
            }, view => view.Status?.RolledBack is not null, TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(100), view => $"phase {view.Status?.Phase}, wave {view.Status?.Wave}");
            Assert.Contains("not ready", view.Status!.RolledBack, StringComparison.Ordinal);
            Assert.All(seen, count => Assert.Equal("1", count));
            Assert.Equal("2", view.Deployment.Template.Env!["VERSION"]);
            await SettledAsync("2", minReady: 0, []);
            // The rollback is the scheduler's decision about revision 3, in its status: the stored
            // revisions are the operator's three, and what runs is revision 2's template.
            var history = await fleet.HistoryAsync("roll");
            Assert.Equal(["1", "2", "3"], history.Select(h => h.Deployment!.Template.Env!["VERSION"]));
            Assert.Equal(history[1].Deployment!.ShownRevision(), view.RolledBackTo!.Generation);
            Assert.Equal(history[2].Revision, view.Deployment.Revision);
        }
        finally
        {
            await DisposeAllAsync(hosts);
        }
    }

    [Fact(Timeout = 180_000)]
    public async Task The_autoscaler_follows_cpu_between_min_and_max()
    {
        await using var nats = await NatsServer.StartAsync();
        var hosts = new List<NodeHost>();
        try
        {
            for (var i = 0; i < 2; i++)
            {
                hosts.Add(await NodeHost.StartAsync(sharedNats: nats, name: $"a{i}-{Guid.NewGuid().ToString("N")[..4]}", extraArgs: Fast));
            }
            await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
            await connection.ConnectAsync();
            var fleet = new FleetClient(connection);
            Deployment Burner(string script) => new()
            {
                Name = "burn",
                Replicas = 1,
                Autoscale = new AutoscaleSpec { Min = 1, Max = 3, TargetCpuPercent = 10, CooldownSeconds = 2 },
                Template = new Workload
                {
                    Image = NodeHost.Image, Command = ["sh", "-c", script], Network = NetworkMode.None, StopGracePeriodSeconds = 0,
                    Resources = new Resources { Cpu = "200m" }, // a busy loop uses about 20% of a CPU
                },
            };
            // Busy replicas: 20% each against a 10% target, so it grows to the max and stops there.
            await fleet.ApplyAsync([Burner("while :; do :; done")]);
            await WaitForRunningAsync(hosts, "burn-", r => r.Values.Sum(v => v.Count) == 3, "three burn replicas (the max)");
            var view = (await fleet.GetDeploymentsAsync()).Single();
            Assert.Equal(3, view.Deployment.Replicas);
            Assert.Contains("→ 3 replicas", view.Status!.LastScale, StringComparison.Ordinal);

            // Idle replicas: it shrinks to the min.
            var idle = Burner("exec sleep 100000");
            idle.Replicas = 3;
            await fleet.ApplyAsync([idle]);
            await WaitForRunningAsync(hosts, "burn-", r => r.Values.Sum(v => v.Count) == 1, "one burn replica (the min)");
            Assert.Equal(1, (await fleet.GetDeploymentsAsync()).Single().Deployment.Replicas);
        }
        finally
        {
            await DisposeAllAsync(hosts);
        }
    }

    /// <summary>
    /// Issue 26, item 5, on real nodes: three replicas, memory requests that fit one per node on
    /// two nodes, so one is unplaceable. The two that run burn about 20 % of a CPU against a 15 %
    /// target: ceil(2 × 20 / 15) = 3 is what there is, so the count stays. Counting the unplaceable
    /// one as a replica at the average asked for ceil(3 × 20 / 15) = 4.
    /// </summary>
    [Fact(Timeout = 180_000)]
    public async Task An_unplaceable_replica_does_not_move_the_autoscaler()
    {
        await using var nats = await NatsServer.StartAsync();
        var hosts = new List<NodeHost>();
        try
        {
            for (var i = 0; i < 2; i++)
            {
                hosts.Add(await NodeHost.StartAsync(sharedNats: nats, name: $"u{i}-{Guid.NewGuid().ToString("N")[..4]}", extraArgs: Fast));
            }
            await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
            await connection.ConnectAsync();
            var fleet = new FleetClient(connection);
            var memTotalKb = long.Parse(File.ReadLines("/proc/meminfo").First(l => l.StartsWith("MemTotal:", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
            var half = $"{memTotalKb * 55 / 100 / 1024}Mi"; // one replica per node
            await fleet.ApplyAsync([new Deployment
            {
                Name = "burn", Replicas = 3,
                Autoscale = new AutoscaleSpec { Min = 3, Max = 4, TargetCpuPercent = 15, CooldownSeconds = 2 },
                Template = new Workload
                {
                    Image = NodeHost.Image, Command = ["sh", "-c", "while :; do :; done"], Network = NetworkMode.None, StopGracePeriodSeconds = 0,
                    Resources = new Resources { Cpu = "200m", Memory = half },
                },
            }]);
            await WaitForRunningAsync(hosts, "burn-", r => r.Values.Sum(v => v.Count) == 2, "two burn replicas (the third fits nowhere)");
            var seen = new List<int>();
            var until = DateTime.UtcNow + TimeSpan.FromSeconds(20);
            DeploymentView view;
            do
            {
                view = (await fleet.GetDeploymentsAsync()).Single();
                seen.Add(view.Deployment.Replicas);
                await Task.Delay(500);
            }
            while (DateTime.UtcNow < until);
            Assert.All(seen, count => Assert.Equal(3, count));
            Assert.Equal(2, view.Status!.Placed);
            Assert.Contains(view.Status.Unschedulable, u => u.Contains("not enough room", StringComparison.Ordinal));
            Assert.Null(view.Status.LastScale);
        }
        finally
        {
            await DisposeAllAsync(hosts);
        }
    }
}

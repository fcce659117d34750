using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using Orchestrator.Fleet.Agent;
using Orchestrator.Client;
using Orchestrator.Api;
using Orchestrator.Node.Reconcile;
using Orchestrator.Api.Workloads;

using static Orchestrator.Daemon.Tests.Node.FleetHarness;

namespace Orchestrator.Daemon.Tests.Node;

// Over 600 lines on purpose: one class for the real fleet these faults need (orchd nodes and a
// nats-server the tests start) and a scenario per fault, each readable top to bottom.

/// <summary>
/// The faults an edge fleet lives through every week (issue 15), on a real nats-server and real
/// orchd nodes: a node lost after an earlier rollback, a NATS outage longer than lost_after with
/// each node the first to reconnect, a hub restarted on an empty store, a silent partition inside
/// a network namespace of the test's own, scheduler churn under CPU load, fencing, and orphans and
/// duplicates in <c>orchctl get containers</c>. What runs where is read from the host's cgroups as
/// well as from the node API, so a node whose orchd is stopped, dead or cut off is still seen.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class FleetFaultTests(ITestOutputHelper output)
{
    /// <summary>How the test reads node states for <see cref="FleetHarness.Fast"/> (unreachable 3 s, lost 6 s).</summary>
    private static readonly FleetOptions FastView = new() { Heartbeat = TimeSpan.FromSeconds(1), UnreachableAfter = TimeSpan.FromSeconds(3), LostAfter = TimeSpan.FromSeconds(6) };

    // 1 ─────────────────────────────────────────────────────────────────────────────────────────

    [Fact(Timeout = 240_000)]
    public async Task A_node_lost_after_a_rollback_never_brings_back_the_rejected_template()
    {
        const int deadline = 8;
        await using var nats = await NatsServer.StartAsync();
        var hosts = new List<NodeHost>();
        try
        {
            await StartFleetAsync(hosts, nats, 4, "rb", Fast);
            await using var connection = await ConnectAsync(nats.Url);
            var fleet = new FleetClient(connection);
            await WaitForFleetAsync(fleet, FastView, 4);
            Deployment Build(string version, bool good) => new()
            {
                Name = "rb",
                Replicas = 4,
                Rollout = new RolloutSpec { MaxUnavailable = 1, ProgressDeadlineSeconds = deadline },
                Template = new Workload
                {
                    Image = NodeHost.Image,
                    Command = good ? ["sh", "-c", "touch /tmp/ready; exec sleep 100000"] : ["sh", "-c", "exit 1"],
                    Env = new() { ["VERSION"] = version },
                    Network = NetworkMode.None,
                    StopGracePeriodSeconds = 0,
                    Probes = new Probes { Readiness = new Probe { Exec = new ExecAction { Command = ["test", "-f", "/tmp/ready"] }, PeriodSeconds = 0.2, FailureThreshold = 1 } },
                },
            };
            static bool FourGood(List<ContainerStatus> c) => c.Count(x => x is { State: ContainerState.Running, Ready: true } && Version(x) == "1") == 4;

            var v1 = (await fleet.ApplyAsync([Build("1", good: true)]))[0].Revision;
            await UntilAsync(hosts, "rb-", FourGood, "four ready replicas of v1", 90);
            // As an operator would (rollout status -w): v1 complete in the scheduler's eyes, so it is a template the fleet ran ready.
            await UntilDeploymentAsync(fleet, "rb", v => v.Status is { Phase: RolloutPhase.Complete } s && s.Revision == v1, "v1 complete", 30);
            await fleet.ApplyAsync([Build("2", good: false)]);
            await UntilDeploymentAsync(fleet, "rb", v => v.Status?.RolledBack is not null && Version(v) == "1", "the rollback of the bad v2", 60);
            await UntilAsync(hosts, "rb-", c => FourGood(c) && c.All(x => x.State != ContainerState.Running || Version(x) == "1"), "four ready v1 replicas after the rollback", 60);
            await UntilDeploymentAsync(fleet, "rb", v => v.Status?.Phase == RolloutPhase.Complete, "phase complete after the rollback", 30);
            // Longer than the deadline: the progress time the status holds is old now.
            await Task.Delay(TimeSpan.FromSeconds(deadline + 4));

            // Lose a node that holds a replica (not the scheduler's: the lease is another test's
            // matter): orchd and its containers die, as with a power cut.
            var leader = (await fleet.GetNodesAsync(FastView)).Single(n => n.Leader).Info.Node;
            var running = await RunningAsync(hosts, "rb-");
            var victim = hosts.First(h => h.NodeName != leader && running[h.NodeName].Count > 0);
            var survivors = hosts.Where(h => h != victim).ToList();
            var killedAt = DateTimeOffset.UtcNow;
            var clock = Stopwatch.StartNew();
            await victim.KillOrchdAsync();
            KillContainers(victim);

            // Lost after 6 s; then two deadlines: the template, the status and every replica stay good.
            var phases = new List<string>();
            while (clock.Elapsed < TimeSpan.FromSeconds(6 + 2 * deadline + 4))
            {
                var view = await DeploymentAsync(fleet, "rb");
                if (phases.Count == 0 || phases[^1] != (view.Status?.Phase is { } now ? WireNames.Of(now) : "?"))
                {
                    phases.Add(view.Status?.Phase is { } phase ? WireNames.Of(phase) : "?");
                }
                Assert.True(Version(view) == "1",
                    $"{clock.Elapsed.TotalSeconds:0.0} s after {victim.NodeName} died the deployment's template is VERSION {Version(view)}, the one the fleet rejected; status: {Describe(view.Status)}");
                Assert.True(view.Status?.Phase is not (RolloutPhase.RolledBack or RolloutPhase.Failed),
                    $"{clock.Elapsed.TotalSeconds:0.0} s after {victim.NodeName} died the status says {Describe(view.Status)}");
                foreach (var c in await ContainersAsync(survivors, "rb-"))
                {
                    Assert.True(c.State != ContainerState.Running || Version(c) == "1", $"{c.Name} runs VERSION {Version(c)} ({string.Join(' ', c.Spec?.Command ?? [])}) {clock.Elapsed.TotalSeconds:0.0} s after the node died");
                }
                await Task.Delay(300);
            }
            await UntilAsync(survivors, "rb-", FourGood, "four ready v1 replicas on the three survivors", 30);
            var rollbacks = await EventsSinceAsync(fleet, killedAt, "deployment.rolled-back");
            Assert.True(rollbacks.Count == 0, $"rolled back again after the node loss: {string.Join(" | ", rollbacks.Select(e => e.Message))}");
            output.WriteLine($"phases after the loss: {string.Join(" → ", phases)}; recovered {clock.Elapsed.TotalSeconds:0.0} s after the kill");
        }
        catch
        {
            Dump(hosts);
            throw;
        }
        finally
        {
            await DisposeAllAsync(hosts);
        }
    }

    // 2 ─────────────────────────────────────────────────────────────────────────────────────────

    [Fact(Timeout = 240_000)]
    public async Task A_nats_outage_longer_than_lost_after_moves_and_restarts_nothing_whichever_node_reconnects_first()
    {
        string[] timings = ["--heartbeat", "1s", "--unreachable-after", "4s", "--lost-after", "8s"];
        var view = new FleetOptions { Heartbeat = TimeSpan.FromSeconds(1), UnreachableAfter = TimeSpan.FromSeconds(4), LostAfter = TimeSpan.FromSeconds(8) };
        await using var nats = await NatsServer.StartAsync();
        var hosts = new List<NodeHost>();
        try
        {
            await StartFleetAsync(hosts, nats, 3, "out", timings);
            await using var connection = await ConnectAsync(nats.Url);
            var fleet = new FleetClient(connection);
            await WaitForFleetAsync(fleet, view, 3);
            await fleet.ApplyAsync([Sleepers("calm", 6)]);
            await WaitForRunningAsync(hosts, "calm-", r => r.Values.All(v => v.Count == 2), "two calm replicas per node");
            var where = await WhereAsync(hosts, "calm-");
            Assert.Equal(6, where.Count);

            foreach (var first in hosts)
            {
                var round = $"round with {first.NodeName} first";
                var others = hosts.Where(h => h != first).ToList();
                var leader = (await fleet.GetNodesAsync(view)).SingleOrDefault(n => n.Leader)?.Info.Node;
                var mark = first.Daemon.Stderr.Count;
                await nats.StopAsync();
                var down = Stopwatch.StartNew();
                while (down.Elapsed < TimeSpan.FromSeconds(10)) // > lost_after (8 s)
                {
                    AssertUntouched(hosts, "calm-", where, 6, $"{round}: NATS down for {down.Elapsed.TotalSeconds:0.0} s");
                    await Task.Delay(500);
                }
                // The first to reconnect: the others are frozen until it is back, then resumed
                // well within unreachable_after.
                foreach (var other in others)
                {
                    other.Daemon.Signal(Signals.SIGSTOP);
                }
                TimeSpan reconnected;
                try
                {
                    await nats.StartAgainAsync();
                    var back = Stopwatch.StartNew();
                    await WaitForLineAsync(first.Daemon, mark, l => l.Contains("reconnected to NATS", StringComparison.Ordinal), TimeSpan.FromSeconds(40), $"{first.NodeName} reconnecting");
                    reconnected = back.Elapsed;
                    await Task.Delay(1500);
                }
                finally
                {
                    foreach (var other in others)
                    {
                        other.Daemon.Signal(Signals.SIGCONT);
                    }
                }
                output.WriteLine($"{round} (scheduler before: {leader}): it reconnected {reconnected.TotalSeconds:0.0} s after the restart");
                var watch = Stopwatch.StartNew();
                while (watch.Elapsed < TimeSpan.FromSeconds(12)) // > lost_after again, with every node back
                {
                    AssertUntouched(hosts, "calm-", where, 6, $"{round}: {watch.Elapsed.TotalSeconds:0.0} s after the others resumed");
                    await Task.Delay(300);
                }
                await WaitForFleetAsync(fleet, view, 3, seconds: 20);
                var after = await WhereAsync(hosts, "calm-");
                Assert.True(where.OrderBy(kv => kv.Key).SequenceEqual(after.OrderBy(kv => kv.Key)),
                    $"{round}: replicas before {Show(where)}, after {Show(after)}");
            }
        }
        catch
        {
            Dump(hosts);
            throw;
        }
        finally
        {
            foreach (var host in hosts)
            {
                TryContinue(host);
            }
            await DisposeAllAsync(hosts);
        }
    }

    // 3 ─────────────────────────────────────────────────────────────────────────────────────────

    [Fact(Timeout = 180_000)]
    public async Task After_a_restart_on_an_empty_store_the_fleet_rebuilds_its_buckets_and_converges_to_the_new_assignments()
    {
        await using var nats = await NatsServer.StartAsync();
        var hosts = new List<NodeHost>();
        try
        {
            await StartFleetAsync(hosts, nats, 3, "es", Fast);
            await using var connection = await ConnectAsync(nats.Url);
            var fleet = new FleetClient(connection);
            await WaitForFleetAsync(fleet, FastView, 3);
            // A fleet that has lived a while: its assignments stream is at a high sequence (here 60
            // writes of a key no node has, which the scheduler then deletes) before the nodes' keys
            // are written. A new store counts from 1 again.
            var before = await new NatsKVContext(new NatsJSContext(connection)).GetStoreAsync(Buckets.Assignments);
            for (var i = 0; i < 60; i++)
            {
                await before.PutAsync("filler", NodeAssignments.Compose("filler", []));
            }
            await fleet.ApplyAsync([Sleepers("old", 3)]);
            await WaitForRunningAsync(hosts, "old-", r => r.Values.All(v => v.Count == 1), "one old replica per node");
            var old = await WhereAsync(hosts, "old-");

            await nats.RestartAsync(emptyStore: true);
            var clock = Stopwatch.StartNew();
            // The operator applies the deployment again as soon as the hub answers (the client
            // makes the deployments bucket if it has to; the rest is orchd's to rebuild).
            while (true)
            {
                try
                {
                    await fleet.ApplyAsync([Sleepers("fresh", 3)]);
                    break;
                }
                catch (Exception e) when (e is NatsException or TimeoutException && clock.Elapsed < TimeSpan.FromSeconds(10))
                {
                    await Task.Delay(200);
                }
            }

            // The buckets, the heartbeats and a scheduler come back by themselves. Read without
            // creating anything: the test's own client must not do orchd's work for it.
            var kv = new NatsKVContext(new NatsJSContext(connection));
            string why;
            while ((why = await FleetRebuiltAsync(kv, hosts)) != "")
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20),
                    $"{clock.Elapsed.TotalSeconds:0} s after nats-server came back on an empty store: {why}\n{Tail(hosts[0])}");
                await Task.Delay(500);
            }
            output.WriteLine($"buckets, heartbeats and the lease back {clock.Elapsed.TotalSeconds:0.0} s after the restart");

            // While the new store has no assignments key for a node, the node keeps what it runs.
            var assignments = await kv.GetStoreAsync(Buckets.Assignments);
            foreach (var host in hosts)
            {
                var entry = await assignments.TryGetEntryAsync<byte[]>(host.NodeName);
                if (!entry.Success)
                {
                    foreach (var (name, at) in old.Where(o => o.Value.Node == host.NodeName))
                    {
                        Assert.True(NodeHost.IsAlive(at.Pid), $"{name} on {host.NodeName} was stopped while the new store had no assignments for that node");
                    }
                }
            }

            // The deployment applied to the new store runs; once each node has its new assignments,
            // what ran before and is not in them goes.
            await WaitForRunningAsync(hosts, "fresh-", r => r.Values.Sum(v => v.Count) == 3, "the re-applied deployment running");
            var converge = Stopwatch.StartNew();
            while (Live(hosts, "old-").Values.Any(v => v.Count > 0))
            {
                var keys = new List<string>();
                foreach (var host in hosts)
                {
                    keys.Add($"{host.NodeName}:{((await assignments.TryGetEntryAsync<byte[]>(host.NodeName)).Success ? "key" : "no key")}");
                }
                Assert.True(converge.Elapsed < TimeSpan.FromSeconds(20),
                    $"replicas of the old store still run 20 s after the new deployment ran: {Show(Live(hosts, "old-"))}; assignments {string.Join(", ", keys)}");
                await Task.Delay(300);
            }
            output.WriteLine($"old replicas removed {converge.Elapsed.TotalSeconds:0.0} s after the new deployment ran");
        }
        catch
        {
            Dump(hosts);
            throw;
        }
        finally
        {
            await DisposeAllAsync(hosts);
        }
    }

    [Fact(Timeout = 180_000)]
    public async Task After_a_store_wipe_nodes_follow_assignments_written_at_once_into_buckets_the_operator_made_again()
    {
        await using var nats = await NatsServer.StartAsync();
        var hosts = new List<NodeHost>();
        try
        {
            await StartFleetAsync(hosts, nats, 3, "ew", Fast);
            await using var connection = await ConnectAsync(nats.Url);
            var fleet = new FleetClient(connection);
            await WaitForFleetAsync(fleet, FastView, 3);
            await fleet.ApplyAsync([Sleepers("old", 3)]);
            await WaitForRunningAsync(hosts, "old-", r => r.Values.All(v => v.Count == 1), "one old replica per node");

            // The hub loses its store; the operator makes the fleet's buckets again at once (as
            // docs/nats-security.md has it for fleets whose nodes hold worker credentials) and
            // applies the deployment: the scheduler assigns as soon as it has settled, which can
            // be before each node's long-lived watch of its key has noticed the store is new.
            await nats.RestartAsync(emptyStore: true);
            var clock = Stopwatch.StartNew();
            var kv = new NatsKVContext(new NatsJSContext(connection));
            while (true)
            {
                try
                {
                    foreach (var (bucket, history) in new[] { (Buckets.Nodes, 1), (Buckets.Deployments, Buckets.DeploymentHistory), (Buckets.Assignments, 1), (Buckets.Leader, 1), (Buckets.DeploymentStatus, 1), (Buckets.NodeSettings, 1) })
                    {
                        await FleetStore.OpenAsync(kv, bucket, history, CancellationToken.None);
                    }
                    await fleet.ApplyAsync([Sleepers("fresh", 3)]);
                    break;
                }
                catch (Exception e) when (e is NatsException or TimeoutException && clock.Elapsed < TimeSpan.FromSeconds(10))
                {
                    await Task.Delay(100);
                }
            }
            output.WriteLine($"buckets made and the deployment applied {clock.Elapsed.TotalSeconds:0.0} s after the restart");
            var assignments = await kv.GetStoreAsync(Buckets.Assignments);
            var deadline = TimeSpan.FromSeconds(30);
            while (Live(hosts, "fresh-").Values.Sum(v => v.Count) != 3 || Live(hosts, "old-").Values.Any(v => v.Count > 0))
            {
                if (clock.Elapsed > deadline)
                {
                    var keys = new List<string>();
                    foreach (var host in hosts)
                    {
                        var entry = await assignments.TryGetEntryAsync<byte[]>(host.NodeName);
                        keys.Add($"{host.NodeName}: {(entry.Success ? $"revision {entry.Value.Revision} [{string.Join(",", NodeAssignments.Parse(entry.Value.Value).Replicas.Select(r => r.Replica))}]" : "no key")}");
                    }
                    Assert.Fail($"{deadline.TotalSeconds:0} s after the restart the nodes do not run what the new store assigns them: running {Show(Live(hosts, "fresh-"))} {Show(Live(hosts, "old-"))}; assigned {string.Join("; ", keys)}");
                }
                await Task.Delay(250);
            }
            output.WriteLine($"the new assignments run and the old replicas are gone {clock.Elapsed.TotalSeconds:0.0} s after the restart");
        }
        catch
        {
            Dump(hosts);
            throw;
        }
        finally
        {
            await DisposeAllAsync(hosts);
        }
    }

    // 4 ─────────────────────────────────────────────────────────────────────────────────────────

    [Fact(Timeout = 240_000)]
    public async Task A_silent_partition_is_noticed_its_replicas_move_and_duplicates_go_soon_after_the_heal()
    {
        await using var netns = await NetNs.CreateAsync();
        await using var nats = await NatsServer.StartAsync(netns: netns);
        var hosts = new List<NodeHost>();
        var address = new Dictionary<NodeHost, string>();
        try
        {
            // Each node reaches the server on an address of its own inside the namespace.
            await StartFleetAsync(hosts, nats, 3, "sp", Fast, (host, i) =>
            {
                host.Namespace = netns;
                address[host] = $"127.0.0.{i + 2}";
                host.NatsUrlOverride = nats.UrlInside(address[host]);
            });
            await using var connection = await ConnectAsync(nats.Url);
            var fleet = new FleetClient(connection);
            await WaitForFleetAsync(fleet, FastView, 3);
            await fleet.ApplyAsync([Sleepers("part", 3)]);
            await WaitForRunningAsync(hosts, "part-", r => r.Values.All(v => v.Count == 1), "one replica per node");
            var leader = (await fleet.GetNodesAsync(FastView)).Single(n => n.Leader).Info.Node;
            var victim = hosts.First(h => h.NodeName != leader);
            var survivors = hosts.Where(h => h != victim).ToList();
            var replica = (await RunningAsync([victim], "part-"))[victim.NodeName].Single();
            var pid = (await victim.Client.InspectAsync(replica)).Pid;

            // Drop its packets both ways: no FIN, no RST, nothing.
            var mark = victim.Daemon.Stderr.Count;
            var table = await netns.BlackholeAsync(address[victim], nats.Port);
            var cut = Stopwatch.StartNew();
            TimeSpan? noticed = null, moved = null;
            while (cut.Elapsed < TimeSpan.FromSeconds(30) && (noticed is null || moved is null || cut.Elapsed < TimeSpan.FromSeconds(10)))
            {
                noticed ??= victim.Daemon.Stderr.Skip(mark).Any(LostNats) ? cut.Elapsed : null;
                moved ??= Live(survivors, "part-").Values.Any(v => v.ContainsKey(replica)) ? cut.Elapsed : null;
                Assert.True(NodeHost.IsAlive(pid), $"{replica} died on the cut-off node (the default is to keep running)");
                await Task.Delay(250);
            }

            await netns.HealAsync(table);
            var healed = Stopwatch.StartNew();
            TimeSpan? single = null, rejoined = null;
            while (healed.Elapsed < TimeSpan.FromSeconds(30) && (single is null || rejoined is null))
            {
                var live = Live(hosts, "part-");
                single ??= Duplicates(live).Count == 0 && live.Values.Sum(v => v.Count) == 3 ? healed.Elapsed : null;
                if (rejoined is null)
                {
                    try
                    {
                        rejoined = (await fleet.GetNodesAsync(FastView)).Single(n => n.Info.Node == victim.NodeName).State == NodeCondition.Ready ? healed.Elapsed : null;
                    }
                    catch (Exception e) when (e is NatsException or TimeoutException)
                    {
                    }
                }
                await Task.Delay(250);
            }
            var summary = $"noticed the dead connection {Seconds(noticed)} after the cut, replica moved {Seconds(moved)} after the cut; "
                + $"after the heal: one of each replica again {Seconds(single)}, node ready {Seconds(rejoined)}; now {Show(Live(hosts, "part-"))}";
            output.WriteLine(summary);
            Assert.True(noticed <= TimeSpan.FromSeconds(20), $"the cut-off node did not log that it lost NATS within 20 s: {summary}\n{Tail(victim)}");
            Assert.True(moved <= TimeSpan.FromSeconds(6 + 10), $"the cut-off node's replica was not placed elsewhere after lost_after (6 s): {summary}");
            Assert.True(single <= TimeSpan.FromSeconds(20), $"duplicates lived more than 20 s after the heal: {summary}\n{Tail(victim)}");
            Assert.True(rejoined is not null, $"the node did not rejoin within 30 s of the heal: {summary}");
        }
        catch
        {
            Dump(hosts);
            throw;
        }
        finally
        {
            await DisposeAllAsync(hosts);
        }
    }

    // 5 ─────────────────────────────────────────────────────────────────────────────────────────

    [Fact(Timeout = 330_000)]
    public async Task The_scheduler_lease_stays_with_one_node_under_cpu_load()
    {
        const double load = 8;
        const int loops = 16; // load average 8 within about 40 s on two cores
        var since = DateTimeOffset.UtcNow;
        await using var nats = await NatsServer.StartAsync();
        var hosts = new List<NodeHost>();
        var burners = new List<Process>();
        using var stopWatching = new CancellationTokenSource();
        try
        {
            await StartFleetAsync(hosts, nats, 3, "ld", ["--heartbeat", "2s"]);
            await using var connection = await ConnectAsync(nats.Url);
            var fleet = new FleetClient(connection);
            var view = new FleetOptions { Heartbeat = TimeSpan.FromSeconds(2) };
            await WaitForFleetAsync(fleet, view, 3);
            await fleet.ApplyAsync([Sleepers("busy", 6)]);
            await WaitForRunningAsync(hosts, "busy-", r => r.Values.Sum(v => v.Count) == 6, "six replicas");

            // Every holder the lease has, as it changes (a watch on the leader bucket's key).
            var leaderBucket = await new NatsKVContext(new NatsJSContext(connection)).GetStoreAsync(Buckets.Leader);
            var clock = Stopwatch.StartNew();
            var holders = new List<(TimeSpan At, string Holder)>();
            var watching = Task.Run(async () =>
            {
                try
                {
                    await foreach (var entry in leaderBucket.WatchAsync<byte[]>("scheduler", cancellationToken: stopWatching.Token))
                    {
                        var holder = entry.Operation == NatsKVOperation.Put && entry.Value is { Length: > 0 } v ? JsonSerializer.Deserialize(v, FleetJsonContext.Default.String) ?? "?" : "(none)";
                        lock (holders)
                        {
                            if (holders.Count == 0 || holders[^1].Holder != holder)
                            {
                                holders.Add((clock.Elapsed, holder));
                            }
                        }
                    }
                }
                catch (OperationCanceledException)
                {
                }
            });

            var loadClock = Stopwatch.StartNew();
            for (var i = 0; i < loops; i++)
            {
                burners.Add(Process.Start(new ProcessStartInfo("sh", ["-c", "while :; do :; done"]) { UseShellExecute = false })!);
            }
            var samples = new List<double>();
            TimeSpan? loaded = null;
            while (loadClock.Elapsed < TimeSpan.FromSeconds(150))
            {
                var now = LoadAverage();
                samples.Add(now);
                if (loaded is null && now > load)
                {
                    loaded = loadClock.Elapsed;
                }
                Assert.True(loaded is not null || loadClock.Elapsed < TimeSpan.FromSeconds(100), $"the load average is only {now:0.0} after 100 s of {loops} busy loops");
                await Task.Delay(2000);
            }
            StopAll(burners);
            await Task.Delay(3000); // a change made under load lands in the watch
            await stopWatching.CancelAsync();
            await watching;
            var elected = await EventsSinceAsync(fleet, since, "scheduler.elected");
            var changes = string.Join(", ", holders.Select(h => $"{h.Holder} at {h.At.TotalSeconds:0}s"));
            output.WriteLine($"load average above {load} from {Seconds(loaded)}, max {samples.Max():0.0}; holders: {changes}; elections: {elected.Count}");
            Assert.True(holders.Count == 1, $"the lease changed hands under load (load average above {load} from {Seconds(loaded)}, max {samples.Max():0.0}): {changes}");
            Assert.True(elected.Count == 1, $"{elected.Count} scheduler.elected events: {string.Join(" | ", elected.Select(e => $"{e.At:HH:mm:ss} {e.Node}"))}");
        }
        catch
        {
            Dump(hosts);
            throw;
        }
        finally
        {
            StopAll(burners);
            await stopWatching.CancelAsync();
            await DisposeAllAsync(hosts);
        }
    }

    // 6 ─────────────────────────────────────────────────────────────────────────────────────────

    /// <summary>fence_after for the fencing tests: a little under lost_after (6 s), so a fenced replica is down before the fleet places it elsewhere.</summary>
    private static readonly string[] Fenced = [.. Fast, "--fence-after", "5s"];

    [Fact(Timeout = 180_000)]
    public async Task A_partitioned_node_stops_its_fenced_replica_after_fence_after_and_keeps_the_others()
    {
        await using var nats = await NatsServer.StartAsync();
        await using var proxy = new TcpProxy(nats.Port);
        var hosts = new List<NodeHost>();
        try
        {
            // The last node (not the scheduler: the first node takes the lease) reaches NATS through a relay the test cuts.
            await StartFleetAsync(hosts, nats, 3, "fp", Fenced, (host, i) => host.NatsUrlOverride = i == 2 ? proxy.NatsUrl : null);
            var victim = hosts[2];
            var survivors = hosts.Take(2).ToList();
            await using var connection = await ConnectAsync(nats.Url);
            var fleet = new FleetClient(connection);
            await WaitForFleetAsync(fleet, FastView, 3);
            await fleet.ApplyAsync([Fence(Sleepers("guard", 3)), Sleepers("free", 3)]);
            var (guard, free) = await OneOfEachAsync(hosts, victim);

            proxy.Cut();
            var cut = Stopwatch.StartNew();
            var (stopped, moved) = await WatchFenceAsync(victim, survivors, guard, free, cut, "was cut off");
            output.WriteLine($"fenced replica stopped {Seconds(stopped)} after the cut, running elsewhere {Seconds(moved)} after the cut");

            // Back: the node follows the fleet again; one of each replica, and the fenced one not back on it.
            proxy.Restore();
            var healed = Stopwatch.StartNew();
            while (true)
            {
                var live = Live(hosts, "");
                if (Duplicates(live).Count == 0 && live.Values.Sum(v => v.Keys.Count(k => k.StartsWith("guard-", StringComparison.Ordinal) || k.StartsWith("free-", StringComparison.Ordinal))) == 6)
                {
                    Assert.False(live[victim.NodeName].ContainsKey(guard.Name), $"{guard.Name} runs on the node that was cut off again, and elsewhere");
                    break;
                }
                Assert.True(healed.Elapsed < TimeSpan.FromSeconds(30), $"30 s after the link came back: {Show(live)}");
                await Task.Delay(250);
            }
        }
        catch
        {
            Dump(hosts);
            throw;
        }
        finally
        {
            await DisposeAllAsync(hosts);
        }
    }

    [Fact(Timeout = 180_000)]
    public async Task A_node_whose_orchd_died_stops_its_fenced_replica_after_fence_after_and_keeps_the_others()
    {
        await using var nats = await NatsServer.StartAsync();
        var hosts = new List<NodeHost>();
        try
        {
            await StartFleetAsync(hosts, nats, 3, "fk", Fenced);
            var victim = hosts[2];
            var survivors = hosts.Take(2).ToList();
            await using var connection = await ConnectAsync(nats.Url);
            var fleet = new FleetClient(connection);
            await WaitForFleetAsync(fleet, FastView, 3);
            await fleet.ApplyAsync([Fence(Sleepers("guard", 3)), Sleepers("free", 3)]);
            var (guard, free) = await OneOfEachAsync(hosts, victim);
            // Settled: the fleet has heard of both replicas, and orchd has had a moment to arm its
            // fencing for the case it dies (A_fenced_replica_is_fenced_even_when_orchd_dies_right_after_starting_it
            // takes the moment away).
            await HeartbeatListsAsync(fleet, victim, guard.Name, free.Name);
            await Task.Delay(2000);
            // The fence keeper outlives orchd: it must sit in the node's cgroup subtree
            // (/orchestrator/ID12/.keeper), not in orchd's (under systemd that is orchd.service's,
            // whose restart would then report it as a left-over process).
            var keeperPid = int.Parse(File.ReadAllText(Path.Combine(victim.RunDir, "fence-keeper.pid")).Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
            var keeperCgroup = $"/orchestrator/{File.ReadAllText(Path.Combine(victim.StateDir, "node-id")).Trim()[..12]}/.keeper";
            var keeperLines = File.ReadAllLines($"/proc/{keeperPid}/cgroup");
            Assert.Contains(keeperLines, l => l.EndsWith(":memory:" + keeperCgroup, StringComparison.Ordinal) || l.EndsWith(",memory:" + keeperCgroup, StringComparison.Ordinal) || l == "0::" + keeperCgroup);
            if (Directory.Exists("/sys/fs/cgroup/systemd"))
            {
                Assert.Contains(keeperLines, l => l.EndsWith(":name=systemd:" + keeperCgroup, StringComparison.Ordinal));
            }

            // kill -9 orchd, and it stays down: nothing of orchd's runs on the node to stop anything.
            await victim.KillOrchdAsync();
            var killed = Stopwatch.StartNew();
            var (stopped, moved) = await WatchFenceAsync(victim, survivors, guard, free, killed, "lost its orchd");
            Assert.True(victim.Daemon.HasExited, "orchd came back by itself");
            output.WriteLine($"fenced replica stopped {Seconds(stopped)} after orchd died, running elsewhere {Seconds(moved)} after");
        }
        catch
        {
            Dump(hosts);
            throw;
        }
        finally
        {
            await DisposeAllAsync(hosts);
        }
    }

    [Fact(Timeout = 180_000)]
    public async Task A_fenced_replica_is_fenced_even_when_orchd_dies_right_after_starting_it()
    {
        await using var nats = await NatsServer.StartAsync();
        var hosts = new List<NodeHost>();
        try
        {
            await StartFleetAsync(hosts, nats, 3, "fs", Fenced);
            var victim = hosts[2];
            await using var connection = await ConnectAsync(nats.Url);
            var fleet = new FleetClient(connection);
            await WaitForFleetAsync(fleet, FastView, 3);
            await fleet.ApplyAsync([Fence(Sleepers("guard", 3))]);

            // kill -9 orchd the moment its fenced container runs its program (a process of the
            // container's cgroup that is `sleep`, no longer orchd's own code between create and
            // start): whatever orchd arms for its own death must be armed when the replica starts.
            var waited = Stopwatch.StartNew();
            static bool Workload(int pid)
            {
                try
                {
                    return File.ReadAllText($"/proc/{pid}/cmdline").StartsWith("sleep\0", StringComparison.Ordinal);
                }
                catch (IOException)
                {
                    return false;
                }
            }
            KeyValuePair<string, int[]> started;
            while ((started = Live([victim], "guard-")[victim.NodeName].FirstOrDefault(kv => kv.Value.Any(Workload))).Key is null)
            {
                Assert.True(waited.Elapsed < TimeSpan.FromSeconds(60), $"no guard replica started on {victim.NodeName}: {Show(Live(hosts, "guard-"))}");
                await Task.Delay(5);
            }
            victim.Daemon.Signal(Signals.SIGKILL);
            var killed = Stopwatch.StartNew();
            var (name, pids) = (started.Key, started.Value);
            await victim.Daemon.WaitForExitAsync(TimeSpan.FromSeconds(10), drainOutput: false);
            output.WriteLine($"orchd killed with {name} running as {string.Join(",", pids)}");

            while (pids.Any(NodeHost.IsAlive) || Live([victim], "guard-")[victim.NodeName].ContainsKey(name))
            {
                Assert.True(killed.Elapsed < TimeSpan.FromSeconds(5 + 10),
                    $"{name} (fenced) still runs {killed.Elapsed.TotalSeconds:0} s after its orchd died right after starting it (fence_after 5 s): {Show(Live([victim], "guard-"))}");
                await Task.Delay(250);
            }
            output.WriteLine($"{name} fenced {killed.Elapsed.TotalSeconds:0.0} s after orchd died");
        }
        catch
        {
            Dump(hosts);
            throw;
        }
        finally
        {
            await DisposeAllAsync(hosts);
        }
    }

    // 7 ─────────────────────────────────────────────────────────────────────────────────────────

    [Fact(Timeout = 180_000)]
    public async Task Orchctl_get_containers_marks_orphans_and_duplicates()
    {
        await using var nats = await NatsServer.StartAsync();
        var hosts = new List<NodeHost>();
        try
        {
            await StartFleetAsync(hosts, nats, 3, "oc", Fast);
            var victim = hosts[2];
            var survivors = hosts.Take(2).ToList();
            await using var connection = await ConnectAsync(nats.Url);
            var fleet = new FleetClient(connection);
            await WaitForFleetAsync(fleet, FastView, 3);
            await fleet.ApplyAsync([Sleepers("solo", 3)]);
            await WaitForRunningAsync(hosts, "solo-", r => r.Values.All(v => v.Count == 1), "one replica per node");
            var replica = (await RunningAsync([victim], "solo-"))[victim.NodeName].Single();
            // What the fleet knows of a node whose orchd is down is its last heartbeat: one that lists the replica.
            await HeartbeatListsAsync(fleet, victim, replica);

            // orchd dies, its container lives on (no fence): once the node is lost, the replica runs
            // on a survivor too. The container on the dead node is an orphan, the name a duplicate.
            await victim.KillOrchdAsync();
            var clock = Stopwatch.StartNew();
            while (!Live(survivors, "solo-").Values.Any(v => v.ContainsKey(replica)))
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"{replica} was not placed elsewhere: {Show(Live(hosts, "solo-"))}");
                await Task.Delay(250);
            }
            Assert.True(Live([victim], "solo-")[victim.NodeName].ContainsKey(replica), $"{replica} died with orchd");

            Orchctl.Result result;
            string[] rows;
            var listed = Stopwatch.StartNew();
            while (true)
            {
                result = await Orchctl.RunAsync(["--server", nats.Url, "get", "containers"], null);
                rows = result.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
                var mine = rows.Where(r => r.Split(' ', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() == replica).ToList();
                if (mine.Any(r => r.Contains(victim.NodeName, StringComparison.Ordinal) && r.Contains("orphan", StringComparison.OrdinalIgnoreCase))
                    && mine.Any(r => r.Contains("duplicate", StringComparison.OrdinalIgnoreCase)))
                {
                    break;
                }
                Assert.True(listed.Elapsed < TimeSpan.FromSeconds(20),
                    $"orchctl get containers does not mark {replica} on {victim.NodeName} (orchd dead, replica placed elsewhere) as an orphan and {replica} as a duplicate:\n{result.All}");
                await Task.Delay(1000);
            }
            foreach (var row in rows.Skip(1).Where(r => r.Split(' ', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() is { } name && name != replica))
            {
                Assert.False(row.Contains("orphan", StringComparison.OrdinalIgnoreCase) || row.Contains("duplicate", StringComparison.OrdinalIgnoreCase), $"a healthy replica is marked: {row}\n{result.Out}");
            }
            output.WriteLine(result.Out);
        }
        catch
        {
            Dump(hosts);
            throw;
        }
        finally
        {
            await DisposeAllAsync(hosts);
        }
    }

    // ── helpers ───────────────────────────────────────────────────────────────────────────────

    /// <summary>Starts <paramref name="count"/> nodes one after the other (the first takes the lease); each is in <paramref name="hosts"/> before its orchd starts, for the cleanup.</summary>
    private static async Task StartFleetAsync(List<NodeHost> hosts, NatsServer nats, int count, string prefix, string[] args, Action<NodeHost, int>? configure = null)
    {
        for (var i = 0; i < count; i++)
        {
            var host = await NodeHost.StartAsync(sharedNats: nats, name: $"{prefix}{i}-{Guid.NewGuid().ToString("N")[..4]}", start: false);
            hosts.Add(host);
            configure?.Invoke(host, i);
            await host.StartOrchdAsync(args);
        }
    }

    private static async Task<NatsConnection> ConnectAsync(string url)
    {
        var connection = new NatsConnection(new NatsOpts { Url = url, ReconnectWaitMin = TimeSpan.FromMilliseconds(200), ReconnectWaitMax = TimeSpan.FromSeconds(1) });
        await connection.ConnectAsync();
        return connection;
    }

    /// <summary>Every node ready and one scheduler, read through <paramref name="view"/>'s timings; retried across a reconnect.</summary>
    private static Task<IReadOnlyList<NodeEntry>> WaitForFleetAsync(FleetClient fleet, FleetOptions view, int count, int seconds = 30)
        => Eventually.ValueAsync($"{count} ready nodes and a scheduler", () => fleet.GetNodesAsync(view),
            nodes => nodes.Count(n => n.State == NodeCondition.Ready) == count && nodes.Count(n => n.Leader) == 1, TimeSpan.FromSeconds(seconds), TimeSpan.FromMilliseconds(250),
            nodes => string.Join(", ", nodes.Select(n => $"{n.Info.Node} {n.State} {n.HeartbeatAgeSeconds}s{(n.Leader ? " scheduler" : "")}")),
            typeof(NatsException), typeof(TimeoutException), typeof(OperationCanceledException));

    private static async Task<DeploymentView> DeploymentAsync(FleetClient fleet, string name)
        => (await fleet.GetDeploymentsAsync()).Single(d => d.Deployment.Name == name);

    private static Task<DeploymentView> UntilDeploymentAsync(FleetClient fleet, string name, Func<DeploymentView, bool> condition, string what, int seconds)
        => Eventually.ValueAsync(what, () => DeploymentAsync(fleet, name), condition, TimeSpan.FromSeconds(seconds), TimeSpan.FromMilliseconds(250),
            view => $"template VERSION {Version(view)}, status {Describe(view.Status)}");

    private static string? Version(ContainerStatus c) => c.Spec?.Env?.GetValueOrDefault("VERSION");
    private static string? Version(DeploymentView d) => d.Deployment.Template.Env?.GetValueOrDefault("VERSION");

    private static string Describe(DeploymentStatus? s) => s is null ? "(none)"
        : $"phase {s.Phase}, revision {s.Revision}, {s.Updated} updated/{s.UpdatedReady} ready of {s.Desired}, rolled back: {s.RolledBack ?? "-"}";

    private static async Task<List<NodeEvent>> EventsSinceAsync(FleetClient fleet, DateTimeOffset since, string kind)
    {
        var events = new List<NodeEvent>();
        await foreach (var ev in fleet.EventsAsync(since.AddSeconds(-1), watch: false))
        {
            if (ev.At >= since && ev.Kind == kind)
            {
                events.Add(ev);
            }
        }
        return events;
    }

    /// <summary>Replica → (node, pid) of every running container whose name starts with <paramref name="prefix"/>, from the node API.</summary>
    private static async Task<Dictionary<string, (string Node, int Pid)>> WhereAsync(IEnumerable<NodeHost> hosts, string prefix)
    {
        var result = new Dictionary<string, (string, int)>(StringComparer.Ordinal);
        foreach (var host in hosts)
        {
            foreach (var c in await host.Client.ListAsync())
            {
                if (c.Name.StartsWith(prefix, StringComparison.Ordinal) && c.State == ContainerState.Running)
                {
                    Assert.True(result.TryAdd(c.Name, (host.NodeName, c.Pid)), $"{c.Name} runs on {host.NodeName} and on {result[c.Name].Item1}");
                }
            }
        }
        return result;
    }

    /// <summary>
    /// Node → container name → its live pids, from the host's cgroups (orchd puts each container
    /// in /orchestrator/&lt;node id&gt;/&lt;name&gt;): true whatever state that node's orchd is in.
    /// </summary>
    private static Dictionary<string, Dictionary<string, int[]>> Live(IEnumerable<NodeHost> hosts, string prefix)
    {
        var root = new[] { "/sys/fs/cgroup/pids/orchestrator", "/sys/fs/cgroup/orchestrator" }.FirstOrDefault(Directory.Exists);
        var result = new Dictionary<string, Dictionary<string, int[]>>(StringComparer.Ordinal);
        foreach (var host in hosts)
        {
            var map = result[host.NodeName] = new Dictionary<string, int[]>(StringComparer.Ordinal);
            var idFile = Path.Combine(host.StateDir, "node-id");
            if (root is null || !File.Exists(idFile))
            {
                continue;
            }
            var dir = Path.Combine(root, File.ReadAllText(idFile).Trim()[..12]);
            List<string> groups;
            try
            {
                groups = Directory.Exists(dir) ? Directory.EnumerateDirectories(dir).ToList() : [];
            }
            catch (IOException)
            {
                continue;
            }
            foreach (var group in groups)
            {
                var name = Path.GetFileName(group);
                if (!name.StartsWith(prefix, StringComparison.Ordinal) || name == ".keeper")
                {
                    continue; // (.keeper: the node's fence keeper, not a container)
                }
                try
                {
                    var pids = File.ReadAllLines(Path.Combine(group, "cgroup.procs")).Where(l => l.Length > 0)
                        .Select(l => int.Parse(l, CultureInfo.InvariantCulture)).Where(NodeHost.IsAlive).ToArray();
                    if (pids.Length > 0)
                    {
                        map[name] = pids;
                    }
                }
                catch (IOException)
                {
                    // Removed meanwhile: not running.
                }
            }
        }
        return result;
    }

    /// <summary>Names running on more than one node.</summary>
    private static List<string> Duplicates(Dictionary<string, Dictionary<string, int[]>> live)
        => live.Values.SelectMany(v => v.Keys).GroupBy(k => k, StringComparer.Ordinal).Where(g => g.Count() > 1).Select(g => g.Key).ToList();

    private static string Show(Dictionary<string, Dictionary<string, int[]>> live)
        => string.Join("; ", live.Select(kv => $"{kv.Key}=[{string.Join(",", kv.Value.Keys.Order(StringComparer.Ordinal))}]"));

    private static string Show(Dictionary<string, (string Node, int Pid)> where)
        => string.Join(", ", where.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}@{kv.Value.Node}#{kv.Value.Pid}"));

    /// <summary>Each replica still on its node with its pid, no other copy anywhere, no more than <paramref name="desired"/> running.</summary>
    private static void AssertUntouched(List<NodeHost> hosts, string prefix, Dictionary<string, (string Node, int Pid)> where, int desired, string when)
    {
        var live = Live(hosts, prefix);
        var total = live.Values.Sum(v => v.Count);
        Assert.True(total <= desired, $"{when}: {total} replicas run for {desired} desired: {Show(live)}");
        Assert.True(Duplicates(live) is { Count: 0 } , $"{when}: {string.Join(",", Duplicates(live))} run on two nodes: {Show(live)}");
        foreach (var (name, (node, pid)) in where)
        {
            Assert.True(live[node].TryGetValue(name, out var pids) && pids.Contains(pid),
                $"{when}: {name} (pid {pid} on {node}) was stopped, restarted or moved: {Show(live)}");
        }
    }

    /// <summary>kill -9 of every process in the node's containers (with its orchd already dead: a power cut).</summary>
    private static void KillContainers(NodeHost host)
    {
        foreach (var pid in Live([host], "")[host.NodeName].Values.SelectMany(p => p))
        {
            Signals.Send(pid, Signals.SIGKILL);
        }
    }

    /// <summary>Waits until the node's heartbeat (what the fleet knows of it) lists the containers running.</summary>
    private static Task<HashSet<string>> HeartbeatListsAsync(FleetClient fleet, NodeHost host, params string[] names)
        => Eventually.ValueAsync($"{host.NodeName}'s heartbeat to list {string.Join(",", names)} running", async () =>
            {
                var node = (await fleet.GetNodesAsync(FastView)).SingleOrDefault(n => n.Info.Node == host.NodeName);
                return node?.Info.Containers?.Where(c => c.State == ContainerState.Running).Select(c => c.Name).ToHashSet(StringComparer.Ordinal) ?? [];
            }, listed => names.All(listed.Contains), TimeSpan.FromSeconds(20), TimeSpan.FromMilliseconds(200));

    private static bool LostNats(string line)
        => line.Contains("lost the connection to NATS", StringComparison.OrdinalIgnoreCase) || line.Contains("NATS connection is dead", StringComparison.OrdinalIgnoreCase);

    private static Task WaitForLineAsync(DaemonProcess daemon, int mark, Func<string, bool> match, TimeSpan timeout, string what)
        => Eventually.TrueAsync(what, () => daemon.Stderr.Skip(mark).Any(match), timeout,
            () => "\n" + string.Join("\n", daemon.Stderr.Skip(mark).TakeLast(30)), TimeSpan.FromMilliseconds(50));

    /// <summary>Each node's log since it started, but for debug lines, into the test's output (on a failure).</summary>
    private void Dump(List<NodeHost> hosts)
    {
        foreach (var host in hosts)
        {
            try
            {
                output.WriteLine($"--- {host.NodeName} (pid {host.Daemon.Pid}{(host.Daemon.HasExited ? ", exited" : "")}):");
                foreach (var line in host.Daemon.Stderr.Where(l => !l.Contains(" debug ", StringComparison.Ordinal)).TakeLast(150))
                {
                    output.WriteLine(line);
                }
            }
            catch (ArgumentOutOfRangeException)
            {
                // orchd never started on that host
            }
        }
    }

    private static string Tail(NodeHost host, int lines = 25) => $"--- {host.NodeName}:\n{string.Join("\n", host.Daemon.Stderr.TakeLast(lines))}";

    private static string Seconds(TimeSpan? t) => t is { } v ? $"{v.TotalSeconds:0.0} s" : "never";

    /// <summary>
    /// "" when the buckets, three fresh heartbeats and a scheduler are back, else what is
    /// missing; opens the buckets and never creates them.
    /// </summary>
    private static async Task<string> FleetRebuiltAsync(NatsKVContext kv, List<NodeHost> hosts)
    {
        var missing = new List<string>();
        var stores = new Dictionary<string, INatsKVStore>(StringComparer.Ordinal);
        foreach (var bucket in new[] { Buckets.Nodes, Buckets.Deployments, Buckets.Assignments, Buckets.Leader })
        {
            try
            {
                stores[bucket] = await kv.GetStoreAsync(bucket);
            }
            catch (Exception e) when (e is NatsException or TimeoutException or OperationCanceledException)
            {
                missing.Add($"bucket {bucket} ({e.Message})");
            }
        }
        if (missing.Count > 0)
        {
            return string.Join("; ", missing);
        }
        try
        {
            var nodes = await FleetState.ReadNodesAsync(stores[Buckets.Nodes], FastView, CancellationToken.None);
            var ready = nodes.Where(n => n.State == NodeCondition.Ready).Select(n => n.Info.Node).ToHashSet(StringComparer.Ordinal);
            if (hosts.Any(h => !ready.Contains(h.NodeName)))
            {
                return $"ready nodes: [{string.Join(",", ready)}]";
            }
            var lease = await stores[Buckets.Leader].TryGetEntryAsync<byte[]>("scheduler");
            return lease.Success && lease.Value.Operation == NatsKVOperation.Put ? "" : "no scheduler holds the lease";
        }
        catch (Exception e) when (e is NatsException or TimeoutException or OperationCanceledException)
        {
            return e.Message;
        }
    }

    /// <summary>Marks a deployment <c>fence: true</c> (Deployment.Fence); fails plainly while fencing does not exist.</summary>
    private static Deployment Fence(Deployment deployment)
    {
        var property = typeof(Deployment).GetProperty("Fence");
        Assert.True(property is not null, "Deployment has no Fence property: fencing (fence: true, fleet.fence_after) is not implemented");
        property!.SetValue(deployment, true);
        return deployment;
    }

    /// <summary>Waits until every node runs one guard and one free replica; returns the victim's two, with their pids.</summary>
    private static async Task<(ContainerStatus Guard, ContainerStatus Free)> OneOfEachAsync(List<NodeHost> hosts, NodeHost victim)
    {
        await WaitForRunningAsync(hosts, "", r => r.Values.All(v => v.Count(n => n.StartsWith("guard-", StringComparison.Ordinal)) == 1 && v.Count(n => n.StartsWith("free-", StringComparison.Ordinal)) == 1),
            "one guard (fenced) and one free replica per node");
        var mine = await ContainersAsync([victim], "");
        return (mine.Single(c => c.Name.StartsWith("guard-", StringComparison.Ordinal) && c.State == ContainerState.Running),
            mine.Single(c => c.Name.StartsWith("free-", StringComparison.Ordinal) && c.State == ContainerState.Running));
    }

    /// <summary>
    /// From the moment the node lost contact: the fenced replica lives at least 2 s (not stopped
    /// before fence_after, 5 s) and is gone by fence_after + 5 s; the unfenced one lives all
    /// along; the fleet runs the fenced replica on a survivor by lost_after (6 s) + 10 s.
    /// </summary>
    private static async Task<(TimeSpan Stopped, TimeSpan Moved)> WatchFenceAsync(NodeHost victim, List<NodeHost> survivors, ContainerStatus guard, ContainerStatus free, Stopwatch clock, string how)
    {
        TimeSpan? stopped = null, moved = null;
        while (clock.Elapsed < TimeSpan.FromSeconds(20))
        {
            stopped ??= NodeHost.IsAlive(guard.Pid) ? null : clock.Elapsed;
            moved ??= Live(survivors, "guard-").Values.Any(v => v.ContainsKey(guard.Name)) ? clock.Elapsed : null;
            Assert.True(NodeHost.IsAlive(free.Pid), $"{free.Name} (not fenced) died {clock.Elapsed.TotalSeconds:0.0} s after its node {how}");
            if (stopped is { } s)
            {
                Assert.True(s >= TimeSpan.FromSeconds(2), $"{guard.Name} (fenced) was stopped {s.TotalSeconds:0.0} s after its node {how}: before fence_after (5 s)");
            }
            if (stopped is not null && moved is not null && clock.Elapsed >= TimeSpan.FromSeconds(12))
            {
                break;
            }
            await Task.Delay(250);
        }
        Assert.True(stopped <= TimeSpan.FromSeconds(5 + 5), $"{guard.Name} (fenced) still runs {clock.Elapsed.TotalSeconds:0} s after its node {how} (fence_after 5 s); stopped: {Seconds(stopped)}");
        Assert.True(moved <= TimeSpan.FromSeconds(6 + 10), $"{guard.Name} was not placed on another node within lost_after + 10 s: {Show(Live(survivors, "guard-"))}");
        Assert.True(NodeHost.IsAlive(free.Pid), $"{free.Name} (not fenced) died after its node {how}");
        return (stopped!.Value, moved!.Value);
    }

    private static double LoadAverage()
        => double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], CultureInfo.InvariantCulture);

    private static void StopAll(List<Process> processes)
    {
        foreach (var process in processes)
        {
            try
            {
                if (!process.HasExited)
                {
                    process.Kill();
                    process.WaitForExit(5000);
                }
            }
            catch (InvalidOperationException)
            {
            }
            process.Dispose();
        }
        processes.Clear();
    }

    private static void TryContinue(NodeHost host)
    {
        try
        {
            if (!host.Daemon.HasExited)
            {
                host.Daemon.Signal(Signals.SIGCONT);
            }
        }
        catch (Exception e) when (e is IOException or ArgumentOutOfRangeException or InvalidOperationException)
        {
        }
    }
}

using System.Text.Json;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using Orchestrator.Client;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;

using static Orchestrator.Daemon.Tests.Node.FleetHarness;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// The fleet's harder guarantees against real orchd nodes and a real nats-server: signed
/// deployments (forged, unsigned, untrusted and replayed ones refused), a failing canary that
/// never reaches the other nodes, the custom-metric autoscaler, a nats-server restart, and a
/// node cut off for 60 s that keeps serving and is not double-placed.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class FleetRolloutTests
{
    private static Deployment Sleepers(string name, int replicas, string version = "1") => FleetHarness.Sleepers(name, replicas, version);

    [Fact(Timeout = 300_000)]
    public async Task Nodes_run_only_what_a_trusted_key_signed_and_refuse_forged_unsigned_and_replayed_deployments()
    {
        await using var nats = await NatsServer.StartAsync();
        var (seed, key) = ManifestSigning.CreateKey();
        var (strangerSeed, _) = ManifestSigning.CreateKey();
        var hosts = new List<NodeHost>();
        try
        {
            for (var i = 0; i < 2; i++)
            {
                hosts.Add(await NodeHost.StartAsync(sharedNats: nats, name: $"s{i}-{Guid.NewGuid().ToString("N")[..4]}", extraArgs: [.. Fast, .. NodeHost.MetricsOnNats, "--trusted-key", key]));
            }
            await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
            await connection.ConnectAsync();
            var fleet = new FleetClient(connection);
            var deploymentsBucket = await new NatsKVContext(new NatsJSContext(connection)).GetStoreAsync(Buckets.Deployments);

            // Signed: runs.
            var v1 = Sleepers("signed", 2, "1");
            await fleet.ApplyAsync([v1], seed);
            var running = await UntilAsync(hosts, "signed-", c => c.Count(x => x.State == ContainerState.Running) == 2, "the signed deployment running");
            var pids = running.ToDictionary(c => c.Name, c => c.Pid);
            var v1Signed = JsonSerializer.SerializeToUtf8Bytes(v1, WorkloadJsonContext.Default.Deployment);

            // Unsigned, and signed by a key the nodes do not trust: refused, with an event saying why.
            var since = DateTimeOffset.UtcNow.AddSeconds(-1);
            await fleet.ApplyAsync([Sleepers("unsigned", 1)]);
            await fleet.ApplyAsync([Sleepers("stranger", 1)], strangerSeed);
            var unsigned = await EventAsync(fleet, since, e => e.Kind == "deployment.refused" && e.Subject == "unsigned", "the unsigned deployment");
            Assert.Contains("not signed", unsigned.Message, StringComparison.Ordinal);
            var stranger = await EventAsync(fleet, since, e => e.Kind == "deployment.refused" && e.Subject == "stranger", "the stranger's deployment");
            Assert.Contains("not among this node's fleet.trusted_keys", stranger.Message, StringComparison.Ordinal);

            // Forged: a compromised account rewrites the command and keeps the signature. The
            // client refuses to send it; written straight into KV, the nodes refuse to run it.
            var forged = Sleepers("signed", 2, "1");
            forged.Template.Command = ["sh", "-c", "echo pwned; exec sleep 100000"];
            forged.Signature = v1.Signature;
            await Assert.ThrowsAsync<NodeRequestException>(() => fleet.ApplyAsync([forged]));
            since = DateTimeOffset.UtcNow.AddSeconds(-1);
            await deploymentsBucket.PutAsync("signed", JsonSerializer.SerializeToUtf8Bytes(forged, WorkloadJsonContext.Default.Deployment));
            var refused = await EventAsync(fleet, since, e => e.Kind == "deployment.refused" && e.Subject == "signed", "the forged deployment");
            Assert.Contains("does not match its content", refused.Message, StringComparison.Ordinal);
            await Task.WhenAll(hosts.Select(h => h.WaitForReconcilePassesAsync(2))); // refused, and nothing changed meanwhile
            var after = await ContainersAsync(hosts, "");
            Assert.DoesNotContain(after, c => c.Name.StartsWith("unsigned-", StringComparison.Ordinal) || c.Name.StartsWith("stranger-", StringComparison.Ordinal));
            Assert.All(after.Where(c => c.Name.StartsWith("signed-", StringComparison.Ordinal)), c =>
            {
                Assert.Equal(pids[c.Name], c.Pid); // what ran keeps running, untouched
                Assert.Equal(new[] { "sleep", "100000" }, c.Spec!.Command);
            });

            // Newer signed revisions roll out; then an old signed manifest replayed is refused.
            foreach (var version in new[] { "2", "3" })
            {
                await fleet.ApplyAsync([Sleepers("signed", 2, version)], seed);
                await UntilAsync(hosts, "signed-", c => c.Count(x => x.State == ContainerState.Running && x.Spec!.Env!["VERSION"] == version) == 2, $"signed v{version} running");
                await Task.Delay(5); // a later millisecond: a later serial
            }
            since = DateTimeOffset.UtcNow.AddSeconds(-1);
            await deploymentsBucket.PutAsync("signed", v1Signed);
            var replay = await EventAsync(fleet, since, e => e.Kind == "deployment.refused" && e.Subject == "signed", "the replayed deployment");
            Assert.Contains("replayed", replay.Message, StringComparison.Ordinal);
            await Task.WhenAll(hosts.Select(h => h.WaitForReconcilePassesAsync(2)));
            Assert.All((await ContainersAsync(hosts, "signed-")).Where(c => c.State == ContainerState.Running), c => Assert.Equal("3", c.Spec!.Env!["VERSION"]));
        }
        finally
        {
            await DisposeAllAsync(hosts);
        }
    }

    [Fact(Timeout = 300_000)]
    public async Task A_failing_canary_is_rolled_back_and_the_other_nodes_never_run_it()
    {
        await using var nats = await NatsServer.StartAsync();
        var hosts = new List<NodeHost>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                hosts.Add(await NodeHost.StartAsync(sharedNats: nats, name: $"c{i}-{Guid.NewGuid().ToString("N")[..4]}",
                    extraArgs: [.. Fast, "--label", i == 0 ? "ring=canary" : "ring=main"]));
            }
            await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
            await connection.ConnectAsync();
            var fleet = new FleetClient(connection);
            Deployment Version(string version, bool healthy) => new()
            {
                Name = "can",
                Replicas = 3,
                AntiAffinity = true,
                Rollout = new RolloutSpec
                {
                    MaxUnavailable = 2, ProgressDeadlineSeconds = 6,
                    Canary = new WaveSpec { Selector = new() { ["ring"] = "canary" }, HoldSeconds = 2 },
                },
                Template = ReadyWhenHealthy(version, healthy),
            };
            bool AllOn(List<Orchestrator.Api.ContainerStatus> c, string version)
                => c.Count == 3 && c.All(x => x is { State: ContainerState.Running, Ready: true } && x.Spec!.Env!["VERSION"] == version);

            await fleet.ApplyAsync([Version("1", healthy: true)]);
            var v1 = await UntilAsync(hosts, "can-", c => AllOn(c, "1"), "v1 on all three");
            var mainNodes = hosts.Skip(1).ToList();
            var mainPids = (await ContainersAsync(mainNodes, "can-")).ToDictionary(c => c.Name, c => c.Pid);
            Assert.Equal(2, mainPids.Count);

            // v2 never gets ready: only the canary node ever runs it, then the fleet goes back.
            var since = DateTimeOffset.UtcNow;
            await fleet.ApplyAsync([Version("2", healthy: false)]);
            var view = await Eventually.ValueAsync("a rollback", async () =>
            {
                var view = (await fleet.GetDeploymentsAsync()).Single();
                if (view.Status?.RolledBack is null)
                {
                    Assert.All(await ContainersAsync(mainNodes, "can-"), c => Assert.Equal("1", c.Spec!.Env!["VERSION"]));
                }
                return view;
            }, view => view.Status?.RolledBack is not null, TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(200), view => $"{view.Status?.Phase} wave {view.Status?.Wave}");
            Assert.Contains("canary wave", view.Status!.RolledBack, StringComparison.Ordinal);
            await UntilAsync(hosts, "can-", c => AllOn(c, "1"), "back on v1");
            var events = new List<NodeEvent>();
            await foreach (var ev in fleet.EventsAsync(since.AddSeconds(-5), watch: false))
            {
                if (ev.At >= since)
                {
                    events.Add(ev);
                }
            }
            Assert.Contains(events, e => e.Kind == "container.started" && e.Node == hosts[0].NodeName);
            Assert.DoesNotContain(events, e => e.Kind == "container.started" && e.Node != hosts[0].NodeName);
            Assert.Equal(mainPids, (await ContainersAsync(mainNodes, "can-")).ToDictionary(c => c.Name, c => c.Pid));

            // v3 is good: the canary holds, then the rest follows.
            await fleet.ApplyAsync([Version("3", healthy: true)]);
            await UntilAsync(hosts, "can-", c => AllOn(c, "3"), "v3 everywhere after the canary held");
            var completeBy = DateTime.UtcNow + TimeSpan.FromSeconds(20);
            while ((await fleet.GetDeploymentsAsync()).Single().Status is not { Phase: RolloutPhase.Complete } done)
            {
                Assert.True(DateTime.UtcNow < completeBy, "the rollout of v3 never reported complete");
                await Task.Delay(200);
            }
        }
        finally
        {
            await DisposeAllAsync(hosts);
        }
    }

    [Fact(Timeout = 180_000)]
    public async Task The_autoscaler_follows_a_custom_metric_published_on_a_subject()
    {
        await using var nats = await NatsServer.StartAsync();
        await using var node = await NodeHost.StartAsync(sharedNats: nats, extraArgs: Fast);
        await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
        await connection.ConnectAsync();
        var fleet = new FleetClient(connection);
        var queue = Sleepers("worker", 1);
        queue.Autoscale = new AutoscaleSpec { Min = 1, Max = 4, CooldownSeconds = 0, Metric = new MetricSpec { Subject = "orch.metrics.jobs.depth", TargetPerReplica = 10 } };
        await fleet.ApplyAsync([queue]);
        await UntilAsync([node], "worker-", c => c.Count(x => x.State == ContainerState.Running) == 1, "one worker");

        Task PublishUntilAsync(string value, int replicas)
            => Eventually.ValueAsync($"{replicas} workers with the metric at {value}", async () =>
            {
                var running = (await ContainersAsync([node], "worker-")).Count(x => x.State == ContainerState.Running);
                if (running != replicas)
                {
                    await connection.PublishAsync("orch.metrics.jobs.depth", System.Text.Encoding.UTF8.GetBytes(value));
                }
                return running;
            }, running => running == replicas, TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(300), running => $"{running} running");
        await PublishUntilAsync("35", 4); // ceil(35 / 10) = 4, the max
        await PublishUntilAsync("12", 2);
        await PublishUntilAsync("0", 1);  // the min
        var status = (await fleet.GetDeploymentsAsync()).Single().Status!;
        Assert.Contains("orch.metrics.jobs.depth = 0", status.LastScale, StringComparison.Ordinal);
    }

    [Fact(Timeout = 240_000)]
    public async Task The_fleet_reconverges_after_a_nats_server_restart()
    {
        await using var nats = await NatsServer.StartAsync();
        var hosts = new List<NodeHost>();
        try
        {
            for (var i = 0; i < 2; i++)
            {
                hosts.Add(await NodeHost.StartAsync(sharedNats: nats, name: $"n{i}-{Guid.NewGuid().ToString("N")[..4]}", extraArgs: Fast));
            }
            await using (var connection = new NatsConnection(new NatsOpts { Url = nats.Url }))
            {
                await connection.ConnectAsync();
                await new FleetClient(connection).ApplyAsync([Sleepers("keep", 4)]);
            }
            var before = await UntilAsync(hosts, "keep-", c => c.Count(x => x.State == ContainerState.Running) == 4, "four replicas");

            await nats.StopAsync();
            await Task.Delay(3000);
            Assert.All(before, c => Assert.True(NodeHost.IsAlive(c.Pid), $"{c.Name} died while NATS was down"));
            await nats.StartAgainAsync();

            await using var again = new NatsConnection(new NatsOpts { Url = nats.Url });
            await again.ConnectAsync();
            var fleet = new FleetClient(again);
            await fleet.ScaleAsync("keep", 6);
            var after = await UntilAsync(hosts, "keep-", c => c.Count(x => x.State == ContainerState.Running) == 6, "six replicas after the restart");
            Assert.Equal(6, after.Select(c => c.Name).Distinct().Count()); // no replica twice
            Assert.All(before, c => Assert.Equal(c.Pid, after.Single(a => a.Name == c.Name).Pid)); // nothing restarted
            await Eventually.ValueAsync("both nodes to heartbeat again (ready)",
                async () => (await fleet.GetNodesAsync(new Orchestrator.Client.FleetOptions { UnreachableAfter = TimeSpan.FromSeconds(3) })).Count(n => n.State == NodeCondition.Ready),
                ready => ready == 2, TimeSpan.FromSeconds(20), TimeSpan.FromMilliseconds(200), ready => $"{ready} ready");
        }
        finally
        {
            await DisposeAllAsync(hosts);
        }
    }

    [Fact(Timeout = 300_000)]
    public async Task A_node_cut_off_for_60_seconds_keeps_serving_is_not_double_placed_and_rejoins()
    {
        await using var nats = await NatsServer.StartAsync();
        await using var proxy = new TcpProxy(nats.Port);
        string[] timings = ["--heartbeat", "1s", "--unreachable-after", "3s", "--lost-after", "90s"];
        var hosts = new List<NodeHost>();
        try
        {
            hosts.Add(await NodeHost.StartAsync(sharedNats: nats, name: $"hub-{Guid.NewGuid().ToString("N")[..4]}", extraArgs: timings));
            var edge = await NodeHost.StartAsync(sharedNats: nats, name: $"edge-{Guid.NewGuid().ToString("N")[..4]}", start: false);
            hosts.Add(edge);
            edge.NatsUrlOverride = proxy.NatsUrl;
            await edge.StartOrchdAsync(timings);
            await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
            await connection.ConnectAsync();
            var fleet = new FleetClient(connection);
            var app = Sleepers("app", 2);
            app.AntiAffinity = true;
            await fleet.ApplyAsync([app]);
            await UntilAsync(hosts, "app-", c => c.Count(x => x.State == ContainerState.Running) == 2, "one replica per node");
            var edgeReplica = (await ContainersAsync([edge], "app-")).Single();

            proxy.Cut();
            var options = new Orchestrator.Client.FleetOptions { UnreachableAfter = TimeSpan.FromSeconds(3), LostAfter = TimeSpan.FromSeconds(90) };
            var cutAt = DateTime.UtcNow;
            var sawUnreachable = false;
            while (DateTime.UtcNow - cutAt < TimeSpan.FromSeconds(60))
            {
                Assert.True(NodeHost.IsAlive(edgeReplica.Pid), "the cut-off node's replica died");
                var onHub = await ContainersAsync([hosts[0]], "app-");
                Assert.Single(onHub); // not placed twice while the edge node is only unreachable
                sawUnreachable |= (await fleet.GetNodesAsync(options)).Single(n => n.Info.Node == edge.NodeName).State == NodeCondition.Unreachable;
                await Task.Delay(2000);
            }
            Assert.True(sawUnreachable, "the cut-off node was never reported unreachable");

            proxy.Restore();
            await Eventually.ValueAsync($"{edge.NodeName} to rejoin (ready) once the link is back",
                async () => (await fleet.GetNodesAsync(options)).Single(n => n.Info.Node == edge.NodeName).State, state => state == NodeCondition.Ready,
                TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(500));
            var all = await UntilAsync(hosts, "app-", c => c.Count(x => x.State == ContainerState.Running) == 2, "two replicas after the rejoin");
            Assert.Equal(2, all.Select(c => c.Name).Distinct().Count());
            Assert.Equal(edgeReplica.Pid, all.Single(c => c.Name == edgeReplica.Name).Pid);
        }
        finally
        {
            await DisposeAllAsync(hosts);
        }
    }
}

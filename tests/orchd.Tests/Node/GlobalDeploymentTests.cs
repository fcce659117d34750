using NATS.Client.Core;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Client;

using static Orchestrator.Daemon.Tests.Node.FleetHarness;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// A global deployment against real orchd nodes and a real nats-server: one copy per matching node
/// as labels come and go, a release in waves whose failing first wave never reaches the other
/// nodes and is rolled back, the per-wave view of `orchctl rollout status`, and a killed node whose
/// copy is not moved anywhere.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class GlobalDeploymentTests
{
    [Fact(Timeout = 300_000)]
    public async Task One_copy_per_matching_node_released_in_waves_and_never_moved_off_a_dead_node()
    {
        await using var nats = await NatsServer.StartAsync();
        var hosts = new List<NodeHost>();
        try
        {
            string[][] labels = [["fleet=sensors", "site=lab"], ["fleet=sensors", "site=field"], ["site=field"]];
            for (var i = 0; i < 3; i++)
            {
                hosts.Add(await NodeHost.StartAsync(sharedNats: nats, name: $"g{i}-{Guid.NewGuid().ToString("N")[..4]}",
                    extraArgs: [.. Fast, .. labels[i].SelectMany(l => new[] { "--label", l })]));
            }
            await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
            await connection.ConnectAsync();
            var fleet = new FleetClient(connection);
            Deployment Release(string version, bool healthy) => new()
            {
                Name = "sensor",
                Mode = DeploymentMode.Global,
                Selector = new() { ["fleet"] = "sensors" },
                Rollout = new RolloutSpec
                {
                    MaxUnavailablePercent = 100, ProgressDeadlineSeconds = 6,
                    Waves = [new WaveSpec { Selector = new() { ["site"] = "lab" }, HoldSeconds = 2 }],
                },
                Template = ReadyWhenHealthy(version, healthy),
            };
            async Task<Dictionary<string, ContainerStatus>> CopiesAsync()
            {
                var copies = new Dictionary<string, ContainerStatus>(StringComparer.Ordinal);
                foreach (var host in hosts)
                {
                    // Inspected (a list carries no spec): the running copy on each node.
                    foreach (var c in (await ContainersAsync([host], "sensor-")).Where(c => c.State == ContainerState.Running))
                    {
                        copies[host.NodeName] = c;
                    }
                }
                return copies;
            }
            Task<Dictionary<string, ContainerStatus>> UntilCopiesAsync(Func<Dictionary<string, ContainerStatus>, bool> condition, string what)
                => Eventually.ValueAsync(what, CopiesAsync, condition, TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(200),
                    all => string.Join(", ", all.Select(c => $"{c.Key}: {c.Value.Name} ready={c.Value.Ready} v{c.Value.Spec?.Env?.GetValueOrDefault("VERSION")}")));
            bool AllOn(Dictionary<string, ContainerStatus> copies, int count, string version)
                => copies.Count == count && copies.Values.All(c => c.Ready && c.Spec?.Env?.GetValueOrDefault("VERSION") == version);

            // The two matching nodes get a copy each; the third none.
            await fleet.ApplyAsync([Release("1", healthy: true)]);
            await UntilCopiesAsync(c => AllOn(c, 2, "1") && !c.ContainsKey(hosts[2].NodeName), "v1 on the two sensor nodes");

            // The third gains the label: it gets its copy without an apply.
            await hosts[2].Client.LabelAsync(new LabelRequest { Set = new() { ["fleet"] = "sensors" } });
            var three = await UntilCopiesAsync(c => AllOn(c, 3, "1"), "v1 on the node that gained the label");
            var fieldPids = hosts.Skip(1).ToDictionary(h => h.NodeName, h => three[h.NodeName].Pid);

            // v2 never gets ready: only the lab node (the first wave) ever runs it; then back to v1.
            var since = DateTimeOffset.UtcNow;
            await fleet.ApplyAsync([Release("2", healthy: false)]);
            var view = await Eventually.ValueAsync("a rollback", async () =>
            {
                var copies = await CopiesAsync();
                Assert.All(hosts.Skip(1), h => Assert.NotEqual("2", copies.GetValueOrDefault(h.NodeName)?.Spec?.Env?.GetValueOrDefault("VERSION")));
                return (await fleet.GetDeploymentsAsync()).Single();
            }, view => view.Status?.RolledBack is not null, TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(200), view => $"{view.Status?.Phase} wave {view.Status?.Wave}");
            Assert.Contains("replica sensor-", view.Status!.RolledBack, StringComparison.Ordinal);
            await UntilCopiesAsync(c => AllOn(c, 3, "1"), "back on v1");
            var now = await CopiesAsync();
            Assert.Equal(fieldPids, hosts.Skip(1).ToDictionary(h => h.NodeName, h => now[h.NodeName].Pid));

            // v3 is good: the lab wave holds, then the rest; rollout status shows both waves passed.
            await fleet.ApplyAsync([Release("3", healthy: true)]);
            await UntilCopiesAsync(c => AllOn(c, 3, "3"), "v3 on every node after the lab wave held");
            await Eventually.TrueAsync("the rollout of v3 complete", async () => (await fleet.GetDeploymentsAsync()).Single().Status?.Phase == RolloutPhase.Complete,
                TimeSpan.FromSeconds(30));
            var status = await Orchctl.RunAsync("--server", nats.Url, "rollout", "status", "sensor");
            Assert.Equal(0, status.Code);
            Assert.Contains("complete: 3/3 nodes updated and ready", status.Out, StringComparison.Ordinal);
            Assert.Matches(@"site=lab\s+passed\s+1\s+1\s+1\s+0\s+0", status.Out);
            Assert.Matches(@"rest\s+passed\s+2\s+2\s+2\s+0\s+0", status.Out);
            var table = await Orchctl.RunAsync("--server", nats.Url, "get", "deployments");
            Assert.Matches(@"sensor\s+\d+\s+global \(3\)\s+3", table.Out);
            var scale = await Orchctl.RunAsync("--server", nats.Url, "scale", "sensor", "5");
            Assert.NotEqual(0, scale.Code);
            Assert.Contains("is global", scale.Err, StringComparison.Ordinal);

            // The field node leaves the selector: its copy goes; the others stay.
            await hosts[1].Client.LabelAsync(new LabelRequest { Remove = ["fleet"] });
            await UntilCopiesAsync(c => c.Count == 2 && !c.ContainsKey(hosts[1].NodeName), "the copy gone from the node that left the selector");

            // The third node dies: after it is lost its copy is still its own, and no node runs a second one.
            var dead = hosts[2].NodeName;
            await hosts[2].DisposeAsync();
            hosts.RemoveAt(2);
            var lost = await Eventually.ValueAsync("the dead node lost", async () => (await fleet.GetDeploymentsAsync()).Single().Status!,
                s => s.Pending == 1, TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(300), s => $"pending {s.Pending}, replicas {string.Join(",", s.Replicas)}");
            Assert.Contains(dead, lost.Replicas.Values);
            await Task.Delay(TimeSpan.FromSeconds(8)); // past lost-after (6 s) and a few passes
            var after = await CopiesAsync();
            Assert.Equal([hosts[0].NodeName], after.Keys);
            var final = (await fleet.GetDeploymentsAsync()).Single().Status!;
            Assert.Equal(dead, final.Replicas.Single(r => r.Value != hosts[0].NodeName).Value);
        }
        finally
        {
            await DisposeAllAsync(hosts);
        }
    }

    [Fact(Timeout = 240_000)]
    public async Task A_global_job_runs_once_on_every_node_and_its_rollout_completes_without_a_running_copy()
    {
        await using var nats = await NatsServer.StartAsync();
        var hosts = new List<NodeHost>();
        try
        {
            for (var i = 0; i < 2; i++)
            {
                hosts.Add(await NodeHost.StartAsync(sharedNats: nats, name: $"j{i}-{Guid.NewGuid().ToString("N")[..4]}", extraArgs: Fast));
            }
            await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
            await connection.ConnectAsync();
            var fleet = new FleetClient(connection);
            Task UntilDeploymentAsync(Func<DeploymentView, bool> condition, string what)
                => Eventually.ValueAsync(what, async () => (await fleet.GetDeploymentsAsync()).Single(d => d.Deployment.Name == "calibrate"), condition, TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(300),
                    v => $"{v.Status?.Phase} revision {v.Status?.Revision}");
            Deployment Job(string version) => new()
            {
                Name = "calibrate",
                Mode = DeploymentMode.Global,
                Template = new Workload
                {
                    Image = NodeHost.Image, Command = ["sh", "-c", "echo calibrated v$VERSION"], Network = NetworkMode.None,
                    Env = new() { ["VERSION"] = version }, Job = new JobSpec { Retries = 1 },
                },
            };
            var (_, revision) = (await fleet.ApplyAsync([Job("1")])).Single();
            // Each node runs it once and it stays done; the rollout is complete with no copy running.
            var done = await UntilAsync(hosts, "calibrate-", all => all.Count == 2 && all.All(c => c.Runs is [{ Outcome: "succeeded" }]), "a run on each node");
            Assert.All(done, c => Assert.Equal(ContainerState.Exited, c.State));
            await UntilDeploymentAsync(v => v.Status is { Phase: RolloutPhase.Complete } s && s.Revision == revision, "v1 complete");

            // A new release whose run fails on every node is rolled back to the one that ran.
            await fleet.ApplyAsync([new Deployment
            {
                Name = "calibrate", Mode = DeploymentMode.Global, Rollout = new RolloutSpec { ProgressDeadlineSeconds = 6 },
                Template = new Workload { Image = NodeHost.Image, Command = ["sh", "-c", "exit 3"], Network = NetworkMode.None, Job = new JobSpec { Retries = 0 } },
            }]);
            await UntilDeploymentAsync(v => v.Status?.Phase == RolloutPhase.RolledBack, "the failing job rolled back");
            // Back on the release that ran: each node runs v1 again, once.
            await UntilAsync(hosts, "calibrate-", all => all.Count == 2 && all.All(c => c.Spec?.Env?.GetValueOrDefault("VERSION") == "1" && c.Runs is [{ Outcome: "succeeded" }]), "v1 again on each node");
        }
        finally
        {
            foreach (var host in hosts)
            {
                await host.DisposeAsync();
            }
        }
    }
}

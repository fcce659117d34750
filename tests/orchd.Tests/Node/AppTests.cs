using NATS.Client.Core;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Client;

using static Orchestrator.Daemon.Tests.Node.FleetHarness;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// A docker-compose file applied to a real fleet as one global app (`orchctl apply -f
/// docker-compose.yml --global -l fleet=sensors`): on every matching node its services run as
/// containers of one app, in depends_on order, sharing the app's named volume, each reaching the others by service name on the
/// node's bridge; the fleet counts the app as one replica; a change rolls out to the container
/// that changed only; a release whose container never gets ready is rolled back as a whole.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class AppTests
{
    private static string Compose(string version) => $$"""
        name: sensors
        services:
          setup:
            image: {{NodeHost.Image}}
            command: ["sh", "-c", "echo seeded > /data/greeting; sleep 1"]
            restart: "no"
            volumes: ["data:/data"]
          broker:
            image: {{NodeHost.Image}}
            init: true
            command: ["sh", "-c", "mkdir -p /www && echo from-$$(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"]
            healthcheck:
              test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
              interval: 1s
          reader:
            image: {{NodeHost.Image}}
            init: true
            environment:
              VERSION: "{{version}}"
            command: ["sh", "-c", "while true; do echo \"v$$VERSION $$(wget -q -O - http://broker:8080/) $$(cat /data/greeting)\"; sleep 0.5; done"]
            volumes: ["data:/data:ro"]
            depends_on:
              broker: {condition: service_healthy}
              setup: {condition: service_completed_successfully}
        """;

    [Fact(Timeout = 300_000)]
    public async Task A_compose_file_runs_as_one_app_on_every_matching_node_in_order_and_by_name()
    {
        await using var nats = await NatsServer.StartAsync();
        using var dir = new TempDir("orch-app");
        var hosts = new List<NodeHost>();
        try
        {
            string[][] labels = [["fleet=sensors"], ["fleet=sensors"], ["fleet=other"]];
            for (var i = 0; i < 3; i++)
            {
                hosts.Add(await NodeHost.StartAsync(sharedNats: nats, name: $"a{i}-{Guid.NewGuid().ToString("N")[..4]}",
                    extraArgs: [.. Fast, .. labels[i].SelectMany(l => new[] { "--label", l })]));
            }
            await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
            await connection.ConnectAsync();
            var fleet = new FleetClient(connection);
            var file = dir.Combine("docker-compose.yml");
            File.WriteAllText(file, Compose("1"));

            var applied = await Orchctl.RunAsync("--server", nats.Url, "apply", "-f", file, "--global", "-l", "fleet=sensors");
            Assert.True(applied.Code == 0, applied.All);
            Assert.Contains("deployment sensors: created", applied.Out, StringComparison.Ordinal);

            // Each matching node runs the app's three containers; the reader reached the broker by its service name.
            var sensors = hosts.Take(2).ToList();
            foreach (var host in sensors)
            {
                var reader = await Eventually.ValueAsync($"the reader on {host.NodeName}", async () => (await host.Client.ListAsync()).FirstOrDefault(c => c.Name.EndsWith("_reader", StringComparison.Ordinal)),
                    c => c is not null, TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(250), c => "none yet");
                await host.LogsUntilAsync(reader!.Name, lines => lines.Any(l => l.Text == "v1 from-broker seeded"), TimeSpan.FromSeconds(30), "the broker's page by name");
                var containers = await host.Client.ListAsync();
                var app = reader.Name[..reader.Name.IndexOf('_', StringComparison.Ordinal)];
                Assert.Equal([app + "_broker", app + "_reader", app + "_setup"], containers.Select(c => c.Name).Where(n => n.StartsWith(app + "_", StringComparison.Ordinal)).Order(StringComparer.Ordinal));

                // In order: the reader started after the setup ended and after the broker was ready.
                var setup = await host.Client.InspectAsync(app + "_setup");
                var broker = await host.Client.InspectAsync(app + "_broker");
                var started = await host.Client.InspectAsync(reader.Name);
                Assert.Equal(ContainerState.Exited, setup.State);
                Assert.Equal(0, setup.LastExit!.Code);
                Assert.True(started.StartedAt >= setup.LastExit.At, $"reader started {started.StartedAt:O}, setup ended {setup.LastExit.At:O}");
                Assert.True(started.StartedAt > broker.StartedAt);
                Assert.Equal("sensors", started.Labels!["orch.deployment"]);
                Assert.Equal("reader", started.Labels[Orchestrator.Api.Workloads.Apps.ServiceLabel]);
            }
            Assert.DoesNotContain(await hosts[2].Client.ListAsync(), c => c.Name.StartsWith("sensors-", StringComparison.Ordinal));

            // The fleet counts one replica per node, ready, and the rollout completes.
            await Eventually.TrueAsync("the app's rollout complete", async () => (await fleet.GetDeploymentsAsync()).Single().Status?.Phase == RolloutPhase.Complete,
                TimeSpan.FromSeconds(60));
            var table = await Orchctl.RunAsync("--server", nats.Url, "get", "deployments");
            Assert.Matches(@"sensors\s+\d+\s+global \(2\)\s+2", table.Out);

            // v2 changes the reader only: it is replaced; the broker keeps running (same pid), setup is not run again.
            var brokerPids = new Dictionary<string, int>();
            foreach (var host in sensors)
            {
                var broker = (await host.Client.ListAsync()).Single(c => c.Name.EndsWith("_broker", StringComparison.Ordinal));
                brokerPids[host.NodeName] = broker.Pid;
            }
            File.WriteAllText(file, Compose("2"));
            var rolled = await Orchctl.RunAsync("--server", nats.Url, "apply", "-f", file, "--global", "-l", "fleet=sensors");
            Assert.True(rolled.Code == 0, rolled.All);
            foreach (var host in sensors)
            {
                var reader = (await host.Client.ListAsync()).Single(c => c.Name.EndsWith("_reader", StringComparison.Ordinal));
                await host.LogsUntilAsync(reader.Name, lines => lines.Any(l => l.Text == "v2 from-broker seeded"), TimeSpan.FromSeconds(60), "v2 reaching the broker");
                var broker = (await host.Client.ListAsync()).Single(c => c.Name.EndsWith("_broker", StringComparison.Ordinal));
                Assert.Equal(brokerPids[host.NodeName], broker.Pid);
                Assert.Equal(0, (await host.Client.InspectAsync(reader.Name[..reader.Name.IndexOf('_', StringComparison.Ordinal)] + "_setup")).Restarts);
            }
            await Eventually.TrueAsync("v2's rollout complete", async () => (await fleet.GetDeploymentsAsync()).Single().Status?.Phase == RolloutPhase.Complete,
                TimeSpan.FromSeconds(60));

            // v3's broker never gets healthy: the release is rolled back as one, to v2, on every node.
            var current = (await fleet.GetDeploymentsAsync()).Single().Deployment;
            current.Rollout = new RolloutSpec { ProgressDeadlineSeconds = 6, MaxUnavailablePercent = 50 };
            await fleet.ApplyAsync([current]);
            var broken = (await fleet.GetDeploymentsAsync()).Single().Deployment;
            broken.Template.Containers!.Single(c => c.Name == "broker").Probes!.Readiness!.Exec!.Command = ["false"];
            broken.Template.Containers!.Single(c => c.Name == "reader").Env!["VERSION"] = "3";
            await fleet.ApplyAsync([broken]);
            var view = await Eventually.ValueAsync("a rollback", async () => (await fleet.GetDeploymentsAsync()).Single(),
                v => v.Status?.RolledBack is not null, TimeSpan.FromSeconds(90), TimeSpan.FromMilliseconds(300), v => $"{v.Status?.Phase} wave {v.Status?.Wave}");
            var events = await Orchctl.RunAsync("--server", nats.Url, "events", "--since", "5m");
            Assert.True(view.Status!.RolledBack!.Contains("replica sensors-", StringComparison.Ordinal), view.Status.RolledBack + "\n" + events.Out + string.Join("\n", sensors.Select(h => h.Daemon.Output.Length > 5000 ? h.Daemon.Output[^5000..] : h.Daemon.Output)));
            foreach (var host in sensors)
            {
                await Eventually.TrueAsync($"v2 again on {host.NodeName}", async () =>
                {
                    var reader = (await host.Client.ListAsync()).SingleOrDefault(c => c.Name.EndsWith("_reader", StringComparison.Ordinal));
                    return reader is { State: ContainerState.Running } && (await host.Client.InspectAsync(reader.Name)).Spec?.Env?["VERSION"] == "2";
                }, TimeSpan.FromSeconds(60));
            }
        }
        finally
        {
            await DisposeAllAsync(hosts);
        }
    }
}

using Orchestrator.Api.Workloads;
using static Orchestrator.Node.Tests.Supervision.SupervisorHarness;

namespace Orchestrator.Node.Tests.Supervision;

/// <summary>
/// Apps on one node, in-process: init containers one after the other (a failed one retried), then
/// the containers in dependsOn order (started, ready, completed), the app folded into one status
/// for the fleet, and removed as one.
/// </summary>
public sealed class SupervisorAppTests
{
    private static Workload Shop() => new()
    {
        Name = "shop",
        Labels = new() { ["team"] = "a" },
        InitContainers =
        [
            new() { Name = "schema", Image = "example.org/migrate:1", Network = NetworkMode.None },
            new() { Name = "seed", Image = "example.org/migrate:1", Network = NetworkMode.None },
        ],
        Containers =
        [
            new() { Name = "db", Image = "example.org/db:1", Network = NetworkMode.None, Probes = new Probes { Readiness = ExecProbe("pg_isready") } },
            new() { Name = "web", Image = "example.org/web:1", Network = NetworkMode.None, DependsOn = [new() { Name = "db", Condition = DependencyCondition.Ready }, new() { Name = "report", Condition = DependencyCondition.Completed }] },
            new() { Name = "report", Image = "example.org/report:1", Network = NetworkMode.None, Restart = new RestartPolicy { Policy = RestartPolicyKind.Never } },
        ],
    };

    [Fact]
    public async Task Init_containers_run_in_order_then_each_container_waits_for_what_it_depends_on()
    {
        await using var node = await StartAsync();
        var dbReady = false;
        node.Driver.ExecExitCode = (id, program, _) => id == "shop_db" && program == "pg_isready" && !dbReady ? 1 : 0;

        var status = await node.Supervisor.ApplyAsync(Shop());
        Assert.Equal("shop", status.Name);
        Assert.False(status.Ready);
        Assert.Equal(1, node.Driver.Starts("shop_schema"));
        Assert.All(new[] { "shop_seed", "shop_db", "shop_web", "shop_report" }, n => Assert.Equal(0, node.Driver.Starts(n)));
        Assert.Contains(node.Events("container.waiting"), e => e.Name == "shop_seed" && e.Message == "waiting for schema to complete");

        // The first init container fails: it is restarted (on-failure by default), and nothing after it starts.
        node.Driver.Exit("shop_schema", 3);
        await node.AdvanceUntilAsync("schema restarted", () => node.Driver.Starts("shop_schema") == 2, TimeSpan.FromMilliseconds(500));
        Assert.Equal(0, node.Driver.Starts("shop_seed"));
        var app = await node.InspectAsync("shop");
        Assert.Equal("schema: init container running; the others wait for it to complete", app.Message);

        node.Driver.Exit("shop_schema", 0);
        await node.UntilAsync("seed to start", () => node.Driver.Starts("shop_seed") == 1);
        Assert.Equal(0, node.Driver.Starts("shop_db"));
        node.Driver.Exit("shop_seed", 0);

        // Both init containers done: db and report start; web waits for db ready and report completed.
        await node.UntilAsync("db and report to start", () => node.Driver.Starts("shop_db") == 1 && node.Driver.Starts("shop_report") == 1);
        Assert.Equal(0, node.Driver.Starts("shop_web"));
        node.Driver.Exit("shop_report", 0);
        await node.AdvanceUntilAsync("web told to wait for db", () => node.Events("container.waiting").Any(e => e.Name == "shop_web" && e.Message == "waiting for db to be ready"), TimeSpan.FromMilliseconds(500));
        Assert.Equal(0, node.Driver.Starts("shop_web"));
        Assert.Matches("^db: (running, )?not ready", (await node.InspectAsync("shop")).Message); // before or after its first probe

        dbReady = true;
        await node.AdvanceUntilAsync("web to start once db is ready", () => node.Driver.Starts("shop_web") == 1, TimeSpan.FromMilliseconds(500));
        var ready = await node.InspectAsync("shop");
        Assert.True(ready.Ready, ready.Message);
        Assert.Equal(ContainerState.Running, ready.State);
        Assert.Equal(1, ready.Restarts);
        Assert.Equal(Orchestrator.Node.Reconcile.Supervisor.SpecHash(Shop()), ready.SpecHash);
        Assert.NotNull(ready.Spec);

        // The fleet counts one unit under the app's name, made of its five containers; ps shows each.
        var units = await node.Supervisor.UnitsAsync();
        var unit = Assert.Single(units);
        Assert.Equal("shop", unit.Status.Name);
        Assert.True(unit.Status.Ready);
        Assert.Equal(["shop_schema", "shop_seed", "shop_db", "shop_web", "shop_report"], unit.Containers);
        var ps = await node.Supervisor.ListAsync();
        Assert.Equal(5, ps.Count);
        var web = ps.Single(c => c.Name == "shop_web");
        Assert.Equal("shop", web.Labels!["orch.app"]);
        Assert.Equal("web", web.Labels["orch.app.service"]);
        Assert.Equal("a", web.Labels["team"]);

        // A restart of orchd does not run the init containers again.
        await node.RestartOrchdAsync();
        await node.AdvanceUntilAsync("the app ready again", async () => (await node.InspectAsync("shop")).Ready, TimeSpan.FromMilliseconds(500));
        Assert.Equal(2, node.Driver.Starts("shop_schema"));
        Assert.Equal(1, node.Driver.Starts("shop_seed"));

        // Removing the app removes every container of it.
        await node.Supervisor.RemoveAsync("shop");
        Assert.Empty(await node.Supervisor.ListAsync());
        Assert.Empty(await node.Supervisor.UnitsAsync());
    }

    [Fact]
    public async Task An_orchd_restart_in_the_middle_of_the_init_containers_keeps_the_order()
    {
        await using var node = await StartAsync();
        await node.Supervisor.ApplyAsync(Shop());
        Assert.Equal(1, node.Driver.Starts("shop_schema"));

        // orchd goes away while the first init container runs; it ends while orchd is away, so its
        // exit code is not known: that counts as a failure, and it runs again (init containers are
        // idempotent, as Kubernetes asks of them); seed waits for that run.
        await node.RestartOrchdAsync(() => node.Driver.Exit("shop_schema", 0));
        await node.AdvanceUntilAsync("schema run again", () => node.Driver.Starts("shop_schema") == 2, TimeSpan.FromMilliseconds(500));
        Assert.Equal(0, node.Driver.Starts("shop_seed"));
        node.Driver.Exit("shop_schema", 0);
        await node.UntilAsync("seed to start after the restart", () => node.Driver.Starts("shop_seed") == 1);
        Assert.Equal(0, node.Driver.Starts("shop_db"));

        // And again, while seed runs: nothing else starts until it has completed.
        await node.RestartOrchdAsync();
        for (var i = 0; i < 4; i++)
        {
            node.Clock.Advance(TimeSpan.FromSeconds(5));
            await node.DrainAsync();
        }
        Assert.Equal(0, node.Driver.Starts("shop_db"));
        Assert.Equal("seed: init container running; the others wait for it to complete", (await node.InspectAsync("shop")).Message);
        node.Driver.Exit("shop_seed", 0);
        await node.UntilAsync("db to start", () => node.Driver.Starts("shop_db") == 1 && node.Driver.Starts("shop_report") == 1);
        Assert.Equal(1, node.Driver.Starts("shop_seed"));
    }

    [Fact]
    public async Task A_container_that_fails_is_the_apps_state_and_a_changed_container_alone_is_replaced()
    {
        await using var node = await StartAsync();
        Workload Pair(string b) => new()
        {
            Name = "pair",
            Containers =
            [
                new() { Name = "a", Image = "example.org/a:1", Network = NetworkMode.None, Restart = new RestartPolicy { Policy = RestartPolicyKind.Never } },
                new() { Name = "b", Image = b, Network = NetworkMode.None },
            ],
        };
        await node.Supervisor.ApplyAsync(Pair("example.org/b:1"));
        Assert.Equal(1, node.Driver.Starts("pair_a"));
        Assert.Equal(1, node.Driver.Starts("pair_b"));

        await node.Supervisor.ApplyAsync(Pair("example.org/b:2"));
        Assert.Equal(1, node.Driver.Starts("pair_a"));
        Assert.Equal(2, node.Driver.Starts("pair_b"));

        node.Driver.Exit("pair_a", 1);
        var exited = await node.UntilStateAsync("pair_a", ContainerState.Exited);
        var folded = await node.InspectAsync("pair");
        Assert.Equal(ContainerState.Failed, folded.State);
        Assert.False(folded.Ready);
        Assert.Equal("a: " + (exited.Message ?? "exited with code 1"), folded.Message);
    }

    [Fact]
    public async Task Two_containers_of_an_app_cannot_publish_one_host_port()
    {
        await using var node = await StartAsync();
        var app = new Workload
        {
            Name = "ports",
            Containers =
            [
                new() { Name = "a", Image = "example.org/a:1", Ports = [new PortMapping { ContainerPort = 80, HostPort = 8080 }] },
                new() { Name = "b", Image = "example.org/b:1", Ports = [new PortMapping { ContainerPort = 81, HostPort = 8080 }] },
            ],
        };
        var e = await Assert.ThrowsAsync<Orchestrator.Node.Reconcile.NodeApiException>(() => node.Supervisor.ApplyAsync(app));
        Assert.Equal("host port 8080/tcp is already published by 'ports_a' on this node; pick another hostPort", e.Message);
        Assert.Empty(await node.Supervisor.ListAsync());
    }
}

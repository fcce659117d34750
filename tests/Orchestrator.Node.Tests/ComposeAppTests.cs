using Orchestrator.Api.Workloads;

namespace Orchestrator.Node.Tests;

/// <summary>
/// A docker-compose file read as docker compose runs it (what orchctl apply does by default): one
/// app named after the project, its services the app's containers, depends_on as start order.
/// </summary>
public sealed class ComposeAppTests
{
    private static FleetManifest App(string yaml, string dir = "/srv/My_Sensors")
        => ManifestLoader.LoadFleetManifest(yaml, "docker-compose.yml", new ComposeShape(true, dir));

    [Fact]
    public void Services_become_one_apps_containers_with_their_start_order()
    {
        var manifest = App("""
            services:
              db:
                image: postgres:16
                healthcheck:
                  test: ["CMD", "pg_isready"]
                  interval: 2s
              migrate:
                image: example.org/migrate:1
                restart: "no"
                depends_on: [db]
                volumes: ["state:/state", "/srv/in:/in:ro"]
              web:
                image: example.org/web:1
                ports: ["8080:80"]
                environment:
                  DB_HOST: db
                depends_on:
                  db:
                    condition: service_healthy
                    restart: true
                  migrate:
                    condition: service_completed_successfully
                links: [db]
                deploy:
                  placement:
                    constraints: ["node.labels.fleet == sensors"]
            """);
        var app = Assert.Single(manifest.Deployments);
        Assert.Equal("my-sensors", app.Name); // the directory's name, as docker compose names the project
        Assert.Equal(1, app.Replicas);
        Assert.Equal(new Dictionary<string, string> { ["fleet"] = "sensors" }, app.Selector);
        Assert.True(string.IsNullOrEmpty(app.Template.Image));
        var containers = app.Template.Containers!;
        Assert.Equal(["db", "migrate", "web"], containers.Select(c => c.Name));
        Assert.NotNull(containers[0].Probes!.Readiness);
        Assert.Equal([("db", (DependencyCondition?)null)], containers[1].DependsOn!.Select(d => (d.Name, d.Condition)));
        Assert.Equal([("db", (DependencyCondition?)DependencyCondition.Ready), ("migrate", DependencyCondition.Completed)],
            containers[2].DependsOn!.Select(d => (d.Name, d.Condition)));
        Assert.Equal(80, Assert.Single(containers[2].Ports!).ContainerPort);
        Assert.Equal([("my-sensors_state", (string?)null), (null, "/srv/in")], containers[1].Volumes!.Select(v => (v.Name, v.HostPath)));
        Assert.Contains(manifest.Warnings, w => w.Contains("services.web.depends_on.db.restart: ignored (a container is not restarted when one it depends on is)", StringComparison.Ordinal));
        Assert.Contains(manifest.Warnings, w => w.Contains("services.web.links: ignored (the app's containers reach each other by service name", StringComparison.Ordinal));
        Assert.DoesNotContain(manifest.Warnings, w => w.Contains("depends_on: ignored", StringComparison.Ordinal));
        Assert.Empty(WorkloadValidator.Validate(new Workload { Name = app.Name + "-0", Containers = containers }));

        // The same file as a stack: a deployment per service, depends_on said to be ignored.
        var stack = ManifestLoader.LoadFleetManifest("services:\n  a: {image: x, depends_on: [b]}\n  b: {image: y}\n", "docker-compose.yml");
        Assert.Equal(["a", "b"], stack.Deployments.Select(d => d.Name));
        Assert.Contains(stack.Warnings, w => w.Contains("services.a.depends_on: ignored", StringComparison.Ordinal));
    }

    [Fact]
    public void The_top_level_name_names_the_app()
        => Assert.Equal("gateway", Assert.Single(App("name: gateway\nservices:\n  a: {image: x}\n").Deployments).Name);

    [Fact]
    public void What_an_app_cannot_be_is_an_error_at_the_service_that_says_it()
    {
        var e = Assert.Throws<ManifestException>(() => App("""
            services:
              api:
                image: x
                deploy: {replicas: 3, placement: {constraints: ["node.labels.site == a"]}}
              web:
                image: y
                depends_on: [nope]
                deploy: {placement: {constraints: ["node.labels.site == b"]}}
            """));
        var lines = e.Message.Split('\n');
        Assert.Contains("docker-compose.yml:2:3: services.api: sets 3 replicas, but the file is one app that runs one copy of each service; take the count out (the app's count is its deployment's: --global, or orchctl scale), or apply it with --stack", lines);
        Assert.Contains("docker-compose.yml:5:3: services.web.deploy.placement: node.labels.site == b, where another service says a; the app runs on one node, which cannot have both", lines);
        Assert.Contains(lines, l => l.StartsWith("docker-compose.yml:7:17: services.web.depends_on[0].name: no container 'nope' in this app", StringComparison.Ordinal));

        var circle = Assert.Throws<ManifestException>(() => App("services:\n  a: {image: x, depends_on: [b]}\n  b: {image: y, depends_on: {a: {condition: service_started}}}\n"));
        Assert.Contains("services: depends_on goes round in a circle (a → b → a)", circle.Message, StringComparison.Ordinal);

        var condition = Assert.Throws<ManifestException>(() => App("services:\n  a: {image: x, depends_on: {b: {condition: service_ready}}}\n  b: {image: y}\n"));
        Assert.Contains("services.a.depends_on.b.condition: 'service_ready' is not a condition; use service_started, service_healthy or service_completed_successfully", condition.Message, StringComparison.Ordinal);

        var unnamed = Assert.Throws<ManifestException>(() => App("services:\n  a: {image: x}\n", dir: "/"));
        Assert.Contains("give the file a top-level name:", unnamed.Message, StringComparison.Ordinal);
        var badName = Assert.Throws<ManifestException>(() => App("name: my_app\nservices:\n  a: {image: x}\n"));
        Assert.Contains("docker-compose.yml:1:7: name: 'my_app' cannot name the app", badName.Message, StringComparison.Ordinal);
    }
}

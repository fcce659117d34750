using Orchestrator.Api.Workloads;

namespace Orchestrator.Node.Tests;

/// <summary>An app's containers are checked as one: names, dependsOn, circles, what an app may not have of its own.</summary>
public sealed class AppValidationTests
{
    private static Workload C(string name, params Dependency[] dependsOn) => new() { Name = name, Image = "busybox:1", DependsOn = dependsOn.Length == 0 ? null : [.. dependsOn] };

    [Fact]
    public void A_good_app_is_valid_and_its_members_are_named_and_labelled()
    {
        var app = new Workload { Name = "site-0", Labels = new() { ["orch.deployment"] = "site" }, InitContainers = [C("migrate")], Containers = [C("db"), C("web", new Dependency { Name = "db", Condition = DependencyCondition.Ready })] };
        Assert.Empty(WorkloadValidator.Validate(app));
        var members = Apps.Members(app);
        Assert.Equal(["site-0_migrate", "site-0_db", "site-0_web"], members.Select(m => m.Name));
        Assert.All(members, m => Assert.Equal("site", m.Labels!["orch.deployment"]));
        Assert.Equal("0", members[0].Labels!["orch.app.init"]);
        Assert.Equal(RestartPolicyKind.OnFailure, members[0].Restart!.Policy);
        Assert.Null(members[1].Restart);
        Assert.Equal("web", members[2].Hostname);
        Assert.Null(app.Containers[0].Labels); // the template is not touched
    }

    [Fact]
    public void Every_problem_of_an_app_is_said_at_once_naming_the_field()
    {
        var app = new Workload
        {
            Name = "bad-0",
            Image = "busybox:1",
            InitContainers = [new Workload { Name = "init", Image = "busybox:1", DependsOn = [new() { Name = "a" }] }],
            Containers =
            [
                C("a", new Dependency { Name = "b" }),
                C("b", new Dependency { Name = "c" }),
                C("c", new Dependency { Name = "a" }),
                C("d", new Dependency { Name = "nope" }, new Dependency { Name = "d" }, new Dependency { Name = "init" }),
                C("a"),
                new Workload { Name = "x_y", Image = "" },
            ],
        };
        var errors = WorkloadValidator.Validate(app);
        Assert.Contains("image: an app (a workload with containers) has no image of its own; put it on the container that needs it, under containers:", errors);
        Assert.Contains("initContainers[0].dependsOn: init containers run in the order they are listed; dependsOn is for containers:", errors);
        Assert.Contains("containers[3].dependsOn[0].name: no container 'nope' in this app; name one of a, b, c, d, a, x_y", errors);
        Assert.Contains("containers[3].dependsOn[1]: 'd' depends on itself; remove it", errors);
        Assert.Contains("containers[3].dependsOn[2]: 'init' is an init container, which every container already waits for; remove it", errors);
        Assert.Contains("containers[4].name: 'a' is used twice in this app; give each container its own name", errors);
        Assert.Contains("containers[5].name: 'x_y' is not a container name; use 1-63 letters, digits and '-', starting with a letter or digit (it is the name the others reach it by)", errors);
        Assert.Contains("containers[5].image: required; name an image such as busybox:latest", errors);
        Assert.Contains(errors, e => e.StartsWith("containers: dependsOn goes round in a circle (a → b → c → a)", StringComparison.Ordinal));
    }

    [Fact]
    public void DependsOn_outside_an_app_is_refused()
        => Assert.Contains("dependsOn: only a container of an app depends on others; put this workload and the ones it needs under one workload's containers:",
            WorkloadValidator.Validate(C("alone", new Dependency { Name = "db" })));

    [Fact]
    public void An_app_manifest_reads_from_yaml()
    {
        const string Yaml = """
            kind: Deployment
            name: sensors
            mode: global
            template:
              initContainers:
                - name: wait
                  image: busybox:1
                  command: [true]
              containers:
                - name: mqtt
                  image: eclipse-mosquitto:2
                - name: reader
                  image: busybox:1
                  dependsOn:
                    - name: mqtt
                      condition: ready
            """;
        var deployment = Assert.Single(ManifestLoader.ParseDeployments(Yaml, "sensors.yaml"));
        Assert.Equal(["mqtt", "reader"], deployment.Template.Containers!.Select(c => c.Name));
        Assert.Equal(DependencyCondition.Ready, deployment.Template.Containers![1].DependsOn![0].Condition);
        Assert.Equal("wait", Assert.Single(deployment.Template.InitContainers!).Name);
    }
}

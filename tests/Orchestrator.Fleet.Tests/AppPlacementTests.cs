using Orchestrator.Api.Workloads;
using Orchestrator.Fleet.Scheduler;

namespace Orchestrator.Fleet.Tests;

/// <summary>An app is placed as one replica: what it asks of a node is its containers' sum (or its largest init container's, if more).</summary>
public sealed class AppPlacementTests
{
    private static Workload C(string name, string cpu, string memory) => new() { Name = name, Image = "x", Resources = new Resources { Cpu = cpu, Memory = memory } };

    [Fact]
    public void An_apps_requests_are_its_containers_together()
    {
        var app = new Workload { Containers = [C("a", "250m", "64Mi"), C("b", "0.5", "32Mi"), new Workload { Name = "c", Image = "x" }], InitContainers = [C("i", "1", "16Mi")] };
        Assert.Equal((1000L, 96L << 20), Placement.Requests(app));
        app.InitContainers = [C("i", "100m", "16Mi")];
        Assert.Equal((750L, 96L << 20), Placement.Requests(app));
        Assert.Equal((250L, 64L << 20), Placement.Requests(C("alone", "250m", "64Mi")));
    }
}

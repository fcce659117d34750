using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Fleet.Agent;
using Orchestrator.Fleet.Scheduler;

namespace Orchestrator.Fleet.Tests;

/// <summary>The built-in `arch` node label: a mixed-architecture fleet places by `selector: {arch: arm64}`.</summary>
public sealed class ArchLabelTests
{
    [Fact]
    public void Nodes_get_their_architecture_as_a_label_and_a_configured_one_wins()
    {
        var labels = NodeIdentity.WithBuiltInLabels(new Dictionary<string, string> { ["zone"] = "north" }, "arm64");
        Assert.Equal(["arch=arm64", "zone=north"], labels.Select(kv => $"{kv.Key}={kv.Value}"));
        Assert.Equal("custom", NodeIdentity.WithBuiltInLabels(new Dictionary<string, string> { ["arch"] = "custom" }, "arm64")["arch"]);
        Assert.Equal(NodeIdentity.ThisArch, NodeIdentity.WithBuiltInLabels(new Dictionary<string, string>(), NodeIdentity.ThisArch)["arch"]);
        Assert.Contains(NodeIdentity.ThisArch, new[] { "x64", "arm64", "arm" });
    }

    private static NodeEntry Node(string name, string arch) => new()
    {
        Info = new NodeInfo
        {
            Node = name, NodeId = name, Version = "1", Arch = arch, Kernel = "6", Runtime = "native",
            Labels = NodeIdentity.WithBuiltInLabels(new Dictionary<string, string>(), arch),
            Status = new NodeStatus { CpuMilliAllocatable = 2000, MemoryAllocatableBytes = 1L << 30 },
        },
        State = NodeCondition.Ready,
    };

    [Fact]
    public void A_deployment_selecting_arm64_lands_only_on_the_arm64_node()
    {
        var deployment = new Deployment { Name = "armonly", Replicas = 2, Selector = new() { ["arch"] = "arm64" }, Template = new Workload { Image = "busybox" } };
        var result = Placement.Place(deployment, [Node("x64-1", "x64"), Node("edge", "arm64"), Node("x64-2", "x64")], new Dictionary<string, string>(), new Dictionary<string, int>());
        Assert.Equal(2, result.Replicas.Count);
        Assert.All(result.Replicas.Values, node => Assert.Equal("edge", node));
    }
}

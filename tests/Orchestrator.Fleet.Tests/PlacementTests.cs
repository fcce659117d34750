using Orchestrator.Fleet.Protocol;
using Orchestrator.Fleet.Scheduler;
using Orchestrator.Node.Reconcile;
using Orchestrator.Node.Workloads;

namespace Orchestrator.Fleet.Tests;

public sealed class PlacementTests
{
    private static NodeEntry Node(string name, string state = "ready", string zone = "a", int cpuAllocatable = 2000, int cpuRequested = 0) => new()
    {
        Info = new NodeInfo
        {
            Node = name, NodeId = name, Version = "1", Arch = "x64", Kernel = "6", Runtime = "native",
            Labels = new Dictionary<string, string> { ["zone"] = zone },
            Status = new NodeStatus { CpuMilliAllocatable = cpuAllocatable, CpuMilliRequested = cpuRequested, MemoryAllocatableBytes = 1L << 30 },
        },
        State = state,
    };

    private static Deployment Web(int replicas, Dictionary<string, string>? selector = null, string? cpu = null) => new()
    {
        Name = "web", Replicas = replicas, Selector = selector,
        Template = new Workload { Image = "busybox", Resources = cpu is null ? null : new Resources { Cpu = cpu } },
    };

    private static readonly Dictionary<string, string> s_none = [];
    private static readonly Dictionary<string, int> s_noLoad = [];

    [Fact]
    public void Replicas_spread_over_the_ready_nodes()
    {
        var result = Placement.Place(Web(4), [Node("a"), Node("b"), Node("c", state: "unreachable")], s_none, s_noLoad);
        Assert.Equal(4, result.Replicas.Count);
        Assert.Equal(2, result.Replicas.Values.Count(n => n == "a"));
        Assert.Equal(2, result.Replicas.Values.Count(n => n == "b"));
        Assert.Empty(result.Unschedulable);
    }

    [Fact]
    public void Replicas_stay_where_they_are_unless_their_node_is_lost()
    {
        var current = new Dictionary<string, string> { ["web-0"] = "b", ["web-1"] = "b", ["web-2"] = "c" };
        var kept = Placement.Place(Web(3), [Node("a"), Node("b"), Node("c", state: "unreachable")], current, s_noLoad);
        Assert.Equal(current, kept.Replicas); // an unreachable node keeps its replica: no reshuffle on a blip
        var moved = Placement.Place(Web(3), [Node("a"), Node("b"), Node("c", state: "lost")], current, s_noLoad);
        Assert.Equal("b", moved.Replicas["web-0"]);
        Assert.Equal("a", moved.Replicas["web-2"]);
    }

    [Fact]
    public void Selectors_and_room_filter_nodes_and_the_reasons_are_given()
    {
        var result = Placement.Place(Web(2, new() { ["zone"] = "b" }, cpu: "500m"), [Node("a", zone: "a"), Node("b", zone: "b", cpuAllocatable: 1000, cpuRequested: 400)], s_none, s_noLoad);
        Assert.Equal(["web-0"], result.Replicas.Keys);
        Assert.Equal("b", result.Replicas["web-0"]);
        var reason = Assert.Single(result.Unschedulable);
        Assert.StartsWith("web-1: ", reason, StringComparison.Ordinal);
        Assert.Contains("node a: lacks label zone=b", reason, StringComparison.Ordinal);
        Assert.Contains("node b: not enough room (needs 500m CPU", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Scaling_down_keeps_the_lowest_replicas_and_an_empty_fleet_says_so()
    {
        var current = new Dictionary<string, string> { ["web-0"] = "a", ["web-1"] = "b", ["web-2"] = "a" };
        Assert.Equal(["web-0", "web-1"], Placement.Place(Web(2), [Node("a"), Node("b")], current, s_noLoad).Replicas.Keys.Order(StringComparer.Ordinal));
        Assert.Equal("web-0: no node has joined the fleet", Assert.Single(Placement.Place(Web(1), [], s_none, s_noLoad).Unschedulable));
    }
}

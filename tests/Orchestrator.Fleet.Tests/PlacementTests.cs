using Orchestrator.Api;
using Orchestrator.Fleet.Scheduler;
using Orchestrator.Node.Reconcile;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Fleet.Tests;

public sealed class PlacementTests
{
    private static NodeEntry Node(string name, NodeCondition state = NodeCondition.Ready, string zone = "a", int cpuAllocatable = 2000, int cpuRequested = 0, bool cordoned = false, bool draining = false) => new()
    {
        Cordoned = cordoned,
        Draining = draining,
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
        var result = Placement.Place(Web(4), [Node("a"), Node("b"), Node("c", state: NodeCondition.Unreachable)], s_none, s_noLoad);
        Assert.Equal(4, result.Replicas.Count);
        Assert.Equal(2, result.Replicas.Values.Count(n => n == "a"));
        Assert.Equal(2, result.Replicas.Values.Count(n => n == "b"));
        Assert.Empty(result.Unschedulable);
    }

    [Fact]
    public void Replicas_stay_where_they_are_unless_their_node_is_lost()
    {
        var current = new Dictionary<string, string> { ["web-0"] = "b", ["web-1"] = "b", ["web-2"] = "c" };
        var kept = Placement.Place(Web(3), [Node("a"), Node("b"), Node("c", state: NodeCondition.Unreachable)], current, s_noLoad);
        Assert.Equal(current, kept.Replicas); // an unreachable node keeps its replica: no reshuffle on a blip
        var moved = Placement.Place(Web(3), [Node("a"), Node("b"), Node("c", state: NodeCondition.Lost)], current, s_noLoad);
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

    [Fact]
    public void Cordoned_nodes_get_no_new_replicas_and_drained_ones_lose_theirs()
    {
        var current = new Dictionary<string, string> { ["web-0"] = "a", ["web-1"] = "b" };
        var cordoned = Placement.Place(Web(3), [Node("a", cordoned: true), Node("b"), Node("c")], current, s_noLoad);
        Assert.Equal("a", cordoned.Replicas["web-0"]); // cordon keeps what runs
        Assert.Equal("c", cordoned.Replicas["web-2"]);
        var drained = Placement.Place(Web(2), [Node("a", draining: true), Node("b"), Node("c")], current, s_noLoad);
        Assert.Equal("c", drained.Replicas["web-0"]);
        Assert.DoesNotContain("a", drained.Replicas.Values);
    }

    [Fact]
    public void Spread_by_zone_fills_every_zone_before_any_gets_a_second()
    {
        var deployment = Web(3);
        deployment.SpreadBy = "zone";
        var result = Placement.Place(deployment, [Node("a1", zone: "a"), Node("a2", zone: "a"), Node("b1", zone: "b")], s_none, s_noLoad);
        Assert.Equal(["a", "b"], result.Replicas.Values.Take(2).Select(n => n[..1]).Order(StringComparer.Ordinal));
        Assert.Equal(2, result.Replicas.Values.Count(n => n.StartsWith('a')));
    }

    [Fact]
    public void Anti_affinity_allows_one_replica_per_node_and_binpack_fills_the_fullest()
    {
        var lonely = Web(3);
        lonely.AntiAffinity = true;
        var result = Placement.Place(lonely, [Node("a"), Node("b")], s_none, s_noLoad);
        Assert.Equal(2, result.Replicas.Values.Distinct().Count());
        Assert.Contains("already runs a replica (antiAffinity)", Assert.Single(result.Unschedulable), StringComparison.Ordinal);

        var packed = Web(2, cpu: "100m");
        packed.Strategy = "binpack";
        var binpack = Placement.Place(packed, [Node("empty"), Node("busy", cpuRequested: 1500)], s_none, s_noLoad);
        Assert.All(binpack.Replicas.Values, n => Assert.Equal("busy", n));
    }
}

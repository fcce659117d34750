using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Fleet.Scheduler;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Fleet.Tests;

/// <summary>
/// A small simulated fleet for the scheduler's arithmetic (<see cref="FleetScheduler.Plan"/>), pass
/// by pass: nodes report every assigned replica running, ready unless told otherwise; a node taken
/// offline keeps reporting what it ran when it left (its last heartbeat) until it comes back.
/// </summary>
internal sealed class PlanFleet
{
    public Dictionary<string, byte[]> Assigned { get; private set; } = new(StringComparer.Ordinal);
    public Dictionary<string, DeploymentStatus> Statuses { get; } = new(StringComparer.Ordinal);
    /// <summary>Commands ("sleep v2") that never get ready.</summary>
    public HashSet<string> NeverReady { get; } = new(StringComparer.Ordinal);
    /// <summary>Nodes on which nothing gets ready (a dead device).</summary>
    public HashSet<string> BrokenNodes { get; } = new(StringComparer.Ordinal);
    public List<NodeEntry> Nodes { get; } = [];
    public HashSet<(string Node, string Replica, string Version)> EverRan { get; } = [];
    private readonly Dictionary<string, (NodeCondition State, List<ContainerBrief> Last)> _offline = new(StringComparer.Ordinal);

    public PlanFleet(params (string Name, string Ring)[] nodes)
    {
        foreach (var (name, ring) in nodes)
        {
            Add(name, new Dictionary<string, string> { ["ring"] = ring });
        }
    }

    public void Add(string name, Dictionary<string, string> labels) => Nodes.Add(new NodeEntry
    {
        State = NodeCondition.Ready,
        Info = new NodeInfo
        {
            Node = name, NodeId = name, Version = "1", Arch = "x64", Kernel = "6", Runtime = "native", Labels = labels,
            Status = new NodeStatus { CpuMilliAllocatable = 4000, MemoryAllocatableBytes = 4L << 30 },
        },
    });

    /// <summary>Changes a node's entry (labels, cordon, drain) in place.</summary>
    public void Set(string name, Func<NodeEntry, NodeEntry> change)
    {
        var i = Nodes.FindIndex(n => n.Info.Node == name);
        Nodes[i] = change(Nodes[i]);
    }

    /// <summary>The node stops reporting: unreachable (or lost), its last report frozen.</summary>
    public void Offline(string name, NodeCondition state = NodeCondition.Unreachable)
        => _offline[name] = (state, Report(Nodes.Single(n => n.Info.Node == name)));

    public void Online(string name) => _offline.Remove(name);

    /// <summary>One pass at <paramref name="now"/>, then the nodes run what they were given and report.</summary>
    public DeploymentStatus Pass(Deployment deployment, DateTimeOffset now) => PassAll([deployment], now)[deployment.Name];

    public Dictionary<string, DeploymentStatus> PassAll(IReadOnlyList<Deployment> deployments, DateTimeOffset now)
    {
        Assigned = FleetScheduler.Plan(deployments, ReportedNodes(), Assigned, Statuses, now, out var reports);
        foreach (var (name, report) in reports)
        {
            Statuses[name] = report;
        }
        foreach (var (key, value) in Assigned)
        {
            var node = key[..key.IndexOf('.', StringComparison.Ordinal)];
            if (!_offline.ContainsKey(node))
            {
                var a = Assignment.Parse(value);
                EverRan.Add((node, a.Replica, a.Template.Command![1]));
            }
        }
        return reports;
    }

    private List<ContainerBrief> Report(NodeEntry n)
        => [.. Assigned.Where(a => a.Key.StartsWith(n.Info.Node + ".", StringComparison.Ordinal)).Select(a =>
        {
            var workload = Assignment.Parse(a.Value).ToWorkload();
            return new ContainerBrief
            {
                Name = workload.Name, State = ContainerState.Running, SpecHash = Supervisor.SpecHash(workload),
                Ready = !NeverReady.Contains(workload.Command![1]) && !BrokenNodes.Contains(n.Info.Node),
            };
        })];

    private List<NodeEntry> ReportedNodes() => [.. Nodes.Select(n => _offline.TryGetValue(n.Info.Node, out var away)
        ? n with { State = away.State, Info = n.Info with { Containers = away.Last } }
        : n with { Info = n.Info with { Containers = Report(n) } })];

    public IEnumerable<string> Versions => Assigned.Values.Select(v => Assignment.Parse(v).Template.Command![1]);

    /// <summary>The version each node is assigned for a deployment.</summary>
    public Dictionary<string, string> VersionByNode(string deployment) => Assigned
        .Where(a => a.Key.Contains("." + deployment + "-", StringComparison.Ordinal))
        .ToDictionary(a => a.Key[..a.Key.IndexOf('.', StringComparison.Ordinal)], a => Assignment.Parse(a.Value).Template.Command![1], StringComparer.Ordinal);
}

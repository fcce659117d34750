using Orchestrator.Fleet.Protocol;
using Orchestrator.Node.Workloads;

namespace Orchestrator.Fleet.Scheduler;

/// <summary>Where each replica of a deployment should run, and why some cannot run anywhere.</summary>
public sealed record PlacementResult(IReadOnlyDictionary<string, string> Replicas, IReadOnlyList<string> Unschedulable);

/// <summary>
/// The placement arithmetic, with no I/O (unit-tested): filter the nodes (ready, labels match
/// the selector, architecture, room for the replica's requests), keep every replica where it
/// is while its node stays eligible (no reshuffling), and put new ones on the node with the
/// fewest replicas of the deployment, then the fewest containers (spread). A rollout's surge
/// replicas are placed like the others, with the indexes after the last replica.
/// </summary>
public static class Placement
{
    public static PlacementResult Place(
        Deployment deployment,
        IReadOnlyList<NodeEntry> nodes,
        IReadOnlyDictionary<string, string> current,
        IReadOnlyDictionary<string, int> assignedPerNode,
        int surge = 0)
    {
        var (cpu, memory) = Requests(deployment.Template);
        var load = new Dictionary<string, int>(assignedPerNode, StringComparer.Ordinal);
        var free = nodes.ToDictionary(n => n.Info.Node, n => (
            Cpu: (n.Info.Status?.CpuMilliAllocatable ?? 0) - (long)(n.Info.Status?.CpuMilliRequested ?? 0),
            Memory: (n.Info.Status?.MemoryAllocatableBytes ?? 0) - (n.Info.Status?.MemoryRequestedBytes ?? 0)), StringComparer.Ordinal);
        var reasons = new List<string>();
        var unschedulable = new List<string>();
        var perNode = new Dictionary<string, int>(StringComparer.Ordinal);
        bool Eligible(NodeEntry node, bool counting)
        {
            if (node.State != "ready")
            {
                return false;
            }
            if (node.Cordoned || node.Draining)
            {
                if (counting)
                {
                    reasons.Add($"node {node.Info.Node}: cordoned");
                }
                return false;
            }
            if (deployment.AntiAffinity && perNode.GetValueOrDefault(node.Info.Node) > 0)
            {
                if (counting)
                {
                    reasons.Add($"node {node.Info.Node}: already runs a replica (antiAffinity)");
                }
                return false;
            }
            foreach (var (key, value) in deployment.Selector ?? [])
            {
                if (!node.Info.Labels.TryGetValue(key, out var has) || has != value)
                {
                    if (counting)
                    {
                        reasons.Add($"node {node.Info.Node}: lacks label {key}={value}");
                    }
                    return false;
                }
            }
            var (freeCpu, freeMemory) = free[node.Info.Node];
            if (node.Info.Status is not null && (cpu > freeCpu || memory > freeMemory))
            {
                if (counting)
                {
                    reasons.Add($"node {node.Info.Node}: not enough room (needs {cpu}m CPU, {memory >> 20} MiB; has {freeCpu}m, {freeMemory >> 20} MiB)");
                }
                return false;
            }
            return true;
        }

        var byName = nodes.ToDictionary(n => n.Info.Node, StringComparer.Ordinal);
        var placed = new Dictionary<string, string>(StringComparer.Ordinal);
        var perDomain = new Dictionary<string, int>(StringComparer.Ordinal);
        string Domain(NodeEntry node) => deployment.SpreadBy is { } key && node.Info.Labels.TryGetValue(key, out var value) ? value : "";
        var wanted = Enumerable.Range(0, deployment.Replicas + surge).Select(i => $"{deployment.Name}-{i}").ToList();
        // 1. Stay put: a replica on a node that is still ready and matching keeps its node.
        foreach (var replica in wanted)
        {
            if (current.TryGetValue(replica, out var node) && byName.TryGetValue(node, out var entry) && entry.State != "lost" && !entry.Draining
                && MatchesSelector(deployment, entry) && !(deployment.AntiAffinity && perNode.GetValueOrDefault(node) > 0))
            {
                placed[replica] = node;
                perNode[node] = perNode.GetValueOrDefault(node) + 1;
                perDomain[Domain(entry)] = perDomain.GetValueOrDefault(Domain(entry)) + 1;
            }
        }
        // 2. New (or displaced) replicas: spread.
        foreach (var replica in wanted.Where(r => !placed.ContainsKey(r)))
        {
            reasons.Clear();
            var candidates = nodes.Where(n => Eligible(n, counting: true)).ToList();
            if (candidates.Count == 0)
            {
                var why = nodes.Count == 0 ? "no node has joined the fleet" : reasons.Count > 0 ? string.Join("; ", reasons.Distinct()) : "no node is ready";
                unschedulable.Add($"{replica}: {why}");
                continue;
            }
            var best = (deployment.Strategy == "binpack"
                    // Bin-packing: the node with the least room left that still fits, so whole nodes stay free.
                    ? candidates.OrderBy(n => free[n.Info.Node].Cpu).ThenBy(n => free[n.Info.Node].Memory)
                    // Spread: the emptiest topology domain (spreadBy), then the node with the fewest
                    // replicas of this deployment, then the fewest containers.
                    : candidates.OrderBy(n => perDomain.GetValueOrDefault(Domain(n))).ThenBy(n => perNode.GetValueOrDefault(n.Info.Node)).ThenBy(n => load.GetValueOrDefault(n.Info.Node)))
                .ThenBy(n => n.Info.Node, StringComparer.Ordinal)
                .First();
            placed[replica] = best.Info.Node;
            perNode[best.Info.Node] = perNode.GetValueOrDefault(best.Info.Node) + 1;
            perDomain[Domain(best)] = perDomain.GetValueOrDefault(Domain(best)) + 1;
            load[best.Info.Node] = load.GetValueOrDefault(best.Info.Node) + 1;
            var (c, m) = free[best.Info.Node];
            free[best.Info.Node] = (c - cpu, m - memory);
        }
        return new PlacementResult(placed, unschedulable);
    }

    private static bool MatchesSelector(Deployment deployment, NodeEntry node)
        => (deployment.Selector ?? []).All(kv => node.Info.Labels.TryGetValue(kv.Key, out var v) && v == kv.Value);

    /// <summary>A replica's requests: its resources (no requests means it fits anywhere).</summary>
    public static (long CpuMilli, long MemoryBytes) Requests(Workload workload)
    {
        long cpu = 0, memory = 0;
        if (workload.Resources?.Cpu is { } c && Quantities.TryParseMilliCpu(c, out var milli))
        {
            cpu = milli;
        }
        if (workload.Resources?.Memory is { } m && Quantities.TryParseBytes(m, out var bytes))
        {
            memory = bytes;
        }
        return (cpu, memory);
    }
}

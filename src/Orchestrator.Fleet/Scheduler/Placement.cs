using Orchestrator.Api;
using Orchestrator.Api.Workloads;

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
            if (node.State != NodeCondition.Ready)
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
        var binpack = deployment.Strategy == "binpack";
        var placed = new Dictionary<string, string>(StringComparer.Ordinal);
        var perDomain = new Dictionary<string, int>(StringComparer.Ordinal);
        string Domain(NodeEntry node) => deployment.SpreadBy is { } key && node.Info.Labels.TryGetValue(key, out var value) ? value : "";
        var wanted = Enumerable.Range(0, deployment.Replicas + surge).Select(i => $"{deployment.Name}-{i}").ToList();
        // 1. Stay put: a replica on a node that is still ready and matching keeps its node.
        foreach (var replica in wanted)
        {
            if (current.TryGetValue(replica, out var node) && byName.TryGetValue(node, out var entry) && entry.State != NodeCondition.Lost && !entry.Draining
                && entry.MatchesSelector(deployment) && !(deployment.AntiAffinity && perNode.GetValueOrDefault(node) > 0))
            {
                placed[replica] = node;
                perNode[node] = perNode.GetValueOrDefault(node) + 1;
                perDomain[Domain(entry)] = perDomain.GetValueOrDefault(Domain(entry)) + 1;
            }
        }
        // 2. New (or displaced) replicas. The per-node facts go into arrays first, so that the
        // scan for each replica is array reads (10,000 replicas × 1,000 nodes is ten million
        // node looks: dictionary lookups by name made that half a second).
        var count = nodes.Count;
        var staticOk = new bool[count];
        var hasRoomCheck = new bool[count];
        var freeCpu = new long[count];
        var freeMemory = new long[count];
        var mine = new int[count];
        var others = new int[count];
        var domainOf = new int[count];
        var domainNames = new List<string>();
        var domainIndex = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < count; i++)
        {
            var node = nodes[i];
            var name = node.Info.Node;
            staticOk[i] = node.Accepts(deployment);
            hasRoomCheck[i] = node.Info.Status is not null;
            (freeCpu[i], freeMemory[i]) = free[name];
            mine[i] = perNode.GetValueOrDefault(name);
            others[i] = load.GetValueOrDefault(name);
            var domain = Domain(node);
            if (!domainIndex.TryGetValue(domain, out var d))
            {
                domainIndex[domain] = d = domainNames.Count;
                domainNames.Add(domain);
            }
            domainOf[i] = d;
        }
        var domainCount = domainNames.Select(name => perDomain.GetValueOrDefault(name)).ToArray();
        foreach (var replica in wanted.Where(r => !placed.ContainsKey(r)))
        {
            var best = -1;
            for (var i = 0; i < count; i++)
            {
                if (!staticOk[i] || (deployment.AntiAffinity && mine[i] > 0) || (hasRoomCheck[i] && (cpu > freeCpu[i] || memory > freeMemory[i])))
                {
                    continue;
                }
                if (best < 0 || Better(i, best))
                {
                    best = i;
                }
            }
            if (best < 0)
            {
                // Only now, for the message: why each node was passed over.
                reasons.Clear();
                foreach (var node in nodes)
                {
                    Eligible(node, counting: true);
                }
                var why = nodes.Count == 0 ? "no node has joined the fleet" : reasons.Count > 0 ? string.Join("; ", reasons.Distinct()) : "no node is ready";
                unschedulable.Add($"{replica}: {why}");
                continue;
            }
            var chosen = nodes[best].Info.Node;
            placed[replica] = chosen;
            mine[best]++;
            others[best]++;
            domainCount[domainOf[best]]++;
            freeCpu[best] -= cpu;
            freeMemory[best] -= memory;
            // The dictionaries too: the reasons above read them.
            perNode[chosen] = mine[best];
            load[chosen] = others[best];
            free[chosen] = (freeCpu[best], freeMemory[best]);
        }

        bool Better(int a, int b)
        {
            int c;
            if (binpack)
            {
                // Bin-packing: the node with the least room left that still fits, so whole nodes stay free.
                c = freeCpu[a].CompareTo(freeCpu[b]);
                if (c == 0)
                {
                    c = freeMemory[a].CompareTo(freeMemory[b]);
                }
            }
            else
            {
                // Spread: the emptiest topology domain (spreadBy), then the node with the fewest
                // replicas of this deployment, then the fewest containers.
                c = domainCount[domainOf[a]].CompareTo(domainCount[domainOf[b]]);
                if (c == 0)
                {
                    c = mine[a].CompareTo(mine[b]);
                }
                if (c == 0)
                {
                    c = others[a].CompareTo(others[b]);
                }
            }
            return c < 0 || (c == 0 && string.CompareOrdinal(nodes[a].Info.Node, nodes[b].Info.Node) < 0);
        }
        return new PlacementResult(placed, unschedulable);
    }

    /// <summary>
    /// A global deployment: one copy per node whose labels match. A copy stays on its node while
    /// the node is in the fleet, matches and is neither draining nor revoked, whether it is ready,
    /// unreachable or lost (a device's copy is never moved to another device; one that was offline
    /// finds it on its return). Every ready, uncordoned matching node without one gets one, named
    /// with the lowest index free, if its requests fit; one that does not fit is unschedulable.
    /// </summary>
    public static PlacementResult PlaceGlobal(Deployment deployment, IReadOnlyList<NodeEntry> nodes, IReadOnlyDictionary<string, string> current)
    {
        var (cpu, memory) = Requests(deployment.Template);
        var byName = new Dictionary<string, NodeEntry>(nodes.Count, StringComparer.Ordinal);
        foreach (var node in nodes)
        {
            byName[node.Info.Node] = node;
        }
        var placed = new Dictionary<string, string>(StringComparer.Ordinal);
        var covered = new HashSet<string>(StringComparer.Ordinal);
        var used = new HashSet<int>();
        var prefix = deployment.Name.Length + 1;
        foreach (var (replica, node) in current.OrderBy(r => r.Key.Length).ThenBy(r => r.Key, StringComparer.Ordinal))
        {
            if (byName.TryGetValue(node, out var entry) && !entry.Draining && !entry.Revoked && entry.MatchesSelector(deployment) && covered.Add(node)
                && int.TryParse(replica.AsSpan(prefix), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var index))
            {
                placed[replica] = node;
                used.Add(index);
            }
        }
        var unschedulable = new List<string>();
        var next = 0;
        foreach (var node in nodes)
        {
            var name = node.Info.Node;
            if (covered.Contains(name) || !node.Accepts(deployment))
            {
                continue;
            }
            if (node.Info.Status is { } status)
            {
                var freeCpu = status.CpuMilliAllocatable - (long)status.CpuMilliRequested;
                var freeMemory = status.MemoryAllocatableBytes - status.MemoryRequestedBytes;
                if (cpu > freeCpu || memory > freeMemory)
                {
                    unschedulable.Add($"{deployment.Name} on {name}: not enough room (needs {cpu}m CPU, {memory >> 20} MiB; has {freeCpu}m, {freeMemory >> 20} MiB)");
                    continue;
                }
            }
            while (used.Contains(next))
            {
                next++;
            }
            used.Add(next);
            placed[string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{deployment.Name}-{next}")] = name;
            covered.Add(name);
        }
        return new PlacementResult(placed, unschedulable);
    }

    /// <summary>
    /// A replica's requests: its resources (no requests means it fits anywhere); an app's, the sum
    /// of its containers' (its init containers run before them and end, so the largest of those if it is more).
    /// </summary>
    public static (long CpuMilli, long MemoryBytes) Requests(Workload workload)
    {
        if (Apps.IsApp(workload))
        {
            var running = (workload.Containers ?? []).Select(Requests).ToList();
            var init = (workload.InitContainers ?? []).Select(Requests).ToList();
            return (Math.Max(running.Sum(r => r.CpuMilli), init.Select(r => r.CpuMilli).DefaultIfEmpty().Max()),
                Math.Max(running.Sum(r => r.MemoryBytes), init.Select(r => r.MemoryBytes).DefaultIfEmpty().Max()));
        }
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

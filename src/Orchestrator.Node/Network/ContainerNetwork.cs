using Microsoft.Extensions.Logging;
using Orchestrator.Api.Workloads;
using Orchestrator.Node.Reconcile;
using static Orchestrator.Node.Reconcile.SupervisorLog;

namespace Orchestrator.Node.Network;

/// <summary>One bridge container as its neighbours' /etc/hosts see it.</summary>
/// <param name="HostsFile">Its own /etc/hosts (the bundle's file, bind-mounted into it).</param>
/// <param name="App">The app it is a container of (its neighbours in the app also know it by <paramref name="Service"/>), or null.</param>
/// <param name="Service">Its name within its app.</param>
/// <param name="Deployment">The fleet deployment it is a replica of (not for an app's containers): its name names the deployment's ready replicas on the node.</param>
/// <param name="Ready">Running and ready (its readiness probe passed, or it has none).</param>
public readonly record struct HostsEntry(string Name, string Hostname, string Address, bool Running, string HostsFile, string? App = null, string? Service = null,
    string? Deployment = null, bool Ready = false);

/// <summary>A deployment that runs on other nodes only, and the service address its name takes here.</summary>
public readonly record struct RemoteService(string Deployment, string Address);

/// <summary>
/// The containers' side of the node's network, as the supervisor's start and exit steps use it:
/// an address and a veth on the bridge (or loopback only, or the host's), published ports, and
/// /etc/hosts naming the running neighbours. Called on the supervisor's loop only, with what it
/// needs passed in: it keeps no container state of its own (the records hold addresses and ports).
/// </summary>
public sealed class ContainerNetwork
{
    private readonly BridgeNetwork? _bridge;
    private readonly ILogger _logger;

    /// <param name="bridge">The node's bridge; null when bridge networking is off.</param>
    /// <param name="logger">The supervisor's logger (its lines keep their category).</param>
    public ContainerNetwork(BridgeOptions? bridge, ILogger logger)
    {
        _bridge = bridge is null ? null : new BridgeNetwork(bridge);
        _logger = logger;
    }

    /// <summary>The node's bridge; null when bridge networking is off.</summary>
    public BridgeNetwork? Bridge => _bridge;

    /// <summary>
    /// What to do between create and start: bridge (address, veth, ports) or loopback only. The
    /// address is kept in <paramref name="record"/> (the same one across restarts), chosen apart
    /// from <paramref name="addressesInUse"/> the first time.
    /// </summary>
    public Action<int>? Prepare(Workload workload, SupervisedContainerRecord record, IEnumerable<string> addressesInUse)
    {
        switch (workload.Network ?? NetworkMode.Bridge)
        {
            case NetworkMode.Host:
                record.Ip = null;
                return null;
            case NetworkMode.None:
                record.Ip = null;
                return BridgeNetwork.LoopbackOnly;
        }
        if (_bridge is null)
        {
            throw new NetworkException($"workload '{workload.Name}' wants network bridge, which is off on this node (network.bridge: none); use network: host or none, or turn it on");
        }
        var bridge = _bridge;
        var address = record.Ip is { } kept && System.Net.IPAddress.TryParse(kept, out var ip)
            ? ip
            : bridge.Allocate(addressesInUse);
        record.Ip = address.ToString();
        return pid =>
        {
            bridge.Attach(pid, workload.Name, address);
            bridge.Publish(address, workload.Ports ?? [], add: true);
            record.Published = workload.Ports is { Count: > 0 } ports ? [.. ports] : null;
        };
    }

    /// <summary>Withdraws the ports this container's run published (as recorded), and nothing else.</summary>
    public void Unpublish(SupervisedContainerRecord record)
    {
        if (_bridge is not null && record.Ip is { } ip && record.Published is { Count: > 0 } ports)
        {
            try
            {
                _bridge.Publish(System.Net.IPAddress.Parse(ip), ports, add: false);
            }
            catch (NetworkException e)
            {
                LogCleanup(_logger, record.Name, e.Message);
            }
        }
        record.Published = null;
    }

    /// <summary>
    /// A deployment's replicas in an order of this container's own: resolvers connect to the first
    /// address /etc/hosts gives, so each container starting at another replica spreads the clients
    /// over them. Deterministic (FNV-1a of the name): an orchd restart writes the same files.
    /// </summary>
    private static List<(string, string)> Rotated(List<(string, string)> replicas, string container)
    {
        var hash = 2166136261u;
        foreach (var c in container)
        {
            hash = (hash ^ c) * 16777619u;
        }
        var start = (int)(hash % (uint)replicas.Count);
        return [.. replicas.Skip(start), .. replicas.Take(start)];
    }

    /// <summary>
    /// Every bridge container's /etc/hosts names its running neighbours (written in place: it is
    /// bind-mounted); a container of an app also names the app's others by their service names; and
    /// every one names each fleet deployment by the addresses of its ready replicas on the node (as
    /// Swarm names a service; an app's own service names win over a deployment's of the same name),
    /// and a deployment with none here but some on other nodes by its service address in
    /// <paramref name="remote"/>, where the fleet's proxy carries a connection to one of them.
    /// </summary>
    public void UpdateHosts(IReadOnlyList<HostsEntry> onBridge, IReadOnlyList<RemoteService> remote)
    {
        var running = onBridge.Where(c => c.Running).ToList();
        var deployments = running.Where(r => r.Ready && r.Deployment is not null && r.App is null).ToList();
        foreach (var container in onBridge)
        {
            if (!File.Exists(container.HostsFile))
            {
                continue;
            }
            var services = running.Where(r => r.Name != container.Name && container.App is not null && r.App == container.App && r.Service is not null)
                .Select(r => (r.Service!, r.Address)).ToList();
            var neighbours = running.Where(r => r.Name != container.Name).Select(r => (r.Name, r.Address))
                .Concat(services)
                .Concat(deployments.Where(d => d.Name != container.Name && !services.Any(s => s.Item1 == d.Deployment))
                    .GroupBy(d => d.Deployment!, StringComparer.Ordinal)
                    .SelectMany(g => Rotated(g.Select(d => (g.Key, d.Address)).ToList(), container.Name)))
                .Concat(remote.Where(r => !services.Any(s => s.Item1 == r.Deployment) && !deployments.Any(d => d.Deployment == r.Deployment && d.Name != container.Name))
                    .Select(r => (r.Deployment, r.Address)));
            var text = SpecBuilder.Hosts(container.Hostname, container.Address, neighbours);
            try
            {
                if (File.ReadAllText(container.HostsFile) != text)
                {
                    using var stream = new FileStream(container.HostsFile, FileMode.Open, FileAccess.Write);
                    stream.SetLength(0);
                    stream.Write(System.Text.Encoding.UTF8.GetBytes(text));
                }
            }
            catch (IOException e)
            {
                LogCleanup(_logger, container.Name, e.Message);
            }
        }
    }
}

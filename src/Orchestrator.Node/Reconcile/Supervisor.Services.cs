using System.Net;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Node.Network;

namespace Orchestrator.Node.Reconcile;

/// <summary>
/// Deployment names across the fleet, the supervisor's part: which replicas here are endpoints
/// (ready replicas of fleet deployments on the bridge, said on every change), the deployments
/// that run only elsewhere and the addresses their names take here (given by the fleet), and the
/// target of a connection another node brings to one of this node's endpoints.
/// </summary>
public sealed partial class Supervisor
{
    private IReadOnlyList<Endpoint> _endpoints = [];

    /// <summary>The node's bridge (where the service proxy listens); null when bridge networking is off.</summary>
    public BridgeNetwork? Bridge => _network.Bridge;

    /// <summary>
    /// Deployments with ready replicas on other nodes only, each with the service address its name
    /// takes in this node's containers (the fleet's service proxy answers there); null outside a fleet.
    /// </summary>
    public Func<IReadOnlyList<RemoteService>>? RemoteServices { get; set; }

    /// <summary>This node's endpoints changed (raised on the supervisor's loop, with the new list).</summary>
    public event Action<IReadOnlyList<Endpoint>>? EndpointsChanged;

    /// <summary>This node's endpoints now: ready fleet replicas on the bridge, sorted.</summary>
    public IReadOnlyList<Endpoint> Endpoints => Volatile.Read(ref _endpoints);

    /// <summary>The fleet's view of remote services changed: every container's /etc/hosts is written again.</summary>
    public Task ServicesChangedAsync() => Post(() =>
    {
        UpdateHosts();
        return true;
    });

    /// <summary>
    /// Where a connection another node brings for <paramref name="name"/> goes: the replica's
    /// address on the bridge, if it is one of this node's endpoints (a ready replica of a fleet
    /// deployment); anything else is refused, whatever runs under that name.
    /// </summary>
    public async Task<IPAddress> EndpointTargetAsync(string name)
    {
        await ViewReadyAsync().ConfigureAwait(false);
        return await Post(() =>
        {
            if (!Endpoints.Any(e => e.Container == name) || !_containers.TryGetValue(name, out var container)
                || container.Record.Ip is not { } ip || !IPAddress.TryParse(ip, out var address))
            {
                throw new NodeApiException(ErrorKind.NotFound, $"'{name}' is not a ready replica of a fleet deployment on this node; connect reaches only those (its name may have moved: the endpoints bucket says where)");
            }
            return address;
        }).ConfigureAwait(false);
    }

    /// <summary>The endpoints among <paramref name="onBridge"/>; raises <see cref="EndpointsChanged"/> when they differ from the last.</summary>
    private void NoteEndpoints(IReadOnlyList<HostsEntry> onBridge)
    {
        var now = onBridge.Where(e => e.Ready && e.Deployment is not null && e.App is null && _fleetOwned.Contains(e.Name))
            .Select(e => new Endpoint(e.Deployment!, e.Name))
            .OrderBy(e => e.Deployment, StringComparer.Ordinal).ThenBy(e => e.Container, StringComparer.Ordinal)
            .ToList();
        if (now.SequenceEqual(_endpoints))
        {
            return;
        }
        Volatile.Write(ref _endpoints, now);
        EndpointsChanged?.Invoke(now);
    }
}

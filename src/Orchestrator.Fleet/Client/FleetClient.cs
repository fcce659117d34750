using System.Text.Json;
using NATS.Client.Core;
using Orchestrator.Fleet.Protocol;

namespace Orchestrator.Fleet.Client;

/// <summary>The operator's side of the protocol: what orchctl (and tests) ask the fleet.</summary>
public sealed class FleetClient(INatsConnection connection)
{
    /// <summary>
    /// Asks every node to describe itself and collects the answers until none has arrived for
    /// <paramref name="quiet"/> (or <paramref name="window"/> has passed). Sorted by node name.
    /// </summary>
    public async Task<IReadOnlyList<NodeInfo>> DiscoverNodesAsync(TimeSpan window, TimeSpan quiet, CancellationToken cancellationToken = default)
    {
        var nodes = new List<NodeInfo>();
        var opts = new NatsSubOpts { Timeout = window, IdleTimeout = quiet, StartUpTimeout = window };
        await foreach (var msg in connection.RequestManyAsync<byte[], byte[]>(Subjects.FleetInfo, [], replyOpts: opts, cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            if (msg.Data is { Length: > 0 } data && TryParse(data, out var info))
            {
                nodes.Add(info);
            }
        }
        return nodes.OrderBy(n => n.Node, StringComparer.Ordinal).ToArray();
    }

    /// <summary>One node's description; null when no node of that name answers within the timeout.</summary>
    public async Task<NodeInfo?> GetNodeInfoAsync(string node, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        try
        {
            var reply = await connection.RequestAsync<byte[], byte[]>(Subjects.NodeInfo(node), [],
                replyOpts: new NatsSubOpts { Timeout = timeout }, cancellationToken: cancellationToken).ConfigureAwait(false);
            return reply.Data is { } data && TryParse(data, out var info) ? info : null;
        }
        catch (NatsNoRespondersException)
        {
            return null;
        }
        catch (NatsNoReplyException)
        {
            return null;
        }
    }

    private static bool TryParse(byte[] data, out NodeInfo info)
    {
        try
        {
            info = JsonSerializer.Deserialize(data, FleetJsonContext.Default.NodeInfo)!;
            return info is not null;
        }
        catch (JsonException)
        {
            info = null!;
            return false;
        }
    }
}

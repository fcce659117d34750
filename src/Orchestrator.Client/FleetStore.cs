using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;

namespace Orchestrator.Client;

/// <summary>
/// The fleet's JetStream buckets and event stream, opened (and made when missing) with the fleet's
/// limits: shared by the node agent, the scheduler and the operator's client.
/// </summary>
public static class FleetStore
{
    public static async Task<INatsKVStore> OpenAsync(INatsKVContext kv, string bucket, int history, CancellationToken cancellationToken)
    {
        try
        {
            return await kv.GetStoreAsync(bucket, cancellationToken).ConfigureAwait(false);
        }
        catch (NatsKVException)
        {
        }
        catch (NatsJSApiException e) when (e.Error.Code == 404)
        {
        }
        // Missing: made with the fleet's limits. A bucket that exists is used as it is, even
        // with other limits (made before them, or by an operator): a worker may not update a
        // stream (a permission violation at every open), an update would also reset what the
        // operator chose (replicas, placement), and a lower max_bytes makes nats-server drop
        // the oldest values to fit, deployments too. Heartbeats always had history 1, so an
        // old bucket does not grow with them either (docs/protocol.md, "Buckets and their limits").
        // Create, never update: a scheduler's NATS user has no STREAM.UPDATE right (an update
        // could shorten max_age and erase the fleet's state: docs/nats-security.md), and two nodes
        // creating it at once both succeed (same config) or the loser finds it on its next open.
        return await kv.CreateStoreAsync(ConfigFor(bucket, history), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The events stream: looked up, and made only when missing (every node may be the first),
    /// so a worker needs no right to change an existing stream's limits.
    /// </summary>
    public static async Task EnsureEventStreamAsync(INatsJSContext js, CancellationToken cancellationToken)
    {
        try
        {
            await js.GetStreamAsync(NodeEvent.Stream, cancellationToken: cancellationToken).ConfigureAwait(false);
            return;
        }
        catch (NatsJSApiException e) when (e.Error.Code == 404)
        {
        }
        await js.CreateStreamAsync(new NATS.Client.JetStream.Models.StreamConfig(NodeEvent.Stream, [NodeEvent.Subjects])
        {
            MaxAge = TimeSpan.FromDays(7),
            MaxBytes = 64L << 20,
            Description = "Orchestrator events",
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// What a bucket is made with when it is missing (docs/protocol.md, "Buckets and their
    /// limits"): file storage, the history the caller asks for (always 1 for the heartbeats:
    /// an old heartbeat is never read), the largest value a writer may put, and the most the
    /// bucket may hold. Every KV bucket discards new: a put that would take the bucket past
    /// <c>MaxBytes</c> is refused (an error the writer logs), never made room for by dropping
    /// the oldest value, which in a bucket of one key per node would be another node's only
    /// one. nats-server 2.9.10 still accepts a put to an existing key at the limit when the
    /// value is no larger than the one it replaces, so a full bucket still takes a heartbeat
    /// that did not grow.
    /// The limits hold thousands of nodes (docs/protocol.md); nats-server reserves their sum
    /// (164 MiB, 228 MiB with the events stream's 64 MiB) out of its <c>max_file_store</c> and
    /// refuses to make a bucket that does not fit. <c>MaxBytes</c> also sets the file store's
    /// block size in 2.9 (measured): 32 KB blocks below about 128 KB, 4 MB up to 32 MiB, 8 MB from
    /// 32 MiB; a history-1 bucket keeps at most about two blocks on disk however much is written.
    /// </summary>
    public static NatsKVConfig ConfigFor(string bucket, int history)
    {
        var (maxValue, maxBytes) = bucket switch
        {
            // A heartbeat: NodeInfo with a line per container (0.9 KB with 3 containers, 1.5 KB
            // with 10): 16 MiB is 10,000 such nodes, and keeps the 4 MB blocks.
            Buckets.Nodes => (256 * Kibi, 16 * Mebi),
            // NodeAssignments: every replica's template and signature for one node.
            Buckets.Assignments => (Mebi, 64 * Mebi),
            // A deployment, ten revisions of each.
            Buckets.Deployments => (256 * Kibi, 64 * Mebi),
            // DeploymentStatus: a replica → node map and a sentence per unplaced replica.
            Buckets.DeploymentStatus => (Mebi, 16 * Mebi),
            Buckets.NodeSettings => (4 * Kibi, 4 * Mebi),
            // NodeEndpoints: ~60 bytes per ready replica on one node (4,000 in 256 KiB).
            Buckets.Endpoints => (256 * Kibi, 16 * Mebi),
            // One key, the lease holder's name, renewed every few seconds: 32 KB blocks.
            Buckets.Leader => (Kibi, 64 * Kibi),
            _ => (Mebi, 64 * Mebi),
        };
        return new NatsKVConfig(bucket)
        {
            History = bucket == Buckets.Nodes ? 1 : Math.Max(1, history),
            MaxValueSize = (int)maxValue,
            MaxBytes = maxBytes,
            Storage = NatsKVStorageType.File,
            Description = "Orchestrator fleet state",
        };
    }

    private const long Kibi = 1024;
    private const long Mebi = 1024 * Kibi;
}

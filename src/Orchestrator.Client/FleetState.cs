using System.Text.Json;
using NATS.Client.JetStream.Models;
using NATS.Client.KeyValueStore;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Client;

/// <summary>
/// A bucket that says itself which keys its stream holds now (put, deleted or purged): the
/// simulator's in-memory one. A real bucket is asked through STREAM.INFO (<see cref="FleetState.ReadAllAsync"/>).
/// </summary>
public interface IStreamKeys
{
    ValueTask<IReadOnlySet<string>> KeysInStreamAsync(CancellationToken cancellationToken);
}

/// <summary>Reads of the fleet's state shared by the scheduler and the operator's client.</summary>
public static class FleetState
{
    /// <summary>
    /// Every live entry of a bucket, read through one watch (one consumer, values included): a
    /// snapshot with each key once. Listing keys and then getting each one is a request per key,
    /// and a key written meanwhile can be listed twice.
    /// </summary>
    /// <remarks>
    /// The read ends when every key the bucket held when it began has been seen, not when the
    /// watch's pending count (<c>Delta</c>) first says 0: with writers busy, nats-server 2.9 says 0
    /// early (a key's last message replaced before the consumer reached it, the new one still to
    /// come), and a scheduler that read three nodes' heartbeats as one moved a live node's replicas
    /// and deleted its key (tests/Orchestrator.Fleet.Tests/ReadAllTests.cs: 1 read in 100 short).
    /// The keys come from the stream's subjects (STREAM.INFO with a subjects filter, a right every
    /// fleet user has); a key whose subject vanished meanwhile (a stream purge) is given up after
    /// a quiet second. The simulator's store lists its keys itself (<see cref="IStreamKeys"/>).
    /// </remarks>
    public static async Task<Dictionary<string, NatsKVEntry<byte[]>>> ReadAllAsync(INatsKVStore bucket, CancellationToken cancellationToken)
    {
        var expected = await KeysNowAsync(bucket, cancellationToken).ConfigureAwait(false);
        for (var attempt = 1; ; attempt++)
        {
            var result = new Dictionary<string, NatsKVEntry<byte[]>>(StringComparer.Ordinal);
            if (expected.Count == 0)
            {
                return result;
            }
            var missing = new HashSet<string>(expected, StringComparer.Ordinal);
            using var quiet = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var options = new NatsKVWatchOpts { OnNoData = _ => ValueTask.FromResult(true) };
            try
            {
                await foreach (var entry in bucket.WatchAsync<byte[]>(">", opts: options, cancellationToken: quiet.Token).ConfigureAwait(false))
                {
                    if (entry.Operation is NatsKVOperation.Del or NatsKVOperation.Purge || entry.Value is not { Length: > 0 })
                    {
                        result.Remove(entry.Key);
                    }
                    else
                    {
                        result[entry.Key] = entry;
                    }
                    missing.Remove(entry.Key);
                    if (missing.Count == 0)
                    {
                        return result;
                    }
                    if (entry.Delta == 0)
                    {
                        quiet.CancelAfter(TimeSpan.FromSeconds(1)); // caught up: what is missing is on its way, or gone
                    }
                }
                return result;
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // Quiet for a second with keys still missing: their subjects may be gone. Read the
                // keys again and start over; a bucket that keeps changing under the read is an error.
                var now = await KeysNowAsync(bucket, cancellationToken).ConfigureAwait(false);
                if (!missing.Overlaps(now))
                {
                    return result;
                }
                if (attempt == 3)
                {
                    throw new NatsKVException($"bucket {bucket.Bucket}: keys {string.Join(", ", missing.Intersect(now).Take(5))} are in the stream but its watch did not deliver them in three reads");
                }
                expected = now;
            }
        }
    }

    /// <summary>The keys (put, deleted or purged) a bucket's stream holds now, from its subjects.</summary>
    private static async Task<HashSet<string>> KeysNowAsync(INatsKVStore bucket, CancellationToken cancellationToken)
    {
        if (bucket is IStreamKeys listing)
        {
            return [.. await listing.KeysInStreamAsync(cancellationToken).ConfigureAwait(false)];
        }
        var stream = await bucket.JetStreamContext.GetStreamAsync($"KV_{bucket.Bucket}", new StreamInfoRequest { SubjectsFilter = ">" }, cancellationToken).ConfigureAwait(false);
        var prefix = $"$KV.{bucket.Bucket}.";
        return (stream.Info.State.Subjects?.Keys ?? []).Where(s => s.StartsWith(prefix, StringComparison.Ordinal))
            .Select(s => s[prefix.Length..]).ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>
    /// Every node with its state judged from its heartbeat's age. With <paramref name="watchedFor"/>
    /// (how long a scheduler has watched heartbeats since it took over or its connection came
    /// back) no node is judged lost before it has been silent for lost_after *while watched*: one
    /// that looks lost is unreachable until then. After an outage of NATS every heartbeat is old,
    /// and a node's heartbeat loop may still be in its reconnect backoff when the settle time
    /// ends; judging by the watched time gives each node a whole lost_after to be heard again
    /// (a fault test saw a scheduler move its own node's replicas 4 s after reconnecting).
    /// </summary>
    /// <param name="self">The node that reads (a scheduler in its pass): alive by the fact of reading, so a stale
    /// heartbeat of its own (its heartbeat loop behind after a reconnect) makes it at worst unreachable, never lost
    /// (a CI fault run saw a scheduler move every replica off itself 12 s after reconnecting).</param>
    public static async Task<IReadOnlyList<NodeEntry>> ReadNodesAsync(INatsKVStore nodes, FleetOptions options, CancellationToken cancellationToken, string? leader = null, INatsKVStore? settings = null, TimeSpan? watchedFor = null, string? self = null)
    {
        var cordon = new Dictionary<string, NodeSettings>(StringComparer.Ordinal);
        if (settings is not null)
        {
            foreach (var (key, entry) in await ReadAllAsync(settings, cancellationToken).ConfigureAwait(false))
            {
                try
                {
                    cordon[key] = JsonSerializer.Deserialize(entry.Value, FleetJsonContext.Default.NodeSettings) ?? new NodeSettings();
                }
                catch (JsonException)
                {
                }
            }
        }
        var result = new Dictionary<string, NodeEntry>(StringComparer.Ordinal);
        foreach (var (_, entry) in await ReadAllAsync(nodes, cancellationToken).ConfigureAwait(false))
        {
            NodeInfo? info;
            try
            {
                info = JsonSerializer.Deserialize(entry.Value, FleetJsonContext.Default.NodeInfo);
            }
            catch (JsonException)
            {
                continue;
            }
            if (info is null)
            {
                continue;
            }
            var age = options.Clock.GetUtcNow() - entry.Created;
            var set = cordon.GetValueOrDefault(info.Node);
            var state = options.StateOf(age);
            result[info.Node] = new NodeEntry
            {
                // A revoked node is lost at once: its credentials are void, it cannot be heard again.
                Info = info, State = set?.Revoked == true ? NodeCondition.Lost
                    : state == NodeCondition.Lost && (watchedFor is { } watched && watched < options.LostAfter || info.Node == self) ? NodeCondition.Unreachable : state,
                HeartbeatAgeSeconds = Math.Max(0, Math.Round(age.TotalSeconds, 1)), Leader = leader == info.Node,
                Cordoned = set?.Cordoned == true, Draining = set?.Draining == true, Revoked = set?.Revoked == true,
            };
        }
        return result.Values.OrderBy(n => n.Info.Node, StringComparer.Ordinal).ToList();
    }

    public static async Task<IReadOnlyList<Deployment>> ReadDeploymentsAsync(INatsKVStore deployments, CancellationToken cancellationToken)
    {
        var result = new List<Deployment>();
        foreach (var (_, entry) in await ReadAllAsync(deployments, cancellationToken).ConfigureAwait(false))
        {
            try
            {
                if (JsonSerializer.Deserialize(entry.Value, WorkloadJsonContext.Default.Deployment) is { } deployment)
                {
                    deployment.Revision = entry.Revision;
                    result.Add(deployment);
                }
            }
            catch (JsonException)
            {
            }
        }
        return result.OrderBy(d => d.Name, StringComparer.Ordinal).ToList();
    }
}

using System.Text.Json;
using NATS.Client.KeyValueStore;
using Orchestrator.Fleet.Agent;
using Orchestrator.Api;

namespace Orchestrator.Fleet.Scheduler;

/// <summary>
/// One node's view of the scheduler lease (key <see cref="Key"/> in the leader bucket): taken when
/// there is none, renewed by compare-and-set while it is this node's, taken over when another
/// holder's revision has not changed for a whole <see cref="FleetOptions.LeaderLease"/> as this
/// node's clock counts it. The rules are in docs/protocol.md ("The scheduler lease").
/// </summary>
public sealed class SchedulerLease(string nodeName, FleetOptions options)
{
    public const string Key = "scheduler";

    private readonly byte[] _me = JsonSerializer.SerializeToUtf8Bytes(nodeName, FleetJsonContext.Default.String);
    private ulong _seenRevision;
    private DateTimeOffset _seenSince;
    private DateTimeOffset? _renewedAt;
    private ulong _heldRevision;

    /// <summary>
    /// The last round made the lease anew (there was none): a first election, or a lease bucket
    /// made again after the server lost its store. A scheduler that held it before must settle again.
    /// </summary>
    public bool TakenAfresh { get; private set; }

    /// <summary>The holder as last read (null: none).</summary>
    public string? Holder { get; private set; }

    /// <summary>
    /// True while this node holds the lease with margin: its last renewal began less than the lease
    /// less two renewal periods ago. Anyone else waits a whole lease from the first time it saw
    /// that renewal, so the holder has stopped scheduling before another may start.
    /// </summary>
    public bool MayScheduleAt(DateTimeOffset now)
        => _renewedAt is { } renewed && now - renewed < options.LeaderLease - 2 * options.LeaseRenewal;

    /// <summary>
    /// True when the lease is still the one this node last wrote (read again before every pass):
    /// a lease bucket made anew (the server lost its store) or taken over meanwhile stops the pass,
    /// rather than two schedulers placing at once until the next renewal.
    /// </summary>
    public async Task<bool> StillHeldAsync(INatsKVStore leader, CancellationToken cancellationToken)
    {
        if (_heldRevision == 0)
        {
            return false;
        }
        var held = _heldRevision;
        var entry = await leader.TryGetEntryAsync<byte[]>(Key, cancellationToken: cancellationToken).ConfigureAwait(false);
        // Not ours now: no pass. The next renewal settles who holds it (this check changes nothing:
        // it runs beside the renewal loop, which may have written a newer revision meanwhile).
        return entry.Success && (entry.Value.Revision == held || entry.Value.Revision == _heldRevision);
    }

    /// <summary>One round: read the lease, then create, renew or take it over. True when this node holds it now.</summary>
    public async Task<bool> TryHoldAsync(INatsKVStore leader, CancellationToken cancellationToken)
    {
        var started = options.Clock.GetUtcNow();
        var entry = await leader.TryGetEntryAsync<byte[]>(Key, cancellationToken: cancellationToken).ConfigureAwait(false);
        bool holding;
        if (!entry.Success || entry.Value.Operation is NatsKVOperation.Del or NatsKVOperation.Purge)
        {
            var written = entry.Success
                ? await leader.TryUpdateAsync(Key, _me, entry.Value.Revision, cancellationToken: cancellationToken).ConfigureAwait(false)
                : await leader.TryCreateAsync(Key, _me, cancellationToken: cancellationToken).ConfigureAwait(false);
            holding = written.Success;
            _heldRevision = holding ? written.Value : 0;
            Holder = holding ? nodeName : null;
            TakenAfresh = holding;
        }
        else
        {
            string? holder;
            try
            {
                holder = entry.Value.Value is { Length: > 0 } v ? JsonSerializer.Deserialize(v, FleetJsonContext.Default.String) : null;
            }
            catch (JsonException)
            {
                holder = null; // not a node's name: anyone may take it over once it has aged
            }
            if (entry.Value.Revision != _seenRevision)
            {
                _seenRevision = entry.Value.Revision;
                _seenSince = started;
            }
            Holder = holder;
            holding = false;
            TakenAfresh = false;
            if (holder == nodeName || started - _seenSince > options.LeaderLease)
            {
                var written = await leader.TryUpdateAsync(Key, _me, entry.Value.Revision, cancellationToken: cancellationToken).ConfigureAwait(false);
                holding = written.Success;
                _heldRevision = holding ? written.Value : 0;
            }
            if (holding)
            {
                Holder = nodeName;
            }
        }
        _renewedAt = holding ? started : null;
        if (!holding)
        {
            _heldRevision = 0;
        }
        return holding;
    }
}

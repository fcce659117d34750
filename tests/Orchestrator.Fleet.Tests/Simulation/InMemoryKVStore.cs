using System.Buffers;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.RegularExpressions;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.JetStream.Models;
using NATS.Client.KeyValueStore;

namespace Orchestrator.Fleet.Tests.Simulation;

// Over 600 lines on purpose: INatsKVStore is a wide interface, and each member behaves as the
// real bucket does, faults included; InMemoryKVStoreTests hold it to that.

/// <summary>
/// A deterministic, in-memory JetStream KV bucket for simulation tests. Every call completes
/// synchronously on the caller's thread (completed ValueTasks; async enumerables that never wait
/// on anything but the caller's own OnNoData), so a scheduling pass run against it is a plain
/// function of the store's contents and the clock.
/// <para>
/// What it models, as NATS.Client.KeyValueStore 3.3.2 with a bucket made by the client (direct
/// get on): one stream sequence per bucket (a put, delete or purge each take the next, from 1),
/// at most <see cref="History"/> messages kept per key, a purge dropping the key's older messages,
/// delete and purge markers that count as the key's last message for compare-and-set. A get of a
/// deleted or purged key fails with NatsKVKeyDeletedException (it is never an entry with Operation
/// Del); a get at a revision is the key's first kept message at or after it. InMemoryKVStoreTests
/// runs the same calls against nats-server and compares what a reader sees.
/// </para>
/// <para>
/// Watches deliver the current values (or, with IncludeHistory, every kept message; with
/// ResumeAtRevision, every kept message from that revision) in revision order with Delta counting
/// down to 0, and then END: there is no live phase. Where the real watch would wait for updates
/// (after its initial values, or when OnNoData returns false), this one completes. UpdatesOnly
/// (which has no initial values) is not supported.
/// </para>
/// <para>
/// Faults: <see cref="Outage"/> (the server is unreachable) and <see cref="Missing"/> (after
/// <see cref="Wipe"/>: the bucket's stream is gone until <see cref="Recreate"/>). Each call then
/// fails at once with the exception the client gives when the stream is gone (see
/// <see cref="Unreachable"/>); no simulated time passes for the client's retries and timeouts.
/// </para>
/// </summary>
public sealed partial class InMemoryKVStore : INatsKVStore, Orchestrator.Client.IStreamKeys
{
    private readonly Lock _gate = new();
    private readonly SimClock _clock;
    // Every kept message, in sequence order; and per key, that key's kept messages in order.
    private readonly SortedDictionary<ulong, Message> _log = [];
    private readonly Dictionary<string, List<Message>> _byKey = new(StringComparer.Ordinal);
    private ulong _lastSequence;

    public InMemoryKVStore(string bucket, int history, SimClock clock)
    {
        ArgumentException.ThrowIfNullOrEmpty(bucket);
        ArgumentNullException.ThrowIfNull(clock);
        Bucket = bucket;
        History = CheckHistory(history);
        _clock = clock;
    }

    public string Bucket { get; }

    /// <summary>At most this many messages kept per key (NatsKVConfig.History, 1..64).</summary>
    public int History { get; private set; }

    /// <summary>The server is unreachable: every call fails as the client does in an outage.</summary>
    public bool Outage { get; set; }

    /// <summary>The bucket's stream is gone (<see cref="Wipe"/>) and not yet made again (<see cref="Recreate"/>).</summary>
    public bool Missing { get; private set; }

    public bool Unavailable => Outage || Missing;

    /// <summary>The stream's last sequence (0 when nothing was ever written since it was made).</summary>
    public ulong LastSequence
    {
        get
        {
            lock (_gate)
            {
                return _lastSequence;
            }
        }
    }

    /// <summary>
    /// nats-server 2.9's pending count under busy writers, modelled: with this set, a watch now and
    /// then says Delta 0 before its last initial value and then delivers the rest anyway (a reader
    /// that stops at the first 0 misses keys; CI's fault run, stop 33). Null: Delta is exact.
    /// </summary>
    public Random? LyingPending { get; set; }

    /// <summary>Keys with a kept message (values and markers): what STREAM.INFO's subjects say of a real bucket.</summary>
    public ValueTask<IReadOnlySet<string>> KeysInStreamAsync(CancellationToken cancellationToken)
    {
        if (Unreachable(Call.Watch) is { } fault)
        {
            throw fault;
        }
        lock (_gate)
        {
            return ValueTask.FromResult<IReadOnlySet<string>>(_byKey.Where(kv => kv.Value.Count > 0).Select(kv => kv.Key).ToHashSet(StringComparer.Ordinal));
        }
    }

    /// <summary>Not modelled: the simulator has no JetStream context.</summary>
    public INatsJSContext JetStreamContext => throw new NotSupportedException("InMemoryKVStore has no JetStream context");

    /// <summary>How many times the bucket was wiped (its sequence starts again from 0 each time).</summary>
    public int Wipes { get; private set; }

    /// <summary>All keys, history and the sequence gone; the bucket is missing until <see cref="Recreate"/>.</summary>
    public void Wipe()
    {
        lock (_gate)
        {
            Wipes++;
            _log.Clear();
            _byKey.Clear();
            _lastSequence = 0;
            Missing = true;
        }
    }

    /// <summary>The bucket made again (empty, sequence from 1), optionally with another history.</summary>
    public void Recreate(int? history = null)
    {
        lock (_gate)
        {
            if (history is { } h)
            {
                History = CheckHistory(h);
            }
            Missing = false;
        }
    }

    /// <summary>A changed history limit, applied to what is kept now (as a stream update of MaxMsgsPerSubject does).</summary>
    internal void SetHistory(int history)
    {
        lock (_gate)
        {
            History = CheckHistory(history);
            foreach (var (_, kept) in _byKey)
            {
                Trim(kept);
            }
        }
    }

    // ---- writes ----

    public ValueTask<ulong> PutAsync<T>(string key, T value, INatsSerialize<T>? serializer = default, CancellationToken cancellationToken = default)
        => Throwing(TryPut(key, value, serializer, cancellationToken));

    public ValueTask<NatsResult<ulong>> TryPutAsync<T>(string key, T value, INatsSerialize<T>? serializer = default, CancellationToken cancellationToken = default)
        => Result(TryPut(key, value, serializer, cancellationToken));

    public ValueTask<ulong> CreateAsync<T>(string key, T value, INatsSerialize<T>? serializer = default, CancellationToken cancellationToken = default)
        => Throwing(TryCreate(key, value, serializer, cancellationToken));

    public ValueTask<ulong> CreateAsync<T>(string key, T value, TimeSpan ttl, INatsSerialize<T>? serializer = default, CancellationToken cancellationToken = default)
        => ttl > TimeSpan.Zero ? ValueTask.FromException<ulong>(s_noTtl) : CreateAsync(key, value, serializer, cancellationToken);

    public ValueTask<NatsResult<ulong>> TryCreateAsync<T>(string key, T value, INatsSerialize<T>? serializer = default, CancellationToken cancellationToken = default)
        => Result(TryCreate(key, value, serializer, cancellationToken));

    public ValueTask<NatsResult<ulong>> TryCreateAsync<T>(string key, T value, TimeSpan ttl, INatsSerialize<T>? serializer = default, CancellationToken cancellationToken = default)
        => ttl > TimeSpan.Zero ? ValueTask.FromResult<NatsResult<ulong>>(s_noTtl) : TryCreateAsync(key, value, serializer, cancellationToken);

    public ValueTask<ulong> UpdateAsync<T>(string key, T value, ulong revision, INatsSerialize<T>? serializer = default, CancellationToken cancellationToken = default)
        => Throwing(TryUpdate(key, value, revision, serializer, cancellationToken));

    public ValueTask<NatsResult<ulong>> TryUpdateAsync<T>(string key, T value, ulong revision, INatsSerialize<T>? serializer = default, CancellationToken cancellationToken = default)
        => Result(TryUpdate(key, value, revision, serializer, cancellationToken));

    public ValueTask DeleteAsync(string key, NatsKVDeleteOpts? opts = default, CancellationToken cancellationToken = default)
        => Throwing(TryDelete(key, opts, cancellationToken));

    public ValueTask<NatsResult> TryDeleteAsync(string key, NatsKVDeleteOpts? opts = default, CancellationToken cancellationToken = default)
        => Result(TryDelete(key, opts, cancellationToken));

    public ValueTask PurgeAsync(string key, NatsKVDeleteOpts? opts = default, CancellationToken cancellationToken = default)
        => DeleteAsync(key, (opts ?? new NatsKVDeleteOpts()) with { Purge = true }, cancellationToken);

    public ValueTask PurgeAsync(string key, TimeSpan ttl, NatsKVDeleteOpts? opts = default, CancellationToken cancellationToken = default)
        => ttl > TimeSpan.Zero ? ValueTask.FromException(s_noTtl) : PurgeAsync(key, opts, cancellationToken);

    public ValueTask<NatsResult> TryPurgeAsync(string key, NatsKVDeleteOpts? opts = default, CancellationToken cancellationToken = default)
        => TryDeleteAsync(key, (opts ?? new NatsKVDeleteOpts()) with { Purge = true }, cancellationToken);

    public ValueTask<NatsResult> TryPurgeAsync(string key, TimeSpan ttl, NatsKVDeleteOpts? opts = default, CancellationToken cancellationToken = default)
        => ttl > TimeSpan.Zero ? ValueTask.FromResult<NatsResult>(s_noTtl) : TryPurgeAsync(key, opts, cancellationToken);

    /// <summary>
    /// Removes delete and purge markers (and what is kept behind them); with a positive
    /// DeleteMarkersThreshold, markers younger than it (by the clock) are kept alone.
    /// </summary>
    public ValueTask PurgeDeletesAsync(NatsKVPurgeOpts? opts = default, CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }
        if (Unreachable(Call.Read) is { } fault)
        {
            return ValueTask.FromException(fault);
        }
        opts ??= NatsKVPurgeOpts.Default;
        var threshold = opts.DeleteMarkersThreshold;
        var limit = _clock.GetUtcNow() - threshold;
        lock (_gate)
        {
            foreach (var (key, kept) in _byKey.ToList())
            {
                var last = kept[^1];
                if (last.Operation == NatsKVOperation.Put)
                {
                    continue;
                }
                var keepMarker = threshold > TimeSpan.Zero && last.Created > limit;
                foreach (var message in kept.Where(m => !keepMarker || m != last))
                {
                    _log.Remove(message.Sequence);
                }
                if (keepMarker)
                {
                    kept.RemoveAll(m => m != last);
                }
                else
                {
                    _byKey.Remove(key);
                }
            }
        }
        return ValueTask.CompletedTask;
    }

    // ---- reads ----

    public ValueTask<NatsKVEntry<T>> GetEntryAsync<T>(string key, ulong revision = default, INatsDeserialize<T>? serializer = default, CancellationToken cancellationToken = default)
        => Throwing(TryGetEntry(key, revision, serializer, cancellationToken));

    public ValueTask<NatsResult<NatsKVEntry<T>>> TryGetEntryAsync<T>(string key, ulong revision = default, INatsDeserialize<T>? serializer = default, CancellationToken cancellationToken = default)
    {
        var outcome = TryGetEntry(key, revision, serializer, cancellationToken);
        // A read that cannot reach the stream throws, as the client's direct get request does.
        return outcome.Thrown is { } thrown ? ValueTask.FromException<NatsResult<NatsKVEntry<T>>>(thrown) : Result(outcome);
    }

    public IAsyncEnumerable<NatsKVEntry<T>> WatchAsync<T>(string key, INatsDeserialize<T>? serializer = default, NatsKVWatchOpts? opts = default, CancellationToken cancellationToken = default)
        => WatchAsync([key], serializer, opts, cancellationToken);

    public IAsyncEnumerable<NatsKVEntry<T>> WatchAsync<T>(INatsDeserialize<T>? serializer = default, NatsKVWatchOpts? opts = default, CancellationToken cancellationToken = default)
        => WatchAsync([">"], serializer, opts, cancellationToken);

    public async IAsyncEnumerable<NatsKVEntry<T>> WatchAsync<T>(IEnumerable<string> keys, INatsDeserialize<T>? serializer = default, NatsKVWatchOpts? opts = default,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (Unreachable(Call.Watch) is { } fault)
        {
            throw fault;
        }
        opts ??= NatsKVWatchOpts.Default;
        if (opts.UpdatesOnly)
        {
            throw new NotSupportedException("InMemoryKVStore watches have no live phase, so UpdatesOnly would deliver nothing");
        }
        var filters = keys.ToArray();
        if (filters.Length == 0)
        {
            throw new ArgumentException("At least one key must be provided", nameof(keys));
        }
        var initial = Initial(filters, opts);
        if (initial.Count == 0 && opts.OnNoData is { } onNoData)
        {
            // true ends the watch; false would wait for updates, and this one has none to give.
            await onNoData(cancellationToken).ConfigureAwait(false);
            yield break;
        }
        // The lie: one position before the end says 0 pending (and the rest still comes).
        var liesAt = initial.Count > 1 && LyingPending is { } lying && lying.Next(3) == 0 ? lying.Next(initial.Count - 1) : -1;
        for (var i = 0; i < initial.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var message = initial[i];
            var delta = i == liesAt ? 0UL : (ulong)(initial.Count - 1 - i);
            if (opts.IgnoreDeletes && message.Operation is NatsKVOperation.Del or NatsKVOperation.Purge)
            {
                if (delta == 0 && opts.OnNoData is { } onLast && await onLast(cancellationToken).ConfigureAwait(false))
                {
                    yield break;
                }
                continue;
            }
            yield return ToEntry(message, delta, opts.MetaOnly, serializer);
        }
    }

    /// <summary>The key's kept messages in order, markers included; nothing for a key never written.</summary>
    public IAsyncEnumerable<NatsKVEntry<T>> HistoryAsync<T>(string key, INatsDeserialize<T>? serializer = default, NatsKVWatchOpts? opts = default, CancellationToken cancellationToken = default)
        => new Synchronous<NatsKVEntry<T>>(KeptOf(key, serializer, opts ?? NatsKVWatchOpts.Default, cancellationToken), cancellationToken);

    public IAsyncEnumerable<string> GetKeysAsync(NatsKVWatchOpts? opts = default, CancellationToken cancellationToken = default)
        => GetKeysAsync([">"], opts, cancellationToken);

    /// <summary>Keys whose last message is a put, in the order of those messages.</summary>
    public IAsyncEnumerable<string> GetKeysAsync(IEnumerable<string> filters, NatsKVWatchOpts? opts = default, CancellationToken cancellationToken = default)
        => new Synchronous<string>(Keys(filters.ToArray()), cancellationToken);

    public ValueTask<NatsKVStatus> GetStatusAsync(CancellationToken cancellationToken = default)
        => throw new NotSupportedException("InMemoryKVStore has no stream info for a NatsKVStatus");

    // ---- the model ----

    private sealed record Message(string Key, ulong Sequence, NatsKVOperation Operation, byte[] Data, DateTimeOffset Created);

    /// <summary>What a call did: a value, an error to return (Try*) or throw, or an exception the Try* variant throws too.</summary>
    private readonly record struct Outcome<T>(T Value, Exception? Error, Exception? Thrown = null)
    {
        public static implicit operator Outcome<T>(T value) => new(value, null);
    }

    private static Outcome<T> Fail<T>(Exception error) => new(default!, error);

    private static Outcome<T> Throw<T>(Exception error) => new(default!, null, error);

    private enum Call { Publish, Read, Watch }

    private Outcome<ulong> TryPut<T>(string key, T value, INatsSerialize<T>? serializer, CancellationToken cancellationToken)
    {
        if (Precheck<ulong>(key, Call.Publish, cancellationToken) is { } failed)
        {
            return failed;
        }
        var data = Serialize(value, serializer);
        lock (_gate)
        {
            return Append(key, NatsKVOperation.Put, data).Sequence;
        }
    }

    private Outcome<ulong> TryUpdate<T>(string key, T value, ulong revision, INatsSerialize<T>? serializer, CancellationToken cancellationToken)
    {
        if (Precheck<ulong>(key, Call.Publish, cancellationToken) is { } failed)
        {
            return failed;
        }
        var data = Serialize(value, serializer);
        lock (_gate)
        {
            // Nats-Expected-Last-Subject-Sequence: the key's last message, markers included (0: none).
            if ((LastOf(key)?.Sequence ?? 0) is var last && last != revision)
            {
                return Fail<ulong>(WrongLastRevision(last));
            }
            return Append(key, NatsKVOperation.Put, data).Sequence;
        }
    }

    private Outcome<ulong> TryCreate<T>(string key, T value, INatsSerialize<T>? serializer, CancellationToken cancellationToken)
    {
        // As the client: update at revision 0, else read the key: a value means it exists, a
        // marker means create over it (an update at the marker's revision); anything else fails.
        var first = TryUpdate(key, value, 0, serializer, cancellationToken);
        if (first.Error is null && first.Thrown is null)
        {
            return first;
        }
        var existing = TryGetEntry<byte[]>(key, 0, null, cancellationToken);
        if (existing.Thrown is not null)
        {
            return Throw<ulong>(existing.Thrown);
        }
        return existing.Error switch
        {
            null => Fail<ulong>(new NatsKVCreateException()),
            NatsKVKeyDeletedException deleted => TryUpdate(key, value, deleted.Revision, serializer, cancellationToken),
            var other => Fail<ulong>(other),
        };
    }

    private Outcome<bool> TryDelete(string key, NatsKVDeleteOpts? opts, CancellationToken cancellationToken)
    {
        if (Precheck<bool>(key, Call.Publish, cancellationToken) is { } failed)
        {
            return failed;
        }
        opts ??= new NatsKVDeleteOpts();
        lock (_gate)
        {
            if (opts.Revision != default && (LastOf(key)?.Sequence ?? 0) is var last && last != opts.Revision)
            {
                return Fail<bool>(WrongLastRevision(last));
            }
            var marker = Append(key, opts.Purge ? NatsKVOperation.Purge : NatsKVOperation.Del, []);
            if (opts.Purge)
            {
                // Nats-Rollup: sub — only the purge marker stays.
                var kept = _byKey[key];
                foreach (var older in kept.Where(m => m != marker))
                {
                    _log.Remove(older.Sequence);
                }
                kept.RemoveAll(m => m != marker);
            }
            return true;
        }
    }

    private Outcome<NatsKVEntry<T>> TryGetEntry<T>(string key, ulong revision, INatsDeserialize<T>? serializer, CancellationToken cancellationToken)
    {
        if (Precheck<NatsKVEntry<T>>(key, Call.Read, cancellationToken) is { } failed)
        {
            return failed;
        }
        Message? found;
        lock (_gate)
        {
            // Direct get: the key's last message, or (with a revision) its first at or after it.
            found = revision == default ? LastOf(key)
                : _byKey.TryGetValue(key, out var kept) ? kept.FirstOrDefault(m => m.Sequence >= revision) : null;
        }
        if (found is null)
        {
            return Fail<NatsKVEntry<T>>(NatsKVKeyNotFoundException.Default);
        }
        if (found.Operation is NatsKVOperation.Del or NatsKVOperation.Purge)
        {
            return Fail<NatsKVEntry<T>>(new NatsKVKeyDeletedException(found.Sequence));
        }
        return ToEntry(found, 0, metaOnly: false, serializer);
    }

    private IEnumerable<NatsKVEntry<T>> KeptOf<T>(string key, INatsDeserialize<T>? serializer, NatsKVWatchOpts opts, CancellationToken cancellationToken)
    {
        // The client reads the key first (so an unreachable stream fails as a get does), then
        // watches it with history until Delta 0.
        var probe = TryGetEntry(key, 0, serializer, cancellationToken);
        if (probe.Thrown is { } thrown)
        {
            throw thrown;
        }
        if (probe.Error is NatsKVKeyNotFoundException)
        {
            yield break;
        }
        if (probe.Error is not null and not NatsKVKeyDeletedException)
        {
            throw probe.Error;
        }
        List<Message> kept;
        lock (_gate)
        {
            kept = _byKey.TryGetValue(key, out var list) ? [.. list] : [];
        }
        for (var i = 0; i < kept.Count; i++)
        {
            if (opts.IgnoreDeletes && kept[i].Operation != NatsKVOperation.Put)
            {
                continue;
            }
            yield return ToEntry(kept[i], (ulong)(kept.Count - 1 - i), opts.MetaOnly, serializer);
        }
    }

    private IEnumerable<string> Keys(string[] filters)
    {
        if (Unreachable(Call.Watch) is { } fault)
        {
            throw fault;
        }
        var current = Initial(filters, NatsKVWatchOpts.Default);
        foreach (var message in current.Where(m => m.Operation == NatsKVOperation.Put))
        {
            yield return message.Key;
        }
    }

    private List<Message> Initial(string[] filters, NatsKVWatchOpts opts)
    {
        lock (_gate)
        {
            bool Matches(Message m) => filters.Any(f => SubjectMatches(f, m.Key));
            if (opts.ResumeAtRevision > 0)
            {
                return _log.Values.Where(m => m.Sequence >= opts.ResumeAtRevision && Matches(m)).ToList();
            }
            if (opts.IncludeHistory)
            {
                return _log.Values.Where(Matches).ToList();
            }
            return _byKey.Values.Select(kept => kept[^1]).Where(Matches).OrderBy(m => m.Sequence).ToList();
        }
    }

    private Message? LastOf(string key) => _byKey.TryGetValue(key, out var kept) ? kept[^1] : null;

    private Message Append(string key, NatsKVOperation operation, byte[] data)
    {
        var message = new Message(key, ++_lastSequence, operation, data, _clock.GetUtcNow());
        _log.Add(message.Sequence, message);
        if (!_byKey.TryGetValue(key, out var kept))
        {
            _byKey[key] = kept = [];
        }
        kept.Add(message);
        Trim(kept);
        return message;
    }

    private void Trim(List<Message> kept)
    {
        while (kept.Count > History)
        {
            _log.Remove(kept[0].Sequence);
            kept.RemoveAt(0);
        }
    }

    private NatsKVEntry<T> ToEntry<T>(Message message, ulong delta, bool metaOnly, INatsDeserialize<T>? serializer)
    {
        T? value = default;
        NatsDeserializeException? error = null;
        if (!metaOnly && message.Data.Length > 0)
        {
            try
            {
                value = Deserialize(message.Data, serializer);
            }
            catch (Exception e) when (e is not NotSupportedException)
            {
                error = new NatsDeserializeException(message.Data, e);
            }
        }
        return new NatsKVEntry<T>(Bucket, message.Key)
        {
            Value = value,
            Revision = message.Sequence,
            Operation = message.Operation,
            Created = message.Created,
            Delta = delta,
            Error = error,
        };
    }

    // ---- faults, keys, values ----

    private Outcome<TOut>? Precheck<TOut>(string key, Call call, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (ValidateKey(key) is { } invalid)
        {
            return Fail<TOut>(invalid);
        }
        if (Unreachable(call) is { } fault)
        {
            // A publish's failure is the Try* variant's error; a read's is thrown by both.
            return call == Call.Publish ? Fail<TOut>(fault) : Throw<TOut>(fault);
        }
        return null;
    }

    /// <summary>
    /// Why a call cannot reach the stream. Missing is as measured against nats-server with the
    /// 3.3.2 client after the stream was deleted: a publish gets no response (Try* return it), a
    /// direct get no reply (thrown), a consumer create (watch, keys) 404 "stream not found". An
    /// outage fails the same way but for the consumer create, which gets no API response. (The real
    /// client with default options does not fail in an outage: every call waits for the reconnect
    /// or the caller's cancellation. This store fails at once instead, as a caller's timeout would.)
    /// </summary>
    private Exception? Unreachable(Call call)
    {
        if (!Outage && !Missing)
        {
            return null;
        }
        return call switch
        {
            Call.Publish => new NatsJSPublishNoResponseException(),
            Call.Read => new NatsNoReplyException(),
            _ => Outage ? new NatsJSApiNoResponseException() : StreamNotFound(),
        };
    }

    internal static NatsJSApiException StreamNotFound() => new(new ApiError { Code = 404, ErrCode = 10059, Description = "stream not found" });

    /// <summary>The server's answer to a failed Nats-Expected-Last-Subject-Sequence, as the client wraps it.</summary>
    private static NatsKVWrongLastRevisionException WrongLastRevision(ulong last)
        => new(new ApiError { Code = 400, ErrCode = 10071, Description = $"wrong last sequence: {last}" });

    private static readonly NatsKVException s_noTtl = new("This store does not support TTL");

    private static NatsKVException? ValidateKey(string key)
    {
        if (string.IsNullOrWhiteSpace(key))
        {
            return new NatsKVException("Key cannot be empty");
        }
        if (key[0] == '.' || key[^1] == '.')
        {
            return new NatsKVException("Key cannot start or end with a period");
        }
        return ValidKey().IsMatch(key) ? null : new NatsKVException("Key contains invalid characters");
    }

    [GeneratedRegex(@"\A[-/_=\.a-zA-Z0-9]+\z")]
    private static partial Regex ValidKey();

    /// <summary>NATS subject matching of a key filter: '*' one token, '>' the rest.</summary>
    internal static bool SubjectMatches(string filter, string key)
    {
        var f = filter.Split('.');
        var k = key.Split('.');
        for (var i = 0; i < f.Length; i++)
        {
            if (f[i] == ">")
            {
                return k.Length > i;
            }
            if (i >= k.Length || (f[i] != "*" && !string.Equals(f[i], k[i], StringComparison.Ordinal)))
            {
                return false;
            }
        }
        return f.Length == k.Length;
    }

    private static int CheckHistory(int history)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(history, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(history, 64);
        return history;
    }

    private static byte[] Serialize<T>(T value, INatsSerialize<T>? serializer)
    {
        if (serializer is not null)
        {
            var buffer = new ArrayBufferWriter<byte>();
            serializer.Serialize(buffer, value);
            return buffer.WrittenSpan.ToArray();
        }
        return value switch
        {
            null => [],
            byte[] bytes => bytes.ToArray(), // a copy: the caller may reuse its array
            string text => Encoding.UTF8.GetBytes(text),
            ReadOnlyMemory<byte> memory => memory.ToArray(),
            Memory<byte> memory => memory.ToArray(),
            _ => throw new NotSupportedException($"InMemoryKVStore serializes byte[], string and memory values itself; pass a serializer for {typeof(T)}"),
        };
    }

    private static T? Deserialize<T>(byte[] data, INatsDeserialize<T>? serializer)
    {
        if (serializer is not null)
        {
            return serializer.Deserialize(new ReadOnlySequence<byte>(data));
        }
        object? value = typeof(T) == typeof(byte[]) ? data.ToArray()
            : typeof(T) == typeof(string) ? Encoding.UTF8.GetString(data)
            : typeof(T) == typeof(ReadOnlyMemory<byte>) ? new ReadOnlyMemory<byte>(data.ToArray())
            : typeof(T) == typeof(Memory<byte>) ? new Memory<byte>(data.ToArray())
            : throw new NotSupportedException($"InMemoryKVStore deserializes byte[], string and memory values itself; pass a serializer for {typeof(T)}");
        return (T?)value;
    }

    // ---- completed ValueTasks ----

    private static ValueTask<T> Throwing<T>(Outcome<T> outcome)
        => (outcome.Thrown ?? outcome.Error) is { } e ? ValueTask.FromException<T>(e) : ValueTask.FromResult(outcome.Value);

    private static ValueTask Throwing(Outcome<bool> outcome)
        => (outcome.Thrown ?? outcome.Error) is { } e ? ValueTask.FromException(e) : ValueTask.CompletedTask;

    private static ValueTask<NatsResult<T>> Result<T>(Outcome<T> outcome)
        => outcome.Thrown is { } thrown ? ValueTask.FromException<NatsResult<T>>(thrown)
            : ValueTask.FromResult(outcome.Error is { } e ? new NatsResult<T>(e) : new NatsResult<T>(outcome.Value));

    private static ValueTask<NatsResult> Result(Outcome<bool> outcome)
        => outcome.Thrown is { } thrown ? ValueTask.FromException<NatsResult>(thrown)
            : ValueTask.FromResult(outcome.Error is { } e ? new NatsResult(e) : NatsResult.Default);

    /// <summary>An async enumerable over a lazy, synchronous sequence: every MoveNextAsync is already complete.</summary>
    private sealed class Synchronous<T>(IEnumerable<T> items, CancellationToken cancellationToken) : IAsyncEnumerable<T>
    {
        public IAsyncEnumerator<T> GetAsyncEnumerator(CancellationToken token = default) => new Enumerator(items.GetEnumerator(), cancellationToken, token);

        private sealed class Enumerator(IEnumerator<T> inner, CancellationToken first, CancellationToken second) : IAsyncEnumerator<T>
        {
            public T Current => inner.Current;

            public ValueTask<bool> MoveNextAsync()
            {
                first.ThrowIfCancellationRequested();
                second.ThrowIfCancellationRequested();
                return ValueTask.FromResult(inner.MoveNext());
            }

            public ValueTask DisposeAsync()
            {
                inner.Dispose();
                return ValueTask.CompletedTask;
            }
        }
    }
}

using NATS.Client.JetStream;
using NATS.Client.JetStream.Models;
using NATS.Client.KeyValueStore;

namespace Orchestrator.Fleet.Tests.Simulation;

/// <summary>
/// The simulator's KV "server": named <see cref="InMemoryKVStore"/>s on one clock, reachable
/// through <see cref="INatsKVContext"/> so FleetStore.OpenAsync (get, else create or update)
/// runs against it unchanged. A wiped bucket keeps its store object (old handles see it missing,
/// as handles to a deleted stream do) until it is created again.
/// </summary>
public sealed class InMemoryKVContext(SimClock clock) : INatsKVContext
{
    private readonly SortedDictionary<string, InMemoryKVStore> _stores = new(StringComparer.Ordinal);
    private bool _outage;

    public SimClock Clock { get; } = clock;

    /// <summary>Every store made so far, by bucket (wiped ones included).</summary>
    public IReadOnlyDictionary<string, InMemoryKVStore> Stores => _stores;

    /// <summary>The server is unreachable: the context and every store fail as the client does in an outage.</summary>
    public bool Outage
    {
        get => _outage;
        set
        {
            _outage = value;
            foreach (var store in _stores.Values)
            {
                store.Outage = value;
            }
        }
    }

    /// <summary>Every store's watches say 0 pending early now and then (<see cref="InMemoryKVStore.LyingPending"/>).</summary>
    public Random? LyingPending
    {
        get => _lying;
        set
        {
            _lying = value;
            foreach (var store in _stores.Values)
            {
                store.LyingPending = value;
            }
        }
    }

    private Random? _lying;

    public INatsJSContext JetStreamContext => throw new NotSupportedException("InMemoryKVContext has no JetStream context");

    public NatsKVOpts Opts { get; } = new();

    /// <summary>The bucket's store, made (or made again after a wipe) with this history when it is not there.</summary>
    public InMemoryKVStore GetOrCreate(string bucket, int history = 1)
    {
        if (!_stores.TryGetValue(bucket, out var store))
        {
            _stores[bucket] = store = new InMemoryKVStore(bucket, history, Clock) { Outage = _outage, LyingPending = _lying };
        }
        else if (store.Missing)
        {
            store.Recreate(history);
        }
        return store;
    }

    /// <summary>Every bucket's keys, history and sequence gone; each is missing until made again.</summary>
    public void WipeAll()
    {
        foreach (var store in _stores.Values)
        {
            store.Wipe();
        }
    }

    public ValueTask<INatsKVStore> CreateStoreAsync(string bucket, CancellationToken cancellationToken = default)
        => CreateStoreAsync(new NatsKVConfig(bucket), cancellationToken);

    /// <summary>Made when absent or missing; an existing bucket with another history is refused (as JetStream refuses another config).</summary>
    public ValueTask<INatsKVStore> CreateStoreAsync(NatsKVConfig config, CancellationToken cancellationToken = default)
        => Call<INatsKVStore>(() =>
        {
            var history = HistoryOf(config);
            if (_stores.TryGetValue(config.Bucket, out var store) && !store.Missing && store.History != history)
            {
                throw new NatsJSApiException(new ApiError { Code = 400, ErrCode = 10058, Description = "stream name already in use with a different configuration" });
            }
            return GetOrCreate(config.Bucket, history);
        }, cancellationToken);

    public ValueTask<INatsKVStore> GetStoreAsync(string bucket, CancellationToken cancellationToken = default)
        => Call<INatsKVStore>(() => Existing(bucket), cancellationToken);

    public ValueTask<INatsKVStore> CreateOrUpdateStoreAsync(NatsKVConfig config, CancellationToken cancellationToken = default)
        => Call<INatsKVStore>(() =>
        {
            var history = HistoryOf(config);
            var store = GetOrCreate(config.Bucket, history);
            store.SetHistory(history);
            return store;
        }, cancellationToken);

    public ValueTask<INatsKVStore> UpdateStoreAsync(NatsKVConfig config, CancellationToken cancellationToken = default)
        => Call<INatsKVStore>(() =>
        {
            var store = Existing(config.Bucket);
            store.SetHistory(HistoryOf(config));
            return store;
        }, cancellationToken);

    /// <summary>Deleting a bucket is wiping it: its handles see it missing.</summary>
    public ValueTask<bool> DeleteStoreAsync(string bucket, CancellationToken cancellationToken = default)
        => Call(() =>
        {
            Existing(bucket).Wipe();
            return true;
        }, cancellationToken);

    public async IAsyncEnumerable<string> GetBucketNamesAsync([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await Call(() => true, cancellationToken).ConfigureAwait(false);
        foreach (var (name, store) in _stores.ToList())
        {
            if (!store.Missing)
            {
                yield return name;
            }
        }
    }

    public IAsyncEnumerable<NatsKVStatus> GetStatusesAsync(CancellationToken cancellationToken = default)
        => throw new NotSupportedException("InMemoryKVContext has no stream info for a NatsKVStatus");

    private InMemoryKVStore Existing(string bucket)
        => _stores.TryGetValue(bucket, out var store) && !store.Missing ? store : throw InMemoryKVStore.StreamNotFound();

    private static int HistoryOf(NatsKVConfig config) => (int)Math.Max(1, config.History);

    private ValueTask<T> Call<T>(Func<T> action, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<T>(cancellationToken);
        }
        if (_outage)
        {
            // A JetStream API request that no server answers.
            return ValueTask.FromException<T>(new NatsJSApiNoResponseException());
        }
        try
        {
            return ValueTask.FromResult(action());
        }
        catch (NatsJSApiException e)
        {
            return ValueTask.FromException<T>(e);
        }
    }
}

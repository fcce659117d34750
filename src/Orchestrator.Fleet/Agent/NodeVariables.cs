using System.Text.Json;
using NATS.Client.KeyValueStore;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Fleet.Agent;

/// <summary>
/// This node's copy of the operators' variables (orchctl env): the bucket watched while connected,
/// kept in STATE_DIR/variables.json so a container started offline gets them too; what applies to a
/// container is worked out at its start (<see cref="VariableScope.Effective"/>).
/// </summary>
public sealed class NodeVariables(string stateDir, string node, Func<IReadOnlyDictionary<string, string>> labels)
{
    private readonly string _file = Path.Combine(stateDir, "variables.json");
    private readonly Lock _lock = new();
    private Dictionary<string, VariableScope>? _scopes;

    private Dictionary<string, VariableScope> Scopes
    {
        get
        {
            if (_scopes is null)
            {
                var loaded = new Dictionary<string, VariableScope>(StringComparer.Ordinal);
                try
                {
                    foreach (var scope in JsonSerializer.Deserialize(File.ReadAllBytes(_file), SecretJsonContext.Default.ListVariableScope) ?? [])
                    {
                        loaded[scope.Key()] = scope;
                    }
                }
                catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException)
                {
                    // None kept yet (or a damaged copy): the watch brings them.
                }
                _scopes = loaded;
            }
            return _scopes;
        }
    }

    /// <summary>The variables a container of this node gets (its deployment's by its orch.deployment label).</summary>
    public IReadOnlyDictionary<string, string> For(Workload workload)
    {
        lock (_lock)
        {
            return VariableScope.Effective(Scopes.Values, node, labels(), workload.Labels?.GetValueOrDefault("orch.deployment"));
        }
    }

    /// <summary>Follows the bucket until cancelled; <paramref name="changed"/> after each change (and once caught up).</summary>
    public async Task WatchAsync(INatsKVStore bucket, Func<Task> changed, CancellationToken cancellationToken)
    {
        var seen = new Dictionary<string, VariableScope>(StringComparer.Ordinal);
        var caughtUp = false;
        var opts = new NatsKVWatchOpts { OnNoData = async _ => { await ReplaceAsync(seen, changed).ConfigureAwait(false); caughtUp = true; return false; } };
        await foreach (var entry in bucket.WatchAsync<byte[]>(">", opts: opts, cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            if (entry.Operation == NatsKVOperation.Put && entry.Value is { Length: > 0 } value)
            {
                try
                {
                    seen[entry.Key] = VariableScope.Parse(value);
                }
                catch (JsonException)
                {
                    seen.Remove(entry.Key);
                }
            }
            else
            {
                seen.Remove(entry.Key);
            }
            if (caughtUp || entry.Delta == 0)
            {
                caughtUp = true;
                await ReplaceAsync(seen, changed).ConfigureAwait(false);
            }
        }
    }

    private async Task ReplaceAsync(Dictionary<string, VariableScope> seen, Func<Task> changed)
    {
        lock (_lock)
        {
            _scopes = new Dictionary<string, VariableScope>(seen, StringComparer.Ordinal);
            try
            {
                var temp = _file + ".tmp";
                File.WriteAllBytes(temp, JsonSerializer.SerializeToUtf8Bytes(_scopes.Values.OrderBy(s => s.Key(), StringComparer.Ordinal).ToList(), SecretJsonContext.Default.ListVariableScope));
                File.Move(temp, _file, overwrite: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Kept in memory only until the next change: a start offline after an orchd restart gets the older copy.
            }
        }
        await changed().ConfigureAwait(false);
    }
}

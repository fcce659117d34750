using System.Text.Json;
using System.Text.Json.Serialization;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Linux;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Fleet.Agent;

/// <summary>
/// A node's labels: its configured ones (orchd.yaml, --label, and the built-in arch) with the
/// operator's changes on top (`orchctl label node`), which the node keeps in its state dir
/// (labels.json, written whole and renamed) so that they outlive a restart. The node is where a
/// label lives because the node is what checks a signed deployment's selector against its labels
/// before it runs a replica; the heartbeat carries them to the scheduler and to `get nodes -l`.
/// </summary>
public sealed class NodeLabels
{
    private readonly IReadOnlyDictionary<string, string> _configured;
    private readonly string? _file;
    private readonly Lock _lock = new();
    private readonly Func<IReadOnlyDictionary<string, string>>? _observe;
    private IReadOnlyDictionary<string, string> _observed = new Dictionary<string, string>(StringComparer.Ordinal);
    private Dictionary<string, string?> _changes;
    private IReadOnlyDictionary<string, string> _current;

    /// <param name="file">Where the operator's changes are kept; null: not kept (tests, a node without a state dir).</param>
    /// <param name="observe">
    /// What the node finds it has (hw.serial, hw.video, hw.memory, …: <c>HostDevices.Labels</c>), read
    /// now and at each <see cref="Observe"/>; a configured label or the operator's of the same key wins.
    /// </param>
    public NodeLabels(IReadOnlyDictionary<string, string> configured, string? file, Func<IReadOnlyDictionary<string, string>>? observe = null)
    {
        _configured = configured;
        _file = file;
        _observe = observe;
        if (observe is not null)
        {
            _observed = observe();
        }
        try
        {
            _changes = (file is null ? null : StateFile.Read(file, bytes => JsonSerializer.Deserialize(bytes, NodeLabelsJsonContext.Default.DictionaryStringString)))
                ?? new Dictionary<string, string?>(StringComparer.Ordinal);
        }
        catch (DamagedStateException e)
        {
            // A torn or damaged file must not keep the node from starting: the configured labels
            // hold, the file is kept aside, and the node says so.
            _changes = new Dictionary<string, string?>(StringComparer.Ordinal);
            Warning = $"{e.Message}; the operator's labels are lost, the configured ones hold: label the node again (orchctl label node)";
        }
        _current = Compose();
    }

    /// <summary>Why the operator's labels could not be read at start (logged by the node), or null.</summary>
    public string? Warning { get; }

    /// <summary>The labels now: configured, then the operator's (a null value removes one).</summary>
    public IReadOnlyDictionary<string, string> Current => Volatile.Read(ref _current);

    /// <summary>
    /// Sets and removes labels, as `kubectl label` does: a key that has another value is refused
    /// unless <paramref name="overwrite"/>; removing a key that is not there is no error. Returns
    /// whether anything changed. Checked whole before anything is applied.
    /// </summary>
    public bool Change(IReadOnlyDictionary<string, string> set, IReadOnlyList<string> remove, bool overwrite)
    {
        if (set.Select(kv => LabelSelector.Problem(kv.Key, kv.Value)).OfType<string>().FirstOrDefault() is { } problem)
        {
            throw new NodeApiException(problem);
        }
        if (set.ContainsKey("arch") || remove.Contains("arch"))
        {
            throw new NodeApiException(ErrorKind.Forbidden, "'arch' is the node's own architecture; it cannot be set or removed");
        }
        lock (_lock)
        {
            if (remove.FirstOrDefault(k => _observed.ContainsKey(k) && !_configured.ContainsKey(k) && !_changes.ContainsKey(k)) is { } observed)
            {
                throw new NodeApiException(ErrorKind.Forbidden, $"'{observed}' is what the node finds it has (its devices, CPUs, memory); it cannot be removed, only overridden (set it, or in orchd.yaml labels:)");
            }
            var current = Current;
            foreach (var (key, value) in set)
            {
                if (!overwrite && current.TryGetValue(key, out var has) && has != value)
                {
                    throw new NodeApiException(ErrorKind.Conflict, $"label '{key}' already has the value '{has}'; --overwrite replaces it");
                }
            }
            var changes = new Dictionary<string, string?>(_changes, StringComparer.Ordinal);
            foreach (var (key, value) in set)
            {
                if (_configured.TryGetValue(key, out var configured) && configured == value)
                {
                    changes.Remove(key); // back to what the config says
                }
                else
                {
                    changes[key] = value;
                }
            }
            foreach (var key in remove)
            {
                if (_configured.ContainsKey(key))
                {
                    changes[key] = null;
                }
                else
                {
                    changes.Remove(key);
                }
            }
            var before = current;
            _changes = changes;
            var after = Compose();
            if (before.Count == after.Count && before.All(kv => after.TryGetValue(kv.Key, out var v) && v == kv.Value))
            {
                return false;
            }
            if (_file is not null)
            {
                StateFile.Write(_file, JsonSerializer.SerializeToUtf8Bytes(changes, NodeLabelsJsonContext.Default.DictionaryStringString));
            }
            Volatile.Write(ref _current, after);
            return true;
        }
    }

    /// <summary>
    /// Reads what the node has again (a camera plugged in since), once a heartbeat: the labels the
    /// scheduler places by follow the hardware. Returns whether they changed.
    /// </summary>
    public bool Observe()
    {
        if (_observe is null)
        {
            return false;
        }
        var observed = _observe();
        lock (_lock)
        {
            if (observed.Count == _observed.Count && observed.All(kv => _observed.TryGetValue(kv.Key, out var v) && v == kv.Value))
            {
                return false;
            }
            _observed = observed;
            Volatile.Write(ref _current, Compose());
            return true;
        }
    }

    private SortedDictionary<string, string> Compose()
    {
        var labels = new SortedDictionary<string, string>(_observed.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal), StringComparer.Ordinal);
        foreach (var (key, value) in _configured)
        {
            labels[key] = value;
        }
        foreach (var (key, value) in _changes)
        {
            if (value is null)
            {
                labels.Remove(key);
            }
            else
            {
                labels[key] = value;
            }
        }
        return labels;
    }
}

[JsonSerializable(typeof(Dictionary<string, string?>))]
internal sealed partial class NodeLabelsJsonContext : JsonSerializerContext;

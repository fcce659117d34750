using System.Text.Json;
using Orchestrator.Fleet.Protocol;

namespace Orchestrator.Fleet.Agent;

/// <summary>
/// A node's memory of the signed serials it accepted, per deployment, kept on disk so that a
/// restart does not forget it: a serial older than the newest one run here is a replay and is
/// refused, except the one accepted just before it (going back one step is what a rollback
/// does, automatic or `rollout undo`). Going further back takes a new signature.
/// </summary>
public sealed class SignatureLedger
{
    public sealed record Entry
    {
        public long Highest { get; init; }
        public long? Previous { get; init; }
    }

    private readonly string? _path;
    private readonly Dictionary<string, Entry> _entries;
    private readonly Lock _lock = new();

    public SignatureLedger(string? path)
    {
        _path = path;
        _entries = new Dictionary<string, Entry>(StringComparer.Ordinal);
        if (path is not null && File.Exists(path))
        {
            try
            {
                foreach (var (name, entry) in JsonSerializer.Deserialize(File.ReadAllBytes(path), FleetJsonContext.Default.DictionaryStringEntry) ?? [])
                {
                    _entries[name] = entry;
                }
            }
            catch (JsonException)
            {
                // A torn file forgets the serials: the node then accepts any validly signed one, as a new node would.
            }
        }
    }

    /// <summary>Null when <paramref name="serial"/> may run (and is remembered); otherwise why not.</summary>
    public string? Accept(string deployment, long serial)
    {
        lock (_lock)
        {
            var entry = _entries.GetValueOrDefault(deployment);
            if (entry is null || serial > entry.Highest)
            {
                _entries[deployment] = new Entry { Highest = serial, Previous = entry?.Highest };
                Save();
                return null;
            }
            if (serial == entry.Highest || serial == entry.Previous)
            {
                return null;
            }
            return $"deployment '{deployment}': signed serial {serial} is older than serial {entry.Highest} this node already ran (a replayed manifest); sign the manifest again to go back to it";
        }
    }

    private void Save()
    {
        if (_path is null)
        {
            return;
        }
        var temp = _path + ".tmp";
        File.WriteAllBytes(temp, JsonSerializer.SerializeToUtf8Bytes(_entries, FleetJsonContext.Default.DictionaryStringEntry));
        File.Move(temp, _path, overwrite: true);
    }
}

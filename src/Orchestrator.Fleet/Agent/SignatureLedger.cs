using System.Text.Json;
using Orchestrator.Api;

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

    /// <summary>Why the ledger cannot be trusted (its file is damaged), or null: while set, every signed deployment is refused.</summary>
    public string? Damage { get; }

    public SignatureLedger(string? path)
    {
        _path = path;
        _entries = new Dictionary<string, Entry>(StringComparer.Ordinal);
        if (path is null)
        {
            return;
        }
        try
        {
            // Left where it is when damaged: the node stays closed across restarts until an
            // operator decides (a ledger that forgot would accept a replayed older manifest).
            foreach (var (name, entry) in Orchestrator.Linux.StateFile.Read(path, bytes => JsonSerializer.Deserialize(bytes, AgentFilesJsonContext.Default.DictionaryStringEntry), moveAside: false) ?? [])
            {
                _entries[name] = entry;
            }
        }
        catch (Orchestrator.Linux.DamagedStateException e)
        {
            Damage = $"{e.Message}: the node cannot tell a replayed manifest from a new one, so it refuses every signed deployment (what runs keeps running); check the file, then delete it to start a new ledger (the next validly signed serial of each deployment is accepted)";
        }
    }

    /// <summary>Null when <paramref name="serial"/> may run (and is remembered); otherwise why not.</summary>
    public string? Accept(string deployment, long serial)
    {
        lock (_lock)
        {
            if (Damage is not null)
            {
                return $"deployment '{deployment}': {Damage}";
            }
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
        Orchestrator.Linux.StateFile.Write(_path, JsonSerializer.SerializeToUtf8Bytes(_entries, AgentFilesJsonContext.Default.DictionaryStringEntry));
    }
}

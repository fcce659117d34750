using Orchestrator.Api;

namespace Orchestrator.Fleet.Agent;

/// <summary>What a node does with the replicas its assignments give it (orchd's supervisor; the simulator's node in tests).</summary>
public interface IAssignedReplicas
{
    /// <summary>Why this node will not run the assignment, or null.</summary>
    string? Refusal(Assignment assignment);

    /// <summary>Runs (or updates) the replica; an error message when it cannot, or null.</summary>
    Task<string?> ApplyAsync(Assignment assignment);

    /// <summary>Removes the fleet's replicas not in <paramref name="keep"/>.</summary>
    Task SyncAsync(IReadOnlySet<string> keep);

    void Refused(Assignment assignment, string why);

    void Failed(string replica, string why);

    void Unassigned(string replica);
}

/// <summary>
/// The node's side of its assignments, with no I/O of its own: each time its key's value
/// arrives, apply the replicas whose assignment changed (checked first: a refused one keeps what
/// already runs under its name), keep the unchanged ones, and take away the fleet's replicas that
/// are no longer assigned. A deleted key (null) takes them all away; "no key at all" is not a
/// value and is not given here (the node keeps what it runs, docs/protocol.md).
/// </summary>
public sealed class AssignmentFollower(IEnumerable<string> owned, IAssignedReplicas replicas)
{
    private readonly HashSet<string> _owned = new(owned, StringComparer.Ordinal);
    private readonly Dictionary<string, byte[]> _seen = new(StringComparer.Ordinal);

    /// <summary>The fleet's replicas this node runs.</summary>
    public IReadOnlySet<string> Owned => _owned;

    public async Task ConvergeAsync(NodeAssignments? value)
    {
        var keep = new HashSet<string>(StringComparer.Ordinal);
        foreach (var assignment in value?.Replicas ?? [])
        {
            var bytes = assignment.ToBytes();
            if (_seen.TryGetValue(assignment.Replica, out var last) && last.AsSpan().SequenceEqual(bytes))
            {
                if (_owned.Contains(assignment.Replica))
                {
                    keep.Add(assignment.Replica);
                }
                continue;
            }
            _seen[assignment.Replica] = bytes;
            if (replicas.Refusal(assignment) is { } why)
            {
                // Refused: nothing new runs, and what already runs under that name keeps running.
                replicas.Refused(assignment, why);
                if (_owned.Contains(assignment.Replica))
                {
                    keep.Add(assignment.Replica);
                }
                continue;
            }
            if (await replicas.ApplyAsync(assignment).ConfigureAwait(false) is { } failed)
            {
                replicas.Failed(assignment.Replica, failed);
                continue;
            }
            keep.Add(assignment.Replica);
            _owned.Add(assignment.Replica);
        }
        foreach (var name in _owned.Where(n => !keep.Contains(n)).ToList())
        {
            _owned.Remove(name);
            _seen.Remove(name);
            replicas.Unassigned(name);
        }
        await replicas.SyncAsync(keep).ConfigureAwait(false);
    }
}

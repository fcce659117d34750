using Orchestrator.Api;

namespace Orchestrator.Fleet.Agent;

/// <summary>
/// The other nodes' endpoints as the endpoints bucket has them, and the order a connection for a
/// deployment tries its replicas in: each connection starts at the next replica in turn (so
/// connections spread over them), and a replica passed over lately (its node did not answer, or
/// it was no longer there) comes last until <see cref="PassOverFor"/> has gone by.
/// </summary>
public sealed class EndpointTable(string self, TimeProvider clock)
{
    /// <summary>How long a replica that could not be reached comes last.</summary>
    public static readonly TimeSpan PassOverFor = TimeSpan.FromSeconds(10);

    private readonly Lock _lock = new();
    private Dictionary<string, IReadOnlyList<Endpoint>> _others = new(StringComparer.Ordinal);
    private readonly Dictionary<string, uint> _turns = new(StringComparer.Ordinal);
    private readonly Dictionary<(string Node, string Container), DateTimeOffset> _passedOver = [];

    /// <summary>Takes in the bucket as it is: every other node's list (this node's own is what it says itself).</summary>
    public void Replace(IReadOnlyDictionary<string, IReadOnlyList<Endpoint>> byNode)
    {
        lock (_lock)
        {
            _others = byNode.Where(n => n.Key != self && n.Value.Count > 0).ToDictionary(n => n.Key, n => n.Value, StringComparer.Ordinal);
        }
    }

    /// <summary>The deployments with a ready replica on another node, sorted.</summary>
    public IReadOnlyList<string> Deployments()
    {
        lock (_lock)
        {
            return _others.Values.SelectMany(list => list.Select(e => e.Deployment)).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        }
    }

    /// <summary>The replicas a connection for <paramref name="deployment"/> tries, in order.</summary>
    public IReadOnlyList<(string Node, string Container)> Candidates(string deployment)
    {
        lock (_lock)
        {
            var all = _others.SelectMany(n => n.Value.Where(e => e.Deployment == deployment).Select(e => (Node: n.Key, e.Container)))
                .OrderBy(c => c.Node, StringComparer.Ordinal).ThenBy(c => c.Container, StringComparer.Ordinal).ToList();
            if (all.Count == 0)
            {
                return all;
            }
            var turn = _turns.GetValueOrDefault(deployment);
            _turns[deployment] = turn + 1;
            var start = (int)(turn % (uint)all.Count);
            var now = clock.GetUtcNow();
            var rotated = all.Skip(start).Concat(all.Take(start)).ToList();
            bool Passed((string, string) c) => _passedOver.TryGetValue(c, out var until) && until > now;
            return [.. rotated.Where(c => !Passed(c)), .. rotated.Where(Passed)];
        }
    }

    /// <summary><paramref name="container"/> on <paramref name="node"/> could not be reached: it comes last for a while.</summary>
    public void PassOver(string node, string container)
    {
        lock (_lock)
        {
            _passedOver[(node, container)] = clock.GetUtcNow() + PassOverFor;
        }
    }
}

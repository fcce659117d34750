using Orchestrator.Api;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Client;

/// <summary>The operators' variables by scope (orchctl env): the fleet's, a label's, one device's; each also by deployment.</summary>
public sealed partial class FleetClient
{
    /// <summary>
    /// Sets and unsets variables of one scope (for one deployment's containers when
    /// <paramref name="deployment"/> is given), by compare-and-set; the nodes restart the containers
    /// whose variables change. Returns the scope as stored (null once it holds nothing).
    /// </summary>
    public async Task<VariableScope?> SetVariablesAsync(VariableScopeKind kind, string? which, string? deployment,
        IReadOnlyDictionary<string, string> set, IReadOnlyList<string> unset, CancellationToken cancellationToken = default)
    {
        foreach (var key in set.Keys.Concat(unset))
        {
            if (key.Length == 0 || char.IsAsciiDigit(key[0]) || !key.All(c => char.IsAsciiLetterOrDigit(c) || c == '_'))
            {
                throw new NodeRequestException(ErrorKind.Invalid, $"'{key}' is not a variable name; use letters, digits and '_', not starting with a digit");
            }
        }
        if (set.Values.Any(v => v.Contains('\0', StringComparison.Ordinal)))
        {
            throw new NodeRequestException(ErrorKind.Invalid, "a variable's value cannot hold a NUL byte");
        }
        if (kind == VariableScopeKind.Label)
        {
            var eq = which?.IndexOf('=', StringComparison.Ordinal) ?? -1;
            if (eq <= 0 || LabelSelector.Problem(which![..eq], which[(eq + 1)..]) is { } bad)
            {
                throw new NodeRequestException(ErrorKind.Invalid, $"-l '{which}': give one node label as key=value");
            }
        }
        if (kind == VariableScopeKind.Node && string.IsNullOrEmpty(which))
        {
            throw new NodeRequestException(ErrorKind.Invalid, "--device needs a node name");
        }
        var bucket = await FleetStore.OpenAsync(KV, Buckets.Variables, 1, cancellationToken).ConfigureAwait(false);
        var key2 = VariableScope.Key(kind, which);
        for (var attempt = 1; ; attempt++)
        {
            var entry = await bucket.TryGetEntryAsync<byte[]>(key2, cancellationToken: cancellationToken).ConfigureAwait(false);
            var current = entry.Success && entry.Value.Value is { Length: > 0 } v ? VariableScope.Parse(v) : null;
            var vars = new Dictionary<string, string>(current?.Vars ?? [], StringComparer.Ordinal);
            var deployments = (current?.Deployments ?? []).ToDictionary(kv => kv.Key, kv => new Dictionary<string, string>(kv.Value, StringComparer.Ordinal), StringComparer.Ordinal);
            var target = deployment is null ? vars : deployments.TryGetValue(deployment, out var own) ? own : deployments[deployment] = new(StringComparer.Ordinal);
            foreach (var (k, value) in set)
            {
                target[k] = value;
            }
            foreach (var k in unset)
            {
                target.Remove(k);
            }
            foreach (var empty in deployments.Where(d => d.Value.Count == 0).Select(d => d.Key).ToList())
            {
                deployments.Remove(empty);
            }
            var next = new VariableScope
            {
                Kind = kind, Label = kind == VariableScopeKind.Label ? which : null, Node = kind == VariableScopeKind.Node ? which : null,
                Vars = vars, Deployments = deployments.Count == 0 ? null : deployments,
            };
            if (vars.Count == 0 && deployments.Count == 0)
            {
                if (entry.Success)
                {
                    await bucket.DeleteAsync(key2, new NATS.Client.KeyValueStore.NatsKVDeleteOpts { Revision = entry.Value.Revision }, cancellationToken).ConfigureAwait(false);
                }
                return null;
            }
            var written = entry.Success
                ? await bucket.TryUpdateAsync(key2, next.ToBytes(), entry.Value.Revision, cancellationToken: cancellationToken).ConfigureAwait(false)
                : await bucket.TryCreateAsync(key2, next.ToBytes(), cancellationToken: cancellationToken).ConfigureAwait(false);
            if (written.Success)
            {
                return next;
            }
            if (attempt == 5)
            {
                throw new NodeRequestException(ErrorKind.Conflict, "the variables kept changing while this wrote them (another orchctl env); run the command again");
            }
        }
    }

    /// <summary>Every scope of variables in the fleet.</summary>
    public async Task<IReadOnlyList<VariableScope>> GetVariablesAsync(CancellationToken cancellationToken = default)
    {
        var bucket = await FleetStore.OpenAsync(KV, Buckets.Variables, 1, cancellationToken).ConfigureAwait(false);
        var result = new List<VariableScope>();
        foreach (var (_, entry) in await FleetState.ReadAllAsync(bucket, cancellationToken).ConfigureAwait(false))
        {
            if (entry.Value is { Length: > 0 } v)
            {
                try
                {
                    result.Add(VariableScope.Parse(v));
                }
                catch (System.Text.Json.JsonException)
                {
                }
            }
        }
        return [.. result.OrderBy(s => s.Kind).ThenBy(s => s.Label ?? s.Node, StringComparer.Ordinal)];
    }
}

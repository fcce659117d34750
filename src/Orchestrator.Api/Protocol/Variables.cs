using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Orchestrator.Api;

/// <summary>Who a set of variables is for: every node, the nodes with a label, or one node (balena's fleet and device variables).</summary>
[JsonConverter(typeof(WireEnumConverter<VariableScopeKind>))]
public enum VariableScopeKind
{
    [JsonStringEnumMemberName("unknown")] Unknown,
    [JsonStringEnumMemberName("fleet")] Fleet,
    [JsonStringEnumMemberName("label")] Label,
    [JsonStringEnumMemberName("node")] Node,
}

/// <summary>
/// Environment variables set by operators for a scope (<c>orchctl env set</c>), in
/// <see cref="Buckets.Variables"/>: for every container the scope's nodes run, or (by deployment)
/// only for one deployment's. They override the template's env, the narrower scope winning: fleet,
/// then label, then node, each with its deployment's own above its general ones. Not secret (every
/// node may read them): a secret value belongs in <c>orchctl secret</c>.
/// </summary>
public sealed record VariableScope
{
    public int SchemaVersion { get; init; } = 1;
    public VariableScopeKind Kind { get; init; }
    /// <summary>The label (k=v) of a label scope.</summary>
    public string? Label { get; init; }
    /// <summary>The node of a node scope.</summary>
    public string? Node { get; init; }
    /// <summary>For every deployment's containers.</summary>
    public Dictionary<string, string> Vars { get; init; } = new(StringComparer.Ordinal);
    /// <summary>deployment → its own variables here.</summary>
    public Dictionary<string, Dictionary<string, string>>? Deployments { get; init; }

    /// <summary>Its key: <c>fleet</c>, <c>node.NAME</c>, or <c>label.B64URL(k=v)</c> (a label's characters are not all a key's).</summary>
    public static string Key(VariableScopeKind kind, string? which) => kind switch
    {
        VariableScopeKind.Fleet => "fleet",
        VariableScopeKind.Node => "node." + which,
        VariableScopeKind.Label => "label." + Convert.ToBase64String(Encoding.UTF8.GetBytes(which ?? "")).TrimEnd('=').Replace('+', '-').Replace('/', '_'),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    public string Key() => Key(Kind, Kind == VariableScopeKind.Label ? Label : Node);

    /// <summary>True when the scope is about the node with <paramref name="labels"/> named <paramref name="node"/>.</summary>
    public bool Covers(string node, IReadOnlyDictionary<string, string> labels) => Kind switch
    {
        VariableScopeKind.Fleet => true,
        VariableScopeKind.Node => Node == node,
        VariableScopeKind.Label => Label?.IndexOf('=', StringComparison.Ordinal) is > 0 and var eq
            && labels.TryGetValue(Label[..eq], out var v) && v == Label[(eq + 1)..],
        _ => false,
    };

    /// <summary>
    /// The variables a container of <paramref name="deployment"/> gets on this node, from every
    /// scope: fleet, then each matching label scope (in label order), then the node's; within each,
    /// the general ones, then the deployment's. A later one wins.
    /// </summary>
    public static SortedDictionary<string, string> Effective(IEnumerable<VariableScope> scopes, string node, IReadOnlyDictionary<string, string> labels, string? deployment)
    {
        var result = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var scope in scopes.Where(s => s.Covers(node, labels)).OrderBy(s => s.Kind).ThenBy(s => s.Label, StringComparer.Ordinal))
        {
            foreach (var (k, v) in scope.Vars)
            {
                result[k] = v;
            }
            if (deployment is not null && scope.Deployments?.GetValueOrDefault(deployment) is { } own)
            {
                foreach (var (k, v) in own)
                {
                    result[k] = v;
                }
            }
        }
        return result;
    }

    public byte[] ToBytes() => JsonSerializer.SerializeToUtf8Bytes(this, SecretJsonContext.Default.VariableScope);

    public static VariableScope Parse(ReadOnlySpan<byte> value)
        => JsonSerializer.Deserialize(value, SecretJsonContext.Default.VariableScope) ?? throw new JsonException("empty variable scope");
}

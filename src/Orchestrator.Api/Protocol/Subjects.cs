namespace Orchestrator.Api;

/// <summary>
/// Every NATS subject the fleet uses, in one place (documented in docs/protocol.md).
/// Per-node subjects carry the node name as one token, so a node name must be a valid
/// subject token: see <see cref="IsValidToken"/>.
/// </summary>
public static class Subjects
{
    public const string Prefix = "orch";

    /// <summary>Request/reply: one node's <see cref="NodeInfo"/>.</summary>
    public static string NodeInfo(string node) => $"{Prefix}.node.{node}.info";

    /// <summary>Request/reply: one of the node API's operations (<see cref="NodeOps"/>) on one node.</summary>
    public static string NodeOp(string node, string op) => $"{Prefix}.node.{node}.{op}";

    /// <summary>What a node subscribes to for its API: every operation addressed to it.</summary>
    public static string NodeAll(string node) => $"{Prefix}.node.{node}.*";

    /// <summary>Request, many replies: every node answers with its <see cref="NodeInfo"/> (discovery).</summary>
    public const string FleetInfo = Prefix + ".fleet.info";

    /// <summary>Publish-only: custom metrics for autoscalers, one number (text) per message on orch.metrics.&lt;name…&gt;.</summary>
    public const string Metrics = Prefix + ".metrics.>";

    /// <summary>Letters, digits, '-' and '_' only: no '.', '*', '>' or whitespace, at most 63 characters.</summary>
    public static bool IsValidToken(string token)
        => token.Length is > 0 and <= 63 && token.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_');
}

using System.Text.Json;
using Orchestrator.Node.Workloads;

namespace Orchestrator.Fleet.Protocol;

/// <summary>
/// A value in the assignments bucket (key <c>&lt;node&gt;.&lt;replica&gt;</c>): one replica of a
/// deployment, with the deployment's template, selector and signature exactly as the operator
/// signed them. The scheduler decides only where; the node checks the signature, and that its
/// own labels satisfy the signed selector, before it runs anything.
/// </summary>
public sealed record Assignment
{
    public int SchemaVersion { get; init; } = 2;
    public required string Deployment { get; init; }
    public required string Replica { get; init; }
    public Dictionary<string, string>? Selector { get; init; }
    public required Workload Template { get; init; }
    public ManifestSignature? Signature { get; init; }

    public static Assignment For(Deployment deployment, string replica) => new()
    {
        Deployment = deployment.Name,
        Replica = replica,
        Selector = deployment.Selector,
        Template = deployment.Template,
        Signature = deployment.Signature,
    };

    /// <summary>The bytes stored (deterministic: the same assignment is the same bytes, so unchanged ones are not rewritten).</summary>
    public byte[] ToBytes() => JsonSerializer.SerializeToUtf8Bytes(this, FleetJsonContext.Default.Assignment);

    public static Assignment Parse(ReadOnlySpan<byte> value)
        => JsonSerializer.Deserialize(value, FleetJsonContext.Default.Assignment) ?? throw new JsonException("empty assignment");

    /// <summary>The workload the replica runs: a copy of the template named after the replica, labelled with its deployment.</summary>
    public Workload ToWorkload()
    {
        var workload = JsonSerializer.Deserialize(JsonSerializer.SerializeToUtf8Bytes(Template, WorkloadJsonContext.Default.Workload), WorkloadJsonContext.Default.Workload)!;
        workload.Name = Replica;
        workload.Labels = new Dictionary<string, string>(workload.Labels ?? [], StringComparer.Ordinal) { ["orch.deployment"] = Deployment };
        return workload;
    }
}

using System.Text.Json;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Api;

/// <summary>
/// One replica of a deployment as the scheduler assigns it (inside a node's
/// <see cref="NodeAssignments"/>), with the deployment's template, selector and signature exactly as the operator
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
    /// <summary>The deployment's <c>fence</c>: true, or null (not written, so assignments without it keep their bytes).</summary>
    public bool? Fence { get; init; }

    /// <summary>The label a fenced replica carries on its node.</summary>
    public const string FenceLabel = "orch.fence";

    public static Assignment For(Deployment deployment, string replica) => new()
    {
        Deployment = deployment.Name,
        Replica = replica,
        Selector = deployment.Selector,
        Template = deployment.Template,
        Signature = deployment.Signature,
        Fence = deployment.Fence ? true : null,
    };

    /// <summary>The bytes stored (deterministic: the same assignment is the same bytes, so unchanged ones are not rewritten).</summary>
    public byte[] ToBytes() => JsonSerializer.SerializeToUtf8Bytes(this, FleetJsonContext.Default.Assignment);

    public static Assignment Parse(ReadOnlySpan<byte> value)
        => JsonSerializer.Deserialize(value, FleetJsonContext.Default.Assignment) ?? throw new JsonException("empty assignment");

    /// <summary>The workload the replica runs: a copy of the template named after the replica, labelled with its deployment.</summary>
    public Workload ToWorkload()
    {
        var workload = Template.Copy();
        workload.Name = Replica;
        workload.Labels = new Dictionary<string, string>(workload.Labels ?? [], StringComparer.Ordinal) { ["orch.deployment"] = Deployment };
        if (Fence == true)
        {
            workload.Labels[FenceLabel] = "true"; // kept with the workload on the node: fencing needs no NATS
        }
        return workload;
    }
}

/// <summary>
/// The value under a node's key in the assignments bucket: every replica the node must run, in
/// replica order (so the same set is the same bytes and an unchanged node is not rewritten).
/// One value per node, not per replica: a pass that places 10,000 replicas on 1,000 nodes
/// writes 1,000 messages, and each node watches one key.
/// </summary>
public sealed record NodeAssignments
{
    public int SchemaVersion { get; init; } = 3;
    public required string Node { get; init; }
    public required IReadOnlyList<Assignment> Replicas { get; init; }

    public byte[] ToBytes() => JsonSerializer.SerializeToUtf8Bytes(this, FleetJsonContext.Default.NodeAssignments);

    public static NodeAssignments Parse(ReadOnlySpan<byte> value)
        => JsonSerializer.Deserialize(value, FleetJsonContext.Default.NodeAssignments) ?? throw new JsonException("empty node assignments");

    /// <summary>
    /// The bytes of a node's value from its replicas' <see cref="Assignment.ToBytes"/>, in the
    /// order given: the same JSON <see cref="ToBytes"/> writes, without parsing and writing every
    /// template again (the scheduler composes 1,000 of these from 10,000 assignments in a pass).
    /// </summary>
    public static byte[] Compose(string node, IEnumerable<byte[]> replicas)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(4096);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteNumber("schemaVersion", 3);
            writer.WriteString("node", node);
            writer.WriteStartArray("replicas");
            foreach (var replica in replicas)
            {
                writer.WriteRawValue(replica, skipInputValidation: true);
            }
            writer.WriteEndArray();
            writer.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }
}

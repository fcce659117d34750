using System.Text.Json;
using System.Text.Json.Serialization;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Api;

/// <summary>
/// A secret's or config's current version, under its name in <see cref="Buckets.Secrets"/> or
/// <see cref="Buckets.Configs"/>. Each version of a secret also has NAME.VERSION: its value sealed to
/// the operator's own curve key (the escrow copy `orchctl secret sync` opens to seal for nodes that
/// joined later), which no node may read.
/// </summary>
public sealed record SecretInfo
{
    public int SchemaVersion { get; init; } = 1;
    public required string Name { get; init; }
    public SecretKind Kind { get; init; }
    /// <summary>1, 2, …: each create or update a new one; deployments pin the one current when they were applied.</summary>
    public long Version { get; init; }
    /// <summary>Bytes of the value.</summary>
    public int Size { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public string? CreatedBy { get; init; }
    /// <summary>The curve (x25519) key the copies were sealed with (secrets only), derived from the operator's signing key.</summary>
    public string? Sender { get; init; }
    /// <summary>The nodes the current version is sealed for (secrets only).</summary>
    public IReadOnlyList<string>? Nodes { get; init; }

    public byte[] ToBytes() => JsonSerializer.SerializeToUtf8Bytes(this, SecretJsonContext.Default.SecretInfo);

    public static SecretInfo Parse(ReadOnlySpan<byte> value)
        => JsonSerializer.Deserialize(value, SecretJsonContext.Default.SecretInfo) ?? throw new JsonException("empty secret info");
}

/// <summary>
/// One version of a secret, sealed to one node (box of x25519 keys, as NATS xkeys: only that node's
/// own key opens it), or of a config (in clear, for every node); signed by the operator's key so a
/// node with fleet.trusted_keys takes it from no one else.
/// </summary>
public sealed record SealedSecret
{
    public int SchemaVersion { get; init; } = 1;
    public required string Name { get; init; }
    public SecretKind Kind { get; init; }
    public long Version { get; init; }
    /// <summary>The node it is sealed for; empty for a config and for a secret's escrow copy.</summary>
    public string Node { get; init; } = "";
    /// <summary>The sender's curve public key (secrets).</summary>
    public string? Sender { get; init; }
    /// <summary>The node's curve key it was sealed to (secrets): a node whose key changed since needs a new copy.</summary>
    public string? Receiver { get; init; }
    /// <summary>Base64: the sealed value (secret) or the value (config).</summary>
    public required string Data { get; init; }
    /// <summary>The operator's signature (key, serial = version, sig) over <c>SecretSealing.SignedBytes</c>.</summary>
    public ManifestSignature? Signature { get; init; }

    /// <summary>Its key in the bucket: NAME.VERSION.NODE for a secret, NAME.VERSION for a config.</summary>
    public static string Key(SecretKind kind, string name, long version, string node)
        => kind == SecretKind.Secret ? $"{name}.{version}.{node}" : $"{name}.{version}";

    public byte[] ToBytes() => JsonSerializer.SerializeToUtf8Bytes(this, SecretJsonContext.Default.SealedSecret);

    public static SealedSecret Parse(ReadOnlySpan<byte> value)
        => JsonSerializer.Deserialize(value, SecretJsonContext.Default.SealedSecret) ?? throw new JsonException("empty sealed secret");
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(SecretInfo))]
[JsonSerializable(typeof(SealedSecret))]
[JsonSerializable(typeof(List<SecretInfo>))]
[JsonSerializable(typeof(VariableScope))]
[JsonSerializable(typeof(List<VariableScope>))]
public sealed partial class SecretJsonContext : JsonSerializerContext;

using System.Text.Json.Serialization;

namespace Orchestrator.Api;

/// <summary>
/// Device identity (docs/nats-security.md, "Enrolment"): one-time tokens, enrolment, renewal,
/// revocation and operator users, served by `orchd identity serve` on <c>orch.identity.*</c>.
/// Requests are JSON; a refusal is an <see cref="ErrorReply"/>.
/// </summary>
public static class IdentitySubjects
{
    /// <summary>A device with a token asks for its credentials (the token's own user may publish only here).</summary>
    public const string Enroll = Subjects.Prefix + ".identity.enroll";
    /// <summary>A node asks for a fresh JWT for its key before its current one expires.</summary>
    public const string Renew = Subjects.Prefix + ".identity.renew";
    /// <summary>Admin: make an enrolment token.</summary>
    public const string TokenCreate = Subjects.Prefix + ".identity.token.create";
    /// <summary>Admin: revoke an enrolment token (its remaining uses, and its user at the servers).</summary>
    public const string TokenRevoke = Subjects.Prefix + ".identity.token.revoke";
    /// <summary>Admin: revoke a node's credentials (the server closes its connection and refuses it).</summary>
    public const string Revoke = Subjects.Prefix + ".identity.revoke";
    /// <summary>Admin: issue a user JWT for an operator's key in a role (viewer, deployer, admin).</summary>
    public const string UserCreate = Subjects.Prefix + ".identity.user.create";
    /// <summary>What the service subscribes to.</summary>
    public const string All = Subjects.Prefix + ".identity.>";
    // The records below have settable collections: System.Text.Json's source generator sets a
    // missing init-only property to null, not to its initialiser (IdentityWireTests).

    /// <summary>The bucket of tokens (token.&lt;id&gt;), node identities (node.&lt;name&gt;) and the account's revocations (revocations).</summary>
    public const string Bucket = "orch-identity";

    /// <summary>Reply prefix of a device enrolling with token <paramref name="tokenId"/> (the only inbox its token user may read).</summary>
    public static string EnrollInbox(string tokenId) => $"_INBOX_enroll_{tokenId}";
}

public sealed record TokenCreateRequest
{
    public int SchemaVersion { get; init; } = 1;
    /// <summary>Labels the enrolled devices get (null: none).</summary>
    public Dictionary<string, string>? Labels { get; init; }
    /// <summary>How many devices it enrols (null: 1).</summary>
    public int? Uses { get; init; }
    /// <summary>How long it is valid (null: 24 hours).</summary>
    public long? TtlSeconds { get; init; }
    /// <summary>Devices enrolled with it may take the scheduler lease (a scheduler's rights).</summary>
    public bool Scheduler { get; init; }
}

public sealed record TokenCreateReply
{
    public int SchemaVersion { get; init; } = 1;
    public required string Id { get; init; }
    /// <summary>What `orchd enroll URL TOKEN` takes: the token's id, its secret and the credentials that may only ask to enrol.</summary>
    public required string Token { get; init; }
    public DateTimeOffset Expires { get; init; }
}

/// <summary>
/// A device's enrolment (or renewal): its name, the public key it made (the seed never leaves
/// it), and its signature over <see cref="ProofBytes"/> with that key.
/// </summary>
public sealed record EnrollRequest
{
    public int SchemaVersion { get; init; } = 1;
    /// <summary>Token id and secret (enrolment only).</summary>
    public string TokenId { get; init; } = "";
    public string Secret { get; init; } = "";
    public required string Node { get; init; }
    public required string PublicKey { get; init; }
    /// <summary>Unix milliseconds when signed; the service refuses a proof older than 5 minutes.</summary>
    public long At { get; init; }
    /// <summary>base64 ed25519 signature over <see cref="ProofBytes"/>.</summary>
    public string Signature { get; init; } = "";

    public static byte[] ProofBytes(string purpose, string tokenId, string node, string publicKey, long at)
        => System.Text.Encoding.UTF8.GetBytes($"orch-{purpose}-v1\n{tokenId}\n{node}\n{publicKey}\n{at}\n");
}

public sealed record EnrollReply
{
    public int SchemaVersion { get; init; } = 1;
    public required string Node { get; init; }
    /// <summary>The node's user JWT (limited to its own subjects), to go with its seed in a .creds file.</summary>
    public required string Jwt { get; init; }
    public DateTimeOffset Expires { get; init; }
    public Dictionary<string, string> Labels { get; set; } = [];
    /// <summary>The fleet's manifest-signing keys (fleet.trusted_keys).</summary>
    public List<string> TrustedKeys { get; set; } = [];
    public bool Scheduler { get; init; }
}

public sealed record RevokeRequest
{
    public int SchemaVersion { get; init; } = 1;
    /// <summary>The node to revoke (orch.identity.revoke), or the token's id (orch.identity.token.revoke).</summary>
    public required string Node { get; init; }
}

public sealed record RevokeReply
{
    public int SchemaVersion { get; init; } = 1;
    public required string Node { get; init; }
    public required string PublicKey { get; init; }
    public DateTimeOffset RevokedAt { get; init; }
}

public sealed record UserCreateRequest
{
    public int SchemaVersion { get; init; } = 1;
    public required string Name { get; init; }
    /// <summary>viewer, deployer or admin.</summary>
    public required string Role { get; init; }
    public required string PublicKey { get; init; }
    /// <summary>How long the JWT is valid (null: 30 days).</summary>
    public long? TtlSeconds { get; init; }
}

public sealed record UserCreateReply
{
    public int SchemaVersion { get; init; } = 1;
    public required string Jwt { get; init; }
    public DateTimeOffset Expires { get; init; }
}

/// <summary>A token as the service keeps it (the secret only as its SHA-256).</summary>
public sealed record TokenRecord
{
    public int SchemaVersion { get; init; } = 1;
    public required string Id { get; init; }
    public required string SecretHash { get; init; }
    public Dictionary<string, string> Labels { get; set; } = [];
    public int UsesLeft { get; init; }
    public DateTimeOffset Expires { get; init; }
    public DateTimeOffset Created { get; init; }
    public bool Scheduler { get; init; }
    /// <summary>The public key of the token's own (enrol-only) user.</summary>
    public string UserKey { get; init; } = "";
    public List<string> UsedBy { get; set; } = [];
    public DateTimeOffset? RevokedAt { get; init; }
}

/// <summary>A node's identity as the service keeps it.</summary>
public sealed record IdentityRecord
{
    public int SchemaVersion { get; init; } = 1;
    public required string Node { get; init; }
    public required string PublicKey { get; init; }
    public Dictionary<string, string> Labels { get; set; } = [];
    public bool Scheduler { get; init; }
    public DateTimeOffset Enrolled { get; init; }
    public DateTimeOffset Expires { get; init; }
    public string TokenId { get; init; } = "";
    public DateTimeOffset? RevokedAt { get; init; }
}

/// <summary>The account's revocations (user public key → unix seconds), kept so that the account JWT can be issued again with them.</summary>
public sealed record RevocationList
{
    public int SchemaVersion { get; init; } = 1;
    public Dictionary<string, long> Users { get; set; } = [];
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(TokenCreateRequest))]
[JsonSerializable(typeof(TokenCreateReply))]
[JsonSerializable(typeof(EnrollRequest))]
[JsonSerializable(typeof(EnrollReply))]
[JsonSerializable(typeof(RevokeRequest))]
[JsonSerializable(typeof(RevokeReply))]
[JsonSerializable(typeof(UserCreateRequest))]
[JsonSerializable(typeof(UserCreateReply))]
[JsonSerializable(typeof(TokenRecord))]
[JsonSerializable(typeof(IdentityRecord))]
[JsonSerializable(typeof(RevocationList))]
[JsonSerializable(typeof(IdentityInfo))]
[JsonSerializable(typeof(ErrorReply))]
public sealed partial class IdentityJsonContext : JsonSerializerContext;

/// <summary>
/// The public half of a fleet's key hierarchy (identity/service/identity.json, written by
/// `orchctl identity init`): what the enrolment service needs besides its two signing seeds.
/// </summary>
public sealed record IdentityInfo
{
    public int SchemaVersion { get; init; } = 1;
    public required string Name { get; init; }
    /// <summary>The operator's identity key (O…); its seed stays offline.</summary>
    public required string Operator { get; init; }
    /// <summary>The operator signing key (O…) that signs account JWTs (the service re-issues the account with its revocations).</summary>
    public required string OperatorSigningKey { get; init; }
    /// <summary>The fleet's account (A…); its seed stays offline.</summary>
    public required string Account { get; init; }
    /// <summary>The account signing key (A…) that signs every user JWT.</summary>
    public required string AccountSigningKey { get; init; }
    /// <summary>The system account (A…), through which account updates reach the servers.</summary>
    public required string SystemAccount { get; init; }
    /// <summary>Manifest-signing public keys handed to enrolled nodes (fleet.trusted_keys).</summary>
    public List<string> TrustedKeys { get; set; } = [];
}

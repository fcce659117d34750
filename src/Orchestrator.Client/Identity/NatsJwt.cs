using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using NATS.NKeys;

namespace Orchestrator.Client.Identity;

/// <summary>
/// NATS's decentralised-auth JWTs (operator, account and user claims, version 2), written and
/// checked here because no AOT-compatible NATS JWT library is packaged for .NET. The format is
/// nats-io/jwt's: a header {"typ":"JWT","alg":"ed25519-nkey"}, the claims, and an ed25519
/// signature by the issuer's nkey over "header.claims", each part base64url without padding.
/// </summary>
/// <remarks>
/// Only the fields the fleet uses are written (docs/nats-security.md lists them). <c>jti</c> is a
/// unique id (base32 of the claims' SHA-256): nats-server does not recompute it.
/// </remarks>
public static class NatsJwt
{
    private const string Header = """{"typ":"JWT","alg":"ed25519-nkey"}""";

    /// <summary>The operator's self-signed JWT: its signing keys and the system account.</summary>
    public static string Operator(KeyPair operatorKey, string name, IReadOnlyList<string> signingKeys, string systemAccount, DateTimeOffset issuedAt)
        => Sign(operatorKey, operatorKey.GetPublicKey(), name, issuedAt, null, w =>
        {
            WriteStrings(w, "signing_keys", signingKeys);
            w.WriteString("system_account", systemAccount);
            w.WriteString("type", "operator");
            w.WriteNumber("version", 2);
        });

    /// <summary>
    /// An account JWT signed by the operator (or one of its signing keys): no limits, JetStream on
    /// when <paramref name="jetStream"/>, the keys that may sign its users, and the users it revoked
    /// (public key → the time before which every JWT of that key is void).
    /// </summary>
    public static string Account(KeyPair issuer, string accountKey, string name, bool jetStream, IReadOnlyList<string> signingKeys,
        IReadOnlyDictionary<string, long> revocations, DateTimeOffset issuedAt)
        => Sign(issuer, accountKey, name, issuedAt, null, w =>
        {
            w.WriteStartObject("limits");
            foreach (var limit in (string[])["subs", "data", "payload", "imports", "exports", "conn", "leaf"])
            {
                w.WriteNumber(limit, -1);
            }
            w.WriteBoolean("wildcards", true);
            foreach (var limit in (string[])["mem_storage", "disk_storage", "streams", "consumer"])
            {
                w.WriteNumber(limit, jetStream ? -1 : 0);
            }
            w.WriteEndObject();
            WriteStrings(w, "signing_keys", signingKeys);
            if (revocations.Count > 0)
            {
                w.WriteStartObject("revocations");
                foreach (var (key, at) in revocations.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                {
                    w.WriteNumber(key, at);
                }
                w.WriteEndObject();
            }
            w.WriteStartObject("default_permissions");
            w.WriteStartObject("pub");
            w.WriteEndObject();
            w.WriteStartObject("sub");
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteString("type", "account");
            w.WriteNumber("version", 2);
        });

    /// <summary>
    /// A user JWT signed by an account signing key, limited to <paramref name="permissions"/>, valid until <paramref name="expires"/>.
    /// nats-server reads a response permission without a publish allow list as "publish nothing": a user with no limits has AllowResponses false.
    /// </summary>
    public static string User(KeyPair signingKey, string accountKey, string userKey, string name, NatsPermissions permissions, DateTimeOffset issuedAt, DateTimeOffset? expires,
        IReadOnlyList<string>? tags = null)
        => Sign(signingKey, userKey, name, issuedAt, expires, w =>
        {
            WritePermission(w, "pub", permissions.PublishAllow, permissions.PublishDeny);
            WritePermission(w, "sub", permissions.SubscribeAllow, []);
            if (permissions.AllowResponses)
            {
                w.WriteStartObject("resp");
                w.WriteNumber("max", 1);
                w.WriteNumber("ttl", 0);
                w.WriteEndObject();
            }
            w.WriteNumber("subs", -1);
            w.WriteNumber("data", -1);
            w.WriteNumber("payload", -1);
            w.WriteString("issuer_account", accountKey);
            if (tags is { Count: > 0 })
            {
                WriteStrings(w, "tags", tags);
            }
            w.WriteString("type", "user");
            w.WriteNumber("version", 2);
        });

    /// <summary>A .creds file: the JWT and the seed in the blocks nats-server's clients read.</summary>
    public static string Creds(string jwt, string seed) =>
        $"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n" +
        "************************* IMPORTANT *************************\n" +
        "NKEY Seed printed below can be used to sign and prove identity.\n" +
        "NKEYs are sensitive and should be treated as secrets.\n\n" +
        $"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n" +
        "*************************************************************\n";

    /// <summary>The JWT in a .creds file's text, or null.</summary>
    public static string? JwtOfCreds(string creds)
    {
        var lines = creds.Split('\n').Select(l => l.Trim()).ToArray();
        var start = Array.FindIndex(lines, l => l.Contains("BEGIN NATS USER JWT", StringComparison.Ordinal));
        return start >= 0 && start + 1 < lines.Length && lines[start + 1].Length > 0 ? lines[start + 1] : null;
    }

    /// <summary>What a checked JWT says: its subject, issuer, name, issue and expiry times, and the claims' JSON.</summary>
    public sealed record Claims(string Subject, string Issuer, string Name, DateTimeOffset IssuedAt, DateTimeOffset? Expires, string Type, string Json)
    {
        /// <summary>The account that issued a user JWT (its issuer_account, or its issuer when the account key signed it itself).</summary>
        public string IssuerAccount
        {
            get
            {
                using var doc = JsonDocument.Parse(Json);
                return doc.RootElement.TryGetProperty("nats", out var nats) && nats.TryGetProperty("issuer_account", out var a) && a.GetString() is { Length: > 0 } account
                    ? account : Issuer;
            }
        }
    }

    /// <summary>
    /// Decodes a JWT and checks its signature against its issuer's key. Throws
    /// <see cref="FormatException"/> with what is wrong (not a JWT, not ed25519-nkey, a bad signature).
    /// </summary>
    public static Claims Decode(string jwt)
    {
        var parts = jwt.Trim().Split('.');
        if (parts.Length != 3)
        {
            throw new FormatException("not a JWT (it has no three dot-separated parts)");
        }
        byte[] header, payload, signature;
        try
        {
            header = FromBase64Url(parts[0]);
            payload = FromBase64Url(parts[1]);
            signature = FromBase64Url(parts[2]);
        }
        catch (FormatException)
        {
            throw new FormatException("not a JWT (a part is not base64url)");
        }
        try
        {
            using var h = JsonDocument.Parse(header);
            if (!h.RootElement.TryGetProperty("alg", out var alg) || alg.GetString() is not ("ed25519-nkey" or "ed25519"))
            {
                throw new FormatException("the JWT is not signed with an nkey (alg is not ed25519-nkey)");
            }
            using var doc = JsonDocument.Parse(payload);
            var root = doc.RootElement;
            var issuer = root.TryGetProperty("iss", out var iss) ? iss.GetString() ?? "" : "";
            var subject = root.TryGetProperty("sub", out var sub) ? sub.GetString() ?? "" : "";
            var name = root.TryGetProperty("name", out var n) ? n.GetString() ?? "" : "";
            var iat = root.TryGetProperty("iat", out var i) && i.TryGetInt64(out var iatValue) ? DateTimeOffset.FromUnixTimeSeconds(iatValue) : DateTimeOffset.UnixEpoch;
            DateTimeOffset? exp = root.TryGetProperty("exp", out var e) && e.TryGetInt64(out var expValue) && expValue > 0 ? DateTimeOffset.FromUnixTimeSeconds(expValue) : null;
            var type = root.TryGetProperty("nats", out var nats) && nats.TryGetProperty("type", out var t) ? t.GetString() ?? "" : "";
            bool good;
            try
            {
                using var key = KeyPair.FromPublicKey(issuer);
                good = signature.Length == 64 && key.Verify(Encoding.ASCII.GetBytes(parts[0] + "." + parts[1]), signature);
            }
            catch (Exception x) when (x is not OutOfMemoryException)
            {
                good = false;
            }
            if (!good)
            {
                throw new FormatException($"the JWT's signature is not its issuer's ({Abbreviate(issuer)}): forged or altered");
            }
            return new Claims(subject, issuer, name, iat, exp, type, Encoding.UTF8.GetString(payload));
        }
        catch (JsonException)
        {
            throw new FormatException("not a JWT (its header or claims are not JSON)");
        }
    }

    private static string Sign(KeyPair issuer, string subject, string name, DateTimeOffset issuedAt, DateTimeOffset? expires, Action<Utf8JsonWriter> nats)
    {
        string ClaimsJson(string jti)
        {
            var buffer = new ArrayBufferWriter<byte>(1024);
            using (var w = new Utf8JsonWriter(buffer))
            {
                w.WriteStartObject();
                if (jti.Length > 0)
                {
                    w.WriteString("jti", jti);
                }
                w.WriteNumber("iat", issuedAt.ToUnixTimeSeconds());
                if (expires is { } exp)
                {
                    w.WriteNumber("exp", exp.ToUnixTimeSeconds());
                }
                w.WriteString("iss", issuer.GetPublicKey());
                w.WriteString("name", name);
                w.WriteString("sub", subject);
                w.WriteStartObject("nats");
                nats(w);
                w.WriteEndObject();
                w.WriteEndObject();
            }
            return Encoding.UTF8.GetString(buffer.WrittenSpan);
        }
        var jti = Base32(SHA256.HashData(Encoding.UTF8.GetBytes(ClaimsJson(""))));
        var signed = ToBase64Url(Encoding.UTF8.GetBytes(Header)) + "." + ToBase64Url(Encoding.UTF8.GetBytes(ClaimsJson(jti)));
        var signature = new byte[64];
        issuer.Sign(Encoding.ASCII.GetBytes(signed), signature);
        return signed + "." + ToBase64Url(signature);
    }

    private static void WriteStrings(Utf8JsonWriter w, string name, IEnumerable<string> values)
    {
        w.WriteStartArray(name);
        foreach (var v in values)
        {
            w.WriteStringValue(v);
        }
        w.WriteEndArray();
    }

    private static void WritePermission(Utf8JsonWriter w, string name, IReadOnlyList<string> allow, IReadOnlyList<string> deny)
    {
        w.WriteStartObject(name);
        if (allow.Count > 0)
        {
            WriteStrings(w, "allow", allow);
        }
        if (deny.Count > 0)
        {
            WriteStrings(w, "deny", deny);
        }
        w.WriteEndObject();
    }

    public static string ToBase64Url(ReadOnlySpan<byte> data) => Convert.ToBase64String(data).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    public static byte[] FromBase64Url(string text)
    {
        var s = text.Replace('-', '+').Replace('_', '/');
        return Convert.FromBase64String(s.PadRight(s.Length + (4 - s.Length % 4) % 4, '='));
    }

    /// <summary>RFC 4648 base32 without padding (upper case: jti; lower case: token ids).</summary>
    public static string Base32(ReadOnlySpan<byte> data, bool lowerCase = false)
    {
        var alphabet = lowerCase ? "abcdefghijklmnopqrstuvwxyz234567" : "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        var text = new StringBuilder((data.Length * 8 + 4) / 5);
        int buffer = 0, bits = 0;
        foreach (var b in data)
        {
            buffer = (buffer << 8) | b;
            bits += 8;
            while (bits >= 5)
            {
                text.Append(alphabet[(buffer >> (bits - 5)) & 31]);
                bits -= 5;
            }
        }
        if (bits > 0)
        {
            text.Append(alphabet[(buffer << (5 - bits)) & 31]);
        }
        return text.ToString();
    }

    public static string Abbreviate(string key) => key.Length > 12 ? key[..12] + "…" : key;
}

/// <summary>A NATS user's rights: the subjects it may publish to (and those denied within them), subscribe to, and whether it may reply to requests.</summary>
public sealed record NatsPermissions(IReadOnlyList<string> PublishAllow, IReadOnlyList<string> SubscribeAllow, bool AllowResponses = true)
{
    public IReadOnlyList<string> PublishDeny { get; init; } = [];
}

using System.Text;
using System.Text.Json;
using NATS.Client.Core;
using NATS.NKeys;

namespace Orchestrator.Client.Identity;

/// <summary>
/// An enrolment token as `orchctl node token create` prints it: <c>orchtok1.</c> and base64url of
/// the token's id, its secret, and the credentials of a user that may only ask to enrol.
/// </summary>
public sealed record EnrolmentToken(string Id, string Secret, string Jwt, string Seed)
{
    private const string Prefix = "orchtok1.";

    public static string Format(string id, string secret, string jwt, string seed)
        => Prefix + NatsJwt.ToBase64Url(Encoding.UTF8.GetBytes($"{id}\n{secret}\n{jwt}\n{seed}"));

    /// <summary>Reads a token; throws <see cref="FormatException"/> saying what it should look like.</summary>
    public static EnrolmentToken Parse(string text)
    {
        const string fix = "give the whole token `orchctl node token create` printed (it starts with orchtok1.)";
        text = text.Trim();
        if (!text.StartsWith(Prefix, StringComparison.Ordinal))
        {
            throw new FormatException($"not an enrolment token; {fix}");
        }
        string[] parts;
        try
        {
            parts = Encoding.UTF8.GetString(NatsJwt.FromBase64Url(text[Prefix.Length..])).Split('\n');
        }
        catch (FormatException)
        {
            throw new FormatException($"the enrolment token is damaged (not base64url); {fix}");
        }
        if (parts.Length != 4 || parts.Any(p => p.Length == 0) || !parts[3].StartsWith("SU", StringComparison.Ordinal))
        {
            throw new FormatException($"the enrolment token is damaged (cut short?); {fix}");
        }
        return new EnrolmentToken(parts[0], parts[1], parts[2], parts[3]);
    }
}

/// <summary>
/// What a device keeps after enrolment, in its state dir's identity/ (mode 0700): node.nk (its
/// seed, made on the device), node.creds (the seed and the JWT the service issued) and
/// enrolment.json (its name, labels, the fleet's trusted keys, whether it may schedule).
/// </summary>
public static class DeviceIdentity
{
    public static string Dir(string stateDir) => Path.Combine(stateDir, "identity");
    public static string CredsPath(string stateDir) => Path.Combine(Dir(stateDir), "node.creds");
    public static string SeedPath(string stateDir) => Path.Combine(Dir(stateDir), "node.nk");
    public static string RecordPath(string stateDir) => Path.Combine(Dir(stateDir), "enrolment.json");

    /// <summary>The enrolment record of this state dir, or null when the device never enrolled.</summary>
    public static EnrollReply? Read(string stateDir)
    {
        try
        {
            return File.Exists(RecordPath(stateDir)) && File.Exists(CredsPath(stateDir))
                ? JsonSerializer.Deserialize(File.ReadAllText(RecordPath(stateDir)), IdentityJsonContext.Default.EnrollReply)
                : null;
        }
        catch (JsonException e)
        {
            throw new FormatException($"'{RecordPath(stateDir)}' is damaged ({e.Message}); enrol the device again (orchd enroll URL TOKEN)");
        }
    }

    /// <summary>
    /// Enrols this device: makes its key (or reuses the one a failed attempt made), proves it holds
    /// it, and stores what the service gives back. Throws <see cref="EnrolmentException"/> with the
    /// service's refusal or the connection's failure, in one sentence.
    /// </summary>
    public static async Task<EnrollReply> EnrollAsync(NatsSettings server, EnrolmentToken token, string node, string stateDir, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(Dir(stateDir), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var seed = File.Exists(SeedPath(stateDir)) ? IdentitySetup.ReadSeed(SeedPath(stateDir), 'U').GetSeed() : null;
        if (seed is null)
        {
            using var made = KeyPair.CreatePair(PrefixByte.User);
            seed = made.GetSeed();
            IdentitySetup.WriteSecret(SeedPath(stateDir), seed + "\n");
        }
        using var pair = KeyPair.FromSeed(seed);
        var at = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var signature = new byte[64];
        pair.Sign(EnrollRequest.ProofBytes("enroll", token.Id, node, pair.GetPublicKey(), at), signature);
        var request = new EnrollRequest
        {
            TokenId = token.Id, Secret = token.Secret, Node = node, PublicKey = pair.GetPublicKey(), At = at, Signature = Convert.ToBase64String(signature),
        };
        var settings = server with { CredsFile = null, NKeySeedFile = null, User = null, Password = null, Token = null, InboxPrefix = IdentitySubjects.EnrollInbox(token.Id) };
        var opts = settings.ToNatsOpts($"orchd-enroll-{node}") with { AuthOpts = NatsAuthOpts.Default with { Jwt = token.Jwt, Seed = token.Seed } };
        var reply = await RequestAsync(opts, IdentitySubjects.Enroll, JsonSerializer.SerializeToUtf8Bytes(request, IdentityJsonContext.Default.EnrollRequest), server.DisplayUrls, cancellationToken).ConfigureAwait(false);
        var enrolled = JsonSerializer.Deserialize(reply, IdentityJsonContext.Default.EnrollReply)
            ?? throw new EnrolmentException("the identity service sent an empty reply; try again");
        if (NatsJwt.Decode(enrolled.Jwt).Subject != pair.GetPublicKey())
        {
            throw new EnrolmentException("the identity service issued a JWT for another key; check that nats:// reaches this fleet's service");
        }
        Store(stateDir, enrolled, seed);
        return enrolled;
    }

    /// <summary>
    /// Asks the service for a fresh JWT for this node's key over <paramref name="connection"/> (the
    /// node's own) and stores it; the client reads the creds file at its next connect.
    /// </summary>
    public static async Task<EnrollReply> RenewAsync(INatsConnection connection, string stateDir, CancellationToken cancellationToken)
    {
        var current = Read(stateDir) ?? throw new EnrolmentException($"'{stateDir}' holds no enrolment to renew");
        using var pair = IdentitySetup.ReadSeed(SeedPath(stateDir), 'U');
        var at = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var signature = new byte[64];
        pair.Sign(EnrollRequest.ProofBytes("renew", "", current.Node, pair.GetPublicKey(), at), signature);
        var request = new EnrollRequest { Node = current.Node, PublicKey = pair.GetPublicKey(), At = at, Signature = Convert.ToBase64String(signature) };
        NatsMsg<byte[]> msg;
        try
        {
            msg = await connection.RequestAsync<byte[], byte[]>(IdentitySubjects.Renew, JsonSerializer.SerializeToUtf8Bytes(request, IdentityJsonContext.Default.EnrollRequest),
                replyOpts: new NatsSubOpts { Timeout = TimeSpan.FromSeconds(10) }, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (NatsNoRespondersException)
        {
            throw new EnrolmentException("no identity service answers on orch.identity.renew; start one (orchd identity serve)");
        }
        var reply = Checked(msg.Data);
        var renewed = JsonSerializer.Deserialize(reply, IdentityJsonContext.Default.EnrollReply) ?? throw new EnrolmentException("the identity service sent an empty reply");
        Store(stateDir, renewed, pair.GetSeed());
        return renewed;
    }

    /// <summary>When to renew: once two thirds of the JWT's life have passed.</summary>
    public static DateTimeOffset RenewAt(string jwt)
    {
        var claims = NatsJwt.Decode(jwt);
        return claims.Expires is { } exp ? claims.IssuedAt + (exp - claims.IssuedAt) * 2 / 3 : DateTimeOffset.MaxValue;
    }

    private static void Store(string stateDir, EnrollReply enrolled, string seed)
    {
        IdentitySetup.WriteSecret(CredsPath(stateDir), NatsJwt.Creds(enrolled.Jwt, seed));
        IdentitySetup.WriteSecret(RecordPath(stateDir), JsonSerializer.Serialize(enrolled, IdentityJsonContext.Default.EnrollReply) + "\n");
    }

    /// <summary>One request on a connection of its own; the reply's body, or the refusal as an <see cref="EnrolmentException"/>.</summary>
    public static async Task<byte[]> RequestAsync(NatsOpts opts, string subject, byte[] body, string where, CancellationToken cancellationToken)
    {
        var connection = new NatsConnection(opts);
        await using var _ = connection.ConfigureAwait(false);
        try
        {
            await connection.ConnectAsync().ConfigureAwait(false);
            var msg = await connection.RequestAsync<byte[], byte[]>(subject, body, replyOpts: new NatsSubOpts { Timeout = TimeSpan.FromSeconds(15) }, cancellationToken: cancellationToken).ConfigureAwait(false);
            return Checked(msg.Data);
        }
        catch (NatsNoRespondersException)
        {
            throw new EnrolmentException($"no identity service answers on {subject} at {where}; the fleet's admin starts one (orchd identity serve)", transient: true);
        }
        catch (NatsException e) when (e is not NatsNoReplyException)
        {
            var text = e.InnerException?.Message ?? e.Message;
            var refused = text.Contains("uthoriz", StringComparison.Ordinal) || text.Contains("xpired", StringComparison.Ordinal) || text.Contains("evoked", StringComparison.Ordinal);
            throw new EnrolmentException(refused
                ? $"{where} refused the token's credentials ({text}): the token expired, was revoked or belongs to another fleet; ask for a new one (orchctl node token create)"
                : $"cannot reach {where} ({text}); check the url and that the device reaches the hub", transient: !refused);
        }
        catch (NatsNoReplyException)
        {
            throw new EnrolmentException($"the identity service did not answer within 15 s at {where}; try again", transient: true);
        }
    }

    private static byte[] Checked(byte[]? data)
    {
        var body = data ?? [];
        if (body.Length == 0)
        {
            throw new EnrolmentException("the identity service sent an empty reply; try again");
        }
        using var doc = JsonDocument.Parse(body);
        if (doc.RootElement.TryGetProperty("error", out var error))
        {
            throw new EnrolmentException(error.GetString() ?? "refused");
        }
        return body;
    }
}

/// <summary>An enrolment or renewal that did not happen, in one sentence with the fix.</summary>
/// <param name="transient">The hub or the service could not be reached (try again later), as opposed to a refusal.</param>
public sealed class EnrolmentException(string message, bool transient = false) : OrchestratorException(transient ? ErrorKind.Unavailable : ErrorKind.Forbidden, message)
{
    public bool Transient { get; } = transient;
}

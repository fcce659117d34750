using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.Extensions.Logging;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using NATS.NKeys;
using Orchestrator.Client;
using Orchestrator.Client.Identity;

namespace Orchestrator.Fleet.Identity;

/// <summary>
/// The enrolment service (`orchd identity serve`, docs/nats-security.md "Enrolment"): holds the
/// account signing key and issues user JWTs, to devices with a one-time token, to nodes renewing
/// their own, and to operators in a role; revokes a node by issuing the account again with the
/// node's key in its revocations and pushing it to the servers through the system account.
/// Several may run (a queue group); the bucket's compare-and-set keeps a token's uses exact.
/// </summary>
public sealed class IdentityService(INatsConnection nats, INatsConnection system, IdentityInfo info, KeyPair accountSigning, KeyPair operatorSigning,
    TimeProvider clock, ILogger log, TimeSpan? nodeJwtLifetime = null)
{
    /// <summary>A node's JWT lives this long (30 days); the node renews it when a third is left.</summary>
    public static readonly TimeSpan DefaultJwtLifetime = TimeSpan.FromDays(30);

    /// <summary>How far a proof's time may be from the service's clock.</summary>
    public static readonly TimeSpan ProofWindow = TimeSpan.FromMinutes(5);

    private readonly TimeSpan _jwtLifetime = nodeJwtLifetime ?? DefaultJwtLifetime;
    private INatsKVStore? _bucket;
    private INatsKVStore? _settings;

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var kv = new NatsKVContext(new NatsJSContext((NatsConnection)nats));
        _bucket = await FleetStore.OpenAsync(kv, IdentitySubjects.Bucket, 5, cancellationToken).ConfigureAwait(false);
        _settings = await FleetStore.OpenAsync(kv, Buckets.NodeSettings, 1, cancellationToken).ConfigureAwait(false);
        // The account as the bucket's revocations say, pushed at start: a server that missed an
        // update (down during a revoke) gets it now.
        await PushAccountAsync(await MergeServerRevocationsAsync(cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);
        log.LogInformation("identity service for account {Account} ({Name}) serving {Subject}", info.Account, info.Name, IdentitySubjects.All);
        await foreach (var msg in nats.SubscribeAsync<byte[]>(IdentitySubjects.All, queueGroup: "orch-identity", cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            byte[] reply;
            try
            {
                reply = await HandleAsync(msg.Subject, msg.Data ?? [], cancellationToken).ConfigureAwait(false);
            }
            catch (IdentityException e)
            {
                log.LogInformation("{Subject} refused: {Error}", msg.Subject, e.Message);
                reply = Error(e.Message, e.Kind);
            }
            catch (Exception e) when (e is JsonException or FormatException)
            {
                reply = Error($"the request on {msg.Subject} is not valid JSON of its kind ({e.Message}); use orchctl or orchd enroll", ErrorKind.Invalid);
            }
            catch (Exception e) when (e is NatsException or NatsJSException && !cancellationToken.IsCancellationRequested)
            {
                log.LogWarning("{Subject} failed: {Error}", msg.Subject, e.Message);
                reply = Error($"the identity service could not reach its bucket or the servers ({e.Message}); try again", ErrorKind.Unavailable);
            }
            catch (Exception e) when (e is not OperationCanceledException && e is not OutOfMemoryException)
            {
                // One request's failure never ends the service: it answers the next one.
                log.LogError(e, "{Subject} failed", msg.Subject);
                reply = Error($"the identity service failed on this request ({e.GetType().Name}: {e.Message}); please report it", ErrorKind.Internal);
            }
            if (msg.ReplyTo is not null)
            {
                await msg.ReplyAsync(reply, cancellationToken: cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>One request: its reply (JSON), or an <see cref="IdentityException"/>.</summary>
    public async Task<byte[]> HandleAsync(string subject, byte[] body, CancellationToken cancellationToken) => subject switch
    {
        IdentitySubjects.TokenCreate => Json(await CreateTokenAsync(Parse(body, IdentityJsonContext.Default.TokenCreateRequest), cancellationToken).ConfigureAwait(false), IdentityJsonContext.Default.TokenCreateReply),
        IdentitySubjects.Enroll => Json(await EnrollAsync(Parse(body, IdentityJsonContext.Default.EnrollRequest), cancellationToken).ConfigureAwait(false), IdentityJsonContext.Default.EnrollReply),
        IdentitySubjects.Renew => Json(await RenewAsync(Parse(body, IdentityJsonContext.Default.EnrollRequest), cancellationToken).ConfigureAwait(false), IdentityJsonContext.Default.EnrollReply),
        IdentitySubjects.TokenRevoke => Json(await RevokeTokenAsync(Parse(body, IdentityJsonContext.Default.RevokeRequest), cancellationToken).ConfigureAwait(false), IdentityJsonContext.Default.RevokeReply),
        IdentitySubjects.Revoke => Json(await RevokeAsync(Parse(body, IdentityJsonContext.Default.RevokeRequest), cancellationToken).ConfigureAwait(false), IdentityJsonContext.Default.RevokeReply),
        IdentitySubjects.UserCreate => Json(CreateUser(Parse(body, IdentityJsonContext.Default.UserCreateRequest)), IdentityJsonContext.Default.UserCreateReply),
        _ => throw new IdentityException($"'{subject}' is not an identity request (enroll, renew, token.create, token.revoke, revoke, user.create)", ErrorKind.NotFound),
    };

    private async Task<TokenCreateReply> CreateTokenAsync(TokenCreateRequest request, CancellationToken cancellationToken)
    {
        var uses = request.Uses ?? 1;
        var ttl = request.TtlSeconds ?? 24 * 3600;
        if (uses is < 1 or > 100_000)
        {
            throw new IdentityException($"--uses {uses} is out of range; give 1 to 100000", ErrorKind.Invalid);
        }
        if (ttl is < 60 or > 365L * 24 * 3600)
        {
            throw new IdentityException($"--ttl of {ttl} s is out of range; give 1m to 365d", ErrorKind.Invalid);
        }
        var labels = request.Labels ?? [];
        foreach (var (key, value) in labels)
        {
            if (NodeLabelProblem(key, value) is { } problem)
            {
                throw new IdentityException(problem, ErrorKind.Invalid);
            }
        }
        var now = clock.GetUtcNow();
        var expires = now.AddSeconds(ttl);
        var id = NatsJwt.Base32(RandomNumberGenerator.GetBytes(10), lowerCase: true);
        var secret = NatsJwt.ToBase64Url(RandomNumberGenerator.GetBytes(24));
        using var user = KeyPair.CreatePair(PrefixByte.User);
        var jwt = NatsJwt.User(accountSigning, info.Account, user.GetPublicKey(), $"enrol-{id}", FleetPermissions.Enrolment(id), now, expires, ["orch-enrolment"]);
        var record = new TokenRecord
        {
            Id = id, SecretHash = Hash(secret), Labels = labels, UsesLeft = uses, Expires = expires, Created = now,
            Scheduler = request.Scheduler, UserKey = user.GetPublicKey(),
        };
        await Bucket.CreateAsync($"token.{id}", Json(record, IdentityJsonContext.Default.TokenRecord), cancellationToken: cancellationToken).ConfigureAwait(false);
        log.LogInformation("token {Id} made: {Uses} use(s), until {Expires:u}, labels {Labels}", id, uses, expires, string.Join(",", labels.Select(kv => $"{kv.Key}={kv.Value}")));
        return new TokenCreateReply { Id = id, Token = EnrolmentToken.Format(id, secret, jwt, user.GetSeed()), Expires = expires };
    }

    private async Task<EnrollReply> EnrollAsync(EnrollRequest request, CancellationToken cancellationToken)
    {
        CheckNodeName(request.Node);
        for (var attempt = 0; ; attempt++)
        {
            var (token, revision) = await GetAsync($"token.{request.TokenId}", IdentityJsonContext.Default.TokenRecord, cancellationToken).ConfigureAwait(false);
            if (token is null || !CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(token.SecretHash), Encoding.ASCII.GetBytes(Hash(request.Secret))))
            {
                throw new IdentityException($"enrolment token {Safe(request.TokenId)} is not known (mistyped, or made for another fleet); ask the fleet's admin for a new one (orchctl node token create)", ErrorKind.Forbidden);
            }
            var now = clock.GetUtcNow();
            if (token.RevokedAt is { } revokedAt)
            {
                throw new IdentityException($"enrolment token {token.Id} was revoked at {revokedAt:u}; ask the fleet's admin for a new one (orchctl node token create)", ErrorKind.Forbidden);
            }
            if (now >= token.Expires)
            {
                throw new IdentityException($"enrolment token {token.Id} expired at {token.Expires:u}; ask the fleet's admin for a new one (orchctl node token create --ttl …)", ErrorKind.Forbidden);
            }
            CheckProof("enroll", request.TokenId, request);
            var (existing, _) = await GetAsync($"node.{request.Node}", IdentityJsonContext.Default.IdentityRecord, cancellationToken).ConfigureAwait(false);
            var retry = existing is not null && existing.PublicKey == request.PublicKey && existing.TokenId == token.Id && existing.RevokedAt is null;
            if (existing is not null && !retry && existing.RevokedAt is null)
            {
                throw new IdentityException($"node name '{request.Node}' is enrolled already (key {NatsJwt.Abbreviate(existing.PublicKey)}); revoke it first (orchctl node revoke {request.Node}) or enrol under another name (orchd enroll --node-name)", ErrorKind.Conflict);
            }
            if (!retry)
            {
                if (token.UsesLeft <= 0)
                {
                    throw new IdentityException($"enrolment token {token.Id} has been used ({string.Join(", ", token.UsedBy)}); a token enrols as many devices as its --uses; ask for a new one (orchctl node token create)", ErrorKind.Forbidden);
                }
                var spent = token with { UsesLeft = token.UsesLeft - 1, UsedBy = [.. token.UsedBy, request.Node] };
                try
                {
                    await Bucket.UpdateAsync($"token.{token.Id}", Json(spent, IdentityJsonContext.Default.TokenRecord), revision, cancellationToken: cancellationToken).ConfigureAwait(false);
                }
                catch (NatsKVWrongLastRevisionException) when (attempt < 20)
                {
                    continue; // another device used the token meanwhile: read it again
                }
            }
            var expires = now + _jwtLifetime;
            var record = new IdentityRecord
            {
                Node = request.Node, PublicKey = request.PublicKey, Labels = token.Labels, Scheduler = token.Scheduler, Enrolled = now, Expires = expires, TokenId = token.Id,
            };
            await Bucket.PutAsync($"node.{request.Node}", Json(record, IdentityJsonContext.Default.IdentityRecord), cancellationToken: cancellationToken).ConfigureAwait(false);
            if (!retry)
            {
                // A new key under a name that was revoked (the record of it may be gone with a lost store): its settings back to normal.
                await SetRevokedAsync(request.Node, revoked: false, cancellationToken).ConfigureAwait(false);
            }
            log.LogInformation("node {Node} enrolled with token {Token}, key {Key}, until {Expires:u}", request.Node, token.Id, request.PublicKey, expires);
            return Issue(record, now);
        }
    }

    private async Task<EnrollReply> RenewAsync(EnrollRequest request, CancellationToken cancellationToken)
    {
        CheckNodeName(request.Node);
        var (record, _) = await GetAsync($"node.{request.Node}", IdentityJsonContext.Default.IdentityRecord, cancellationToken).ConfigureAwait(false);
        if (record is null || record.PublicKey != request.PublicKey)
        {
            throw new IdentityException($"node '{request.Node}' with key {NatsJwt.Abbreviate(request.PublicKey)} is not enrolled; enrol it with a token (orchd enroll)", ErrorKind.Forbidden);
        }
        if (record.RevokedAt is { } at)
        {
            throw new IdentityException($"node '{request.Node}' was revoked at {at:u}; a revoked device enrols again with a new token under a new key", ErrorKind.Forbidden);
        }
        CheckProof("renew", "", request);
        var now = clock.GetUtcNow();
        var renewed = record with { Expires = now + _jwtLifetime };
        await Bucket.PutAsync($"node.{request.Node}", Json(renewed, IdentityJsonContext.Default.IdentityRecord), cancellationToken: cancellationToken).ConfigureAwait(false);
        log.LogInformation("node {Node} renewed its JWT until {Expires:u}", request.Node, renewed.Expires);
        return Issue(renewed, now);
    }

    private async Task<RevokeReply> RevokeAsync(RevokeRequest request, CancellationToken cancellationToken)
    {
        CheckNodeName(request.Node);
        var (record, _) = await GetAsync($"node.{request.Node}", IdentityJsonContext.Default.IdentityRecord, cancellationToken).ConfigureAwait(false);
        if (record is null)
        {
            throw new IdentityException($"node '{request.Node}' has no enrolled identity; `orchctl get nodes` lists the fleet's nodes (a node with static credentials is removed from the server's configuration instead)", ErrorKind.NotFound);
        }
        var revokedAt = record.RevokedAt ?? clock.GetUtcNow();
        await AddRevocationAsync(record.PublicKey, revokedAt, cancellationToken).ConfigureAwait(false);
        await Bucket.PutAsync($"node.{request.Node}", Json(record with { RevokedAt = revokedAt }, IdentityJsonContext.Default.IdentityRecord), cancellationToken: cancellationToken).ConfigureAwait(false);
        await SetRevokedAsync(request.Node, revoked: true, cancellationToken).ConfigureAwait(false);
        log.LogWarning("node {Node} revoked (key {Key}); its connections are closed and the scheduler takes it for lost", request.Node, record.PublicKey);
        return new RevokeReply { Node = request.Node, PublicKey = record.PublicKey, RevokedAt = revokedAt };
    }

    /// <summary>
    /// Adds a user key to the account's revocations (every JWT of that key issued up to
    /// <paramref name="at"/> is void: nats-server compares the JWT's iat) and pushes the account.
    /// </summary>
    private async Task AddRevocationAsync(string userKey, DateTimeOffset at, CancellationToken cancellationToken)
    {
        for (var attempt = 0; ; attempt++)
        {
            var (list, revision) = await ReadRevocationsAsync(cancellationToken).ConfigureAwait(false);
            var users = new Dictionary<string, long>(list.Users) { [userKey] = at.ToUnixTimeSeconds() };
            var updated = list with { Users = users };
            try
            {
                if (revision == 0)
                {
                    await Bucket.CreateAsync("revocations", Json(updated, IdentityJsonContext.Default.RevocationList), cancellationToken: cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    await Bucket.UpdateAsync("revocations", Json(updated, IdentityJsonContext.Default.RevocationList), revision, cancellationToken: cancellationToken).ConfigureAwait(false);
                }
                await PushAccountAsync(updated, cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (Exception e) when (e is NatsKVWrongLastRevisionException or NatsKVCreateException && attempt < 20)
            {
            }
        }
    }

    private async Task<RevokeReply> RevokeTokenAsync(RevokeRequest request, CancellationToken cancellationToken)
    {
        for (var attempt = 0; ; attempt++)
        {
            var (token, revision) = await GetAsync($"token.{request.Node}", IdentityJsonContext.Default.TokenRecord, cancellationToken).ConfigureAwait(false);
            if (token is null)
            {
                throw new IdentityException($"no enrolment token '{Safe(request.Node)}'; the id is the token's first part that `orchctl node token create` printed on stderr", ErrorKind.NotFound);
            }
            var at = token.RevokedAt ?? clock.GetUtcNow();
            try
            {
                await Bucket.UpdateAsync($"token.{token.Id}", Json(token with { UsesLeft = 0, RevokedAt = at }, IdentityJsonContext.Default.TokenRecord), revision, cancellationToken: cancellationToken).ConfigureAwait(false);
            }
            catch (NatsKVWrongLastRevisionException) when (attempt < 20)
            {
                continue;
            }
            // Its enrol-only user may not even connect any more.
            await AddRevocationAsync(token.UserKey, at, cancellationToken).ConfigureAwait(false);
            log.LogWarning("token {Id} revoked ({Used} used it)", token.Id, token.UsedBy.Count);
            return new RevokeReply { Node = token.Id, PublicKey = token.UserKey, RevokedAt = at };
        }
    }

    private UserCreateReply CreateUser(UserCreateRequest request)
    {
        if (!FleetPermissions.Roles.Contains(request.Role))
        {
            throw new IdentityException($"'{request.Role}' is not a role; give one of {string.Join(", ", FleetPermissions.Roles)}", ErrorKind.Invalid);
        }
        if (!IsUserKey(request.PublicKey))
        {
            throw new IdentityException($"'{NatsJwt.Abbreviate(request.PublicKey)}' is not a public user nkey (U…); orchctl makes the key itself", ErrorKind.Invalid);
        }
        var ttl = request.TtlSeconds ?? 30L * 24 * 3600;
        if (ttl is < 60 or > 3650L * 24 * 3600)
        {
            throw new IdentityException($"--ttl of {ttl} s is out of range; give 1m to 3650d", ErrorKind.Invalid);
        }
        var now = clock.GetUtcNow();
        var expires = now.AddSeconds(ttl);
        var jwt = NatsJwt.User(accountSigning, info.Account, request.PublicKey, request.Name, FleetPermissions.Operator(request.Role), now, expires, [$"role:{request.Role}"]);
        log.LogInformation("user {Name} issued in role {Role} until {Expires:u}", request.Name, request.Role, expires);
        return new UserCreateReply { Jwt = jwt, Expires = expires };
    }

    private EnrollReply Issue(IdentityRecord record, DateTimeOffset now)
    {
        var permissions = record.Scheduler ? FleetPermissions.Scheduler(record.Node) : FleetPermissions.Node(record.Node);
        var jwt = NatsJwt.User(accountSigning, info.Account, record.PublicKey, record.Node, permissions, now, record.Expires, [record.Scheduler ? "role:scheduler" : "role:node"]);
        return new EnrollReply { Node = record.Node, Jwt = jwt, Expires = record.Expires, Labels = record.Labels, TrustedKeys = info.TrustedKeys, Scheduler = record.Scheduler };
    }

    /// <summary>The account with these revocations, signed again and sent to every server (a request on $SYS.REQ.CLAIMS.UPDATE).</summary>
    private async Task PushAccountAsync(RevocationList list, CancellationToken cancellationToken)
    {
        // iat must move on, or a server keeps the older JWT it holds for the same second.
        var jwt = IdentitySetup.AccountJwt(operatorSigning, info, list.Users, clock.GetUtcNow());
        var reply = await system.RequestAsync<byte[], byte[]>("$SYS.REQ.CLAIMS.UPDATE", Encoding.ASCII.GetBytes(jwt),
            replyOpts: new NatsSubOpts { Timeout = TimeSpan.FromSeconds(5) }, cancellationToken: cancellationToken).ConfigureAwait(false);
        var text = reply.Data is { } d ? Encoding.UTF8.GetString(d) : "";
        using var doc = JsonDocument.Parse(text.Length > 0 ? text : "{}");
        if (doc.RootElement.TryGetProperty("error", out var error))
        {
            throw new IdentityException($"the servers refused the account update: {error}; check that nats-server runs with the operator and system account of this identity (server/nats-server.conf)", ErrorKind.Unavailable);
        }
    }

    /// <summary>
    /// The node's settings say revoked (and cordoned): the scheduler takes it for lost at once. A
    /// name enrolled again under a new key gets its settings back to normal.
    /// </summary>
    private async Task SetRevokedAsync(string node, bool revoked, CancellationToken cancellationToken)
    {
        var settings = _settings ?? throw new InvalidOperationException("the identity service is not running");
        for (var attempt = 0; attempt < 20; attempt++)
        {
            NodeSettings current = new();
            ulong revision = 0;
            try
            {
                var entry = await settings.GetEntryAsync<byte[]>(node, cancellationToken: cancellationToken).ConfigureAwait(false);
                if (entry.Value is { Length: > 0 } v)
                {
                    current = JsonSerializer.Deserialize(v, FleetJsonContext.Default.NodeSettings) ?? new NodeSettings();
                }
                revision = entry.Revision;
            }
            catch (NatsKVKeyNotFoundException)
            {
            }
            catch (NatsKVKeyDeletedException e)
            {
                revision = e.Revision;
            }
            if (!revoked && !current.Revoked)
            {
                return;
            }
            var body = JsonSerializer.SerializeToUtf8Bytes(revoked ? current with { Revoked = true, Cordoned = true } : new NodeSettings(), FleetJsonContext.Default.NodeSettings);
            try
            {
                if (revision == 0)
                {
                    await settings.CreateAsync(node, body, cancellationToken: cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    await settings.UpdateAsync(node, body, revision, cancellationToken: cancellationToken).ConfigureAwait(false);
                }
                return;
            }
            catch (Exception e) when (e is NatsKVWrongLastRevisionException or NatsKVCreateException)
            {
            }
        }
        throw new IdentityException($"node '{node}': its settings kept changing under the identity service; run the command again", ErrorKind.Conflict);
    }

    /// <summary>
    /// The revocations the servers hold now (the account JWT the full resolver keeps on its own
    /// disk), merged into the bucket's: a hub whose JetStream store was lost keeps its revocations,
    /// and the service never pushes an account that forgets one.
    /// </summary>
    private async Task<RevocationList> MergeServerRevocationsAsync(CancellationToken cancellationToken)
    {
        var (list, revision) = await ReadRevocationsAsync(cancellationToken).ConfigureAwait(false);
        Dictionary<string, long> held = [];
        try
        {
            var reply = await system.RequestAsync<byte[], byte[]>($"$SYS.REQ.ACCOUNT.{info.Account}.CLAIMS.LOOKUP", [],
                replyOpts: new NatsSubOpts { Timeout = TimeSpan.FromSeconds(5) }, cancellationToken: cancellationToken).ConfigureAwait(false);
            var jwt = reply.Data is { Length: > 0 } d ? Encoding.ASCII.GetString(d).Trim() : "";
            if (jwt.Count(c => c == '.') == 2)
            {
                var claims = NatsJwt.Decode(jwt);
                using var doc = JsonDocument.Parse(claims.Json);
                if (claims.Subject == info.Account && doc.RootElement.TryGetProperty("nats", out var n) && n.TryGetProperty("revocations", out var r) && r.ValueKind == JsonValueKind.Object)
                {
                    foreach (var user in r.EnumerateObject())
                    {
                        if (user.Value.TryGetInt64(out var at))
                        {
                            held[user.Name] = at;
                        }
                    }
                }
            }
        }
        catch (Exception e) when (e is NatsException or FormatException or JsonException && !cancellationToken.IsCancellationRequested)
        {
            log.LogWarning("could not read the servers' account to merge its revocations ({Error}); pushing the bucket's", e.Message);
        }
        var missing = held.Where(kv => !list.Users.ContainsKey(kv.Key)).ToList();
        if (missing.Count == 0)
        {
            return list;
        }
        var merged = list with { Users = new Dictionary<string, long>(list.Users.Concat(missing)) };
        var body = Json(merged, IdentityJsonContext.Default.RevocationList);
        if (revision == 0)
        {
            await Bucket.PutAsync("revocations", body, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        else
        {
            await Bucket.UpdateAsync("revocations", body, revision, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        log.LogWarning("{Count} revocation(s) the servers hold were missing from the bucket (a lost store?); kept", missing.Count);
        return merged;
    }

    private async Task<(RevocationList List, ulong Revision)> ReadRevocationsAsync(CancellationToken cancellationToken)
    {
        var (list, revision) = await GetAsync("revocations", IdentityJsonContext.Default.RevocationList, cancellationToken).ConfigureAwait(false);
        return (list ?? new RevocationList(), revision);
    }

    private async Task<(T? Value, ulong Revision)> GetAsync<T>(string key, JsonTypeInfo<T> type, CancellationToken cancellationToken) where T : class
    {
        if (!IsKeySafe(key))
        {
            return (null, 0);
        }
        try
        {
            var entry = await Bucket.GetEntryAsync<byte[]>(key, cancellationToken: cancellationToken).ConfigureAwait(false);
            return (entry.Value is { Length: > 0 } v ? JsonSerializer.Deserialize(v, type) : null, entry.Revision);
        }
        catch (NatsKVKeyNotFoundException)
        {
            return (null, 0);
        }
        catch (NatsKVKeyDeletedException e)
        {
            return (null, e.Revision);
        }
    }

    private void CheckProof(string purpose, string tokenId, EnrollRequest request)
    {
        if (!IsUserKey(request.PublicKey))
        {
            throw new IdentityException($"'{NatsJwt.Abbreviate(request.PublicKey)}' is not a public user nkey (U…); orchd enroll makes the key itself", ErrorKind.Invalid);
        }
        var at = DateTimeOffset.FromUnixTimeMilliseconds(Math.Clamp(request.At, 0, 253402300799999));
        if ((clock.GetUtcNow() - at).Duration() > ProofWindow)
        {
            throw new IdentityException($"the {purpose} proof of '{request.Node}' was signed at {at:u}, more than 5 minutes from the service's clock; set the device's clock (NTP) and try again", ErrorKind.Forbidden);
        }
        bool good;
        try
        {
            using var key = KeyPair.FromPublicKey(request.PublicKey);
            var signature = Convert.FromBase64String(request.Signature);
            good = signature.Length == 64 && key.Verify(EnrollRequest.ProofBytes(purpose, tokenId, request.Node, request.PublicKey, request.At), signature);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            good = false;
        }
        if (!good)
        {
            throw new IdentityException($"the {purpose} request of '{request.Node}' is not signed by the key it names ({NatsJwt.Abbreviate(request.PublicKey)}); only the device holding the seed can enrol or renew it", ErrorKind.Forbidden);
        }
    }

    private static void CheckNodeName(string node)
    {
        if (!Subjects.IsValidToken(node))
        {
            throw new IdentityException($"'{Safe(node)}' is not a node name (1-63 letters, digits, '-', '_'); give --node-name", ErrorKind.Invalid);
        }
    }

    /// <summary>Why a label from a token is not a node label, or null.</summary>
    public static string? NodeLabelProblem(string key, string value)
        => key.Length is 0 or > 63 || !key.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or '/')
            ? $"label key '{Safe(key)}' is not valid (1-63 letters, digits, '-', '_', '.', '/')"
            : value.Length > 63 || !value.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')
                ? $"label {key}: value '{Safe(value)}' is not valid (at most 63 letters, digits, '-', '_', '.')"
                : null;

    private static bool IsUserKey(string key) => key.Length == 56 && key[0] == 'U' && key.All(c => c is >= 'A' and <= 'Z' or >= '2' and <= '7');

    private static bool IsKeySafe(string key) => key.Length is > 0 and < 200 && key.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.') && !key.EndsWith('.');

    private static string Safe(string text) => text.Length > 64 ? text[..64] + "…" : new string(text.Select(c => char.IsControl(c) ? '?' : c).ToArray());

    private static string Hash(string secret) => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(secret)));

    private INatsKVStore Bucket => _bucket ?? throw new InvalidOperationException("the identity service is not running");

    private static T Parse<T>(byte[] body, JsonTypeInfo<T> type) => JsonSerializer.Deserialize(body, type) ?? throw new JsonException("empty request");

    private static byte[] Json<T>(T value, JsonTypeInfo<T> type) => JsonSerializer.SerializeToUtf8Bytes(value, type);

    private static byte[] Error(string message, ErrorKind kind) => JsonSerializer.SerializeToUtf8Bytes(new ErrorReply { Error = message, Code = kind }, IdentityJsonContext.Default.ErrorReply);
}

/// <summary>A refusal of the identity service: one sentence with the fix.</summary>
public sealed class IdentityException(string message, ErrorKind kind) : OrchestratorException(kind, message);

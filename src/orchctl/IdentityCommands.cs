using System.Text.Json;
using NATS.Client.Core;
using Orchestrator.Api;
using Orchestrator.Client.Identity;

namespace Orchestrator.Ctl;

/// <summary>
/// Device identity (docs/nats-security.md, "Enrolment"): `identity init` makes the fleet's key
/// hierarchy offline; `node token create`, `node revoke` and `identity user create` ask the
/// enrolment service (`orchd identity serve`) over NATS.
/// </summary>
internal static class IdentityCommands
{
    /// <summary>identity init DIR: no NATS.</summary>
    public static int Init(List<string> args)
    {
        var parsed = ParsedArgs.Parse("identity", args);
        if (parsed.Positional is not ["init", var dir])
        {
            throw new UsageException("identity init DIR [--name NAME] [--trusted-key U…] | identity user create NAME --role ROLE -o FILE");
        }
        var trusted = parsed.Values("--trusted-key").ToList();
        foreach (var key in trusted)
        {
            if (key.Length != 56 || key[0] != 'U')
            {
                throw new UsageException($"--trusted-key '{key}' is not a public user nkey (U…); `orchctl keys show SEEDFILE` prints one");
            }
        }
        IdentityInfo info;
        try
        {
            info = IdentitySetup.Init(dir, parsed.Value("--name") ?? "orchestrator", trusted, DateTimeOffset.UtcNow);
        }
        catch (InvalidOperationException e)
        {
            throw new UsageException(e.Message);
        }
        Console.Out.WriteLine($"operator {info.Operator} ({info.Name}), account {info.Account}, system account {info.SystemAccount}");
        Console.Out.WriteLine($"  {Path.Combine(dir, "offline")}/   the operator's and the account's identity seeds: move them off this machine");
        Console.Out.WriteLine($"  {Path.Combine(dir, "service")}/   for `orchd identity serve --dir {Path.Combine(dir, "service")}` (the signing keys)");
        Console.Out.WriteLine($"  {Path.Combine(dir, "server", "nats-server.conf")}   include it in every hub server's configuration");
        Console.Out.WriteLine($"  {Path.Combine(dir, "admin.creds")}   your credentials (role admin): orchctl --creds {Path.Combine(dir, "admin.creds")} …");
        return 0;
    }

    public static async Task<int> RunAsync(string command, List<string> args, CommandContext context)
    {
        var parsed = ParsedArgs.Parse(command, args);
        switch (command, parsed.Positional)
        {
            case ("node", ["token", "create"]):
            {
                var labels = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var pair in parsed.Values("--labels").SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries)))
                {
                    var kv = pair.Split('=', 2);
                    if (kv.Length != 2 || kv[0].Length == 0)
                    {
                        throw new UsageException($"--labels: '{pair}' is not KEY=VALUE (like site=lab,role=camera)");
                    }
                    labels[kv[0]] = kv[1];
                }
                int? uses = parsed.Value("--uses") is { } u ? int.TryParse(u, out var n) ? n : throw new UsageException($"--uses '{u}' is not a number") : null;
                long? ttl = parsed.Value("--ttl") is { } t ? Orchestrator.Syntax.Duration.TryParse(t, out var d) ? (long)d.TotalSeconds : throw new UsageException($"--ttl '{t}' is not a duration (like 24h, 7d)") : null;
                var request = new TokenCreateRequest { Labels = labels, Uses = uses, TtlSeconds = ttl, Scheduler = parsed.Has("--scheduler") };
                var reply = await AskAsync(context, IdentitySubjects.TokenCreate, JsonSerializer.SerializeToUtf8Bytes(request, IdentityJsonContext.Default.TokenCreateRequest), IdentityJsonContext.Default.TokenCreateReply).ConfigureAwait(false);
                Console.Out.WriteLine(reply.Token);
                Console.Error.WriteLine($"token {reply.Id}: {uses ?? 1} use(s), valid until {reply.Expires:u}; on the device: orchd enroll {context.Settings.Server.Split(',')[0]} TOKEN");
                return 0;
            }
            case ("node", ["token", "revoke", var id]):
            {
                var reply = await AskAsync(context, IdentitySubjects.TokenRevoke, JsonSerializer.SerializeToUtf8Bytes(new RevokeRequest { Node = id }, IdentityJsonContext.Default.RevokeRequest), IdentityJsonContext.Default.RevokeReply).ConfigureAwait(false);
                Console.Out.WriteLine($"token {reply.Node} revoked at {reply.RevokedAt:u}: it enrols nothing more (devices it enrolled keep their credentials; revoke them with orchctl node revoke NODE)");
                return 0;
            }
            case ("node", ["revoke", var node]):
            {
                var reply = await AskAsync(context, IdentitySubjects.Revoke, JsonSerializer.SerializeToUtf8Bytes(new RevokeRequest { Node = node }, IdentityJsonContext.Default.RevokeRequest), IdentityJsonContext.Default.RevokeReply).ConfigureAwait(false);
                Console.Out.WriteLine($"node {reply.Node} revoked (key {reply.PublicKey}, at {reply.RevokedAt:u}): its connections are closed, and its replicas move to other nodes");
                return 0;
            }
            case ("identity", ["user", "create", var name]):
            {
                var role = parsed.Value("--role") ?? throw new UsageException($"identity user create needs --role ({string.Join(", ", FleetPermissions.Roles)})");
                var output = parsed.Value("--output") ?? throw new UsageException("identity user create needs -o FILE for the credentials");
                if (File.Exists(output))
                {
                    throw new UsageException($"{output} exists; refusing to overwrite credentials (remove it first or pick another file)");
                }
                long? ttl = parsed.Value("--ttl") is { } t ? Orchestrator.Syntax.Duration.TryParse(t, out var d) ? (long)d.TotalSeconds : throw new UsageException($"--ttl '{t}' is not a duration (like 30d)") : null;
                using var key = NATS.NKeys.KeyPair.CreatePair(NATS.NKeys.PrefixByte.User);
                var request = new UserCreateRequest { Name = name, Role = role, PublicKey = key.GetPublicKey(), TtlSeconds = ttl };
                var reply = await AskAsync(context, IdentitySubjects.UserCreate, JsonSerializer.SerializeToUtf8Bytes(request, IdentityJsonContext.Default.UserCreateRequest), IdentityJsonContext.Default.UserCreateReply).ConfigureAwait(false);
                IdentitySetup.WriteSecret(output, NatsJwt.Creds(reply.Jwt, key.GetSeed()));
                Console.Out.WriteLine($"{name} ({role}) until {reply.Expires:u}: credentials in {output} (orchctl --creds {output} …)");
                return 0;
            }
            default:
                throw new UsageException(command == "node"
                    ? "node token create [--labels k=v,…] [--uses N] [--ttl 24h] [--scheduler] | node token revoke ID | node revoke NODE"
                    : "identity init DIR … | identity user create NAME --role viewer|deployer|admin|leaf -o FILE [--ttl 30d]");
        }
    }

    private static async Task<T> AskAsync<T>(CommandContext context, string subject, byte[] body, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type)
    {
        NatsMsg<byte[]> msg;
        try
        {
            msg = await context.Connection.RequestAsync<byte[], byte[]>(subject, body, replyOpts: new NatsSubOpts { Timeout = context.Timeout }).ConfigureAwait(false);
        }
        catch (NatsNoRespondersException)
        {
            throw new UnreachableException($"no identity service answers on {subject}; start one where the fleet's signing keys are (orchd identity serve --dir DIR)");
        }
        catch (NatsNoReplyException)
        {
            throw new UnreachableException($"the identity service did not answer on {subject} within {context.Timeout.TotalSeconds:0} s");
        }
        var data = msg.Data ?? [];
        using (var doc = JsonDocument.Parse(data.Length > 0 ? data : "{}"u8.ToArray()))
        {
            if (doc.RootElement.TryGetProperty("error", out var error))
            {
                var code = doc.RootElement.TryGetProperty("code", out var c) && Enum.TryParse<ErrorKind>(c.GetString(), ignoreCase: true, out var kind) ? kind : ErrorKind.Internal;
                throw new IdentityRefusedException(error.GetString() ?? "refused", code);
            }
        }
        return JsonSerializer.Deserialize(data, type) ?? throw new UnreachableException($"the identity service sent an empty reply on {subject}");
    }
}

/// <summary>The identity service's refusal, with its kind (for the exit code).</summary>
internal sealed class IdentityRefusedException(string message, ErrorKind kind) : OrchestratorException(kind, message);

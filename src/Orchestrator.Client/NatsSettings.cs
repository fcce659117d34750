using NATS.Client.Core;

namespace Orchestrator.Client;

/// <summary>How to reach NATS. Immutable; built by orchd from its configuration (and by orchctl from its flags).</summary>
public sealed record NatsSettings
{
    public IReadOnlyList<string> Urls { get; init; } = ["nats://127.0.0.1:4222"];
    public string? CredsFile { get; init; }
    public string? User { get; init; }
    public string? Password { get; init; }
    public string? Token { get; init; }

    /// <summary>PEM file of the CA(s) that signed the server's certificate (instead of the system's roots).</summary>
    public string? TlsCa { get; init; }

    /// <summary>Client certificate and its key (PEM), for servers that verify clients.</summary>
    public string? TlsCert { get; init; }
    public string? TlsKey { get; init; }

    /// <summary>A file holding an nkey user seed (SU…), for servers configured with nkey users.</summary>
    public string? NKeySeedFile { get; init; }

    /// <summary>
    /// Prefix of this client's reply subjects (null: NATS's _INBOX). orchd uses _INBOX_&lt;node&gt;, so that
    /// a node's user may subscribe to its own replies and no one else's (docs/nats-security.md).
    /// </summary>
    public string? InboxPrefix { get; init; }

    /// <summary>Longest wait between two attempts to reach NATS.</summary>
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Why <paramref name="url"/> is not a NATS server url (a scheme other than nats, tls, ws or
    /// wss; no host; a port that is not a number from 1 to 65535), or null when it is one. The one
    /// rule for orchd's configuration and orchctl's --server.
    /// </summary>
    public static string? UrlProblem(string url)
    {
        const string fix = "write it as nats://host:4222 (or tls://, ws://, wss://)";
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Host.Length == 0)
        {
            return $"'{Redact(url)}' is not a NATS url; {fix}";
        }
        if (uri.Scheme is not ("nats" or "tls" or "ws" or "wss"))
        {
            return $"'{Redact(url)}' is not a NATS url ({uri.Scheme}:// is not a NATS scheme); {fix}";
        }
        return uri.IsDefaultPort || uri.Port is > 0 and <= 65535 ? null : $"'{Redact(url)}' has no valid port; {fix}";
    }

    /// <summary>
    /// Who these credentials say the client is, for the audit stamp of what it writes: a creds
    /// file's JWT name and key ("alice (UABC…)"), an nkey's public key, a user name, or "anonymous".
    /// </summary>
    public string Actor()
    {
        try
        {
            if (CredsFile is not null && Identity.NatsJwt.JwtOfCreds(File.ReadAllText(CredsFile)) is { } jwt)
            {
                var claims = Identity.NatsJwt.Decode(jwt);
                return $"{claims.Name} ({Identity.NatsJwt.Abbreviate(claims.Subject)})";
            }
            if (NKeySeedFile is not null)
            {
                return $"nkey {Identity.NatsJwt.Abbreviate(ReadNKeySeed(NKeySeedFile).PublicKey)}";
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return "unknown (credentials unreadable)";
        }
        return User is not null ? $"user {User}" : Token is not null ? "token user" : "anonymous";
    }

    /// <summary>The urls for logs, without any user:password part.</summary>
    public string DisplayUrls => string.Join(",", Urls.Select(Redact));

    /// <summary>
    /// True when the node proves who it is to the server (credentials, nkey, user, token or a
    /// client certificate). Without it, anyone who reaches the server can send this node work.
    /// </summary>
    public bool HasAuthentication => CredsFile is not null || NKeySeedFile is not null || User is not null || Token is not null || TlsCert is not null
        || Urls.Any(u => Uri.TryCreate(u, UriKind.Absolute, out var url) && url.UserInfo.Length > 0);

    /// <summary>True when the connection must be TLS: a tls:// url, or a CA or client certificate given.</summary>
    public bool TlsRequired => TlsCa is not null || TlsCert is not null
        || Urls.Any(u => u.StartsWith("tls://", StringComparison.OrdinalIgnoreCase));

    public NatsOpts ToNatsOpts(string clientName) => NatsOpts.Default with
    {
        Url = string.Join(",", Urls),
        Name = clientName,
        AuthOpts = ToAuthOpts(),
        TlsOpts = ToTlsOpts(),
        InboxPrefix = InboxPrefix ?? NatsOpts.Default.InboxPrefix,
        // The agent owns the first connection's retries (to log them its way); after that the
        // client reconnects forever: an edge node never gives up on its fleet.
        RetryOnInitialConnect = false,
        MaxReconnectRetry = -1,
        // Each reconnect waits a random time in [min, max] (the client's jitter): a fleet that
        // lost its server comes back spread over a few seconds, and every node is back well
        // within the scheduler's settle time (docs/protocol.md).
        ReconnectWaitMin = TimeSpan.FromSeconds(1),
        ReconnectWaitMax = TimeSpan.FromTicks(Math.Min(MaxBackoff.Ticks, ReconnectWaitLimit.Ticks)),
        ReconnectJitter = TimeSpan.FromMilliseconds(500),
        ConnectTimeout = TimeSpan.FromSeconds(5),
        // A connection whose packets are dropped (no FIN, no RST) is noticed by missed PONGs:
        // a PING every PingInterval, closed after MaxPingOut unanswered, so within
        // PingInterval × (MaxPingOut + 1) = 15 s by default.
        PingInterval = PingInterval,
        MaxPingOut = MaxPingOut,
    };

    /// <summary>Longest random wait before a reconnect (after the first connect).</summary>
    public static readonly TimeSpan ReconnectWaitLimit = TimeSpan.FromSeconds(4);

    /// <summary>How often the client PINGs the server (a dead connection is noticed within this × (MaxPingOut + 1)).</summary>
    public TimeSpan PingInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Unanswered PINGs before the client takes the connection for dead and reconnects.</summary>
    public int MaxPingOut { get; init; } = 2;

    /// <summary>Credentials: a creds file, an nkey seed, user and password, or a token.</summary>
    public NatsAuthOpts ToAuthOpts()
    {
        var auth = NatsAuthOpts.Default with
        {
            CredsFile = CredsFile,
            // Read at every connect, not once: an enrolled node renews its JWT into the same file
            // (DeviceIdentity.RenewAsync), and its next reconnect must present the new one.
            AuthCredCallback = CredsFile is { } creds ? (_, _) => ValueTask.FromResult(NatsAuthCred.FromCredsFile(creds)) : null,
            Username = User,
            Password = Password,
            Token = Token,
        };
        if (NKeySeedFile is not null)
        {
            // Read here rather than with NatsAuthOpts.NKeyFile, which wants the public key in the file too.
            var (seed, publicKey) = ReadNKeySeed(NKeySeedFile);
            auth = auth with { Seed = seed, NKey = publicKey };
        }
        return auth;
    }

    /// <summary>TLS: required for tls:// urls and whenever a CA or client certificate is given.</summary>
    public NatsTlsOpts ToTlsOpts() => NatsTlsOpts.Default with
    {
        CaFile = TlsCa,
        CertFile = TlsCert,
        KeyFile = TlsKey,
        Mode = TlsRequired ? TlsMode.Require : TlsMode.Auto,
    };

    /// <summary>
    /// The seed (SU…) in <paramref name="path"/>, alone or among other lines (an nk-style file, a
    /// .creds file), and its public key. Throws <see cref="FormatException"/> with a sentence to show.
    /// </summary>
    public static (string Seed, string PublicKey) ReadNKeySeed(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new FormatException($"'{path}' cannot be read ({e.Message}); check that it exists and that orchd may read it");
        }
        var seed = text.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.StartsWith("SU", StringComparison.Ordinal));
        if (seed is null)
        {
            throw new FormatException($"'{path}' holds no nkey user seed (a line starting with SU); give the seed file made for this node's NATS user");
        }
        try
        {
            using var pair = NATS.NKeys.KeyPair.FromSeed(seed);
            return (seed, pair.GetPublicKey());
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new FormatException($"'{path}' holds a line starting with SU that is not a valid nkey user seed; make the key again (packaging/nats/gen-fleet-users.sh or `nk -gen user`)");
        }
    }

    private static string Redact(string url)
        => Uri.TryCreate(url, UriKind.Absolute, out var uri) && uri.UserInfo.Length > 0
            ? url.Replace(uri.UserInfo + "@", "***@", StringComparison.Ordinal)
            : url;
}

using NATS.Client.Core;
using NATS.NKeys;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Client;
using Orchestrator.Node.Secrets;

namespace Orchestrator.Fleet.Agent;

/// <summary>
/// This node's secrets and configs. The node has its own x25519 key (STATE_DIR/seal.xk, made at
/// its first start, mode 0600), whose public half goes out in every heartbeat; operators seal each
/// secret to it. A version is fetched from the fleet's bucket the first time a container needs it
/// (a node may read only its own copies), checked against fleet.trusted_keys, and kept sealed in
/// STATE_DIR/secrets so the container starts again with no network; it is opened only into memory.
/// </summary>
public sealed class NodeSecrets : ISecretSource, IDisposable
{
    private const string KeyFile = "seal.xk";
    private static readonly TimeSpan FetchTimeout = TimeSpan.FromSeconds(10);
    private readonly string _node;
    private readonly string _dir;
    private readonly IReadOnlyList<string> _trustedKeys;
    private readonly KeyPair _key;

    public NodeSecrets(string node, string stateDir, IReadOnlyList<string> trustedKeys)
    {
        _node = node;
        _dir = Path.Combine(stateDir, "secrets");
        _trustedKeys = trustedKeys;
        _key = LoadOrCreateKey(Path.Combine(stateDir, KeyFile));
        PublicKey = _key.GetPublicKey();
    }

    /// <summary>Why the node's sealing key was made afresh at this start (its file was damaged), or null.</summary>
    public string? KeyReplaced { get; private set; }

    /// <summary>The node's curve public key (X…), which operators seal to.</summary>
    public string PublicKey { get; }

    /// <summary>The fleet connection, once there is one; versions not kept yet are fetched through it.</summary>
    public INatsConnection? Connection { get; set; }

    private KeyPair LoadOrCreateKey(string path)
    {
        if (File.Exists(path))
        {
            var seed = File.ReadAllText(path).Trim();
            try
            {
                var pair = KeyPair.FromSeed(seed);
                if (pair.Prefix == PrefixByte.Curve)
                {
                    return pair;
                }
                pair.Dispose();
            }
            catch (Exception e) when (e is NKeysException or ArgumentException or FormatException or IndexOutOfRangeException)
            {
            }
            // Damaged: kept aside, and a new key made, so the node still runs; what was sealed to the
            // old key must be sealed again, which the starts that need it say (orchctl secret sync).
            var aside = $"{path}.damaged-{DateTime.UtcNow:yyyyMMddHHmmss}";
            File.Move(path, aside, overwrite: true);
            KeyReplaced = $"{path} did not hold a sealing key (a curve seed, SX…); it was kept as {aside} and a new key made: seal the fleet's secrets for this node again (orchctl secret sync)";
        }
        var made = SecretSealing.NewNodeKey();
        var temp = path + ".tmp";
        using (var stream = new FileStream(temp, new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite }))
        {
            stream.Write(System.Text.Encoding.ASCII.GetBytes(made.GetSeed() + "\n"));
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
        return made;
    }

    public async ValueTask<byte[]> OpenAsync(SecretKind kind, string name, long version, CancellationToken cancellationToken)
    {
        var noun = $"{SecretMounts.Noun(kind)} '{name}' version {version}";
        var cached = Path.Combine(_dir, $"{WireNames.Of(kind)}.{name}.{version}.json");
        SealedSecret? value = null;
        if (File.Exists(cached))
        {
            try
            {
                value = SealedSecret.Parse(await File.ReadAllBytesAsync(cached, cancellationToken).ConfigureAwait(false));
            }
            catch (System.Text.Json.JsonException)
            {
                File.Delete(cached); // damaged: fetched again
            }
        }
        if (value is null)
        {
            value = await FetchAsync(kind, name, version, noun, cancellationToken).ConfigureAwait(false);
        }
        if (value.Name != name || value.Kind != kind || value.Version != version || (kind == SecretKind.Secret && value.Node != _node))
        {
            throw new SecretException(ErrorKind.Forbidden, $"{noun}: the fleet's copy for this node names {SecretMounts.Noun(value.Kind)} '{value.Name}' version {value.Version} for node '{value.Node}' (moved or forged); seal it again: orchctl secret sync {name}");
        }
        if (kind == SecretKind.Secret && value.Receiver != PublicKey)
        {
            File.Delete(cached);
            throw new SecretException(ErrorKind.NotFound, $"{noun} was sealed for another key of node '{_node}' (its key changed: a reinstall, or a new seal.xk); seal it again: orchctl secret sync {name}");
        }
        if (_trustedKeys.Count > 0 && SecretSealing.Verify(value, _trustedKeys) is { } refused)
        {
            throw new SecretException(ErrorKind.Forbidden, refused);
        }
        var clear = SecretSealing.Open(value, _key);
        if (!File.Exists(cached))
        {
            Keep(cached, value);
            Prune(kind, name, version);
        }
        return clear;
    }

    private async Task<SealedSecret> FetchAsync(SecretKind kind, string name, long version, string noun, CancellationToken cancellationToken)
    {
        if (Connection is not { ConnectionState: NatsConnectionState.Open } connection)
        {
            throw new SecretException(ErrorKind.Unavailable, $"{noun} is not on this node yet and the fleet cannot be reached; the start is retried, and it is fetched once the node is connected");
        }
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(FetchTimeout);
        var key = SealedSecret.Key(kind, name, version, _node);
        byte[]? bytes;
        try
        {
            bytes = await GetDirectAsync(connection, Buckets.Of(kind), key, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is NatsException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
        {
            throw new SecretException(ErrorKind.Unavailable, $"{noun} could not be fetched from the fleet ({e.Message}); the start is retried");
        }
        if (bytes is not { Length: > 0 })
        {
            throw new SecretException(ErrorKind.NotFound, kind == SecretKind.Secret
                ? $"{noun} is not sealed for node '{_node}' (the node joined after it was made, or its key changed); seal it for the fleet's nodes: orchctl secret sync {name}"
                : $"{noun} is not in the fleet (removed, or never made); create it (orchctl configmap create {name} --from-file FILE) and apply the deployment again");
        }
        try
        {
            return SealedSecret.Parse(bytes);
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new SecretException(ErrorKind.Invalid, $"{noun}: the fleet's copy is not readable ({e.Message}); seal it again: orchctl secret sync {name}");
        }
    }

    /// <summary>
    /// A key's last value by JetStream's direct get with the subject in the API subject
    /// (<c>$JS.API.DIRECT.GET.KV_B.$KV.B.KEY</c>, no body): the form a node's NATS user can be allowed
    /// for its own keys only (the client's usual form carries the key in the body). Null when there
    /// is none (or no bucket).
    /// </summary>
    public static async Task<byte[]?> GetDirectAsync(INatsConnection connection, string bucket, string key, CancellationToken cancellationToken)
    {
        try
        {
            var reply = await connection.RequestAsync<byte[], byte[]>($"$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}.{key}", [],
                cancellationToken: cancellationToken).ConfigureAwait(false);
            if (reply.Headers is { Code: >= 400 } headers)
            {
                return headers.Code == 404 ? null : throw new NatsException($"direct get of {key}: {headers.Code} {headers.MessageText}");
            }
            // A purged or deleted key answers with its marker (KV-Operation: PURGE/DEL) and no value.
            return reply.Headers?.TryGetValue("KV-Operation", out var op) == true && op.ToString() is "PURGE" or "DEL" ? null : reply.Data;
        }
        catch (NatsNoRespondersException)
        {
            return null; // no such bucket (stream)
        }
    }

    /// <summary>Kept sealed (a secret's copy opens only with this node's key) for starts without the network: atomically, 0600.</summary>
    private void Keep(string path, SealedSecret value)
    {
        try
        {
            Directory.CreateDirectory(_dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            var temp = path + ".tmp";
            using (var stream = new FileStream(temp, new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite }))
            {
                stream.Write(value.ToBytes());
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Not kept: fetched again at the next start (which then needs the network).
        }
    }

    /// <summary>Only the three newest versions of a secret are kept (a rollback goes one or two back).</summary>
    private void Prune(SecretKind kind, string name, long newest)
    {
        var prefix = $"{WireNames.Of(kind)}.{name}.";
        try
        {
            foreach (var file in Directory.EnumerateFiles(_dir, prefix + "*.json"))
            {
                var version = Path.GetFileName(file)[prefix.Length..^".json".Length];
                if (long.TryParse(version, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var v) && v <= newest - 3)
                {
                    File.Delete(file);
                }
            }
        }
        catch (IOException)
        {
        }
    }

    public void Dispose() => _key.Dispose();
}

using NATS.Client.KeyValueStore;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Client;

/// <summary>
/// Secrets and configs: made and rotated by the operator (a secret sealed to each node's own key,
/// with the operator's signing key), pinned into deployments at apply, synced to nodes that joined
/// later. What a node does with them is <c>NodeSecrets</c>.
/// </summary>
public sealed partial class FleetClient
{
    /// <summary>What a create or update did: the new version, the nodes sealed for and those left out (with why).</summary>
    public sealed record SecretWrite(SecretInfo Info, IReadOnlyList<string> Sealed, IReadOnlyList<string> Skipped);

    /// <summary>
    /// A new secret or config (<paramref name="update"/>: false) or its next version (true). A
    /// secret is sealed to every node of the fleet that has a sealing key, and to the operator's own
    /// key (for sync); it needs the operator's signing seed. A config is stored once, signed when a
    /// seed is given.
    /// </summary>
    public async Task<SecretWrite> PutSecretAsync(SecretKind kind, string name, byte[] value, string? signingSeed, bool update, CancellationToken cancellationToken = default)
    {
        var noun = SecretMounts.Noun(kind);
        if (SecretMounts.NameProblem(name) is { } bad)
        {
            throw new NodeRequestException(ErrorKind.Invalid, $"{noun} {bad}");
        }
        if (value.Length > SecretMounts.MaxBytes(kind))
        {
            throw new NodeRequestException(ErrorKind.Invalid, $"{noun} '{name}' is {value.Length} bytes; at most {SecretMounts.MaxBytes(kind)} (a larger file belongs in the image or a volume)");
        }
        if (kind == SecretKind.Secret && signingSeed is null)
        {
            throw new NodeRequestException(ErrorKind.Invalid, $"secret '{name}' needs the operator's key (--sign-key FILE or ORCH_SIGN_KEY): it signs the sealed copies and keeps one only it opens, for nodes that join later; make one with `orchctl keys create`");
        }
        var bucket = await FleetStore.OpenAsync(KV, Buckets.Of(kind), 1, cancellationToken).ConfigureAwait(false);
        var current = await bucket.TryGetEntryAsync<byte[]>(name, cancellationToken: cancellationToken).ConfigureAwait(false);
        var existing = current.Success && current.Value.Value is { Length: > 0 } v ? SecretInfo.Parse(v) : null;
        if (!update && existing is not null)
        {
            throw new NodeRequestException(ErrorKind.Conflict, $"{noun} '{name}' exists (version {existing.Version}); a new version is `orchctl {Command(kind)} update {name} --from-file FILE`");
        }
        if (update && existing is null)
        {
            throw new NodeRequestException(ErrorKind.NotFound, $"no {noun} '{name}' in the fleet; make it with `orchctl {Command(kind)} create {name} --from-file FILE`");
        }
        var version = (existing?.Version ?? 0) + 1;
        var sealedFor = new List<string>();
        var skipped = new List<string>();
        string? sender = null;
        try
        {
            if (kind == SecretKind.Secret)
            {
                var escrow = SecretSealing.Escrow(name, version, value, signingSeed!);
                sender = escrow.Sender;
                await bucket.PutAsync($"{name}.{version}", escrow.ToBytes(), cancellationToken: cancellationToken).ConfigureAwait(false);
                (sealedFor, skipped) = await SealForNodesAsync(bucket, name, version, value, signingSeed!, onlyMissing: false, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await bucket.PutAsync(SealedSecret.Key(kind, name, version, ""), SecretSealing.Config(name, version, value, signingSeed).ToBytes(), cancellationToken: cancellationToken).ConfigureAwait(false);
            }
        }
        catch (ManifestSignatureException e)
        {
            throw new NodeRequestException(e.Message, e);
        }
        var info = new SecretInfo
        {
            Name = name, Kind = kind, Version = version, Size = value.Length, CreatedAt = DateTimeOffset.UtcNow, CreatedBy = Actor?.Invoke(),
            Sender = sender, Nodes = kind == SecretKind.Secret ? sealedFor : null,
        };
        var written = existing is null
            ? await bucket.TryCreateAsync(name, info.ToBytes(), cancellationToken: cancellationToken).ConfigureAwait(false)
            : await bucket.TryUpdateAsync(name, info.ToBytes(), current.Value.Revision, cancellationToken: cancellationToken).ConfigureAwait(false);
        if (!written.Success)
        {
            throw new NodeRequestException(ErrorKind.Conflict, $"{noun} '{name}' changed while this wrote it (another create or update); run the command again");
        }
        return new SecretWrite(info, sealedFor, skipped);
    }

    /// <summary>
    /// Seals every version of a secret that a deployment uses (and the current one) for each node
    /// that has no copy of it under its present key: nodes that joined, or were reinstalled, after
    /// the secret was made. Opens the escrow copies with the operator's key.
    /// </summary>
    public async Task<SecretWrite> SyncSecretAsync(string name, string signingSeed, CancellationToken cancellationToken = default)
    {
        var bucket = await FleetStore.OpenAsync(KV, Buckets.Secrets, 1, cancellationToken).ConfigureAwait(false);
        var info = await GetSecretAsync(SecretKind.Secret, name, cancellationToken).ConfigureAwait(false);
        var versions = (await SecretUsersAsync(SecretKind.Secret, name, cancellationToken).ConfigureAwait(false))
            .SelectMany(d => SecretMounts.Named(d.Template, SecretKind.Secret, name)).Where(s => s.Version is not null).Select(s => s.Version!.Value)
            .Append(info.Version).Distinct().Order().ToList();
        var sealedFor = new HashSet<string>(StringComparer.Ordinal);
        var skipped = new HashSet<string>(StringComparer.Ordinal);
        foreach (var version in versions)
        {
            var entry = await bucket.TryGetEntryAsync<byte[]>($"{name}.{version}", cancellationToken: cancellationToken).ConfigureAwait(false);
            if (!entry.Success || entry.Value.Value is not { Length: > 0 } bytes)
            {
                skipped.Add($"version {version}: its escrow copy is gone; update the secret from its file");
                continue;
            }
            try
            {
                var value = SecretSealing.OpenEscrow(SealedSecret.Parse(bytes), signingSeed);
                var (done, left) = await SealForNodesAsync(bucket, name, version, value, signingSeed, onlyMissing: true, cancellationToken).ConfigureAwait(false);
                sealedFor.UnionWith(done);
                skipped.UnionWith(left);
            }
            catch (ManifestSignatureException e)
            {
                throw new NodeRequestException(e.Message, e);
            }
        }
        return new SecretWrite(info, [.. sealedFor.Order(StringComparer.Ordinal)], [.. skipped.Order(StringComparer.Ordinal)]);
    }

    /// <summary>Seals one version for the fleet's nodes (64 puts in flight); the nodes without a sealing key, or revoked, are left out and said.</summary>
    private async Task<(List<string> Sealed, List<string> Skipped)> SealForNodesAsync(INatsKVStore bucket, string name, long version, byte[] value, string signingSeed, bool onlyMissing, CancellationToken cancellationToken)
    {
        var nodes = await GetNodesAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        var sealedFor = new List<string>();
        var skipped = new List<string>();
        var pending = new List<Task>();
        foreach (var node in nodes.OrderBy(n => n.Info.Node, StringComparer.Ordinal))
        {
            if (node.Revoked)
            {
                continue;
            }
            if (!SecretSealing.IsNodeKey(node.Info.SealKey))
            {
                skipped.Add($"node {node.Info.Node}: it has no sealing key (an orchd before secrets); upgrade it, then run `orchctl secret sync {name}`");
                continue;
            }
            var key = SealedSecret.Key(SecretKind.Secret, name, version, node.Info.Node);
            if (onlyMissing)
            {
                var had = await bucket.TryGetEntryAsync<byte[]>(key, cancellationToken: cancellationToken).ConfigureAwait(false);
                if (had.Success && had.Value.Value is { Length: > 0 } bytes && SealedSecret.Parse(bytes).Receiver == node.Info.SealKey)
                {
                    continue;
                }
            }
            var copy = SecretSealing.SealFor(name, version, node.Info.Node, node.Info.SealKey!, value, signingSeed);
            pending.Add(bucket.PutAsync(key, copy.ToBytes(), cancellationToken: cancellationToken).AsTask());
            sealedFor.Add(node.Info.Node);
            if (pending.Count == 64)
            {
                await Task.WhenAll(pending).ConfigureAwait(false);
                pending.Clear();
            }
        }
        await Task.WhenAll(pending).ConfigureAwait(false);
        return (sealedFor, skipped);
    }

    /// <summary>A secret's or config's current version; NotFound, with how to make it, when there is none.</summary>
    public async Task<SecretInfo> GetSecretAsync(SecretKind kind, string name, CancellationToken cancellationToken = default)
    {
        var bucket = await FleetStore.OpenAsync(KV, Buckets.Of(kind), 1, cancellationToken).ConfigureAwait(false);
        var entry = await bucket.TryGetEntryAsync<byte[]>(name, cancellationToken: cancellationToken).ConfigureAwait(false);
        return entry.Success && entry.Value.Value is { Length: > 0 } v
            ? SecretInfo.Parse(v)
            : throw new NodeRequestException(ErrorKind.NotFound, $"no {SecretMounts.Noun(kind)} '{name}' in the fleet; make it with `orchctl {Command(kind)} create {name} --from-file FILE`");
    }

    /// <summary>Every secret (or config) of the fleet, by name.</summary>
    public async Task<IReadOnlyList<SecretInfo>> ListSecretsAsync(SecretKind kind, CancellationToken cancellationToken = default)
    {
        var bucket = await FleetStore.OpenAsync(KV, Buckets.Of(kind), 1, cancellationToken).ConfigureAwait(false);
        var result = new List<SecretInfo>();
        foreach (var (key, entry) in await FleetState.ReadAllAsync(bucket, cancellationToken).ConfigureAwait(false))
        {
            if (!key.Contains('.', StringComparison.Ordinal) && entry.Value is { Length: > 0 } v)
            {
                try
                {
                    result.Add(SecretInfo.Parse(v));
                }
                catch (System.Text.Json.JsonException)
                {
                }
            }
        }
        return [.. result.OrderBy(s => s.Name, StringComparer.Ordinal)];
    }

    /// <summary>The deployments whose template uses the secret (or config), any version.</summary>
    public async Task<IReadOnlyList<Deployment>> SecretUsersAsync(SecretKind kind, string name, CancellationToken cancellationToken = default)
        => [.. (await GetDeploymentsAsync(cancellationToken).ConfigureAwait(false)).Select(v => v.Deployment)
            .Where(d => SecretMounts.Named(d.Template, kind, name).Any())];

    /// <summary>Removes a secret (or config) and every copy of it; refused while a deployment uses it.</summary>
    public async Task DeleteSecretAsync(SecretKind kind, string name, CancellationToken cancellationToken = default)
    {
        await GetSecretAsync(kind, name, cancellationToken).ConfigureAwait(false);
        if ((await SecretUsersAsync(kind, name, cancellationToken).ConfigureAwait(false)) is { Count: > 0 } users)
        {
            throw new NodeRequestException(ErrorKind.Conflict, $"{SecretMounts.Noun(kind)} '{name}' is used by deployment {string.Join(", ", users.Select(d => d.Name))}; take it out of {(users.Count == 1 ? "that deployment" : "those deployments")} (apply) or delete {(users.Count == 1 ? "it" : "them")} first");
        }
        var bucket = await FleetStore.OpenAsync(KV, Buckets.Of(kind), 1, cancellationToken).ConfigureAwait(false);
        var keys = new List<string>();
        // Every key, filtered here: nats-server 2.9 takes one filter subject per consumer.
        await foreach (var key in bucket.GetKeysAsync(cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            if (key == name || key.StartsWith(name + ".", StringComparison.Ordinal))
            {
                keys.Add(key);
            }
        }
        foreach (var key in keys.Order(StringComparer.Ordinal).Reverse())
        {
            await bucket.PurgeAsync(key, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Fills in the current version of every secret and config a deployment uses without one (as
    /// apply does, before it signs): a new version is then a change of the template, rolled out.
    /// A version that is given must exist. Returns what it pinned ("secret db → 3").
    /// </summary>
    /// <param name="signing">The deployment is signed afterwards (apply --sign-key): a signature it carries now does not stand in the way.</param>
    /// <param name="planned">Versions a dry run would make (a compose file's secrets): taken as they are.</param>
    public async Task<IReadOnlyList<string>> PinSecretsAsync(Deployment deployment, bool signing = false, IReadOnlyDictionary<(SecretKind, string), long>? planned = null, CancellationToken cancellationToken = default)
    {
        var pinned = new List<string>();
        var known = new Dictionary<(SecretKind, string), SecretInfo>();
        foreach (var (kind, mount) in SecretMounts.All(deployment.Template))
        {
            if (planned?.GetValueOrDefault((kind, mount.Name)) is { } next and > 0)
            {
                mount.Version ??= next;
                continue;
            }
            if (!known.TryGetValue((kind, mount.Name), out var info))
            {
                try
                {
                    info = known[(kind, mount.Name)] = await GetSecretAsync(kind, mount.Name, cancellationToken).ConfigureAwait(false);
                }
                catch (NodeRequestException e) when (e.Kind == ErrorKind.NotFound)
                {
                    throw new NodeRequestException(ErrorKind.NotFound, $"deployment '{deployment.Name}' uses {SecretMounts.Noun(kind)} '{mount.Name}', which is not in the fleet; make it first: orchctl {Command(kind)} create {mount.Name} --from-file FILE");
                }
            }
            if (mount.Version is { } version)
            {
                if (version > info.Version)
                {
                    throw new NodeRequestException(ErrorKind.NotFound, $"deployment '{deployment.Name}' asks for {SecretMounts.Noun(kind)} '{mount.Name}' version {version}; the fleet has up to {info.Version} (leave version out: apply pins the current one)");
                }
                continue;
            }
            if (deployment.Signature is not null && !signing)
            {
                throw new NodeRequestException(ErrorKind.Invalid, $"deployment '{deployment.Name}' was signed without a version for {SecretMounts.Noun(kind)} '{mount.Name}', and apply cannot add one without breaking the signature; apply with --sign-key, or put version: {info.Version} in the file before signing");
            }
            mount.Version = info.Version;
            pinned.Add($"{SecretMounts.Noun(kind)} {mount.Name} → version {info.Version}");
        }
        return pinned;
    }

    /// <summary>
    /// The current version's value: a config's as stored; a secret's from its escrow copy, opened
    /// with the operator's key. Null when there is no such secret or config.
    /// </summary>
    public async Task<byte[]?> ReadSecretValueAsync(SecretKind kind, string name, string? signingSeed, CancellationToken cancellationToken = default)
    {
        var bucket = await FleetStore.OpenAsync(KV, Buckets.Of(kind), 1, cancellationToken).ConfigureAwait(false);
        var info = await bucket.TryGetEntryAsync<byte[]>(name, cancellationToken: cancellationToken).ConfigureAwait(false);
        if (!info.Success || info.Value.Value is not { Length: > 0 } infoBytes)
        {
            return null;
        }
        var version = SecretInfo.Parse(infoBytes).Version;
        var entry = await bucket.TryGetEntryAsync<byte[]>($"{name}.{version}", cancellationToken: cancellationToken).ConfigureAwait(false);
        if (!entry.Success || entry.Value.Value is not { Length: > 0 } bytes)
        {
            return null;
        }
        var value = SealedSecret.Parse(bytes);
        if (kind == SecretKind.Config)
        {
            return Convert.FromBase64String(value.Data);
        }
        if (signingSeed is null)
        {
            throw new NodeRequestException(ErrorKind.Invalid, $"secret '{name}' is compared with the file only through the operator's key: give --sign-key FILE (or ORCH_SIGN_KEY)");
        }
        try
        {
            return SecretSealing.OpenEscrow(value, signingSeed);
        }
        catch (ManifestSignatureException e)
        {
            throw new NodeRequestException(e.Message, e);
        }
    }

    /// <summary>orchctl's command for a kind: secret or configmap.</summary>
    public static string Command(SecretKind kind) => kind == SecretKind.Secret ? "secret" : "configmap";
}

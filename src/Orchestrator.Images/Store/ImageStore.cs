using Orchestrator.Api;
using System.Formats.Tar;
using System.Text.Json;
using Orchestrator.Images.Oci;
using Orchestrator.Images.Registry;
using Orchestrator.Images.Unpack;

namespace Orchestrator.Images.Store;

/// <summary>The image could not be imported, pulled or found; the message names it and the fix.</summary>
public sealed class ImageException : OrchestratorException
{
    public ImageException() : base(ErrorKind.Invalid, "image error") { }
    public ImageException(string message) : base(ErrorKind.Invalid, message) { }
    public ImageException(string message, Exception inner) : base(ErrorKind.Invalid, message, inner) { }
    public ImageException(ErrorKind kind, string message, Exception? inner = null) : base(kind, message, inner) { }
}

/// <summary>
/// Named images over the content store: import (OCI layout, OCI archive, docker save), export
/// (OCI archive), list, inspect, remove, and gc of blobs no image references.
/// </summary>
public sealed class ImageStore
{
    private readonly string _refs;
    private readonly Lock _gate = new();

    public ImageStore(string root, long budgetBytes = long.MaxValue)
    {
        Directory.CreateDirectory(root);
        Content = new ContentStore(Path.Combine(root, "content"), budgetBytes);
        _refs = Path.Combine(root, "images.json");
    }

    public ContentStore Content { get; }

    public IReadOnlyList<ImageRecord> List() => Load().Values.OrderBy(r => r.Name, StringComparer.Ordinal).ToArray();

    /// <summary>
    /// The image by any of its names (docs/images.md, "Image names"): busybox, busybox:latest,
    /// docker.io/library/busybox:latest and nats:busybox:latest find the same record. A reference
    /// is not valid: that error, saying how to write it.
    /// </summary>
    public ImageRecord Inspect(string name)
        => Find(Load(), name) ?? throw new ImageException(ErrorKind.NotFound, $"image '{name}' is not in the store; pull or import it first (list shows what is)");

    /// <summary>The image by any of its names, or null (also for a name that is no valid reference).</summary>
    public ImageRecord? TryInspect(string name)
    {
        var refs = Load();
        return refs.ContainsKey(name) || ImageReference.TryParse(name, out _) ? Find(refs, name) : null;
    }

    /// <summary>
    /// The record <paramref name="name"/> names: stored under exactly that name (a name kept from
    /// before the rule that is no valid reference), else under its canonical name, else, for a
    /// digest-pinned reference, an image of the same repository whose manifest has that digest
    /// (the content is addressed by it: busybox@sha256:… is the busybox:latest pulled earlier).
    /// </summary>
    private static ImageRecord? Find(Dictionary<string, ImageRecord> refs, string name)
    {
        if (refs.TryGetValue(name, out var exact))
        {
            return exact;
        }
        var reference = ImageReference.Parse(name);
        if (refs.TryGetValue(reference.Canonical, out var canonical))
        {
            return canonical;
        }
        if (reference.Digest is { } digest)
        {
            return refs.Values.Where(r => r.ManifestDigest == digest && ImageReference.TryParse(r.Name, out var stored)
                    && stored.Registry == reference.Registry && stored.Repository == reference.Repository)
                .OrderBy(r => r.Name, StringComparer.Ordinal).FirstOrDefault();
        }
        return null;
    }

    public ImageManifest Manifest(ImageRecord image)
    {
        using var stream = Content.Open(image.ManifestDigest);
        return JsonSerializer.Deserialize(stream, OciJsonContext.Default.ImageManifest)!;
    }

    /// <summary>The image's run defaults (entrypoint, cmd, env, user, working dir).</summary>
    public ImageConfigFile Config(ImageRecord image)
    {
        using var stream = Content.Open(Manifest(image).Config.Digest);
        return JsonSerializer.Deserialize(stream, OciJsonContext.Default.ImageConfigFile) ?? new ImageConfigFile();
    }

    public void Remove(string name)
    {
        lock (_gate)
        {
            var refs = Load();
            var record = Find(refs, name) ?? throw new ImageException(ErrorKind.NotFound, $"image '{name}' is not in the store; nothing to remove");
            refs.Remove(record.Name);
            Save(refs);
        }
    }

    /// <summary>Removes every blob no image references; returns how many bytes it freed.</summary>
    public long Gc(IEnumerable<string>? alsoKeep = null)
    {
        lock (_gate)
        {
            var keep = new HashSet<string>(alsoKeep ?? [], StringComparer.Ordinal);
            foreach (var image in Load().Values)
            {
                keep.Add(image.ManifestDigest);
                if (!Content.Contains(image.ManifestDigest))
                {
                    continue;
                }
                var manifest = Manifest(image);
                keep.Add(manifest.Config.Digest);
                keep.UnionWith(manifest.Layers.Select(l => l.Digest));
            }
            var before = Content.UsedBytes;
            Content.Sweep(keep);
            return before - Content.UsedBytes;
        }
    }

    /// <summary>Records a name (kept in its canonical form) for a manifest whose blobs are all in the store.</summary>
    public ImageRecord Tag(string name, string manifestDigest, Platform platform)
    {
        name = ImageReference.Normalize(name);
        var manifest = JsonSerializer.Deserialize(Content.Open(manifestDigest), OciJsonContext.Default.ImageManifest)!;
        foreach (var blob in manifest.Layers.Append(manifest.Config))
        {
            if (!Content.Contains(blob.Digest))
            {
                throw new ImageException($"image '{name}' is incomplete: blob {blob.Digest} is missing; pull or import it again");
            }
        }
        var record = new ImageRecord
        {
            Name = name,
            ManifestDigest = manifestDigest,
            Platform = platform.ToString(),
            Size = manifest.Layers.Sum(l => l.Size) + manifest.Config.Size,
            Created = DateTimeOffset.UtcNow,
        };
        lock (_gate)
        {
            var refs = Load();
            refs[name] = record;
            Save(refs);
        }
        return record;
    }

    /// <summary>
    /// Follows an index (or manifest list) to the manifest for <paramref name="platform"/>,
    /// fetching documents through <paramref name="fetch"/> (verified by digest there).
    /// </summary>
    public static async Task<(string Digest, byte[] Manifest)> ResolvePlatformAsync(
        Descriptor root, Platform platform, Func<Descriptor, Task<byte[]>> fetch, string what)
    {
        var descriptor = root;
        for (var depth = 0; depth < 4; depth++)
        {
            var bytes = await fetch(descriptor).ConfigureAwait(false);
            var mediaType = descriptor.MediaType;
            if (string.IsNullOrEmpty(mediaType))
            {
                using var doc = JsonDocument.Parse(bytes);
                mediaType = doc.RootElement.TryGetProperty("mediaType", out var mt) ? mt.GetString() : doc.RootElement.TryGetProperty("manifests", out _) ? MediaTypes.OciIndex : MediaTypes.OciManifest;
            }
            if (!MediaTypes.IsIndex(mediaType))
            {
                return (descriptor.Digest, bytes);
            }
            var index = JsonSerializer.Deserialize(bytes, OciJsonContext.Default.ImageIndex)!;
            var match = index.Manifests.FirstOrDefault(m => platform.Matches(m.Platform))
                ?? (index.Manifests.Count == 1 && index.Manifests[0].Platform is null ? index.Manifests[0] : null);
            if (match is null)
            {
                var offered = string.Join(", ", index.Manifests.Where(m => m.Platform is not null).Select(m => m.Platform!.ToString()));
                throw new ImageException($"{what} has no image for {platform} (it offers {(offered.Length > 0 ? offered : "none")}); pick one of those with --platform");
            }
            descriptor = match;
        }
        throw new ImageException($"{what}: indexes nest too deeply; it is refused");
    }

    /// <summary>Imports an OCI image layout directory. Name: given, or the layout's ref annotation.</summary>
    public async Task<ImageRecord> ImportLayoutAsync(string layout, string? name = null, Platform? platform = null, CancellationToken cancellationToken = default)
    {
        platform ??= Platform.Current;
        var indexPath = Path.Combine(layout, "index.json");
        if (!File.Exists(indexPath))
        {
            throw new ImageException($"'{layout}' is not an OCI image layout (no index.json); give a layout directory or an OCI/docker archive");
        }
        var index = JsonSerializer.Deserialize(await File.ReadAllBytesAsync(indexPath, cancellationToken).ConfigureAwait(false), OciJsonContext.Default.ImageIndex)!;
        var top = index.Manifests.FirstOrDefault(m => name is null || m.Annotations?.GetValueOrDefault("org.opencontainers.image.ref.name") is { } r && (name.EndsWith(":" + r, StringComparison.Ordinal) || name == r))
            ?? index.Manifests.FirstOrDefault()
            ?? throw new ImageException($"'{indexPath}' lists no manifests");
        name ??= top.Annotations?.GetValueOrDefault("org.opencontainers.image.ref.name")
            ?? throw new ImageException($"the image in '{layout}' has no name (org.opencontainers.image.ref.name); give one");

        async Task<byte[]> FetchVerified(Descriptor d)
        {
            await CopyBlobAsync(layout, d, cancellationToken).ConfigureAwait(false);
            using var stream = Content.Open(d.Digest);
            using var buffer = new MemoryStream();
            await stream.CopyToAsync(buffer, cancellationToken).ConfigureAwait(false);
            return buffer.ToArray();
        }

        var (manifestDigest, manifestBytes) = await ResolvePlatformAsync(top, platform, FetchVerified, $"image '{name}'").ConfigureAwait(false);
        var manifest = JsonSerializer.Deserialize(manifestBytes, OciJsonContext.Default.ImageManifest)!;
        foreach (var blob in manifest.Layers.Prepend(manifest.Config))
        {
            await CopyBlobAsync(layout, blob, cancellationToken).ConfigureAwait(false);
        }
        return Tag(name, manifestDigest, platform);
    }

    private async Task CopyBlobAsync(string layout, Descriptor d, CancellationToken cancellationToken)
    {
        if (!ContentStore.IsValidDigest(d.Digest))
        {
            throw new ImageException($"'{d.Digest}' is not a sha256 digest; the image is refused");
        }
        var path = ArchiveFile(layout, $"blobs/sha256/{d.Digest[7..]}", $"blob {d.Digest}");
        using var source = File.OpenRead(path);
        await Content.WriteAsync(source, d.Digest, d.Size > 0 ? d.Size : null, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Imports an OCI archive (a tar of a layout) or a `docker save` archive.</summary>
    public async Task<ImageRecord> ImportArchiveAsync(string archive, string? name = null, Platform? platform = null, CancellationToken cancellationToken = default)
    {
        var temp = Directory.CreateTempSubdirectory("orch-import-").FullName;
        try
        {
            // The archive is unpacked with the same rules as a layer: it cannot write outside temp.
            using (var input = File.OpenRead(archive))
            {
                await LayerUnpacker.UnpackAsync(input, temp, new UnpackOptions { Whiteouts = WhiteoutMode.Apply, PreserveOwnership = false, MaxBytes = Math.Max(0, Content.BudgetBytes - Content.UsedBytes) }, cancellationToken).ConfigureAwait(false);
            }
            if (File.Exists(Path.Combine(temp, "index.json")))
            {
                _ = ArchiveFile(temp, "index.json", $"'{archive}'");
                return await ImportLayoutAsync(temp, name, platform, cancellationToken).ConfigureAwait(false);
            }
            if (File.Exists(Path.Combine(temp, "manifest.json")))
            {
                _ = ArchiveFile(temp, "manifest.json", $"'{archive}'");
                return await ImportDockerSaveAsync(temp, name, cancellationToken).ConfigureAwait(false);
            }
            throw new ImageException($"'{archive}' is neither an OCI archive (index.json) nor a docker save archive (manifest.json)");
        }
        finally
        {
            Directory.Delete(temp, recursive: true);
        }
    }

    private async Task<ImageRecord> ImportDockerSaveAsync(string dir, string? name, CancellationToken cancellationToken)
    {
        var entries = JsonSerializer.Deserialize(await File.ReadAllBytesAsync(Path.Combine(dir, "manifest.json"), cancellationToken).ConfigureAwait(false), OciJsonContext.Default.ListDockerSaveEntry)!;
        var entry = entries.FirstOrDefault(e => name is null || (e.RepoTags ?? []).Any(t => ImageReference.SameImage(t, name))) ?? throw new ImageException($"the docker archive holds no image named '{name}'");
        name ??= entry.RepoTags?.FirstOrDefault() ?? throw new ImageException("the docker archive's image has no RepoTags; give it a name");

        async Task<Descriptor> Store(string relative, string mediaType)
        {
            var path = ArchiveFile(dir, relative, $"image '{name}'");
            var digest = await DigestFileAsync(path, cancellationToken).ConfigureAwait(false);
            using var stream = File.OpenRead(path);
            await Content.WriteAsync(stream, digest, new FileInfo(path).Length, cancellationToken).ConfigureAwait(false);
            return new Descriptor { MediaType = mediaType, Digest = digest, Size = new FileInfo(path).Length };
        }

        // docker save holds uncompressed layers and the config; the OCI manifest is made here.
        var manifest = new ImageManifest
        {
            SchemaVersion = 2,
            MediaType = MediaTypes.OciManifest,
            Config = await Store(entry.Config, MediaTypes.OciConfig).ConfigureAwait(false),
        };
        foreach (var layer in entry.Layers)
        {
            manifest.Layers.Add(await Store(layer, "application/vnd.oci.image.layer.v1.tar").ConfigureAwait(false));
        }
        var bytes = JsonSerializer.SerializeToUtf8Bytes(manifest, OciJsonContext.Default.ImageManifest);
        var manifestDigest = ContentStore.DigestOf(bytes);
        await Content.WriteAsync(bytes, manifestDigest, cancellationToken).ConfigureAwait(false);
        return Tag(name, manifestDigest, Platform.Current);
    }

    /// <summary>
    /// A file an unpacked archive or layout holds, by the relative name its index or manifest
    /// gives: never a path outside it (absolute, "..", or a symlink that leads out: a docker save
    /// archive naming /etc/shadow or /dev/zero as a layer is refused, not read), and a regular
    /// file. Symlinks inside it are followed (docker 25's archives link layer.tar into blobs/).
    /// </summary>
    internal static string ArchiveFile(string root, string relative, string what)
    {
        root = Path.GetFullPath(root);
        string Refuse(string why) => throw new ImageException($"{what}: the archive names '{relative}', {why}; the archive is refused");
        if (relative.Length == 0 || relative.StartsWith('/'))
        {
            return Refuse("which is not a relative path inside it");
        }
        var walk = Linux.PathWalk.Resolve(root, relative, refuseEscape: true, maxLinks: 40);
        var current = walk.Outcome switch
        {
            Linux.PathWalk.Outcome.AboveRoot => Refuse("which leads outside it"),
            Linux.PathWalk.Outcome.AbsoluteLink => Refuse($"through the symlink '{walk.Link}' -> {walk.Target}, which leads outside it"),
            Linux.PathWalk.Outcome.TooManyLinks => Refuse("through too many symlinks"),
            _ => walk.Path!,
        };
        if (!File.Exists(current) || current == root)
        {
            return Refuse("which it does not hold as a file (incomplete archive)");
        }
        return current;
    }

    private static async Task<string> DigestFileAsync(string path, CancellationToken cancellationToken)
    {
        using var stream = File.OpenRead(path);
        return "sha256:" + Convert.ToHexStringLower(await System.Security.Cryptography.SHA256.HashDataAsync(stream, cancellationToken).ConfigureAwait(false));
    }

    /// <summary>Writes the image as an OCI archive (oci-layout, index.json, its blobs).</summary>
    public async Task ExportArchiveAsync(string name, string archive, CancellationToken cancellationToken = default)
    {
        var image = Inspect(name);
        var manifest = Manifest(image);
        var output = File.Create(archive);
        await using (output.ConfigureAwait(false))
        {
            var tar = new TarWriter(output, TarEntryFormat.Pax, leaveOpen: true);
            await using (tar.ConfigureAwait(false))
            {
                async Task Add(string entryName, Stream data)
                {
                    var entry = new PaxTarEntry(TarEntryType.RegularFile, entryName) { DataStream = data, Mode = (UnixFileMode)0x1A4 };
                    await tar.WriteEntryAsync(entry, cancellationToken).ConfigureAwait(false);
                }
                await Add("oci-layout", new MemoryStream("{\"imageLayoutVersion\":\"1.0.0\"}"u8.ToArray())).ConfigureAwait(false);
                var index = new ImageIndex
                {
                    SchemaVersion = 2,
                    MediaType = MediaTypes.OciIndex,
                    Manifests = [new Descriptor
                    {
                        MediaType = MediaTypes.OciManifest,
                        Digest = image.ManifestDigest,
                        Size = new FileInfo(Content.PathOf(image.ManifestDigest)).Length,
                        Annotations = new Dictionary<string, string> { ["org.opencontainers.image.ref.name"] = name },
                        Platform = Platform.Parse(image.Platform),
                    }],
                };
                await Add("index.json", new MemoryStream(JsonSerializer.SerializeToUtf8Bytes(index, OciJsonContext.Default.ImageIndex))).ConfigureAwait(false);
                foreach (var digest in manifest.Layers.Select(l => l.Digest).Prepend(manifest.Config.Digest).Prepend(image.ManifestDigest).Distinct())
                {
                    var blob = Content.Open(digest);
                    await using (blob.ConfigureAwait(false))
                    {
                        await Add($"blobs/sha256/{digest[7..]}", blob).ConfigureAwait(false);
                    }
                }
            }
        }
    }

    /// <summary>
    /// The names, from images.json, or from its mirror images.json.bak when it is damaged (a torn
    /// write, bit rot): the damaged copy is moved aside and named on stderr (orchd's journal). With
    /// both gone the store starts with no names; the blobs stay, so pulling an image again
    /// fetches only its manifest. It used to fail every later start with a raw JSON message.
    /// </summary>
    private Dictionary<string, ImageRecord> Load()
    {
        try
        {
            return Canonicalize(Parse(_refs));
        }
        catch (Orchestrator.Linux.DamagedStateException damaged)
        {
            Dictionary<string, ImageRecord>? mirror = null;
            try
            {
                mirror = Parse(_refs + ".bak");
            }
            catch (Orchestrator.Linux.DamagedStateException)
            {
            }
            var refs = Canonicalize(mirror);
            Save(refs);
            Console.Error.WriteLine(mirror is not null
                ? $"image store: {damaged.Message}; restored from {_refs}.bak ({refs.Count} images)"
                : $"image store: {damaged.Message}, and its mirror {_refs}.bak is gone or damaged too; the store starts with no image names (its blobs are kept): pull or import images again");
            return refs;
        }
    }

    /// <summary>
    /// The names as the rule keeps them: a store written before it holds images under the names
    /// they were imported or pulled by (busybox:latest); each is found under its canonical name from
    /// now on, and written so at the next change. Two names for one image: the newer record wins.
    /// A stored name that is no valid reference stays as it is (found, listed and removable by it).
    /// </summary>
    private static Dictionary<string, ImageRecord> Canonicalize(Dictionary<string, ImageRecord>? stored)
    {
        var refs = new Dictionary<string, ImageRecord>(StringComparer.Ordinal);
        foreach (var (key, record) in (stored ?? []).OrderBy(kv => kv.Value.Created))
        {
            record.Name = ImageReference.TryParse(key, out var reference) ? reference.Canonical : key;
            refs[record.Name] = record;
        }
        return refs;
    }

    private static Dictionary<string, ImageRecord>? Parse(string path)
        => Orchestrator.Linux.StateFile.Read(path, bytes => JsonSerializer.Deserialize(bytes, OciJsonContext.Default.DictionaryStringImageRecord));

    /// <summary>The mirror first, then the file: a power cut between the two leaves one of them whole and current.</summary>
    private void Save(Dictionary<string, ImageRecord> refs)
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(refs, OciJsonContext.Default.DictionaryStringImageRecord);
        Orchestrator.Linux.StateFile.Write(_refs + ".bak", bytes);
        Orchestrator.Linux.StateFile.Write(_refs, bytes);
    }
}

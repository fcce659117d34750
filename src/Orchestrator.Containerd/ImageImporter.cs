using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Orchestrator.Containerd.Api.Types;
using Orchestrator.Images.Oci;
using Orchestrator.Images.Registry;

namespace Orchestrator.Containerd;

/// <summary>What an import made in containerd: the image record's target and the top snapshot (chain id) to run from.</summary>
public sealed record ImportedImage(string Name, ContentDescriptor Manifest, string ConfigDigest, string ChainId, int LayersWritten, int LayersUnpacked);

/// <summary>
/// Puts an OCI image into containerd the way its own pull does: under a lease, the layers, config
/// and manifest are written through the content service with the garbage collector's reference
/// labels, the layers are unpacked by the diff service into committed snapshots named by their
/// chain ids, and the image record points at the manifest. `ctr run IMAGE` then needs no pull
/// and no unpack, and containerd's GC keeps exactly what the image references.
/// The blobs come from wherever the caller opens them (<see cref="ImportAsync"/>: orchd's image
/// store, a layout) or straight from a registry (<see cref="PullAsync"/>: resolved by orchd's
/// registry client, streamed into containerd's content store, never onto orchd's disk).
/// </summary>
public static class ImageImporter
{
    public const string OciManifest = "application/vnd.oci.image.manifest.v1+json";

    /// <summary>Blobs streamed into containerd at once (containerd's own pull uses 3 too).</summary>
    private const int ConcurrentBlobs = 3;

    /// <param name="openBlob">Opens a blob by digest ("sha256:…").</param>
    public static async Task<ImportedImage> ImportAsync(ContainerdClient client, string name, string manifestDigest,
        Func<string, CancellationToken, Task<Stream>> openBlob, string snapshotter = "overlayfs", IProgress<PullProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var manifestBytes = await ReadAllAsync(openBlob, manifestDigest, cancellationToken).ConfigureAwait(false);
        using var manifest = JsonDocument.Parse(manifestBytes);
        var mediaType = manifest.RootElement.TryGetProperty("mediaType", out var mt) ? mt.GetString() ?? OciManifest : OciManifest;
        return await ImportManifestAsync(client, name, manifestDigest, mediaType, manifestBytes, openBlob, snapshotter, progress, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Pulls <paramref name="reference"/> from its registry into containerd: the registry client
    /// resolves the tag (and an index to this platform's manifest) and opens each blob the content
    /// store lacks; containerd's content service verifies every blob's digest and size on commit.
    /// The image record is named by the normalised reference (docker.io/library/busybox:latest).
    /// </summary>
    public static async Task<ImportedImage> PullAsync(ContainerdClient client, RegistryClient registry, string reference, Platform? platform = null,
        string snapshotter = "overlayfs", IProgress<PullProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var resolved = await registry.ResolveAsync(reference, platform, cancellationToken: cancellationToken).ConfigureAwait(false);
        return await ImportManifestAsync(client, resolved.Reference.ToString(), resolved.ManifestDigest, resolved.MediaType, resolved.ManifestBytes,
            (digest, ct) => registry.OpenBlobAsync(resolved.Reference, digest, ct), snapshotter, progress, cancellationToken).ConfigureAwait(false);
    }

    private static async Task<ImportedImage> ImportManifestAsync(ContainerdClient client, string name, string manifestDigest, string mediaType, byte[] manifestBytes,
        Func<string, CancellationToken, Task<Stream>> openBlob, string snapshotter, IProgress<PullProgress>? progress, CancellationToken cancellationToken)
    {
        var lease = await client.CreateLeaseAsync("orchd-import-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6)), TimeSpan.FromHours(1), cancellationToken).ConfigureAwait(false);
        try
        {
            using var manifest = JsonDocument.Parse(manifestBytes);
            var config = Descriptor(manifest.RootElement.GetProperty("config"));
            var layers = manifest.RootElement.GetProperty("layers").EnumerateArray().Select(Descriptor).ToList();
            var configBytes = await ReadAllAsync(openBlob, config.Digest, cancellationToken).ConfigureAwait(false);
            using var configJson = JsonDocument.Parse(configBytes);
            var diffIds = configJson.RootElement.GetProperty("rootfs").GetProperty("diff_ids").EnumerateArray().Select(d => d.GetString()!).ToList();
            if (diffIds.Count != layers.Count)
            {
                throw new ContainerdException($"image '{name}': its manifest has {layers.Count} layers and its config {diffIds.Count} diff ids; the image is broken");
            }
            var chainIds = ChainIds(diffIds);

            // Children before parents: what the manifest names is in the store before the manifest's labels point at it.
            // A blob the store has is not even opened (a pull downloads only what is new).
            var total = layers.Sum(l => l.Size) + configBytes.Length;
            long done = configBytes.Length;
            var layersDone = 0;
            var written = 0;
            progress?.Report(new PullProgress(0, layers.Count, done, total));
            using var gate = new SemaphoreSlim(ConcurrentBlobs);
            await Task.WhenAll(layers.Select(async (layer, i) =>
            {
                await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
                try
                {
                    var labels = new Dictionary<string, string> { ["containerd.io/uncompressed"] = diffIds[i] };
                    if (await client.ContentInfoAsync(layer.Digest, cancellationToken).ConfigureAwait(false) is not null)
                    {
                        await client.LabelContentAsync(layer.Digest, labels, cancellationToken).ConfigureAwait(false);
                        Interlocked.Add(ref done, layer.Size);
                    }
                    else
                    {
                        var stream = await openBlob(layer.Digest, cancellationToken).ConfigureAwait(false);
                        await using (stream.ConfigureAwait(false))
                        {
                            var counted = new CountingStream(stream, n => progress?.Report(new PullProgress(Volatile.Read(ref layersDone), layers.Count, Interlocked.Add(ref done, n), total)));
                            if (await client.WriteContentAsync("orchd-" + layer.Digest, counted, layer.Digest, layer.Size, labels, lease, cancellationToken).ConfigureAwait(false))
                            {
                                Interlocked.Increment(ref written);
                            }
                        }
                    }
                    progress?.Report(new PullProgress(Interlocked.Increment(ref layersDone), layers.Count, Volatile.Read(ref done), total));
                }
                finally
                {
                    gate.Release();
                }
            })).ConfigureAwait(false);
            var configLabels = new Dictionary<string, string> { [$"containerd.io/gc.ref.snapshot.{snapshotter}"] = chainIds.Count > 0 ? chainIds[^1] : "" };
            await client.WriteContentAsync("orchd-" + config.Digest, new MemoryStream(configBytes), config.Digest, configBytes.Length, configLabels, lease, cancellationToken).ConfigureAwait(false);
            var manifestLabels = new Dictionary<string, string> { ["containerd.io/gc.ref.content.config"] = config.Digest };
            for (var i = 0; i < layers.Count; i++)
            {
                manifestLabels[$"containerd.io/gc.ref.content.l.{i}"] = layers[i].Digest;
            }
            await client.WriteContentAsync("orchd-" + manifestDigest, new MemoryStream(manifestBytes), manifestDigest, manifestBytes.Length, manifestLabels, lease, cancellationToken).ConfigureAwait(false);

            // Unpack: each layer onto its parent's snapshot, committed under its chain id (skipped when there already).
            var unpacked = 0;
            for (var i = 0; i < layers.Count; i++)
            {
                if (await client.StatSnapshotAsync(snapshotter, chainIds[i], cancellationToken).ConfigureAwait(false) is not null)
                {
                    continue;
                }
                var key = $"orchd-extract-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))} {chainIds[i]}";
                var mounts = await client.PrepareSnapshotAsync(snapshotter, key, i == 0 ? "" : chainIds[i - 1], lease, cancellationToken: cancellationToken).ConfigureAwait(false);
                try
                {
                    var applied = await client.ApplyLayerAsync(layers[i], mounts, lease, cancellationToken).ConfigureAwait(false);
                    if (applied.Digest != diffIds[i])
                    {
                        throw new ContainerdException($"image '{name}': layer {layers[i].Digest} unpacks to {applied.Digest}, but its config says {diffIds[i]}; the image is broken");
                    }
                    await client.CommitSnapshotAsync(snapshotter, chainIds[i], key, new Dictionary<string, string> { ["containerd.io/snapshot.ref"] = chainIds[i] }, lease, cancellationToken).ConfigureAwait(false);
                    unpacked++;
                }
                catch
                {
                    await client.RemoveSnapshotAsync(snapshotter, key, CancellationToken.None).ConfigureAwait(false);
                    throw;
                }
            }

            var target = new ContentDescriptor { MediaType = mediaType, Digest = manifestDigest, Size = manifestBytes.Length };
            await client.PutImageAsync(name, target, cancellationToken: cancellationToken).ConfigureAwait(false);
            return new ImportedImage(name, target, config.Digest, chainIds.Count > 0 ? chainIds[^1] : "", written, unpacked);
        }
        finally
        {
            // The image now references all of it; the lease only protected the ingest.
            await client.DeleteLeaseAsync(lease, cancellationToken: CancellationToken.None).ConfigureAwait(false);
        }
    }

    /// <summary>chain(0) = diff(0); chain(n) = sha256(chain(n-1) + " " + diff(n)), as the OCI image spec defines.</summary>
    public static List<string> ChainIds(IReadOnlyList<string> diffIds)
    {
        var chains = new List<string>(diffIds.Count);
        foreach (var diff in diffIds)
        {
            chains.Add(chains.Count == 0 ? diff : "sha256:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"{chains[^1]} {diff}"))));
        }
        return chains;
    }

    private static ContentDescriptor Descriptor(JsonElement e) => new()
    {
        MediaType = e.GetProperty("mediaType").GetString() ?? "",
        Digest = e.GetProperty("digest").GetString() ?? "",
        Size = e.GetProperty("size").GetInt64(),
    };

    private static async Task<byte[]> ReadAllAsync(Func<string, CancellationToken, Task<Stream>> openBlob, string digest, CancellationToken cancellationToken)
    {
        var stream = await openBlob(digest, cancellationToken).ConfigureAwait(false);
        using var buffer = new MemoryStream();
        await using (stream.ConfigureAwait(false))
        {
            await stream.CopyToAsync(buffer, cancellationToken).ConfigureAwait(false);
        }
        var bytes = buffer.ToArray();
        var actual = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(bytes));
        return actual == digest ? bytes : throw new ContainerdException($"blob {digest} reads as {actual}; the source is corrupt");
    }

    /// <summary>Tells how many bytes went through as they are read (progress of a blob's transfer).</summary>
    private sealed class CountingStream(Stream inner, Action<int> read) : Stream
    {
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => Counted(inner.Read(buffer, offset, count));
        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
            => Counted(await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false));
        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
            => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        private int Counted(int n)
        {
            if (n > 0)
            {
                read(n);
            }
            return n;
        }
    }
}

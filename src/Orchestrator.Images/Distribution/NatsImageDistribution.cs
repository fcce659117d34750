using Orchestrator.Api;
using System.IO.Pipelines;
using System.Text;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.ObjectStore;
using Orchestrator.Images.Oci;
using Orchestrator.Images.Registry;
using Orchestrator.Images.Store;

namespace Orchestrator.Images.Distribution;

/// <summary>
/// Air-gapped image distribution over the fleet's own NATS: images pushed into a JetStream
/// object-store bucket (blobs named by digest, names pointing at manifest digests) and pulled
/// from it by nodes that cannot reach a registry. Every pulled byte goes through the content
/// store's digest check, exactly as from a registry.
/// </summary>
public sealed class NatsImageDistribution(INatsConnection nats, ImageStore images, string bucket = "orch-images")
{
    private static string BlobKey(string digest) => "blobs/" + digest.Replace(':', '/');

    private static string RefKey(string name) => "refs/" + name;

    private async Task<INatsObjStore> BucketAsync(CancellationToken cancellationToken)
    {
        var objects = new NatsObjContext(new NatsJSContext((NatsConnection)nats));
        try
        {
            return await objects.GetObjectStoreAsync(bucket, cancellationToken).ConfigureAwait(false);
        }
        catch (NatsJSApiException)
        {
            return await objects.CreateObjectStoreAsync(new NatsObjConfig(bucket) { Description = "Orchestrator images" }, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Publishes a stored image (found by any of its names): its blobs (those the bucket lacks) and
    /// its name, the canonical one (docker.io/library/busybox:latest for busybox:latest), which is
    /// what every pull looks up first.
    /// </summary>
    public async Task<int> PushAsync(string name, CancellationToken cancellationToken = default)
    {
        var image = images.Inspect(name);
        var published = ImageReference.TryParse(name, out var reference) ? reference.Canonical : image.Name;
        var store = await BucketAsync(cancellationToken).ConfigureAwait(false);
        var manifest = images.Manifest(image);
        var sent = 0;
        foreach (var digest in manifest.Layers.Select(l => l.Digest).Prepend(manifest.Config.Digest).Prepend(image.ManifestDigest))
        {
            if (await ExistsAsync(store, BlobKey(digest), cancellationToken).ConfigureAwait(false))
            {
                continue;
            }
            using var blob = images.Content.Open(digest);
            await store.PutAsync(BlobKey(digest), blob, leaveOpen: true, cancellationToken).ConfigureAwait(false);
            sent++;
        }
        await store.PutAsync(RefKey(published), Encoding.UTF8.GetBytes($"{image.ManifestDigest} {image.Platform}"), cancellationToken).ConfigureAwait(false);
        return sent;
    }

    /// <summary>
    /// Pulls an image published with <see cref="PushAsync"/> (any of its names, nats: or not),
    /// verifying every blob, and stores it under its canonical name. The bucket is asked for the
    /// canonical name, then the names an earlier version published under (as written: busybox:latest);
    /// a digest-pinned reference is also found by its manifest blob, whatever name it was pushed by.
    /// </summary>
    public async Task<ImageRecord> PullAsync(string name, CancellationToken cancellationToken = default)
    {
        var image = ImageReference.Parse(name);
        var written = ImageReference.IsFromNats(name) ? name[ImageReference.NatsPrefix.Length..] : name;
        var store = await BucketAsync(cancellationToken).ConfigureAwait(false);
        string? published = null;
        foreach (var key in image.LegacyNames().Prepend(written).Prepend(image.Canonical).Distinct(StringComparer.Ordinal))
        {
            try
            {
                published = Encoding.UTF8.GetString(await store.GetBytesAsync(RefKey(key), cancellationToken).ConfigureAwait(false));
                break;
            }
            catch (NatsObjNotFoundException)
            {
            }
        }
        if (published is null && image.Digest is { } pinned && await ExistsAsync(store, BlobKey(pinned), cancellationToken).ConfigureAwait(false))
        {
            published = pinned;
        }
        if (published is null)
        {
            // nats:2.10 is the fleet's image "2.10", not Docker Hub's nats image: say how to write that one.
            var hint = ImageReference.IsFromNats(name) && !written.Contains('/', StringComparison.Ordinal) && !written.Contains(':', StringComparison.Ordinal)
                ? $" (for Docker Hub's nats image write library/nats:{written})" : "";
            throw new ImageException(ErrorKind.NotFound, $"image '{name}' is not published in the NATS bucket '{bucket}' (as {image.Canonical}); push it there first (orchd image push {image.Familiar} --nats){hint}");
        }
        var parts = published.Split(' ');
        var manifestDigest = parts[0];
        var platform = parts.Length > 1 ? Platform.Parse(parts[1]) : Platform.Current;
        await FetchAsync(store, manifestDigest, cancellationToken).ConfigureAwait(false);
        var manifest = images.Manifest(new ImageRecord { ManifestDigest = manifestDigest });
        foreach (var blob in manifest.Layers.Prepend(manifest.Config))
        {
            await FetchAsync(store, blob.Digest, cancellationToken).ConfigureAwait(false);
        }
        return images.Tag(image.Canonical, manifestDigest, platform);
    }

    private async Task FetchAsync(INatsObjStore store, string digest, CancellationToken cancellationToken)
    {
        if (images.Content.Contains(digest))
        {
            return;
        }
        // The object streams through a pipe straight into the content store, which hashes as it writes.
        var pipe = new Pipe();
        var reading = Task.Run(async () =>
        {
            var writer = pipe.Writer.AsStream();
            try
            {
                await store.GetAsync(BlobKey(digest), writer, leaveOpen: true, cancellationToken).ConfigureAwait(false);
                await pipe.Writer.CompleteAsync().ConfigureAwait(false);
            }
            catch (Exception e)
            {
                await pipe.Writer.CompleteAsync(e).ConfigureAwait(false);
            }
        }, cancellationToken);
        try
        {
            await images.Content.WriteAsync(pipe.Reader.AsStream(), digest, size: null, cancellationToken).ConfigureAwait(false);
        }
        catch (NatsObjNotFoundException e)
        {
            throw new ImageException($"blob {digest} is missing from the NATS bucket '{bucket}'; push the image again", e);
        }
        finally
        {
            await reading.ConfigureAwait(false);
        }
    }

    private static async Task<bool> ExistsAsync(INatsObjStore store, string key, CancellationToken cancellationToken)
    {
        try
        {
            await store.GetInfoAsync(key, showDeleted: false, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (NatsObjNotFoundException)
        {
            return false;
        }
    }
}

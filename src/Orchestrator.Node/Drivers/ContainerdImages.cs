using System.Text.Json;
using Orchestrator.Containerd;
using Orchestrator.Containerd.Api.Types;
using Orchestrator.Images.Oci;
using Orchestrator.Images.Registry;
using Orchestrator.Images.Store;
using Orchestrator.Linux;
using Orchestrator.Node.Images;

namespace Orchestrator.Node.Drivers;

/// <summary>
/// containerd's image store and snapshotter as the source of a containerd container's rootfs, as
/// containerd's own clients use them: the image lives in containerd's content store (`ctr images
/// ls` lists it, containerd's GC keeps it while the image record exists), and each container gets
/// an active snapshot on the image's top layer, named <c>orchd/NAME</c>, which orchd mounts where
/// the container's spec points. Nothing of the image is on orchd's own disk unless orchd's store
/// already had it (an `orchd image import`, the fleet's NATS bucket): then it is copied over
/// rather than downloaded again.
/// </summary>
public sealed class ContainerdImages : IImageSource, IDisposable
{
    public const string SnapshotPrefix = "orchd/";
    private readonly ContainerdClient _client;
    private readonly RegistryClient _registry;
    private readonly SemaphoreSlim _ensuring = new(1, 1);

    /// <param name="registry">Resolves and opens blobs for pulls (a client without an image store).</param>
    public ContainerdImages(ContainerdClient client, RegistryClient registry, string snapshotter = "overlayfs")
    {
        _client = client;
        _registry = registry;
        Snapshotter = snapshotter;
    }

    public string Snapshotter { get; }

    public string Store => "containerd";

    public static string SnapshotKey(string container) => SnapshotPrefix + container;

    /// <summary>
    /// The image, unpacked in containerd: as it is there, else copied from orchd's store when that
    /// has it, else pulled from its registry through containerd's content service. When the
    /// registry pull fails and <paramref name="fallback"/> is given (orchd's pull, which also
    /// knows the fleet's NATS bucket), that pull fills orchd's store and the image is copied from it.
    /// </summary>
    public async Task<SourceImage> EnsureAsync(string reference, ImageStore? orchdStore,
        IImagePuller? fallback, CancellationToken cancellationToken = default)
    {
        await _ensuring.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var name = Normalize(reference);
            // nats:NAME is the fleet's bucket's NAME (docs/images.md): never a name containerd holds, never a registry's.
            var fromNats = ImageReference.IsFromNats(reference);
            if (!fromNats && await TryOpenAsync(reference, cancellationToken).ConfigureAwait(false) is { } ready)
            {
                return ready;
            }
            if (name != reference && await TryOpenAsync(name, cancellationToken).ConfigureAwait(false) is { } normalised)
            {
                return normalised;
            }
            if (orchdStore is not null && Stored(orchdStore, reference) is { } record)
            {
                await CopyFromStoreAsync(orchdStore, record, cancellationToken).ConfigureAwait(false);
                return await OpenAsync(record.Name, cancellationToken).ConfigureAwait(false);
            }
            async Task<SourceImage> ThroughOrchdAsync(ImageStore store, IImagePuller puller)
            {
                // Its error, if it fails too, says what both tried.
                await puller.PullAsync(reference, null, cancellationToken).ConfigureAwait(false);
                var fetched = Stored(store, reference) ?? throw new ImageException($"image '{reference}' was pulled but is not in orchd's store under that name");
                await CopyFromStoreAsync(store, fetched, cancellationToken).ConfigureAwait(false);
                return await OpenAsync(fetched.Name, cancellationToken).ConfigureAwait(false);
            }

            if (fromNats)
            {
                return fallback is not null && orchdStore is not null
                    ? await ThroughOrchdAsync(orchdStore, fallback).ConfigureAwait(false)
                    : throw new ImageException(ErrorKind.Unavailable, $"image '{reference}' comes from the fleet's NATS bucket, and this node has no NATS pull configured; import it with `orchd image import`");
            }
            try
            {
                var pulled = await ImageImporter.PullAsync(_client, _registry, reference, snapshotter: Snapshotter, cancellationToken: cancellationToken).ConfigureAwait(false);
                return await OpenAsync(pulled.Name, cancellationToken).ConfigureAwait(false);
            }
            catch (ImageException) when (fallback is not null && orchdStore is not null)
            {
                return await ThroughOrchdAsync(orchdStore, fallback).ConfigureAwait(false);
            }
        }
        finally
        {
            _ensuring.Release();
        }
    }

    private async Task CopyFromStoreAsync(ImageStore store, ImageRecord record, CancellationToken cancellationToken)
        => await ImageImporter.ImportAsync(_client, record.Name, record.ManifestDigest,
            (digest, _) => Task.FromResult(store.Content.Open(digest)), Snapshotter, cancellationToken: cancellationToken).ConfigureAwait(false);

    /// <summary>orchd's record of the image by any of its names (the store applies the naming rule).</summary>
    private static ImageRecord? Stored(ImageStore store, string reference) => store.TryInspect(reference);

    private async Task<SourceImage> OpenAsync(string name, CancellationToken cancellationToken)
        => await TryOpenAsync(name, cancellationToken).ConfigureAwait(false)
           ?? throw new ImageException($"image '{name}' is in containerd but not unpacked for snapshotter {Snapshotter}; remove it there (ctr -n {_client.Namespace} images rm {name}) and try again");

    /// <summary>The image when containerd has it, its blobs and its unpacked top snapshot; null otherwise.</summary>
    public async Task<SourceImage?> TryOpenAsync(string name, CancellationToken cancellationToken = default)
        => await FindImageAsync(name, cancellationToken).ConfigureAwait(false) is { } image
            ? await TryOpenAsync(image, cancellationToken).ConfigureAwait(false)
            : null;

    /// <summary>
    /// containerd's record of the image by any of its names (docs/images.md): as written (a name
    /// containerd holds that is no valid reference), else by its canonical name, which is how
    /// pulls and copies name images there.
    /// </summary>
    private async Task<Orchestrator.Containerd.Api.Images.Image?> FindImageAsync(string name, CancellationToken cancellationToken)
    {
        if (!ImageReference.IsFromNats(name) && await _client.GetImageAsync(name, cancellationToken).ConfigureAwait(false) is { } exact)
        {
            return exact;
        }
        var canonical = Normalize(name);
        return canonical != name ? await _client.GetImageAsync(canonical, cancellationToken).ConfigureAwait(false) : null;
    }

    private async Task<SourceImage?> TryOpenAsync(Orchestrator.Containerd.Api.Images.Image image, CancellationToken cancellationToken)
    {
        var name = image.Name;
        try
        {
            // The target may be an index (an image `ctr pull` fetched): this platform's manifest is the one.
            var root = new Descriptor { Digest = image.Target.Digest, MediaType = image.Target.MediaType };
            var (digest, manifestBytes) = await ImageStore.ResolvePlatformAsync(root, Platform.Current,
                d => _client.ReadContentAsync(d.Digest, cancellationToken), $"image '{name}'").ConfigureAwait(false);
            var manifest = JsonSerializer.Deserialize(manifestBytes, OciJsonContext.Default.ImageManifest)!;
            var configBytes = await _client.ReadContentAsync(manifest.Config.Digest, cancellationToken).ConfigureAwait(false);
            var config = JsonSerializer.Deserialize(configBytes, OciJsonContext.Default.ImageConfigFile) ?? new ImageConfigFile();
            using var doc = JsonDocument.Parse(configBytes);
            var diffIds = doc.RootElement.GetProperty("rootfs").GetProperty("diff_ids").EnumerateArray().Select(d => d.GetString() ?? "").ToList();
            var chainIds = ImageImporter.ChainIds(diffIds);
            if (chainIds.Count == 0 || await _client.StatSnapshotAsync(Snapshotter, chainIds[^1], cancellationToken).ConfigureAwait(false) is null)
            {
                return null; // not unpacked (or collected): a pull or copy unpacks it again
            }
            return new SourceImage(name, digest, config, chainIds[^1])
            {
                Blobs = [manifest.Config, .. manifest.Layers],
                Created = image.CreatedAt?.ToDateTimeOffset() ?? default,
            };
        }
        catch (ContainerdException e) when (e.IsNotFound)
        {
            return null; // a blob is missing: a pull or copy writes it again
        }
    }

    /// <summary>The images in orchd's namespace that are unpacked and can run (what `ctr -n … images ls` shows, less the rest).</summary>
    public async Task<IReadOnlyList<SourceImage>> ListAsync(CancellationToken cancellationToken = default)
    {
        var result = new List<SourceImage>();
        foreach (var image in await _client.ListImagesAsync(cancellationToken).ConfigureAwait(false))
        {
            if (await TryOpenAsync(image, cancellationToken).ConfigureAwait(false) is { } ready)
            {
                result.Add(ready);
            }
        }
        return result;
    }

    /// <summary>Pulls <paramref name="reference"/> again (the tag may have moved): only blobs containerd lacks are downloaded.</summary>
    public async Task<SourceImage> PullAsync(string reference, IProgress<PullProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        await _ensuring.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var pulled = await ImageImporter.PullAsync(_client, _registry, reference, snapshotter: Snapshotter, progress: progress, cancellationToken: cancellationToken).ConfigureAwait(false);
            return await OpenAsync(pulled.Name, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _ensuring.Release();
        }
    }

    /// <summary>
    /// Deletes the image record; containerd's GC then takes the blobs and unpacked layers that no
    /// other image and no container's snapshot stands on. False when containerd has no such image.
    /// </summary>
    public async Task<bool> RemoveAsync(string name, CancellationToken cancellationToken = default)
    {
        if (await FindImageAsync(name, cancellationToken).ConfigureAwait(false) is not { } image)
        {
            return false;
        }
        await _client.DeleteImageAsync(image.Name, sync: true, cancellationToken).ConfigureAwait(false);
        return true;
    }

    /// <summary>
    /// Mounts the container's snapshot at <paramref name="target"/>: kept when it is mounted there
    /// already (an orchd or container restart), otherwise a fresh snapshot on the image (after a
    /// reboot, like orchd's own rootfs, the container starts from the image again).
    /// </summary>
    public async Task<string> MountRootfsAsync(string container, SourceImage image, string target, CancellationToken cancellationToken = default)
    {
        if (MountInfo.IsMountPoint(target))
        {
            return target;
        }
        var key = SnapshotKey(container);
        await _client.RemoveSnapshotAsync(Snapshotter, key, cancellationToken).ConfigureAwait(false);
        // A GC root: no container record names the snapshot (orchd's bundle has the rootfs), so the label keeps it.
        var labels = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["containerd.io/gc.root"] = DateTimeOffset.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture),
            ["org.orchestrator.image"] = image.Name,
        };
        var mounts = await _client.PrepareSnapshotAsync(Snapshotter, key, image.TopLayer, labels: labels, cancellationToken: cancellationToken).ConfigureAwait(false);
        Directory.CreateDirectory(target);
        try
        {
            foreach (var mount in mounts)
            {
                Mount(mount, target);
            }
        }
        catch
        {
            Unmount(target);
            await _client.RemoveSnapshotAsync(Snapshotter, key, CancellationToken.None).ConfigureAwait(false);
            throw;
        }
        return target;
    }

    /// <summary>Unmounts the container's rootfs (when mounted) and removes its snapshot (and so its writes); idempotent.</summary>
    public async Task RemoveRootfsAsync(string container, string target, CancellationToken cancellationToken = default)
    {
        Unmount(target);
        await _client.RemoveSnapshotAsync(Snapshotter, SnapshotKey(container), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>A containerd mount (type, source, options) done by mount(2): flag options become flags, the rest data.</summary>
    internal static void Mount(Mount mount, string target)
    {
        ulong flags = 0;
        var data = new List<string>();
        foreach (var option in mount.Options)
        {
            switch (option)
            {
                case "bind": flags |= Libc.MS_BIND; break;
                case "rbind": flags |= Libc.MS_BIND | Libc.MS_REC; break;
                case "ro": flags |= Libc.MS_RDONLY; break;
                case "rw": break;
                case "nosuid": flags |= Libc.MS_NOSUID; break;
                case "nodev": flags |= Libc.MS_NODEV; break;
                case "noexec": flags |= Libc.MS_NOEXEC; break;
                case "noatime": flags |= Libc.MS_NOATIME; break;
                case "relatime": flags |= Libc.MS_RELATIME; break;
                default: data.Add(option); break;
            }
        }
        var bind = (flags & Libc.MS_BIND) != 0 || mount.Type == "bind";
        if (bind)
        {
            flags |= Libc.MS_BIND;
        }
        var result = bind
            ? Libc.mount(mount.Source, target, null, flags & ~Libc.MS_RDONLY, null)
            : Libc.mount(mount.Source, target, mount.Type, flags, data.Count > 0 ? string.Join(',', data) : null);
        if (result != 0)
        {
            throw LinuxException.FromLastError($"mount {mount.Type} snapshot", target);
        }
        // A bind mount takes read-only only on a remount.
        if (bind && (flags & Libc.MS_RDONLY) != 0
            && Libc.mount(null, target, null, Libc.MS_BIND | Libc.MS_REMOUNT | Libc.MS_RDONLY, null) != 0)
        {
            throw LinuxException.FromLastError("remount read-only", target);
        }
    }

    private static void Unmount(string target)
    {
        while (MountInfo.IsMountPoint(target))
        {
            if (Libc.umount2(target, Libc.MNT_DETACH) != 0)
            {
                throw LinuxException.FromLastError("umount", target);
            }
        }
    }

    private static string Normalize(string reference)
    {
        try
        {
            return ImageReference.Parse(reference).ToString();
        }
        catch (Exception e) when (e is ImageException or FormatException or ArgumentException)
        {
            return reference;
        }
    }

    public void Dispose()
    {
        _ensuring.Dispose();
        _registry.Dispose();
    }
}

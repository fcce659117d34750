using Orchestrator.Api.Workloads;
using Orchestrator.Images.Oci;
using Orchestrator.Images.Registry;
using Orchestrator.Images.Snapshots;
using Orchestrator.Images.Store;
using Orchestrator.Node.Drivers;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Node.Images;

/// <summary>
/// The node's images: the node API's list, inspect, pull, remove and gc (the same store `orchd
/// image` uses, and containerd's when containers run from it), and a container's image and rootfs
/// for the supervisor's start. Pulls run off the supervisor's loop, which keeps serving meanwhile;
/// what needs the loop's state (which workloads use an image) is posted to its mailbox.
/// </summary>
public sealed class ImageService
{
    private readonly ImageStore _images;
    private readonly SnapshotStore _snapshots;
    private readonly ITaskDriver _driver;
    private readonly IImagePuller? _puller;
    private readonly Mailbox _mailbox;
    private readonly Func<string, List<string>> _users;
    private readonly string _containersRunDir;

    /// <param name="users">The workloads and running containers that use an image: called on the loop only.</param>
    internal ImageService(ImageStore images, SnapshotStore snapshots, ITaskDriver driver, IImagePuller? puller,
        Mailbox mailbox, Func<string, List<string>> users, string containersRunDir)
    {
        _images = images;
        _snapshots = snapshots;
        _driver = driver;
        _puller = puller;
        _mailbox = mailbox;
        _users = users;
        _containersRunDir = containersRunDir;
    }

    /// <summary>orchd's images, and containerd's when containers on this node run from its image store.</summary>
    public async Task<List<ImageSummary>> ListAsync()
    {
        var images = await _mailbox.Post(() => _images.List().Select(i => Summary(i, withLayers: false)).ToList()).ConfigureAwait(false);
        if (_driver.ImagesFor(WorkloadRuntime.Containerd) is { } source)
        {
            var theirs = await source.ListAsync().ConfigureAwait(false);
            images.AddRange(await _mailbox.Post(() => theirs.Select(i => Summary(source, i, withLayers: false)).ToList()).ConfigureAwait(false));
        }
        return images;
    }

    public async Task<ImageSummary> InspectAsync(string name)
    {
        try
        {
            return await _mailbox.Post(() => Summary(_images.Inspect(name), withLayers: true)).ConfigureAwait(false);
        }
        catch (ImageException) when (_driver.ImagesFor(WorkloadRuntime.Containerd) is { } source)
        {
            var theirs = await source.TryOpenAsync(name).ConfigureAwait(false)
                ?? throw new ImageException(ErrorKind.NotFound, $"image '{name}' is neither in orchd's store nor in containerd's; pull it first (images lists what is)");
            return await _mailbox.Post(() => Summary(source, theirs, withLayers: true)).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Pulls into the store the node's containers run from: containerd's (through its content
    /// service) when its default backend runs from it, else orchd's (from the registry, or the
    /// fleet's NATS bucket as orchd is configured). Not on the loop, which keeps serving meanwhile.
    /// A registry pull reports the blobs it has stored to <paramref name="progress"/>.
    /// </summary>
    public async Task<ImageSummary> PullAsync(string reference, CancellationToken cancellationToken, IProgress<PullProgress>? progress = null)
    {
        if (_driver.ImagesFor(null) is { } source)
        {
            // nats:NAME is no registry's: it comes through orchd's pull from the fleet's bucket, then over.
            var pulled = ImageReference.IsFromNats(reference)
                ? await source.EnsureAsync(reference, _images, _puller, cancellationToken).ConfigureAwait(false)
                : await source.PullAsync(reference, progress, cancellationToken).ConfigureAwait(false);
            return await _mailbox.Post(() => Summary(source, pulled, withLayers: true)).ConfigureAwait(false);
        }
        if (_puller is null)
        {
            throw new NodeApiException(ErrorKind.Unavailable, "this node cannot pull images (no puller configured); import them with `orchd image import`");
        }
        await _puller.PullAsync(reference, progress, cancellationToken).ConfigureAwait(false);
        return await InspectAsync(reference).ConfigureAwait(false);
    }

    /// <summary>Forgets an image no workload uses, in whichever store has it (gc then frees orchd's blobs; containerd's GC its own).</summary>
    public async Task RemoveAsync(string name)
    {
        var own = await _mailbox.Post(() =>
        {
            var users = _users(name);
            if (users.Count > 0)
            {
                throw new NodeApiException(ErrorKind.Conflict, $"image '{name}' is used by {string.Join(", ", users.Select(u => $"'{u}'"))}; remove those workloads first");
            }
            try
            {
                _images.Remove(_images.Inspect(name).Name);
                return true;
            }
            catch (ImageException)
            {
                return false;
            }
        }).ConfigureAwait(false);
        var theirs = _driver.ImagesFor(WorkloadRuntime.Containerd) is { } source && await source.RemoveAsync(name).ConfigureAwait(false);
        if (!own && !theirs)
        {
            throw new ImageException(ErrorKind.NotFound, $"image '{name}' is not on this node; `orchctl images -n NODE` lists what is");
        }
    }

    /// <summary>Frees the blobs no image references and the unpacked layers no image or container stands on.</summary>
    public Task<ImageGcResult> GcAsync() => _mailbox.Post(() => new ImageGcResult { FreedBytes = _images.Gc(), PrunedLayers = _snapshots.Prune() });

    /// <summary>
    /// The image's run defaults and a rootfs for the container: from the backend's image source
    /// (containerd's image store and snapshotter) when it runs from one, otherwise from orchd's
    /// (pulled when missing). Called on the loop by the supervisor's start.
    /// </summary>
    internal async Task<(ImageConfigFile Config, string Rootfs)> PrepareAsync(string name, Workload workload)
    {
        if (_driver.ImagesFor(workload.Runtime) is { } source)
        {
            var pulled = await source.EnsureAsync(workload.Image, _images, _puller, CancellationToken.None).ConfigureAwait(false);
            return (pulled.Config, await source.MountRootfsAsync(name, pulled, SourceRootfs(name)).ConfigureAwait(false));
        }
        ImageRecord image;
        try
        {
            image = _images.Inspect(workload.Image);
        }
        catch (ImageException) when (_puller is not null)
        {
            await _puller.PullAsync(workload.Image, null, CancellationToken.None).ConfigureAwait(false);
            image = _images.Inspect(workload.Image);
        }
        return (_images.Config(image), await PrepareRootfsAsync(name, image).ConfigureAwait(false));
    }

    /// <summary>Removes the container's rootfs from orchd's snapshots and from the backend's image source; called on the loop.</summary>
    internal async Task RemoveRootfsAsync(string name)
    {
        _snapshots.Remove(name);
        if (_driver.ImagesFor(WorkloadRuntime.Containerd) is { } source)
        {
            // Before the run dir goes: its mount point must be unmounted first. Whatever runtime it
            // has now, an earlier one may have left a snapshot there.
            await source.RemoveRootfsAsync(name, SourceRootfs(name)).ConfigureAwait(false);
        }
    }

    private string RunDir(string name) => Path.Combine(_containersRunDir, name);

    /// <summary>Where a container's snapshot from the image source is mounted (the run dir: gone with a reboot, like the mount).</summary>
    private string SourceRootfs(string name) => Path.Combine(RunDir(name), "containerd-rootfs");

    private async Task<string> PrepareRootfsAsync(string name, ImageRecord image)
    {
        // The marker lives in the run dir: after a reboot the overlay mount is gone and the
        // rootfs is made again; after an orchd restart (or a container restart) it is reused.
        var marker = Path.Combine(RunDir(name), "rootfs");
        if (File.Exists(marker) && File.ReadAllText(marker) is { Length: > 0 } kept && Directory.Exists(kept))
        {
            return kept;
        }
        _snapshots.Remove(name);
        var rootfs = await _snapshots.PrepareAsync(image.Name, name).ConfigureAwait(false);
        Directory.CreateDirectory(RunDir(name));
        File.WriteAllText(marker, rootfs);
        return rootfs;
    }

    /// <summary>An OCI descriptor as the node API shows it (the same JSON).</summary>
    private static LayerDescriptor ToWire(Descriptor layer) => new()
    {
        MediaType = layer.MediaType,
        Digest = layer.Digest,
        Size = layer.Size,
        Annotations = layer.Annotations,
        Platform = layer.Platform is { } p ? new LayerPlatform { Os = p.Os, Architecture = p.Architecture, Variant = p.Variant } : null,
    };

    private ImageSummary Summary(ImageRecord image, bool withLayers) => new()
    {
        Name = image.Name,
        ManifestDigest = image.ManifestDigest,
        Platform = image.Platform,
        Size = image.Size,
        Created = image.Created,
        UsedBy = _users(image.Name),
        Layers = withLayers ? _images.Manifest(image).Layers.Select(ToWire).ToList() : null,
    };

    private ImageSummary Summary(IImageSource source, SourceImage image, bool withLayers) => new()
    {
        Name = image.Name,
        ManifestDigest = image.ManifestDigest,
        Platform = image.Platform,
        Size = image.Blobs.Sum(b => b.Size),
        Created = image.Created,
        UsedBy = _users(image.Name),
        Layers = withLayers ? image.Blobs.Skip(1).Select(ToWire).ToList() : null,
        Store = source.Store,
    };
}

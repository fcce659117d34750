using Orchestrator.Images.Oci;
using Orchestrator.Images.Registry;
using Orchestrator.Images.Store;
using Orchestrator.Node.Drivers;

namespace Orchestrator.Node.Reconcile;

/// <summary>The node API's image operations: list, inspect, pull, remove, gc (the same store `orchd image` uses).</summary>
public sealed partial class Supervisor
{
    /// <summary>orchd's images, and containerd's when containers on this node run from its image store.</summary>
    public async Task<List<ImageSummary>> ListImagesAsync()
    {
        var images = await Post(() => _images.List().Select(i => Summary(i, withLayers: false)).ToList()).ConfigureAwait(false);
        if (_driver.ImagesFor("containerd") is { } containerd)
        {
            var theirs = await containerd.ListAsync().ConfigureAwait(false);
            images.AddRange(await Post(() => theirs.Select(i => Summary(i, withLayers: false)).ToList()).ConfigureAwait(false));
        }
        return images;
    }

    public async Task<ImageSummary> InspectImageAsync(string name)
    {
        try
        {
            return await Post(() => Summary(_images.Inspect(name), withLayers: true)).ConfigureAwait(false);
        }
        catch (ImageException) when (_driver.ImagesFor("containerd") is { } containerd)
        {
            var theirs = await containerd.TryOpenAsync(name).ConfigureAwait(false)
                ?? throw new ImageException(ErrorKind.NotFound, $"image '{name}' is neither in orchd's store nor in containerd's; pull it first (images lists what is)");
            return await Post(() => Summary(theirs, withLayers: true)).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Pulls into the store the node's containers run from: containerd's (through its content
    /// service) when its default backend runs from it, else orchd's (from the registry, or the
    /// fleet's NATS bucket as orchd is configured). Not on the loop, which keeps serving meanwhile.
    /// A registry pull reports the blobs it has stored to <paramref name="progress"/>.
    /// </summary>
    public async Task<ImageSummary> PullImageAsync(string reference, CancellationToken cancellationToken, IProgress<PullProgress>? progress = null)
    {
        if (_driver.ImagesFor(null) is { } containerd)
        {
            var pulled = await containerd.PullAsync(reference, progress, cancellationToken).ConfigureAwait(false);
            return await Post(() => Summary(pulled, withLayers: true)).ConfigureAwait(false);
        }
        if (_pullImage is null)
        {
            throw new NodeApiException(ErrorKind.Unavailable, "this node cannot pull images (no puller configured); import them with `orchd image import`");
        }
        await _pullImage(reference, progress, cancellationToken).ConfigureAwait(false);
        return await InspectImageAsync(reference).ConfigureAwait(false);
    }

    /// <summary>Forgets an image no workload uses, in whichever store has it (gc then frees orchd's blobs; containerd's GC its own).</summary>
    public async Task RemoveImageAsync(string name)
    {
        var own = await Post(() =>
        {
            var users = Users(name);
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
        var theirs = _driver.ImagesFor("containerd") is { } containerd && await containerd.RemoveAsync(name).ConfigureAwait(false);
        if (!own && !theirs)
        {
            throw new ImageException(ErrorKind.NotFound, $"image '{name}' is not on this node; `orchctl images -n NODE` lists what is");
        }
    }

    /// <summary>Frees the blobs no image references and the unpacked layers no image or container stands on.</summary>
    public Task<ImageGcResult> GcImagesAsync() => Post(() => new ImageGcResult { FreedBytes = _images.Gc(), PrunedLayers = _snapshots.Prune() });

    private List<string> Users(string image)
        => Desired().Values.Where(w => w.Image == image).Select(w => w.Name)
            .Concat(_instances.Values.Where(i => i.Handle is not null && i.Workload.Image == image).Select(i => i.Record.Name))
            .Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();

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
        UsedBy = Users(image.Name),
        Layers = withLayers ? _images.Manifest(image).Layers.Select(ToWire).ToList() : null,
    };

    private ImageSummary Summary(ContainerdImage image, bool withLayers) => new()
    {
        Name = image.Name,
        ManifestDigest = image.ManifestDigest,
        Platform = image.Platform,
        Size = image.Blobs.Sum(b => b.Size),
        Created = image.Created,
        UsedBy = Users(image.Name),
        Layers = withLayers ? image.Blobs.Skip(1).Select(ToWire).ToList() : null,
        Store = "containerd",
    };
}

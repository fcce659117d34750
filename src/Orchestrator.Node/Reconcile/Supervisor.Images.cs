using Orchestrator.Images.Oci;
using Orchestrator.Images.Store;

namespace Orchestrator.Node.Reconcile;

/// <summary>An image in the node's store, with the containers that use it.</summary>
public sealed class ImageSummary
{
    public string Name { get; set; } = "";
    public string ManifestDigest { get; set; } = "";
    public string Platform { get; set; } = "";
    public long Size { get; set; }
    public DateTimeOffset Created { get; set; }
    public List<string> UsedBy { get; set; } = [];
    /// <summary>inspect only: the layers, bottom first.</summary>
    public List<Descriptor>? Layers { get; set; }
}

/// <summary>What an image gc freed.</summary>
public sealed class ImageGcResult
{
    public long FreedBytes { get; set; }
    public int PrunedLayers { get; set; }
}

/// <summary>The node API's image operations: list, inspect, pull, remove, gc (the same store `orchd image` uses).</summary>
public sealed partial class Supervisor
{
    public Task<List<ImageSummary>> ListImagesAsync() => Post(() => _images.List().Select(i => Summary(i, withLayers: false)).ToList());

    public Task<ImageSummary> InspectImageAsync(string name) => Post(() => Summary(_images.Inspect(name), withLayers: true));

    /// <summary>Pulls (from the registry, or the fleet's NATS bucket as orchd is configured); not on the loop, which keeps serving meanwhile.</summary>
    public async Task<ImageSummary> PullImageAsync(string reference, CancellationToken cancellationToken)
    {
        if (_pullImage is null)
        {
            throw new NodeApiException("this node cannot pull images (no puller configured); import them with `orchd image import`");
        }
        await _pullImage(reference, cancellationToken).ConfigureAwait(false);
        return await InspectImageAsync(reference).ConfigureAwait(false);
    }

    /// <summary>Forgets an image no workload uses (gc then frees its blobs).</summary>
    public Task RemoveImageAsync(string name) => Post(() =>
    {
        var image = _images.Inspect(name);
        var users = Users(image.Name);
        if (users.Count > 0)
        {
            throw new NodeApiException($"image '{name}' is used by {string.Join(", ", users.Select(u => $"'{u}'"))}; remove those workloads first");
        }
        _images.Remove(name);
        return true;
    });

    /// <summary>Frees the blobs no image references and the unpacked layers no image or container stands on.</summary>
    public Task<ImageGcResult> GcImagesAsync() => Post(() => new ImageGcResult { FreedBytes = _images.Gc(), PrunedLayers = _snapshots.Prune() });

    private List<string> Users(string image)
        => Desired().Values.Where(w => w.Image == image).Select(w => w.Name)
            .Concat(_instances.Values.Where(i => i.Handle is not null && i.Workload.Image == image).Select(i => i.Record.Name))
            .Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();

    private ImageSummary Summary(ImageRecord image, bool withLayers) => new()
    {
        Name = image.Name,
        ManifestDigest = image.ManifestDigest,
        Platform = image.Platform,
        Size = image.Size,
        Created = image.Created,
        UsedBy = Users(image.Name),
        Layers = withLayers ? _images.Manifest(image).Layers : null,
    };
}

using Orchestrator.Images.Oci;
using Orchestrator.Images.Registry;
using Orchestrator.Images.Store;

namespace Orchestrator.Node.Images;

/// <summary>An image as a driver's image source holds it, ready to run: its run defaults, its blobs and its top unpacked layer.</summary>
/// <param name="TopLayer">The source's name for the image's top unpacked layer, the one a container's rootfs stands on (containerd: the chain id).</param>
public sealed record SourceImage(string Name, string ManifestDigest, ImageConfigFile Config, string TopLayer)
{
    /// <summary>Config and layers, bottom first, as the manifest lists them.</summary>
    public IReadOnlyList<Descriptor> Blobs { get; init; } = [];

    public DateTimeOffset Created { get; init; }

    public string Platform => $"{Config.Os ?? "linux"}/{Config.Architecture ?? "unknown"}";
}

/// <summary>
/// Where a driver's containers get their image and rootfs from when it is not orchd's own store
/// (containerd's image store and snapshotter): what <see cref="Drivers.ITaskDriver.ImagesFor"/>
/// offers, so that the node never names the backend's types.
/// </summary>
public interface IImageSource
{
    /// <summary>The store's name as the node API shows it beside an image (<c>containerd</c>).</summary>
    string Store { get; }

    /// <summary>
    /// The image, ready to run: as the source has it, else copied from orchd's store when that has
    /// it, else pulled; when the source's own pull fails, <paramref name="fallback"/> (orchd's pull,
    /// which also knows the fleet's NATS bucket) fills orchd's store and the image is copied from it.
    /// </summary>
    Task<SourceImage> EnsureAsync(string reference, ImageStore? orchdStore, IImagePuller? fallback, CancellationToken cancellationToken = default);

    /// <summary>Mounts the container's rootfs on <paramref name="image"/> at <paramref name="target"/> (kept when it is mounted there already).</summary>
    Task<string> MountRootfsAsync(string container, SourceImage image, string target, CancellationToken cancellationToken = default);

    /// <summary>Unmounts the container's rootfs (when mounted) and removes its writes; idempotent.</summary>
    Task RemoveRootfsAsync(string container, string target, CancellationToken cancellationToken = default);

    /// <summary>The images in the source that can run.</summary>
    Task<IReadOnlyList<SourceImage>> ListAsync(CancellationToken cancellationToken = default);

    /// <summary>The image when the source has it ready to run; null otherwise.</summary>
    Task<SourceImage?> TryOpenAsync(string name, CancellationToken cancellationToken = default);

    /// <summary>Pulls <paramref name="reference"/> again (the tag may have moved).</summary>
    Task<SourceImage> PullAsync(string reference, IProgress<PullProgress>? progress = null, CancellationToken cancellationToken = default);

    /// <summary>Forgets the image; false when the source has no such image.</summary>
    Task<bool> RemoveAsync(string name, CancellationToken cancellationToken = default);
}

using Orchestrator.Images.Oci;
using Orchestrator.Images.Store;
using Orchestrator.Images.Unpack;
using Orchestrator.Linux;

namespace Orchestrator.Images.Snapshots;

/// <summary>
/// Container root filesystems from images: each layer unpacked once (in overlayfs' whiteout
/// format) and shared; a container's rootfs is an overlay of its image's layers with a
/// writable upper dir of its own. Where overlayfs is unavailable (or refused), the layers are
/// applied one after the other into a private copy instead.
/// </summary>
public sealed class SnapshotStore(ImageStore images, string root, bool forceCopy = false)
{
    private readonly string _layers = Path.Combine(root, "layers");

    /// <summary>
    /// What one layer may write when unpacked: the free space of the file system the snapshots
    /// live on, less a reserve (5% of it, at least 64 MiB) that stays for logs and state, and,
    /// when the node has an image disk budget (<c>images.disk_budget</c>, the content store's
    /// budget), what the budget leaves after the image blobs and the layers already unpacked.
    /// A gzip or zstd bomb (1 GiB of zeros in a few MB) stops with a clear error before the
    /// disk is full, or the budget spent.
    /// </summary>
    internal long UnpackBudget()
    {
        long free;
        try
        {
            Directory.CreateDirectory(root);
            var drive = new DriveInfo(root);
            var reserve = Math.Max(64L << 20, drive.TotalSize / 20);
            free = Math.Max(0, drive.AvailableFreeSpace - reserve);
        }
        catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException)
        {
            free = long.MaxValue; // no file system information: the content store's own budget still holds
        }
        var budget = images.Content.BudgetBytes;
        if (budget == long.MaxValue)
        {
            return free;
        }
        return Math.Min(free, Math.Max(0, budget - images.Content.UsedBytes - UnpackedBytes()));
    }

    /// <summary>Bytes of regular files under the unpacked layers (a walk, once per layer to unpack).</summary>
    private long UnpackedBytes()
    {
        if (!Directory.Exists(_layers))
        {
            return 0;
        }
        long total = 0;
        var options = new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.ReparsePoint, IgnoreInaccessible = true };
        foreach (var file in new DirectoryInfo(_layers).EnumerateFiles("*", options))
        {
            total += file.Length;
        }
        return total;
    }

    private UnpackOptions Options(WhiteoutMode whiteouts) => new() { Whiteouts = whiteouts, MaxBytes = UnpackBudget() };
    private readonly string _containers = Path.Combine(root, "containers");

    /// <summary>How the last rootfs was made: "overlay" or "copy".</summary>
    public string LastMode { get; private set; } = "";

    /// <summary>Makes the rootfs of <paramref name="containerId"/> from the image; returns its path.</summary>
    public async Task<string> PrepareAsync(string image, string containerId, CancellationToken cancellationToken = default)
    {
        var record = images.Inspect(image);
        var manifest = images.Manifest(record);
        var dir = Path.Combine(_containers, containerId);
        if (Directory.Exists(dir))
        {
            throw new ImageException($"container '{containerId}' already has a rootfs at {dir}; remove it first");
        }
        var rootfs = Path.Combine(dir, "rootfs");
        Directory.CreateDirectory(rootfs);
        // Which layers this container stands on: prune must not take them away while it lives.
        await File.WriteAllLinesAsync(Path.Combine(dir, "layers"), manifest.Layers.Select(l => l.Digest[7..]), cancellationToken).ConfigureAwait(false);
        try
        {
            if (!forceCopy)
            {
                var lowers = new List<string>();
                foreach (var layer in manifest.Layers)
                {
                    lowers.Add(await EnsureLayerAsync(layer, cancellationToken).ConfigureAwait(false));
                }
                var upper = Directory.CreateDirectory(Path.Combine(dir, "upper")).FullName;
                var work = Directory.CreateDirectory(Path.Combine(dir, "work")).FullName;
                lowers.Reverse(); // overlayfs lists the top layer first
                var options = $"lowerdir={string.Join(':', lowers)},upperdir={upper},workdir={work}";
                if (Libc.mount("overlay", rootfs, "overlay", 0, options) == 0)
                {
                    LastMode = "overlay";
                    return rootfs;
                }
                Directory.Delete(upper, recursive: true);
                Directory.Delete(work, recursive: true);
            }
            foreach (var layer in manifest.Layers)
            {
                using var blob = images.Content.Open(layer.Digest);
                await LayerUnpacker.UnpackAsync(blob, rootfs, Options(WhiteoutMode.Apply), cancellationToken).ConfigureAwait(false);
            }
            LastMode = "copy";
            return rootfs;
        }
        catch
        {
            Remove(containerId);
            throw;
        }
    }

    /// <summary>Unpacks every layer of the image now (a pull that is to run soon), returning how many were new.</summary>
    public async Task<int> UnpackLayersAsync(string image, CancellationToken cancellationToken = default)
    {
        var manifest = images.Manifest(images.Inspect(image));
        var fresh = manifest.Layers.Count(l => !Directory.Exists(Path.Combine(_layers, l.Digest[7..])));
        // Layers are independent: unpack them side by side.
        await Task.WhenAll(manifest.Layers.Select(l => EnsureLayerAsync(l, cancellationToken))).ConfigureAwait(false);
        return fresh;
    }

    /// <summary>Unmounts and deletes a container's rootfs (and its writes).</summary>
    public void Remove(string containerId)
    {
        var dir = Path.Combine(_containers, containerId);
        var rootfs = Path.Combine(dir, "rootfs");
        if (MountInfo.IsMountPoint(rootfs) && Libc.umount2(rootfs, Libc.MNT_DETACH) != 0)
        {
            throw LinuxException.FromLastError("umount", rootfs);
        }
        if (Directory.Exists(dir))
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Deletes unpacked layers that no image in the store uses.</summary>
    public int Prune()
    {
        if (!Directory.Exists(_layers))
        {
            return 0;
        }
        var used = images.List().SelectMany(i => images.Manifest(i).Layers).Select(l => l.Digest[7..]).ToHashSet(StringComparer.Ordinal);
        if (Directory.Exists(_containers))
        {
            foreach (var container in Directory.GetDirectories(_containers))
            {
                var layers = Path.Combine(container, "layers");
                if (File.Exists(layers))
                {
                    used.UnionWith(File.ReadAllLines(layers));
                }
            }
        }
        var removed = 0;
        foreach (var dir in Directory.GetDirectories(_layers))
        {
            if (!used.Contains(Path.GetFileName(dir)))
            {
                Directory.Delete(dir, recursive: true);
                removed++;
            }
        }
        return removed;
    }

    private async Task<string> EnsureLayerAsync(Descriptor layer, CancellationToken cancellationToken)
    {
        var dir = Path.Combine(_layers, layer.Digest[7..]);
        if (Directory.Exists(dir))
        {
            return dir;
        }
        Directory.CreateDirectory(_layers);
        // Unpacked beside, renamed into place: a crash never leaves a half layer that looks whole.
        var temp = dir + $".tmp-{Guid.NewGuid():N}";
        using (var blob = images.Content.Open(layer.Digest))
        {
            await LayerUnpacker.UnpackToNewDirectoryAsync(blob, temp, Options(WhiteoutMode.Overlay), cancellationToken).ConfigureAwait(false);
        }
        try
        {
            Directory.Move(temp, dir);
        }
        catch (IOException) when (Directory.Exists(dir))
        {
            Directory.Delete(temp, recursive: true); // another start unpacked it first
        }
        return dir;
    }
}

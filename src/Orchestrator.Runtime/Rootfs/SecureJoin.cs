namespace Orchestrator.Runtime.Rootfs;

/// <summary>
/// Resolves a path inside a root filesystem the way the kernel would after chroot: symlinks
/// are followed, but always relative to the rootfs, and ".." never climbs above it. This is
/// what stops an image's <c>/proc -> /host/etc</c> symlink from turning a container mount into
/// a mount on the host (the filepath-securejoin approach of runc).
/// </summary>
public static class SecureJoin
{
    private const int MaxSymlinks = 255;

    /// <summary>The host path of <paramref name="unsafePath"/> inside <paramref name="root"/>.</summary>
    public static string Resolve(string root, string unsafePath)
    {
        var result = Linux.PathWalk.Resolve(root, unsafePath, refuseEscape: false, MaxSymlinks);
        return result.Path ?? throw new IOException($"too many levels of symbolic links resolving '{unsafePath}' in '{Path.GetFullPath(root)}'");
    }
}

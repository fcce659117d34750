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
        root = Path.GetFullPath(root);
        var pending = new Stack<string>(Split(unsafePath).Reverse());
        var resolved = new List<string>();
        var links = 0;
        while (pending.Count > 0)
        {
            var part = pending.Pop();
            if (part == ".")
            {
                continue;
            }
            if (part == "..")
            {
                if (resolved.Count > 0)
                {
                    resolved.RemoveAt(resolved.Count - 1);
                }
                continue;
            }
            var candidate = Path.Join(root, string.Join('/', resolved), part);
            string? target = null;
            try
            {
                target = new FileInfo(candidate).LinkTarget; // null when not a symlink or absent
            }
            catch (IOException)
            {
            }
            if (target is not null)
            {
                if (++links > MaxSymlinks)
                {
                    throw new IOException($"too many levels of symbolic links resolving '{unsafePath}' in '{root}'");
                }
                if (target.StartsWith('/'))
                {
                    resolved.Clear();
                }
                foreach (var p in Split(target).Reverse())
                {
                    pending.Push(p);
                }
                continue;
            }
            resolved.Add(part);
        }
        return resolved.Count == 0 ? root : Path.Join(root, string.Join('/', resolved));
    }

    private static string[] Split(string path) => path.Split('/', StringSplitOptions.RemoveEmptyEntries);
}

namespace Orchestrator.Linux;

/// <summary>
/// Resolves a path under a root the way the kernel would with that root as "/": every symlink
/// is followed, relative ones from the directory that holds them. The one walk behind the
/// container's mount targets and cwd (<c>SecureJoin</c>), the node policy's host paths
/// (<c>NodePolicy.RealPath</c>) and the files an image archive names (<c>ImageStore.ArchiveFile</c>).
/// </summary>
public static class PathWalk
{
    /// <summary>How a walk ended: resolved, or why a walk that refuses escapes stopped.</summary>
    public enum Outcome
    {
        /// <summary>Resolved.</summary>
        None,
        /// <summary>A ".." above the root.</summary>
        AboveRoot,
        /// <summary>An absolute symlink (<see cref="Result.Link"/>, relative to the root, and its target).</summary>
        AbsoluteLink,
        /// <summary>More symlinks than allowed: a loop, most likely.</summary>
        TooManyLinks,
    }

    /// <summary>The host path, or why there is none; <see cref="Link"/> and <see cref="Target"/> name the symlink that led out.</summary>
    public readonly record struct Result(string? Path, Outcome Outcome, string? Link = null, string? Target = null);

    /// <summary>
    /// <paramref name="path"/> (absolute or not, read from <paramref name="root"/>) resolved under
    /// <paramref name="root"/>. With <paramref name="refuseEscape"/> false, nothing ever leads out,
    /// as after chroot: ".." at the root stays there and an absolute symlink starts again at the
    /// root. With it true, either one stops the walk (an archive that tries is refused, not
    /// quietly re-rooted). Parts that do not exist are kept as written.
    /// </summary>
    public static Result Resolve(string root, string path, bool refuseEscape, int maxLinks)
    {
        root = System.IO.Path.GetFullPath(root);
        var pending = new Stack<string>(Split(path).Reverse());
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
                else if (refuseEscape)
                {
                    return new Result(null, Outcome.AboveRoot);
                }
                continue;
            }
            var candidate = System.IO.Path.Join(root, string.Join('/', resolved), part);
            string? target;
            try
            {
                target = new FileInfo(candidate).LinkTarget; // null when not a symlink, or absent
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                target = null;
            }
            if (target is null)
            {
                resolved.Add(part);
                continue;
            }
            if (++links > maxLinks)
            {
                return new Result(null, Outcome.TooManyLinks);
            }
            if (target.StartsWith('/'))
            {
                if (refuseEscape)
                {
                    return new Result(null, Outcome.AbsoluteLink, System.IO.Path.GetRelativePath(root, candidate), target);
                }
                resolved.Clear();
            }
            foreach (var p in Split(target).Reverse())
            {
                pending.Push(p);
            }
        }
        return new Result(resolved.Count == 0 ? root : System.IO.Path.Join(root, string.Join('/', resolved)), Outcome.None);
    }

    private static string[] Split(string path) => path.Split('/', StringSplitOptions.RemoveEmptyEntries);
}

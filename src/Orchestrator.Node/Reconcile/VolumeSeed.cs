using Orchestrator.Linux;

namespace Orchestrator.Node.Reconcile;

/// <summary>
/// A named volume's directory on the node, made the first time a container mounts it and filled
/// then from the image's files at the mount's target, as Docker fills a new volume (its "copy-up"):
/// the image's /app/node_modules appears in a volume mounted there over a bind of the source, a
/// database image's data directory keeps its owner. Filled in a staging directory and renamed, so
/// a crash in the middle leaves no half-filled volume. Files, directories and symlinks are copied
/// with their modes and owners; device nodes, fifos and sockets are not (they are not content).
/// </summary>
internal static class VolumeSeed
{
    public static string Ensure(string volumesDir, string name, string? rootfs, string target)
    {
        var dir = Path.Combine(volumesDir, name);
        if (Directory.Exists(dir))
        {
            return dir; // a volume is filled once, when it is new: later it is the containers' data
        }
        var staging = Path.Combine(volumesDir, $".{name}.filling");
        if (Directory.Exists(staging))
        {
            Directory.Delete(staging, recursive: true); // a fill that a crash cut
        }
        Directory.CreateDirectory(staging);
        if (rootfs is not null && Directory.Exists(rootfs)
            && PathWalk.Resolve(rootfs, target, refuseEscape: false, maxLinks: 40).Path is { } from
            && Stat(from) is { IsDirectory: true } top)
        {
            CopyTree(from, staging);
            Own(staging, top);
        }
        Directory.Move(staging, dir);
        return dir;
    }

    private static void CopyTree(string from, string to)
    {
        foreach (var entry in new DirectoryInfo(from).EnumerateFileSystemInfos())
        {
            var dest = Path.Combine(to, entry.Name);
            if (Stat(entry.FullName) is not { } st)
            {
                continue;
            }
            if (st.IsSymlink)
            {
                File.CreateSymbolicLink(dest, entry.LinkTarget!);
            }
            else if (st.IsDirectory)
            {
                Directory.CreateDirectory(dest);
                CopyTree(entry.FullName, dest);
            }
            else if (st.IsRegular)
            {
                File.Copy(entry.FullName, dest);
            }
            else
            {
                continue;
            }
            Own(dest, st);
        }
    }

    private static void Own(string path, FileStat st)
    {
        Libc.lchown(path, st.Uid, st.Gid);
        if (!st.IsSymlink)
        {
            File.SetUnixFileMode(path, (UnixFileMode)(st.Mode & 0xFFF)); // after chown, which clears setuid bits
        }
    }

    private readonly record struct FileStat(uint Mode, uint Uid, uint Gid)
    {
        public bool IsDirectory => (Mode & 0xF000) == 0x4000;
        public bool IsRegular => (Mode & 0xF000) == 0x8000;
        public bool IsSymlink => (Mode & 0xF000) == 0xA000;
    }

    private static unsafe FileStat? Stat(string path)
    {
        Tmds.Linux.stat st;
        var bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
        {
            return Tmds.Linux.LibC.lstat(p, &st) == 0 ? new FileStat((uint)st.st_mode, (uint)st.st_uid, (uint)st.st_gid) : null;
        }
    }
}

using System.Formats.Tar;
using System.Text;
using Microsoft.Win32.SafeHandles;
using Orchestrator.Api;
using Orchestrator.Linux;
using static Orchestrator.Linux.Libc;
using LibC = Tmds.Linux.LibC;

namespace Orchestrator.Node.Copy;

/// <summary>A copy refused or failed: one sentence naming the path and the fix.</summary>
public sealed class CopyException(ErrorKind kind, string message) : OrchestratorException(kind, message);

/// <summary>
/// `orchctl cp`: a running container's files as a tar stream, both ways, seen as the container
/// sees them (its root and its mounts: the root is /proc/PID/root, opened by the caller).
///
/// Every path is resolved by the kernel, never by string: the container's paths with openat2's
/// RESOLVE_IN_ROOT (a symlink to "/" or "../.." ends at the container's root, not the host's, and
/// a container that swaps a directory for a symlink while we copy cannot win the race, as it
/// could against docker cp before CVE-2018-15664); below that, each step is an *at call on a
/// directory fd with O_NOFOLLOW. An archive coming in is held to its destination: an entry with
/// "..", or one whose parent is a symlink (the archive's own or the container's), is refused
/// (RESOLVE_BENEATH), and nothing is written outside it. Files coming in belong to the
/// container's root (0:0) unless the owners are kept (cp -a), as docker cp does; modes and times
/// are kept. Device files, fifos and sockets are left out both ways, and said so.
/// </summary>
public static class ContainerFiles
{
    private const int AT_SYMLINK_NOFOLLOW = 0x100, AT_REMOVEDIR = 0x200, AT_EMPTY_PATH = 0x1000;
    private const int S_IFMT = 0xF000, S_IFDIR = 0x4000, S_IFREG = 0x8000, S_IFLNK = 0xA000;
    private const int MaxSkippedNamed = 20;

    // ---------------------------------------------------------------- out of the container

    /// <summary>
    /// Writes <paramref name="path"/> (a file, a directory with everything under it, or a
    /// symlink itself) as a tar stream to <paramref name="output"/>, named by its last part.
    /// </summary>
    public static async Task<CopyDone> ArchiveAsync(SafeFileHandle root, string path, Stream output, CancellationToken cancellationToken)
    {
        var (parent, name) = Split(path);
        using var parentFd = OpenInRoot(root, parent, O_PATH | O_DIRECTORY, path);
        var top = name == "." ? "." : name;
        var state = new ArchiveState();
        var writer = new TarWriter(output, TarEntryFormat.Pax, leaveOpen: true);
        await using (writer.ConfigureAwait(false))
        {
            if (!Exists(parentFd, name))
            {
                throw new CopyException(ErrorKind.NotFound, $"'{path}' does not exist in the container; `orchctl exec CONTAINER -- ls DIR` shows what does");
            }
            await ArchiveEntryAsync(parentFd, name, top, writer, state, cancellationToken).ConfigureAwait(false);
        }
        return new CopyDone { Entries = state.Entries, Bytes = state.Bytes, Skipped = state.Skipped };
    }

    private sealed class ArchiveState
    {
        public int Entries { get; set; }
        public long Bytes { get; set; }
        public List<string> Skipped { get; } = [];
        public Dictionary<(ulong Dev, ulong Ino), string> Links { get; } = [];
    }

    private static async Task ArchiveEntryAsync(SafeFileHandle parent, string name, string entryName, TarWriter writer, ArchiveState state, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var st = Stat(parent, name);
        var type = st.Mode & S_IFMT;
        PaxTarEntry entry;
        switch (type)
        {
            case S_IFDIR:
                entry = new PaxTarEntry(TarEntryType.Directory, entryName + "/");
                Describe(entry, st);
                await writer.WriteEntryAsync(entry, cancellationToken).ConfigureAwait(false);
                state.Entries++;
                using (var dir = OpenAt(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, entryName))
                {
                    foreach (var child in List(dir))
                    {
                        await ArchiveEntryAsync(dir, child, entryName == "." ? child : $"{entryName}/{child}", writer, state, cancellationToken).ConfigureAwait(false);
                    }
                }
                return;
            case S_IFREG:
                if (st.Links > 1 && state.Links.TryGetValue((st.Dev, st.Ino), out var first))
                {
                    entry = new PaxTarEntry(TarEntryType.HardLink, entryName) { LinkName = first };
                    Describe(entry, st);
                    await writer.WriteEntryAsync(entry, cancellationToken).ConfigureAwait(false);
                    state.Entries++;
                    return;
                }
                state.Links.TryAdd((st.Dev, st.Ino), entryName);
                using (var file = OpenAt(parent, name, O_RDONLY | O_NOFOLLOW, 0, entryName))
                {
                    // The size as the open file has it now; a file that grows or shrinks while it is
                    // read is cut or padded to it, so the archive stays well formed.
                    var opened = Stat(file);
                    using var data = new FileStream(file, FileAccess.Read, 0, isAsync: false);
                    entry = new PaxTarEntry(TarEntryType.RegularFile, entryName) { DataStream = new ExactLength(data, opened.Size) };
                    Describe(entry, opened);
                    await writer.WriteEntryAsync(entry, cancellationToken).ConfigureAwait(false);
                    state.Entries++;
                    state.Bytes += opened.Size;
                }
                return;
            case S_IFLNK:
                entry = new PaxTarEntry(TarEntryType.SymbolicLink, entryName) { LinkName = ReadLink(parent, name) };
                Describe(entry, st);
                await writer.WriteEntryAsync(entry, cancellationToken).ConfigureAwait(false);
                state.Entries++;
                return;
            default:
                if (state.Skipped.Count < MaxSkippedNamed)
                {
                    state.Skipped.Add(entryName);
                }
                return;
        }
    }

    private static void Describe(PaxTarEntry entry, FileStat st)
    {
        entry.Mode = (UnixFileMode)(st.Mode & 0xFFF);
        entry.Uid = (int)st.Uid;
        entry.Gid = (int)st.Gid;
        entry.ModificationTime = st.Modified;
    }

    // ---------------------------------------------------------------- into the container

    /// <summary>
    /// Unpacks the tar stream into the container at <paramref name="destination"/>, as docker cp
    /// does: into it when it is a directory; else as it, in its directory (which must exist), the
    /// archive's top entry renamed to its last part.
    /// </summary>
    public static async Task<CopyDone> ExtractAsync(SafeFileHandle root, string destination, Stream tar, bool keepOwners, CancellationToken cancellationToken)
    {
        using var reader = new TarReader(tar, leaveOpen: true);
        var entries = 0;
        long bytes = 0;
        var skipped = new List<string>();
        SafeFileHandle? target = null;
        string? topFrom = null, topTo = null;
        try
        {
            while (await NextAsync(reader, cancellationToken).ConfigureAwait(false) is { } entry)
            {
                if (entry.EntryType is TarEntryType.GlobalExtendedAttributes or TarEntryType.ExtendedAttributes)
                {
                    continue;
                }
                var parts = EntryParts(entry.Name);
                if (parts.Count == 0)
                {
                    continue; // "./": the archive's own top, when it was made from a directory's contents
                }
                if (target is null)
                {
                    (target, topFrom, topTo) = Destination(root, destination, parts[0], parts.Count == 1 && entry.EntryType is not TarEntryType.Directory);
                }
                if (parts[0] == topFrom && topTo is not null)
                {
                    parts[0] = topTo;
                }
                var (parent, name) = OpenParent(target, parts, entry.Name);
                using (parent)
                {
                    switch (entry.EntryType)
                    {
                        case TarEntryType.Directory:
                            MakeDirectory(parent, name, entry.Name);
                            Own(parent, name, entry, keepOwners, setMode: true);
                            break;
                        case TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile:
                            bytes += await WriteFileAsync(parent, name, entry, keepOwners, cancellationToken).ConfigureAwait(false);
                            break;
                        case TarEntryType.SymbolicLink:
                            Replace(parent, name, entry.Name);
                            Check(SymlinkAt(entry.LinkName, parent, name), "symlink", entry.Name);
                            Own(parent, name, entry, keepOwners, setMode: false);
                            break;
                        case TarEntryType.HardLink:
                            var linkParts = EntryParts(entry.LinkName);
                            if (linkParts.Count == 0)
                            {
                                throw new CopyException(ErrorKind.Invalid, $"archive entry '{entry.Name}' is a hard link to '{entry.LinkName}', which is not in the archive");
                            }
                            if (linkParts[0] == topFrom && topTo is not null)
                            {
                                linkParts[0] = topTo;
                            }
                            var (linkParent, linkName) = OpenParent(target, linkParts, entry.LinkName);
                            using (linkParent)
                            {
                                Replace(parent, name, entry.Name);
                                Check(LinkAt(linkParent, linkName, parent, name), "link", entry.Name);
                            }
                            break;
                        default:
                            if (skipped.Count < MaxSkippedNamed)
                            {
                                skipped.Add(entry.Name);
                            }
                            continue;
                    }
                }
                entries++;
            }
        }
        finally
        {
            target?.Dispose();
        }
        if (target is null && entries == 0 && skipped.Count == 0)
        {
            throw new CopyException(ErrorKind.Invalid, "the archive is empty: nothing to copy");
        }
        return new CopyDone { Entries = entries, Bytes = bytes, Skipped = skipped };
    }

    private static async Task<TarEntry?> NextAsync(TarReader reader, CancellationToken cancellationToken)
    {
        try
        {
            return await reader.GetNextEntryAsync(copyData: false, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or EndOfStreamException or ArgumentException)
        {
            throw new CopyException(ErrorKind.Invalid, $"the data is not a tar archive ({e.Message}); orchctl cp makes one from a file or directory, or reads one from stdin with '-'");
        }
    }

    /// <summary>
    /// Where the archive goes: an existing directory (entries go in as they are named), or the
    /// directory of a path that is not one (the top entry takes its name).
    /// </summary>
    private static (SafeFileHandle Target, string? TopFrom, string? TopTo) Destination(SafeFileHandle root, string destination, string top, bool topIsFile)
    {
        var fd = OpenAt2(root, destination, O_PATH | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
        if (fd >= 0)
        {
            var handle = new SafeFileHandle(fd, ownsHandle: true);
            if ((Stat(handle).Mode & S_IFMT) == S_IFDIR)
            {
                return (handle, null, null);
            }
            handle.Dispose();
            if (!topIsFile)
            {
                throw new CopyException(ErrorKind.Conflict, $"'{destination}' is a file in the container; a directory cannot be copied onto it (name a directory, or a path that does not exist)");
            }
        }
        else if (System.Runtime.InteropServices.Marshal.GetLastPInvokeError() is var errno && errno != Errno.ENOENT)
        {
            throw Failed("open", destination, errno);
        }
        var (parent, name) = Split(destination);
        if (name == ".")
        {
            throw new CopyException(ErrorKind.NotFound, $"'{destination}' is not a directory in the container");
        }
        var parentFd = OpenAt2(root, parent, O_PATH | O_DIRECTORY | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
        if (parentFd < 0)
        {
            var errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            throw errno is Errno.ENOENT or Errno.ENOTDIR
                ? new CopyException(ErrorKind.NotFound, $"the directory '{parent}' does not exist in the container; create it first (orchctl exec CONTAINER -- mkdir -p {parent})")
                : Failed("open", parent, errno);
        }
        return (new SafeFileHandle(parentFd, ownsHandle: true), top, name);
    }

    /// <summary>The entry's parent directory under the target (refused if it leaves it: "..", a symlink on the way) and its last part.</summary>
    private static (SafeFileHandle Parent, string Name) OpenParent(SafeFileHandle target, List<string> parts, string entryName)
    {
        var parentPath = parts.Count == 1 ? "." : string.Join('/', parts.Take(parts.Count - 1));
        var fd = OpenAt2(target, parentPath, O_PATH | O_DIRECTORY | O_CLOEXEC, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
        if (fd < 0)
        {
            var errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            throw errno switch
            {
                Errno.ELOOP or 18 /* EXDEV */ => new CopyException(ErrorKind.Forbidden, $"archive entry '{entryName}' goes through a symlink ('{parentPath}'): refused, nothing is written outside the destination"),
                Errno.ENOENT or Errno.ENOTDIR => new CopyException(ErrorKind.Invalid, $"archive entry '{entryName}': its directory '{parentPath}' is neither in the archive before it nor in the container"),
                _ => Failed("open", parentPath, errno),
            };
        }
        return (new SafeFileHandle(fd, ownsHandle: true), parts[^1]);
    }

    /// <summary>An entry's name as parts: "." and empty parts dropped; "..", or a name starting with "/", refused.</summary>
    private static List<string> EntryParts(string name)
    {
        if (name.StartsWith('/'))
        {
            throw new CopyException(ErrorKind.Forbidden, $"archive entry '{name}' is an absolute path: refused (entries are relative to the destination)");
        }
        var parts = name.Split('/', StringSplitOptions.RemoveEmptyEntries).Where(p => p != ".").ToList();
        if (parts.Contains(".."))
        {
            throw new CopyException(ErrorKind.Forbidden, $"archive entry '{name}' climbs out with '..': refused, nothing is written outside the destination");
        }
        if (parts.Any(p => p.Contains('\0', StringComparison.Ordinal)))
        {
            throw new CopyException(ErrorKind.Invalid, $"archive entry '{name.Replace("\0", "\\0", StringComparison.Ordinal)}' has a NUL byte in its name");
        }
        return parts;
    }

    private static void MakeDirectory(SafeFileHandle parent, string name, string entryName)
    {
        if (MkdirAt(parent, name, 0x1C0) == 0)
        {
            return;
        }
        var errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
        if (errno != Errno.EEXIST)
        {
            throw Failed("mkdir", entryName, errno);
        }
        if ((Stat(parent, name).Mode & S_IFMT) != S_IFDIR)
        {
            // A file or a symlink where the archive has a directory: replaced, as tar does.
            Check(UnlinkAt(parent, name, 0), "unlink", entryName);
            Check(MkdirAt(parent, name, 0x1C0), "mkdir", entryName);
        }
    }

    /// <summary>Removes a file or symlink in the way (a directory in the way is an error).</summary>
    private static void Replace(SafeFileHandle parent, string name, string entryName)
    {
        if (!Exists(parent, name))
        {
            return;
        }
        if ((Stat(parent, name).Mode & S_IFMT) == S_IFDIR)
        {
            throw new CopyException(ErrorKind.Conflict, $"archive entry '{entryName}' is not a directory, but the container has a directory there; remove it first");
        }
        Check(UnlinkAt(parent, name, 0), "unlink", entryName);
    }

    private static async Task<long> WriteFileAsync(SafeFileHandle parent, string name, TarEntry entry, bool keepOwners, CancellationToken cancellationToken)
    {
        var fd = OpenAt2(parent, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0x180, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
        if (fd < 0 && System.Runtime.InteropServices.Marshal.GetLastPInvokeError() is Errno.ELOOP or Errno.EISDIR or 18)
        {
            // A symlink where the file goes: the link is replaced, never followed.
            Replace(parent, name, entry.Name);
            fd = OpenAt2(parent, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0x180, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
        }
        if (fd < 0)
        {
            throw Failed("open", entry.Name, System.Runtime.InteropServices.Marshal.GetLastPInvokeError());
        }
        using var handle = new SafeFileHandle(fd, ownsHandle: true);
        long written = 0;
        if (entry.DataStream is { } data)
        {
            // Not disposed here: a FileStream closes its handle, which the owner and mode still need.
            var file = new FileStream(handle, FileAccess.Write, 0, isAsync: false);
            var buffer = new byte[128 * 1024];
            int n;
            while ((n = await data.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
            {
                file.Write(buffer, 0, n);
                written += n;
            }
            file.Flush();
        }
        // Owner first: chown clears set-user-ID bits, which the mode then sets again.
        var (uid, gid) = keepOwners ? (entry.Uid, entry.Gid) : (0, 0);
        Check(FchownAt(handle, "", uid, gid, AT_EMPTY_PATH), "chown", entry.Name);
        Check(LibC.fchmod(Fd(handle), (Tmds.Linux.mode_t)((int)entry.Mode & 0xFFF)), "chmod", entry.Name);
        SetTime(parent, name, entry.ModificationTime);
        return written;
    }

    private static void Own(SafeFileHandle parent, string name, TarEntry entry, bool keepOwners, bool setMode)
    {
        var (uid, gid) = keepOwners ? (entry.Uid, entry.Gid) : (0, 0);
        Check(FchownAt(parent, name, uid, gid, AT_SYMLINK_NOFOLLOW), "chown", entry.Name);
        if (setMode)
        {
            Check(FchmodAt(parent, name, (int)entry.Mode & 0xFFF), "chmod", entry.Name);
        }
        SetTime(parent, name, entry.ModificationTime);
    }

    // ---------------------------------------------------------------- the calls

    /// <summary>A path split into its directory (resolved in the root) and its last part ("." for the root itself).</summary>
    private static (string Parent, string Name) Split(string path)
    {
        var parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries).ToList();
        while (parts.Count > 0 && parts[^1] == ".")
        {
            parts.RemoveAt(parts.Count - 1);
        }
        if (parts.Count == 0)
        {
            return ("/", ".");
        }
        if (parts[^1] == "..")
        {
            // Whatever ".." resolves to in the container: copy that directory (as "." of it).
            return ("/" + string.Join('/', parts), ".");
        }
        return ("/" + string.Join('/', parts.Take(parts.Count - 1)), parts[^1]);
    }

    private static SafeFileHandle OpenInRoot(SafeFileHandle root, string path, int flags, string shown)
    {
        var fd = OpenAt2(root, path, flags | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
        if (fd < 0)
        {
            var errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            throw errno is Errno.ENOENT or Errno.ENOTDIR
                ? new CopyException(ErrorKind.NotFound, $"'{shown}' does not exist in the container; `orchctl exec CONTAINER -- ls DIR` shows what does")
                : Failed("open", shown, errno);
        }
        return new SafeFileHandle(fd, ownsHandle: true);
    }

    private static SafeFileHandle OpenAt(SafeFileHandle dir, string name, int flags, int mode, string shown)
    {
        var fd = OpenAt2(dir, name, flags | O_CLOEXEC, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
        return fd >= 0 ? new SafeFileHandle(fd, ownsHandle: true) : throw Failed("open", shown, System.Runtime.InteropServices.Marshal.GetLastPInvokeError());
    }

    private static int OpenAt2(SafeFileHandle dir, string path, int flags, ulong resolve) => OpenAt2(dir, path, flags, 0, resolve);

    private static int OpenAt2(SafeFileHandle dir, string path, int flags, int mode, ulong resolve)
    {
        var added = false;
        try
        {
            dir.DangerousAddRef(ref added);
            var fd = openat2((int)dir.DangerousGetHandle(), path, flags, mode, resolve);
            if (fd < 0 && System.Runtime.InteropServices.Marshal.GetLastPInvokeError() == Errno.ENOSYS)
            {
                throw new CopyException(ErrorKind.Unavailable, "cp needs openat2 (Linux 5.6 or later) to resolve paths safely in the container; this kernel has none");
            }
            return fd;
        }
        finally
        {
            if (added)
            {
                dir.DangerousRelease();
            }
        }
    }

    private static int Fd(SafeFileHandle handle) => (int)handle.DangerousGetHandle();

    private readonly record struct FileStat(int Mode, uint Uid, uint Gid, long Size, ulong Dev, ulong Ino, ulong Links, DateTimeOffset Modified);

    private static unsafe FileStat Stat(SafeFileHandle dir, string name = "")
    {
        Tmds.Linux.stat st;
        var bytes = Z(name);
        fixed (byte* p = bytes)
        {
            if (LibC.fstatat(Fd(dir), p, &st, name.Length == 0 ? AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW : AT_SYMLINK_NOFOLLOW) != 0)
            {
                throw Failed("stat", name.Length == 0 ? "(open file)" : name, System.Runtime.InteropServices.Marshal.GetLastPInvokeError());
            }
        }
        return new FileStat((int)st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_dev, st.st_ino, st.st_nlink,
            DateTimeOffset.FromUnixTimeSeconds(st.st_mtim.tv_sec).AddTicks(st.st_mtim.tv_nsec / 100));
    }

    private static unsafe bool Exists(SafeFileHandle dir, string name)
    {
        Tmds.Linux.stat st;
        var bytes = Z(name);
        fixed (byte* p = bytes)
        {
            return LibC.fstatat(Fd(dir), p, &st, AT_SYMLINK_NOFOLLOW) == 0;
        }
    }

    private static unsafe string ReadLink(SafeFileHandle dir, string name)
    {
        var bytes = Z(name);
        var buffer = new byte[4096];
        fixed (byte* p = bytes)
        fixed (byte* b = buffer)
        {
            var n = (int)LibC.readlinkat(Fd(dir), p, b, buffer.Length);
            return n >= 0 ? Encoding.UTF8.GetString(buffer, 0, n) : throw Failed("readlink", name, System.Runtime.InteropServices.Marshal.GetLastPInvokeError());
        }
    }

    /// <summary>A directory's entries by name (through /proc/self/fd: the directory the fd holds, whatever its path became), sorted.</summary>
    private static List<string> List(SafeFileHandle dir)
    {
        var names = Directory.EnumerateFileSystemEntries($"/proc/self/fd/{Fd(dir)}", "*", new EnumerationOptions { AttributesToSkip = 0, IgnoreInaccessible = false, RecurseSubdirectories = false })
            .Select(Path.GetFileName).OfType<string>().ToList();
        names.Sort(StringComparer.Ordinal);
        return names;
    }

    private static unsafe int MkdirAt(SafeFileHandle dir, string name, int mode)
    {
        var bytes = Z(name);
        fixed (byte* p = bytes)
        {
            return LibC.mkdirat(Fd(dir), p, (Tmds.Linux.mode_t)mode);
        }
    }

    private static unsafe int UnlinkAt(SafeFileHandle dir, string name, int flags)
    {
        var bytes = Z(name);
        fixed (byte* p = bytes)
        {
            return LibC.unlinkat(Fd(dir), p, flags);
        }
    }

    private static unsafe int SymlinkAt(string target, SafeFileHandle dir, string name)
    {
        var t = Z(target);
        var bytes = Z(name);
        fixed (byte* tp = t)
        fixed (byte* p = bytes)
        {
            return LibC.symlinkat(tp, Fd(dir), p);
        }
    }

    private static unsafe int LinkAt(SafeFileHandle fromDir, string fromName, SafeFileHandle toDir, string toName)
    {
        var from = Z(fromName);
        var to = Z(toName);
        fixed (byte* f = from)
        fixed (byte* t = to)
        {
            return LibC.linkat(Fd(fromDir), f, Fd(toDir), t, 0);
        }
    }

    private static unsafe int FchownAt(SafeFileHandle dir, string name, int uid, int gid, int flags)
    {
        var bytes = Z(name);
        fixed (byte* p = bytes)
        {
            return LibC.fchownat(Fd(dir), p, (uint)uid, (uint)gid, flags);
        }
    }

    private static unsafe int FchmodAt(SafeFileHandle dir, string name, int mode)
    {
        var bytes = Z(name);
        fixed (byte* p = bytes)
        {
            return LibC.fchmodat(Fd(dir), p, (Tmds.Linux.mode_t)mode, 0);
        }
    }

    private static unsafe void SetTime(SafeFileHandle dir, string name, DateTimeOffset modified)
    {
        var seconds = modified.ToUnixTimeSeconds();
        var times = stackalloc Tmds.Linux.timespec[2];
        times[0].tv_sec = (Tmds.Linux.time_t)seconds;
        times[0].tv_nsec = (Tmds.Linux.long_t)0;
        times[1].tv_sec = (Tmds.Linux.time_t)seconds;
        times[1].tv_nsec = (Tmds.Linux.long_t)((modified.UtcTicks % TimeSpan.TicksPerSecond) * 100);
        var bytes = Z(name);
        fixed (byte* p = bytes)
        {
            _ = LibC.utimensat(Fd(dir), p, times, AT_SYMLINK_NOFOLLOW); // a time not kept is no reason to fail a copy
        }
    }

    private static byte[] Z(string text)
    {
        var bytes = new byte[Encoding.UTF8.GetByteCount(text) + 1];
        Encoding.UTF8.GetBytes(text, bytes);
        return bytes;
    }

    private static void Check(int result, string call, string subject)
    {
        if (result != 0)
        {
            throw Failed(call, subject, System.Runtime.InteropServices.Marshal.GetLastPInvokeError());
        }
    }

    private static CopyException Failed(string call, string subject, int errno) => new(errno switch
    {
        Errno.ENOENT => ErrorKind.NotFound,
        Errno.EACCES or Errno.EPERM or Errno.EROFS => ErrorKind.Forbidden,
        _ => ErrorKind.Internal,
    }, $"{call} '{subject}' in the container: {Errno.Describe(errno)}");

    /// <summary>Exactly <paramref name="length"/> bytes of <paramref name="inner"/>: cut when it has more, zeros when it has fewer.</summary>
    private sealed class ExactLength(Stream inner, long length) : Stream
    {
        private long _position;

        public override bool CanRead => true;
        // "Seekable" to TarWriter, which writes an unseekable archive only from a data stream
        // whose length it can ask; it never moves it, and a move here is refused.
        public override bool CanSeek => true;
        public override bool CanWrite => false;
        public override long Length => length;
        public override long Position { get => _position; set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            var want = (int)Math.Min(buffer.Length, length - _position);
            if (want <= 0)
            {
                return 0;
            }
            var n = inner.Read(buffer[..want]);
            if (n == 0)
            {
                buffer[..want].Clear(); // shrank while read: zeros to the size announced
                n = want;
            }
            _position += n;
            return n;
        }

        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin)
            => (origin switch { SeekOrigin.Begin => offset, SeekOrigin.Current => _position + offset, _ => length + offset }) == _position
                ? _position : throw new NotSupportedException("a file being archived is read once, in order");

        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}

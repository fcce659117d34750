using Orchestrator.Api;
using System.Formats.Tar;
using System.IO.Compression;
using Orchestrator.Linux;

namespace Orchestrator.Images.Unpack;

/// <summary>A layer tries to write outside its root, or holds what is not allowed; nothing of it is kept.</summary>
public sealed class HostileLayerException : OrchestratorException
{
    public HostileLayerException() : base(ErrorKind.Forbidden, "hostilelayer error") { }
    public HostileLayerException(string message) : base(ErrorKind.Forbidden, message) { }
    public HostileLayerException(string message, Exception inner) : base(ErrorKind.Forbidden, message, inner) { }
}

public enum WhiteoutMode
{
    /// <summary>Apply onto the lower layers' files (a flattened or copy-based rootfs): whiteouts delete.</summary>
    Apply,
    /// <summary>A layer directory for overlayfs: whiteouts become 0/0 character devices, opaque dirs an xattr.</summary>
    Overlay,
}

public sealed record UnpackOptions
{
    public WhiteoutMode Whiteouts { get; init; } = WhiteoutMode.Overlay;

    /// <summary>Device nodes and fifos in the layer: refused unless allowed (only root may make them anyway).</summary>
    public bool AllowDevices { get; init; }

    /// <summary>Most bytes the layer may write (a tar bomb stops here).</summary>
    public long MaxBytes { get; init; } = long.MaxValue;

    /// <summary>chown to the tar's uid/gid (root only).</summary>
    public bool PreserveOwnership { get; init; } = Environment.UserName == "root";
}

/// <summary>
/// Unpacks an OCI layer (tar, or gzip'd tar) into a directory, refusing anything that would
/// reach outside it: absolute or ".." paths, writes through a symlink (checked on every parent
/// component, never followed), hard links that leave the root, devices unless allowed, and
/// more bytes than allowed. A refused layer leaves nothing: the caller unpacks into a fresh
/// directory and deletes it on failure (<see cref="UnpackToNewDirectoryAsync"/> does).
/// </summary>
public static class LayerUnpacker
{
    private const string WhiteoutPrefix = ".wh.";
    private const string OpaqueMarker = ".wh..wh..opq";

    public static async Task<long> UnpackToNewDirectoryAsync(Stream layer, string directory, UnpackOptions options, CancellationToken cancellationToken = default)
    {
        if (Directory.Exists(directory))
        {
            throw new IOException($"'{directory}' already exists; a layer is unpacked into a new directory");
        }
        Directory.CreateDirectory(directory);
        try
        {
            return await UnpackAsync(layer, directory, options, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Directory.Delete(directory, recursive: true);
            throw;
        }
    }

    public static async Task<long> UnpackAsync(Stream layer, string root, UnpackOptions options, CancellationToken cancellationToken = default)
    {
        root = Path.GetFullPath(root);
        var input = await Decompress(layer, cancellationToken).ConfigureAwait(false);
        var reader = new TarReader(input, leaveOpen: false);
        await using (reader.ConfigureAwait(false))
        {
            long written = 0;
            var directoryTimes = new List<(string Path, DateTimeOffset Time)>();
            var thisLayer = new HashSet<string>(StringComparer.Ordinal);
            TarEntry? entry;
            while ((entry = await NextEntryAsync(reader, cancellationToken).ConfigureAwait(false)) is not null)
            {
                if (entry.EntryType is TarEntryType.GlobalExtendedAttributes or TarEntryType.ExtendedAttributes)
                {
                    continue;
                }
                var relative = CleanName(entry.Name);
                if (relative.Length == 0)
                {
                    continue; // "./" itself
                }
                var name = Path.GetFileName(relative);
                var parentRelative = Path.GetDirectoryName(relative) ?? "";
                var parent = EnsureParents(root, parentRelative, entry.Name);

                if (name == OpaqueMarker)
                {
                    Opaque(parent, options, thisLayer);
                    continue;
                }
                if (name.StartsWith(WhiteoutPrefix, StringComparison.Ordinal))
                {
                    if (WhiteoutTarget(entry.Name, name) is { } removed)
                    {
                        Whiteout(Path.Combine(parent, removed), options);
                    }
                    continue;
                }

                var target = Path.Combine(parent, name);
                thisLayer.Add(target);
                // An existing entry is replaced, never written through (it may be a symlink).
                RemoveExisting(target, entry.EntryType == TarEntryType.Directory);
                switch (entry.EntryType)
                {
                    case TarEntryType.Directory:
                        Directory.CreateDirectory(target);
                        directoryTimes.Add((target, entry.ModificationTime));
                        break;
                    case TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile:
                        written += entry.Length;
                        if (written > options.MaxBytes)
                        {
                            throw new HostileLayerException($"the layer writes more than {options.MaxBytes} bytes (at '{entry.Name}'); it is refused (disk budget: the space left on the file system less a reserve for logs and state, or what images.disk_budget leaves); free space, raise images.disk_budget, or remove unused images (orchctl image gc)");
                        }
                        var file = new FileStream(target, FileMode.CreateNew, FileAccess.Write, FileShare.None, 81920, FileOptions.Asynchronous);
                        await using (file.ConfigureAwait(false))
                        {
                            if (entry.DataStream is { } data)
                            {
                                await data.CopyToAsync(file, cancellationToken).ConfigureAwait(false);
                            }
                        }
                        break;
                    case TarEntryType.SymbolicLink:
                        // Made as written: a symlink is harmless until something follows it, and
                        // nothing here does (parents are checked, existing entries replaced).
                        if (entry.LinkName.Length == 0 || entry.LinkName.Contains('\0', StringComparison.Ordinal))
                        {
                            throw new HostileLayerException($"symlink '{entry.Name}' has {(entry.LinkName.Length == 0 ? "an empty target" : "a NUL in its target")}; the layer is refused (found by the tar fuzzer)");
                        }
                        File.CreateSymbolicLink(target, entry.LinkName);
                        break;
                    case TarEntryType.HardLink:
                        var linkRelative = CleanName(entry.LinkName);
                        var linkParent = EnsureParents(root, Path.GetDirectoryName(linkRelative) ?? "", entry.LinkName, create: false);
                        var source = Path.Combine(linkParent, Path.GetFileName(linkRelative));
                        if (new FileInfo(source) is not { Exists: true, LinkTarget: null })
                        {
                            throw new HostileLayerException($"hard link '{entry.Name}' -> '{entry.LinkName}' does not name a regular file of the layer; it is refused");
                        }
                        if (Libc.link(source, target) != 0)
                        {
                            throw LinuxException.FromLastError("link", target);
                        }
                        break;
                    case TarEntryType.CharacterDevice or TarEntryType.BlockDevice or TarEntryType.Fifo:
                        if (!options.AllowDevices)
                        {
                            throw new HostileLayerException($"'{entry.Name}' is a device node or fifo, which this store does not unpack; remove it from the image");
                        }
                        var type = entry.EntryType switch
                        {
                            TarEntryType.CharacterDevice => 0x2000u,
                            TarEntryType.BlockDevice => 0x6000u,
                            _ => 0x1000u,
                        };
                        var posix = (PosixTarEntry)entry;
                        if (Libc.mknod(target, type | ((uint)entry.Mode & 0xFFF), Libc.makedev((uint)posix.DeviceMajor, (uint)posix.DeviceMinor)) != 0)
                        {
                            throw LinuxException.FromLastError("mknod", target);
                        }
                        break;
                    default:
                        throw new HostileLayerException($"'{entry.Name}' is a {entry.EntryType} entry, which a layer may not hold");
                }
                ApplyMetadata(target, entry, options);
            }
            // Directory times last: creating their contents changed them.
            foreach (var (path, time) in directoryTimes.AsEnumerable().Reverse())
            {
                Directory.SetLastWriteTimeUtc(path, time.UtcDateTime);
            }
            return written;
        }
    }

    private static async Task<Stream> Decompress(Stream layer, CancellationToken cancellationToken)
    {
        var buffered = new BufferedStream(layer, 65536);
        var magic = new byte[4];
        var n = await buffered.ReadAtLeastAsync(magic, 4, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
        // BufferedStream cannot unread: re-wrap the magic in front of the rest.
        var whole = new ConcatenatedStream(magic.AsMemory(0, n), buffered);
        if (n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b)
        {
            return new GZipStream(whole, CompressionMode.Decompress);
        }
        if (n >= 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd)
        {
            return new ZstdSharp.DecompressionStream(whole); // a managed port of zstd: no native library to ship
        }
        return whole;
    }

    /// <summary>
    /// The next tar entry; the tar reader's own refusals of a malformed header (an
    /// InvalidOperationException for a PAX size past its data, an ArgumentException, an
    /// overflow: found by the tar fuzzer) become one clear refusal of the layer.
    /// </summary>
    private static async ValueTask<TarEntry?> NextEntryAsync(TarReader reader, CancellationToken cancellationToken)
    {
        try
        {
            return await reader.GetNextEntryAsync(copyData: false, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or OverflowException or FormatException or IndexOutOfRangeException)
        {
            throw new HostileLayerException($"the layer is not a valid tar ({e.Message}); it is refused", e);
        }
    }

    /// <summary>"./a//b/" → "a/b"; absolute names and ".." are refused.</summary>
    internal static string CleanName(string name)
    {
        if (name.Contains('\0', StringComparison.Ordinal))
        {
            throw new HostileLayerException($"'{name.Replace("\0", "\\0", StringComparison.Ordinal)}' has a NUL character in it, which no path may hold; the layer is refused (found by the tar fuzzer)");
        }
        if (name.StartsWith('/'))
        {
            throw new HostileLayerException($"'{name}' is an absolute path; a layer's paths are relative to its root, so it is refused");
        }
        var parts = name.Split('/', StringSplitOptions.RemoveEmptyEntries).Where(p => p != ".").ToArray();
        if (parts.Contains(".."))
        {
            throw new HostileLayerException($"'{name}' climbs out of the layer with '..'; it is refused");
        }
        return string.Join('/', parts);
    }

    /// <summary>The parent directory on disk, made if missing; refuses any component that is not a real directory.</summary>
    private static string EnsureParents(string root, string relativeParent, string entryName, bool create = true)
    {
        var current = root;
        foreach (var part in relativeParent.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            current = Path.Combine(current, part);
            var info = new DirectoryInfo(current);
            if (info.LinkTarget is not null)
            {
                throw new HostileLayerException($"'{entryName}' would be written through the symlink '{Path.GetRelativePath(root, current)}' (-> {info.LinkTarget}); it is refused");
            }
            if (!info.Exists)
            {
                if (File.Exists(current))
                {
                    throw new HostileLayerException($"'{entryName}' needs '{Path.GetRelativePath(root, current)}' to be a directory, but it is a file; the layer is refused");
                }
                if (!create)
                {
                    throw new HostileLayerException($"'{entryName}' refers to '{Path.GetRelativePath(root, current)}', which the layer does not have");
                }
                Directory.CreateDirectory(current);
            }
        }
        return current;
    }

    private static void RemoveExisting(string target, bool keepDirectory)
    {
        var info = new FileInfo(target);
        if (info.LinkTarget is not null || (info.Exists && !keepDirectory))
        {
            File.Delete(target); // the link itself, never what it points to
        }
        else if (Directory.Exists(target) && !keepDirectory)
        {
            Directory.Delete(target, recursive: true);
        }
    }

    /// <summary>
    /// The one name a whiteout (".wh.NAME") removes from its own directory. "", "." and ".." are
    /// not names in it: ".wh..." would otherwise remove the parent of the directory (the whole
    /// layer store, for a whiteout at the layer's root), so they are refused. Other ".wh..wh."
    /// names are aufs' own metadata (".wh..wh.plnk"), skipped as docker skips them: null.
    /// </summary>
    internal static string? WhiteoutTarget(string entryName, string name)
    {
        var target = name[WhiteoutPrefix.Length..];
        if (target.StartsWith(WhiteoutPrefix, StringComparison.Ordinal))
        {
            return null;
        }
        if (target is "" or "." or "..")
        {
            throw new HostileLayerException($"'{entryName}' is a whiteout of '{target}', which is not a name in its directory; the layer is refused (a whiteout removes one sibling entry)");
        }
        return target;
    }

    private static void Whiteout(string path, UnpackOptions options)
    {
        if (options.Whiteouts == WhiteoutMode.Overlay)
        {
            RemoveExisting(path, keepDirectory: false);
            if (Libc.mknod(path, 0x2000, 0) != 0) // overlayfs' whiteout: a 0/0 character device
            {
                throw LinuxException.FromLastError("mknod (whiteout)", path);
            }
            return;
        }
        if (new FileInfo(path).LinkTarget is not null || File.Exists(path))
        {
            File.Delete(path);
        }
        else if (Directory.Exists(path))
        {
            Directory.Delete(path, recursive: true);
        }
    }

    private static void Opaque(string directory, UnpackOptions options, HashSet<string> thisLayer)
    {
        if (options.Whiteouts == WhiteoutMode.Overlay)
        {
            if (Libc.lsetxattr(directory, "trusted.overlay.opaque", "y"u8.ToArray(), 1, 0) != 0)
            {
                throw LinuxException.FromLastError("setxattr trusted.overlay.opaque", directory);
            }
            return;
        }
        // Apply: what lower layers put in the directory goes; what this layer wrote stays.
        foreach (var child in Directory.EnumerateFileSystemEntries(directory).ToList())
        {
            if (!thisLayer.Contains(child))
            {
                Whiteout(child, options);
            }
        }
    }

    private static void ApplyMetadata(string target, TarEntry entry, UnpackOptions options)
    {
        if (options.PreserveOwnership && Libc.lchown(target, (uint)entry.Uid, (uint)entry.Gid) != 0)
        {
            throw LinuxException.FromLastError("lchown", target);
        }
        if (entry.EntryType is TarEntryType.SymbolicLink or TarEntryType.HardLink)
        {
            return; // symlinks have no mode of their own; a hard link shares its file's
        }
        // After chown: chown clears setuid/setgid bits.
        File.SetUnixFileMode(target, (UnixFileMode)((int)entry.Mode & 0xFFF));
        if (entry.EntryType != TarEntryType.Directory)
        {
            File.SetLastWriteTimeUtc(target, entry.ModificationTime.UtcDateTime);
        }
    }

}

/// <summary>A few bytes already read, then the rest of a stream.</summary>
internal sealed class ConcatenatedStream(ReadOnlyMemory<byte> head, Stream tail) : Stream
{
    private ReadOnlyMemory<byte> _head = head;

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        if (_head.Length > 0)
        {
            var n = Math.Min(buffer.Length, _head.Length);
            _head.Span[..n].CopyTo(buffer);
            _head = _head[n..];
            return n;
        }
        return tail.Read(buffer);
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_head.Length > 0)
        {
            return Read(buffer.Span);
        }
        return await tail.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            tail.Dispose();
        }
        base.Dispose(disposing);
    }
}

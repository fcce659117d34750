using Orchestrator.Api;
using System.Globalization;

namespace Orchestrator.Linux;

/// <summary>
/// The node's state files, written so that a power cut at any moment leaves the old content or
/// the new, never half (temp file, fsync, rename, fsync of the directory), and read so that a
/// damaged one is named, moved aside and not taken for an empty one.
/// </summary>
public static class StateFile
{
    /// <summary>
    /// A fault point for the crash tests: ORCHD_FAILPOINT=state-before-rename:NAME kills the
    /// process (SIGKILL) after the new content of the file named NAME is on disk in its temp file
    /// and before the rename, the moment a power cut hurts most.
    /// </summary>
    private static readonly string? s_killBeforeRename =
        Environment.GetEnvironmentVariable("ORCHD_FAILPOINT") is { } f && f.StartsWith("state-before-rename:", StringComparison.Ordinal)
            ? f["state-before-rename:".Length..] : null;

    public static void Write(string path, ReadOnlySpan<byte> contents)
    {
        var temp = $"{path}.tmp-{Environment.ProcessId.ToString(CultureInfo.InvariantCulture)}";
        try
        {
            using var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None);
            stream.Write(contents);
            stream.Flush(flushToDisk: true);
        }
        catch (IOException)
        {
            // A full disk: the old file stays whole, and no half-written temp file is left to fill it further.
            try
            {
                File.Delete(temp);
            }
            catch (IOException)
            {
            }
            throw;
        }
        if (s_killBeforeRename is { } name && Path.GetFileName(path) == name)
        {
            _ = Libc.kill(Environment.ProcessId, 9);
            Thread.Sleep(Timeout.Infinite);
        }
        File.Move(temp, path, overwrite: true);
        SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    /// <summary>
    /// The file's bytes parsed, or null when it does not exist. When it cannot be read or
    /// parsed it is moved aside (NAME.corrupt-TIME, kept for a post-mortem) and a
    /// <see cref="DamagedStateException"/> names the file, why, and where it went: the caller
    /// rebuilds it from what else it has, or refuses to go on.
    /// </summary>
    public static T? Read<T>(string path, Func<byte[], T?> parse, bool moveAside = true) where T : class
    {
        byte[] bytes;
        try
        {
            if (!File.Exists(path))
            {
                return null;
            }
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Damaged(path, e.Message, moveAside, e);
        }
        try
        {
            return parse(bytes) ?? throw new FormatException("it holds null");
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or FormatException or InvalidOperationException or ArgumentException or NotSupportedException)
        {
            throw Damaged(path, e.Message, moveAside, e);
        }
    }

    private static DamagedStateException Damaged(string path, string why, bool moveAside, Exception inner)
    {
        string? aside = null;
        if (moveAside)
        {
            aside = $"{path}.corrupt-{DateTime.UtcNow:yyyyMMddTHHmmssfff}";
            try
            {
                File.Move(path, aside, overwrite: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                aside = null;
            }
        }
        return new DamagedStateException(path, aside, $"{path} is damaged ({why}){(aside is null ? "" : $"; moved aside to {aside}")}", inner);
    }

    /// <summary>The rename is durable only once the directory itself is on disk (power cuts are routine at the edge).</summary>
    public static void SyncDirectory(string dir)
    {
        var fd = Libc.open(dir, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0);
        if (fd < 0)
        {
            throw LinuxException.FromLastError("open", dir);
        }
        try
        {
            if (Libc.fsync(fd) != 0)
            {
                throw LinuxException.FromLastError("fsync", dir);
            }
        }
        finally
        {
            Libc.close(fd);
        }
    }
}

/// <summary>A state file that could not be read: its path, where the damaged copy went, and why.</summary>
public sealed class DamagedStateException : OrchestratorException
{
    public DamagedStateException() : base(ErrorKind.Internal, "damaged state file") { }
    public DamagedStateException(string message) : base(ErrorKind.Internal, message) { }
    public DamagedStateException(string message, Exception inner) : base(ErrorKind.Internal, message, inner) { }
    public DamagedStateException(string path, string? movedTo, string message, Exception inner) : base(ErrorKind.Internal, message, inner)
    {
        FilePath = path;
        MovedTo = movedTo;
    }

    public string FilePath { get; } = "";
    public string? MovedTo { get; }
}

using System.Globalization;
using Microsoft.Win32.SafeHandles;

namespace Orchestrator.Linux;

/// <summary>
/// An exclusive advisory lock (flock) on a file, held for the lifetime of this object.
/// The holder's pid is written into the file so that the next taker can say who has it.
/// The descriptor is close-on-exec, so no container ever inherits it.
/// </summary>
public sealed class FileLock : IDisposable
{
    private readonly SafeFileHandle _handle;

    private FileLock(string path, SafeFileHandle handle)
    {
        Path = path;
        _handle = handle;
    }

    public string Path { get; }

    /// <summary>
    /// Takes the lock without waiting. Returns null when another process holds it and
    /// sets <paramref name="holderPid"/> to the pid recorded in the file (0 if unknown).
    /// </summary>
    public static FileLock? TryAcquire(string path, out int holderPid)
    {
        holderPid = 0;
        // open(2) directly: .NET's File.Open takes its own flock to emulate FileShare, which
        // would collide with ours. O_CLOEXEC keeps the lock fd out of every child.
        var fd = Libc.open(path, Libc.O_RDWR | Libc.O_CREAT | Libc.O_CLOEXEC | Libc.O_NOFOLLOW, 0x180 /* 0600 */);
        if (fd < 0)
        {
            throw LinuxException.FromLastError("open", path);
        }
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        if (Libc.flock(fd, Libc.LOCK_EX | Libc.LOCK_NB) != 0)
        {
            var error = LinuxException.FromLastError("flock", path);
            if (error.Errno != Errno.EWOULDBLOCK)
            {
                handle.Dispose();
                throw error;
            }
            holderPid = ReadPid(handle);
            handle.Dispose();
            return null;
        }

        var pid = System.Text.Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n");
        RandomAccess.SetLength(handle, 0);
        RandomAccess.Write(handle, pid, 0);
        return new FileLock(path, handle);
    }

    private static int ReadPid(SafeFileHandle handle)
    {
        Span<byte> buffer = stackalloc byte[32];
        var n = RandomAccess.Read(handle, buffer, 0);
        return int.TryParse(System.Text.Encoding.ASCII.GetString(buffer[..n]).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) ? pid : 0;
    }

    public void Dispose() => _handle.Dispose();
}

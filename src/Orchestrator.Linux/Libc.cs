using System.Runtime.InteropServices;

namespace Orchestrator.Linux;

/// <summary>
/// Bindings that Tmds.LibC lacks, named and typed as in C. No policy here: callers turn
/// a -1 return into a <see cref="LinuxException"/> at the edge.
/// </summary>
public static partial class Libc
{
    private const string LibcName = "libc";

    // <sys/file.h>
    public const int LOCK_SH = 1, LOCK_EX = 2, LOCK_NB = 4, LOCK_UN = 8;

    // <fcntl.h>, x86-64/arm64 values (identical on both).
    public const int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0x40, O_EXCL = 0x80, O_TRUNC = 0x200,
        O_NOFOLLOW = 0x20000, O_DIRECTORY = 0x10000, O_CLOEXEC = 0x80000;

    [LibraryImport(LibcName, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int open(string pathname, int flags, int mode);

    [LibraryImport(LibcName, EntryPoint = "flock", SetLastError = true)]
    public static partial int flock(int fd, int operation);
}

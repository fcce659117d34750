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

    [LibraryImport(LibcName, EntryPoint = "flock", SetLastError = true)]
    public static partial int flock(int fd, int operation);
}

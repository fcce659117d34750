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

    // <sys/mount.h>
    public const ulong MS_RDONLY = 1, MS_NOSUID = 2, MS_NODEV = 4, MS_NOEXEC = 8, MS_SYNCHRONOUS = 16,
        MS_REMOUNT = 32, MS_MANDLOCK = 64, MS_DIRSYNC = 128, MS_NOATIME = 1024, MS_NODIRATIME = 2048,
        MS_BIND = 4096, MS_MOVE = 8192, MS_REC = 16384, MS_SILENT = 32768, MS_UNBINDABLE = 1 << 17,
        MS_PRIVATE = 1 << 18, MS_SLAVE = 1 << 19, MS_SHARED = 1 << 20, MS_RELATIME = 1 << 21,
        MS_STRICTATIME = 1 << 24;

    // <fcntl.h>: the values differ between architectures (O_NOFOLLOW is 0x20000 on x86-64 and
    // 0x8000 on arm64), so they come from Tmds.LibC's per-architecture assembly.
    public static readonly int O_RDONLY = Tmds.Linux.LibC.O_RDONLY, O_WRONLY = Tmds.Linux.LibC.O_WRONLY, O_RDWR = Tmds.Linux.LibC.O_RDWR,
        O_CREAT = Tmds.Linux.LibC.O_CREAT, O_NOFOLLOW = Tmds.Linux.LibC.O_NOFOLLOW, O_DIRECTORY = Tmds.Linux.LibC.O_DIRECTORY,
        O_CLOEXEC = Tmds.Linux.LibC.O_CLOEXEC, O_PATH = Tmds.Linux.LibC.O_PATH,
        O_NONBLOCK = Tmds.Linux.LibC.O_NONBLOCK, O_APPEND = Tmds.Linux.LibC.O_APPEND, O_TRUNC = Tmds.Linux.LibC.O_TRUNC;

    [LibraryImport(LibcName, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int open(string pathname, int flags, int mode);

    /// <summary>glibc: returns free memory at the top of the heap and in free arenas' pages to the kernel.</summary>
    [LibraryImport(LibcName, EntryPoint = "malloc_trim", SetLastError = true)]
    public static partial int malloc_trim(nuint pad);

    [LibraryImport(LibcName, EntryPoint = "pipe2", SetLastError = true)]
    public static unsafe partial int pipe2(int* pipefd, int flags);

    [LibraryImport(LibcName, EntryPoint = "read", SetLastError = true)]
    public static unsafe partial nint read(int fd, void* buf, nuint count);

    [LibraryImport(LibcName, EntryPoint = "write", SetLastError = true)]
    public static unsafe partial nint write(int fd, void* buf, nuint count);

    /// <summary>
    /// All of <paramref name="data"/> through write(2) on <paramref name="fd"/> at the descriptor's
    /// own offset (so output appended to a file by several writers, or after a shell's own
    /// lines, lands after what is there: a FileStream on the fd would pwrite at its own position),
    /// retrying on EINTR and partial writes. The errno of a failure (EPIPE: the reader is gone), or 0.
    /// </summary>
    public static unsafe int WriteAll(int fd, ReadOnlySpan<byte> data)
    {
        fixed (byte* start = data)
        {
            var done = 0;
            while (done < data.Length)
            {
                var n = write(fd, start + done, (nuint)(data.Length - done));
                if (n < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno == 4 /* EINTR */)
                    {
                        continue;
                    }
                    return errno;
                }
                done += (int)n;
            }
            return 0;
        }
    }

    // <sys/socket.h>
    public const int AF_UNIX = 1, SOCK_STREAM = 1, SOCK_CLOEXEC = 0x80000;

    [LibraryImport(LibcName, EntryPoint = "socketpair", SetLastError = true)]
    public static unsafe partial int socketpair(int domain, int type, int protocol, int* sv);

    [LibraryImport(LibcName, EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int mount(string? source, string target, string? filesystemtype, ulong mountflags, string? data);

    public const int MNT_DETACH = 2;

    [LibraryImport(LibcName, EntryPoint = "umount2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int umount2(string target, int flags);

    [LibraryImport(LibcName, EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int link(string oldpath, string newpath);

    /// <summary>glibc's makedev(3): the 64-bit dev_t layout of Linux.</summary>
    public static ulong makedev(ulong major, ulong minor)
        => ((major & 0xfffff000UL) << 32) | ((major & 0xfffUL) << 8) | ((minor & 0xffffff00UL) << 12) | (minor & 0xffUL);

    [LibraryImport(LibcName, EntryPoint = "mknod", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int mknod(string pathname, uint mode, ulong dev);

    [LibraryImport(LibcName, EntryPoint = "mknodat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int mknodat(int dirfd, string pathname, uint mode, ulong dev);

    [LibraryImport(LibcName, EntryPoint = "mkdirat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int mkdirat(int dirfd, string pathname, uint mode);

    [LibraryImport(LibcName, EntryPoint = "unlinkat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int unlinkat(int dirfd, string pathname, int flags);

    [LibraryImport(LibcName, EntryPoint = "fchownat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int fchownat(int dirfd, string pathname, uint owner, uint group, int flags);

    [LibraryImport(LibcName, EntryPoint = "fchmodat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int fchmodat(int dirfd, string pathname, uint mode, int flags);

    [LibraryImport(LibcName, EntryPoint = "lchown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int lchown(string pathname, uint owner, uint group);

    [LibraryImport(LibcName, EntryPoint = "lsetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int lsetxattr(string path, string name, byte[] value, nuint size, int flags);

    [LibraryImport(LibcName, EntryPoint = "fsync", SetLastError = true)]
    public static partial int fsync(int fd);

    [LibraryImport(LibcName, EntryPoint = "close", SetLastError = true)]
    public static partial int close(int fd);

    [LibraryImport(LibcName, EntryPoint = "dup", SetLastError = true)]
    public static partial int dup(int fd);

    // <sys/ioctl.h>: a terminal's window size (struct winsize: rows, columns, then two unused
    // pixel counts, 16 bits each). The numbers are the generic ones: x86-64 and arm64 alike.
    public const uint TIOCGWINSZ = 0x5413, TIOCSWINSZ = 0x5414;

    [StructLayout(LayoutKind.Sequential)]
#pragma warning disable CS8981 // named as in C
    public struct winsize
#pragma warning restore CS8981
    {
        public ushort ws_row;
        public ushort ws_col;
        public ushort ws_xpixel;
        public ushort ws_ypixel;
    }

    [LibraryImport(LibcName, EntryPoint = "ioctl", SetLastError = true)]
    public static unsafe partial int ioctl(int fd, nuint request, winsize* size);

    [LibraryImport(LibcName, EntryPoint = "mkfifo", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int mkfifo(string pathname, int mode);

    [LibraryImport(LibcName, EntryPoint = "kill", SetLastError = true)]
    public static partial int kill(int pid, int sig);

    [LibraryImport(LibcName, EntryPoint = "setsid", SetLastError = true)]
    public static partial int setsid();

    // <sys/wait.h>
    public const int P_PIDFD = 3, WEXITED = 4, WNOHANG = 1, CLD_EXITED = 1, CLD_KILLED = 2, CLD_DUMPED = 3;

    /// <summary>siginfo_t is 128 bytes; for SIGCHLD, si_code is at 8, si_pid at 16 and si_status at 24 (LP64).</summary>
    [LibraryImport(LibcName, EntryPoint = "waitid", SetLastError = true)]
    public static unsafe partial int waitid(int idtype, int id, byte* infop, int options);

    [LibraryImport(LibcName, EntryPoint = "flock", SetLastError = true)]
    public static partial int flock(int fd, int operation);

    // <poll.h>
    public const short POLLIN = 1, POLLOUT = 4, POLLERR = 8, POLLHUP = 16, POLLNVAL = 32;

    [StructLayout(LayoutKind.Sequential)]
#pragma warning disable CS8981 // named as in C
    public struct pollfd
#pragma warning restore CS8981
    {
        public int fd;
        public short events;
        public short revents;
    }

    [LibraryImport(LibcName, EntryPoint = "poll", SetLastError = true)]
    public static unsafe partial int poll(pollfd* fds, nuint nfds, int timeout);

    // <fcntl.h> pipes: the same numbers on every Linux architecture.
    public const int F_SETPIPE_SZ = 1031, F_GETPIPE_SZ = 1032, SPLICE_F_NONBLOCK = 2;

    [LibraryImport(LibcName, EntryPoint = "fcntl", SetLastError = true)]
    public static partial int fcntl(int fd, int cmd, int arg);

    /// <summary>Copies up to len bytes from one pipe to another without consuming them.</summary>
    [LibraryImport(LibcName, EntryPoint = "tee", SetLastError = true)]
    public static partial nint tee(int fdIn, int fdOut, nuint len, uint flags);

    [LibraryImport(LibcName, EntryPoint = "pwrite", SetLastError = true)]
    public static unsafe partial nint pwrite(int fd, void* buf, nuint count, long offset);

    [LibraryImport(LibcName, EntryPoint = "pread", SetLastError = true)]
    public static unsafe partial nint pread(int fd, void* buf, nuint count, long offset);

    [LibraryImport(LibcName, EntryPoint = "ftruncate", SetLastError = true)]
    public static partial int ftruncate(int fd, long length);

    [LibraryImport(LibcName, EntryPoint = "syscall", SetLastError = true)]
    private static partial nint syscall_pidfd_open(nint number, int pid, uint flags);

    /// <summary>pidfd_open(2): a handle that stays on this process even if its pid is reused (434 on every architecture).</summary>
    public static int pidfd_open(int pid) => (int)syscall_pidfd_open(434, pid, 0);

    // <linux/openat2.h>
    public const ulong RESOLVE_NO_XDEV = 0x01, RESOLVE_NO_MAGICLINKS = 0x02, RESOLVE_NO_SYMLINKS = 0x04, RESOLVE_BENEATH = 0x08, RESOLVE_IN_ROOT = 0x10;

    [StructLayout(LayoutKind.Sequential)]
    private struct open_how
    {
        public ulong flags;
        public ulong mode;
        public ulong resolve;
    }

    [LibraryImport(LibcName, EntryPoint = "syscall", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial nint syscall_openat2(nint number, int dirfd, string pathname, open_how* how, nuint size);

    /// <summary>
    /// openat2(2) (437 on every architecture, Linux 5.6): the path resolved by the kernel under the
    /// rules of <paramref name="resolve"/>; RESOLVE_IN_ROOT makes <paramref name="dirfd"/> the root
    /// for "..", absolute symlinks and all, atomically (no window for a swapped symlink).
    /// </summary>
    public static unsafe int openat2(int dirfd, string pathname, int flags, int mode, ulong resolve)
    {
        var how = new open_how { flags = (ulong)(uint)flags, mode = (ulong)(uint)mode, resolve = resolve };
        return (int)syscall_openat2(437, dirfd, pathname, &how, (nuint)sizeof(open_how));
    }
}

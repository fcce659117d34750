using Orchestrator.Api;
using System.Runtime.InteropServices;

namespace Orchestrator.Linux;

/// <summary>Names and descriptions of errno values, for messages people read.</summary>
public static class Errno
{
    public const int EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, EBADF = 9, EAGAIN = 11,
        ENOMEM = 12, EACCES = 13, EBUSY = 16, EEXIST = 17, ENOTDIR = 20, EISDIR = 21, EINVAL = 22,
        ENOSPC = 28, EROFS = 30, ENOSYS = 38, ENOTEMPTY = 39, ELOOP = 40, EWOULDBLOCK = EAGAIN;

    private static readonly Dictionary<int, string> s_names = new()
    {
        [EPERM] = "EPERM", [ENOENT] = "ENOENT", [ESRCH] = "ESRCH", [EINTR] = "EINTR", [EIO] = "EIO",
        [EBADF] = "EBADF", [EAGAIN] = "EAGAIN", [ENOMEM] = "ENOMEM", [EACCES] = "EACCES",
        [EBUSY] = "EBUSY", [EEXIST] = "EEXIST", [ENOTDIR] = "ENOTDIR", [EISDIR] = "EISDIR",
        [EINVAL] = "EINVAL", [ENOSPC] = "ENOSPC", [EROFS] = "EROFS", [ENOSYS] = "ENOSYS",
        [ENOTEMPTY] = "ENOTEMPTY", [ELOOP] = "ELOOP",
    };

    /// <summary>"ENOENT", or "errno 123" for values without a symbolic name here.</summary>
    public static string Name(int errno) => s_names.TryGetValue(errno, out var n) ? n : $"errno {errno}";

    /// <summary>"no such file or directory (ENOENT)".</summary>
    public static string Describe(int errno)
    {
        var message = Marshal.GetPInvokeErrorMessage(errno);
        if (message.Length > 0)
        {
            message = char.ToLowerInvariant(message[0]) + message[1..];
        }
        return $"{message} ({Name(errno)})";
    }
}

/// <summary>
/// A failed system call: carries the call, the object it was about and errno.
/// The message reads like crun's: <c>open '/x/rootfs': no such file or directory (ENOENT)</c>.
/// </summary>
public sealed class LinuxException : IOException, IKindedError
{
    public LinuxException(string call, string? subject, int errno)
        : base(subject is null ? $"{call}: {Linux.Errno.Describe(errno)}" : $"{call} '{subject}': {Linux.Errno.Describe(errno)}")
    {
        Call = call;
        Subject = subject;
        Errno = errno;
        HResult = errno;
    }

    public LinuxException() : this("unknown", null, 0) { }
    public LinuxException(string message) : base(message) { Call = "unknown"; }
    public LinuxException(string message, Exception inner) : base(message, inner) { Call = "unknown"; }

    public string Call { get; }
    public string? Subject { get; }
    public int Errno { get; }

    /// <summary>The kind of its errno (<see cref="ErrnoKind"/>).</summary>
    public ErrorKind Kind => ErrnoKind.Of(Errno);

    /// <summary>Throws for the errno of the last P/Invoke.</summary>
    public static LinuxException FromLastError(string call, string? subject = null)
        => new(call, subject, Marshal.GetLastPInvokeError());
}

/// <summary>The <see cref="ErrorKind"/> of an errno, in one place.</summary>
public static class ErrnoKind
{
    public static ErrorKind Of(int errno) => errno switch
    {
        2 /* ENOENT */ or 3 /* ESRCH */ or 19 /* ENODEV */ or 20 /* ENOTDIR */ => ErrorKind.NotFound,
        1 /* EPERM */ or 13 /* EACCES */ or 30 /* EROFS */ => ErrorKind.Forbidden,
        16 /* EBUSY */ or 17 /* EEXIST */ or 21 /* EISDIR */ or 39 /* ENOTEMPTY */ => ErrorKind.Conflict,
        22 /* EINVAL */ or 36 /* ENAMETOOLONG */ or 40 /* ELOOP */ => ErrorKind.Invalid,
        11 /* EAGAIN */ or 12 /* ENOMEM */ or 24 /* EMFILE */ or 28 /* ENOSPC */ or 122 /* EDQUOT */ or 110 /* ETIMEDOUT */ => ErrorKind.Unavailable,
        _ => ErrorKind.Internal,
    };
}

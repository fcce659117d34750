using Orchestrator.Api;
using Grpc.Core;

namespace Orchestrator.Containerd;

/// <summary>
/// A containerd call failed. It is an <see cref="IOException"/> because, to orchd, containerd is
/// a device behind a socket: the message says what failed and what to do; <see cref="Code"/>
/// tells "not there" (the object is gone: nothing to undo) from "containerd unreachable" (retry).
/// </summary>
public sealed class ContainerdException : IOException, IKindedError
{
    public ContainerdException(string message, StatusCode code = StatusCode.Unknown, Exception? inner = null)
        : base(message, inner)
        => Code = code;

    public ContainerdException()
    {
    }

    public ContainerdException(string message)
        : base(message)
    {
    }

    public ContainerdException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public StatusCode Code { get; } = StatusCode.Unknown;

    public bool IsNotFound => Code == StatusCode.NotFound;

    /// <summary>containerd (or its socket) did not answer: the call may work once it is back.</summary>
    public bool IsUnavailable => Code is StatusCode.Unavailable or StatusCode.DeadlineExceeded;

    /// <summary>The kind of its gRPC status, in one place.</summary>
    public ErrorKind Kind => Code switch
    {
        StatusCode.NotFound => ErrorKind.NotFound,
        StatusCode.InvalidArgument or StatusCode.OutOfRange or StatusCode.Unimplemented => ErrorKind.Invalid,
        StatusCode.AlreadyExists or StatusCode.FailedPrecondition or StatusCode.Aborted => ErrorKind.Conflict,
        StatusCode.PermissionDenied or StatusCode.Unauthenticated => ErrorKind.Forbidden,
        StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.ResourceExhausted => ErrorKind.Unavailable,
        _ => ErrorKind.Internal,
    };
}

using Microsoft.Extensions.Logging;

namespace Orchestrator.Node;

/// <summary>The log level of an error by its kind, in one place for the node (orchd's logs).</summary>
public static class ErrorLevels
{
    /// <summary>
    /// The requester's own mistakes (not found, invalid, conflict) are information: the node is
    /// fine. Unavailable and forbidden are warnings (something to look at: a backend down, a refused
    /// signature). Internal, or no kind at all (an exception nobody classified), is an error.
    /// </summary>
    public static LogLevel Of(ErrorKind? kind) => kind switch
    {
        ErrorKind.NotFound or ErrorKind.Invalid or ErrorKind.Conflict => LogLevel.Information,
        ErrorKind.Unavailable or ErrorKind.Forbidden => LogLevel.Warning,
        _ => LogLevel.Error,
    };

    public static LogLevel Of(Exception e) => Of(ErrorKinds.Of(e));
}

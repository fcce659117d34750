namespace Orchestrator.Api;

/// <summary>An error that knows its <see cref="ErrorKind"/>.</summary>
public interface IKindedError
{
    ErrorKind Kind { get; }
}

/// <summary>
/// The root of the project's errors: a sentence for a person (the object and the fix, never a
/// stack trace) and a <see cref="ErrorKind"/> for programs. Every layer's error types derive
/// from it, so a catch names the kind (<c>catch (OrchestratorException e) when (e.Kind is …)</c>)
/// instead of listing types. Two errors stay <see cref="IOException"/>s for the callers that
/// catch I/O failures as such (<c>LinuxException</c>, <c>ContainerdException</c>) and carry their
/// kind through <see cref="IKindedError"/>.
/// </summary>
public abstract class OrchestratorException : Exception, IKindedError
{
    protected OrchestratorException(ErrorKind kind, string message) : base(message) => Kind = kind;

    protected OrchestratorException(ErrorKind kind, string message, Exception? inner) : base(message, inner) => Kind = kind;

    public ErrorKind Kind { get; }
}

namespace Orchestrator.Syntax;

/// <summary>The command line is wrong: the sentence says how to call the command (orchd and orchctl exit 2, orch-runc 1, as runc).</summary>
public sealed class UsageException : Exception
{
    public UsageException() : base("bad usage") { }

    public UsageException(string message) : base(message) { }

    public UsageException(string message, Exception inner) : base(message, inner) { }
}

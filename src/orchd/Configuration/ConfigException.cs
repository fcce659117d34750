namespace Orchestrator.Daemon.Configuration;

/// <summary>
/// The configuration cannot be used. The message is one line that names where the bad value
/// came from (file and line, flag or variable), the key, and the fix.
/// </summary>
public sealed class ConfigException : OrchestratorException
{
    public ConfigException() : base(ErrorKind.Invalid, "config error") { }
    public ConfigException(string message) : base(ErrorKind.Invalid, message) { }
    public ConfigException(string message, Exception inner) : base(ErrorKind.Invalid, message, inner) { }
}

/// <summary>A value that does not parse; the loader adds where it came from.</summary>
internal sealed class ConfigValueException(string problem) : OrchestratorException(ErrorKind.Invalid, problem);

namespace Orchestrator.Daemon.Configuration;

/// <summary>
/// A subcommand's arguments (orchd image …, orchd release …) split three ways by the shared
/// parser: the subcommand's own flags, orchd's flags (--config, --state-dir, --nats-url…, for
/// <see cref="CommandLine.Parse"/>) and the positionals. -h/--help stops the split: the caller
/// prints its usage.
/// </summary>
internal sealed class SubcommandArgs
{
    private readonly ParsedArguments _parsed;

    private SubcommandArgs(ParsedArguments parsed) => _parsed = parsed;

    public IReadOnlyList<string> DaemonFlags => _parsed.Unknown;

    public IReadOnlyList<string> Positional => _parsed.Positional;

    public bool Help => _parsed.Ended;

    /// <param name="args">the arguments after the subcommand's name</param>
    /// <param name="valueFlags">the subcommand's flags that take a value, each with what the value is
    /// (for the error when it is missing; null says "a value")</param>
    /// <param name="switches">the subcommand's flags that take none</param>
    public static SubcommandArgs Split(IReadOnlyList<string> args, IReadOnlyDictionary<string, string?> valueFlags, IReadOnlyCollection<string> switches)
    {
        var flags = new FlagSet().Help("-h", "--help");
        foreach (var (name, what) in valueFlags)
        {
            flags.ValueNamed(name, what);
        }
        foreach (var name in switches)
        {
            flags.Switch(name);
        }
        // orchd's own flags pass through: every one of them takes a value.
        return new SubcommandArgs(ArgumentParser.Parse(args, flags, new ParseRules { Unknown = UnknownFlagRule.Collect }));
    }

    /// <summary>The flag's value (the last one when given more than once), or null.</summary>
    public string? Value(string flag) => _parsed.Value(flag);

    /// <summary>Every value a repeatable flag was given, in order.</summary>
    public IEnumerable<string> Values(string flag) => _parsed.Values(flag);

    public bool Has(string flag) => _parsed.Has(flag);
}

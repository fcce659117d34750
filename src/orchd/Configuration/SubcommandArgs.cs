namespace Orchestrator.Daemon.Configuration;

/// <summary>
/// A subcommand's arguments (orchd image …, orchd release …) split three ways: the subcommand's
/// own flags, orchd's flags (--config, --state-dir, --nats-url…, for <see cref="CommandLine.Parse"/>)
/// and the positionals. -h/--help stops the split: the caller prints its usage.
/// </summary>
internal sealed class SubcommandArgs
{
    private readonly List<(string Flag, string Value)> _own = [];

    public List<string> DaemonFlags { get; } = [];

    public List<string> Positional { get; } = [];

    public bool Help { get; private set; }

    /// <param name="args">the arguments after the subcommand's name</param>
    /// <param name="valueFlags">the subcommand's flags that take a value, each with what the value is
    /// (for the error when it is missing; null says "a value")</param>
    /// <param name="switches">the subcommand's flags that take none</param>
    public static SubcommandArgs Split(IReadOnlyList<string> args, IReadOnlyDictionary<string, string?> valueFlags, IReadOnlyCollection<string> switches)
    {
        var split = new SubcommandArgs();
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (arg is "-h" or "--help")
            {
                split.Help = true;
                return split;
            }
            if (valueFlags.TryGetValue(arg, out var what))
            {
                split._own.Add((arg, i + 1 < args.Count ? args[++i] : throw new UsageException($"flag {arg} needs {what ?? "a value"}")));
            }
            else if (switches.Contains(arg))
            {
                split._own.Add((arg, "true"));
            }
            else if (arg.StartsWith("--", StringComparison.Ordinal))
            {
                // orchd's own: --flag=value, or --flag value (every orchd flag takes a value).
                split.DaemonFlags.Add(arg);
                if (!arg.Contains('=', StringComparison.Ordinal) && i + 1 < args.Count)
                {
                    split.DaemonFlags.Add(args[++i]);
                }
            }
            else
            {
                split.Positional.Add(arg);
            }
        }
        return split;
    }

    /// <summary>The flag's value (the last one when given more than once), or null.</summary>
    public string? Value(string flag) => _own.LastOrDefault(o => o.Flag == flag).Value;

    /// <summary>Every value a repeatable flag was given, in order.</summary>
    public IEnumerable<string> Values(string flag) => _own.Where(o => o.Flag == flag).Select(o => o.Value);

    public bool Has(string flag) => _own.Any(o => o.Flag == flag);
}

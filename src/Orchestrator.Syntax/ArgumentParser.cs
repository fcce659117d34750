namespace Orchestrator.Syntax;

/// <summary>What a parse does with a flag its <see cref="FlagSet"/> does not know.</summary>
public enum UnknownFlagRule
{
    /// <summary>A usage error (<see cref="ParseRules.UnknownFlagMessage"/>).</summary>
    Error,

    /// <summary>Kept among the positionals, in place, with no value taken: another parse reads it (orchctl's global flags, then the command's).</summary>
    Positional,

    /// <summary>
    /// A <c>--</c> flag goes to <see cref="ParsedArguments.Unknown"/> with its value (<c>--x=v</c>, or
    /// <c>--x v</c>: every flag passed on takes one); a lone <c>-x</c> stays a positional.
    /// </summary>
    Collect,
}

/// <summary>How one command line is read: what an unknown flag is, where flags end, and the error sentences of the tool.</summary>
public sealed record ParseRules
{
    public UnknownFlagRule Unknown { get; init; } = UnknownFlagRule.Error;

    /// <summary>Flags stop at the first positional (runc's grammar: orch-runc exec ID CMD -x keeps -x for CMD).</summary>
    public bool FlagsEndAtFirstPositional { get; init; }

    /// <summary>The error for an unknown flag, given its name.</summary>
    public Func<string, string> UnknownFlagMessage { get; init; } = name => $"unknown flag '{name}'";

    /// <summary>The error for a flag given no value, given the name used and the flag.</summary>
    public Func<string, Flag, string> MissingValueMessage { get; init; } = (name, flag) => $"flag {name} needs {flag.ValueName ?? "a value"}";
}

/// <summary>
/// The one command-line parser of orchd (and its subcommands), orchctl and orch-runc: <c>--flag
/// value</c>, <c>--flag=value</c>, short aliases (<c>-n NODE</c>), switches, repeatable flags,
/// positionals, and <c>--</c>, after which nothing is a flag. Each tool keeps its own sentences and
/// its own flag table; the grammar is this one.
/// </summary>
public static class ArgumentParser
{
    public static ParsedArguments Parse(IReadOnlyList<string> args, FlagSet flags, ParseRules? rules = null)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(flags);
        rules ??= new ParseRules();
        var parsed = new ParsedArguments();
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (rules.FlagsEndAtFirstPositional && parsed.Positional.Count > 0)
            {
                parsed.Positional.Add(arg); // the container's command: its `--` and flags are its own
                continue;
            }
            if (arg == "--")
            {
                parsed.AfterDashDash = [.. args.Skip(i + 1)];
                break;
            }
            if (arg.Length < 2 || arg[0] != '-')
            {
                parsed.Positional.Add(arg);
                continue;
            }
            var eq = arg.IndexOf('=', StringComparison.Ordinal);
            var inline = arg.StartsWith("--", StringComparison.Ordinal) && eq > 0;
            var name = inline ? arg[..eq] : arg;
            if (flags.Find(name) is null && Grouped(arg, flags) is { } group)
            {
                // -it: short switches written together, as getopt takes them (the last may take a value).
                foreach (var (one, last) in group.Select((f, k) => (f, k == group.Count - 1)))
                {
                    if (!one.TakesValue)
                    {
                        parsed.Given.Add((one, "true"));
                        continue;
                    }
                    parsed.Given.Add((one, i + 1 < args.Count ? args[++i] : throw new UsageException(rules.MissingValueMessage("-" + arg[^1], one))));
                }
                continue;
            }
            if (flags.Find(name) is not { } flag)
            {
                switch (rules.Unknown)
                {
                    case UnknownFlagRule.Positional:
                        parsed.Positional.Add(arg);
                        continue;
                    case UnknownFlagRule.Collect when name.StartsWith("--", StringComparison.Ordinal):
                        parsed.Unknown.Add(arg);
                        if (!inline && i + 1 < args.Count)
                        {
                            parsed.Unknown.Add(args[++i]);
                        }
                        continue;
                    case UnknownFlagRule.Collect:
                        parsed.Positional.Add(arg);
                        continue;
                    default:
                        throw new UsageException(rules.UnknownFlagMessage(name));
                }
            }
            if (!flag.TakesValue)
            {
                parsed.Given.Add((flag, "true"));
                if (flag.EndsParse)
                {
                    parsed.Ended = true;
                    break;
                }
                continue;
            }
            var value = inline ? arg[(eq + 1)..]
                : i + 1 < args.Count ? args[++i]
                : throw new UsageException(rules.MissingValueMessage(name, flag));
            parsed.Given.Add((flag, value));
        }
        return parsed;
    }

    /// <summary>The flags of a group of short switches (<c>-it</c>), each a known one-letter flag and only the last taking a value; null when it is not one.</summary>
    private static List<Flag>? Grouped(string arg, FlagSet flags)
    {
        if (arg.Length < 3 || arg[1] == '-' || arg.Contains('=', StringComparison.Ordinal))
        {
            return null;
        }
        var group = new List<Flag>();
        for (var k = 1; k < arg.Length; k++)
        {
            if (!char.IsAsciiLetter(arg[k]) || flags.Find("-" + arg[k]) is not { } one || (one.TakesValue && k < arg.Length - 1))
            {
                return null;
            }
            group.Add(one);
        }
        return group;
    }
}

/// <summary>A command line read against a <see cref="FlagSet"/>; flags are asked for by key (their <c>--</c> name).</summary>
public sealed class ParsedArguments
{
    /// <summary>Every flag given, in order, with its value ("true" for a switch).</summary>
    public List<(Flag Flag, string Value)> Given { get; } = [];

    public List<string> Positional { get; } = [];

    /// <summary>Unknown flags with their values, in order, under <see cref="UnknownFlagRule.Collect"/>.</summary>
    public List<string> Unknown { get; } = [];

    /// <summary>What follows <c>--</c>, or null when there was no <c>--</c>.</summary>
    public List<string>? AfterDashDash { get; internal set; }

    /// <summary>A flag that ends the parse (help) was met: what followed it was not read.</summary>
    public bool Ended { get; internal set; }

    public bool Has(string key) => Given.Any(g => g.Flag.Key == key);

    /// <summary>The flag's value, the last one when it was given more than once; null when not given.</summary>
    public string? Value(string key) => Given.LastOrDefault(g => g.Flag.Key == key).Value;

    /// <summary>Every value of a repeatable flag, in order.</summary>
    public IReadOnlyList<string> Values(string key) => [.. Given.Where(g => g.Flag.Key == key).Select(g => g.Value)];
}

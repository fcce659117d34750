namespace Orchestrator.Daemon.Configuration;

internal enum CommandMode
{
    Run,
    Help,
    Version,
    CheckConfig,
}

/// <summary>orchd's arguments, parsed but not yet applied.</summary>
internal sealed record CommandLine(CommandMode Mode, string? ConfigFile, IReadOnlyList<(Setting Setting, string Value)> Flags)
{
    private static readonly FlagSet s_flags = BuildFlags();

    private static FlagSet BuildFlags()
    {
        var flags = new FlagSet();
        foreach (var setting in ConfigSchema.All)
        {
            flags.Value(setting.Flag);
        }
        return flags.Value("--config").Switch("--check-config").Switch("-h", "--help").Switch("-V", "--version");
    }

    private static readonly ParseRules s_rules = new()
    {
        UnknownFlagMessage = name =>
        {
            var hint = ConfigSchema.Suggest(name, s_flags.Names.Where(n => n.StartsWith("--", StringComparison.Ordinal) && n is not ("--help" or "--version")))
                is { } close ? $"; did you mean {close}?" : "";
            return $"unknown flag '{name}'{hint} (see orchd --help)";
        },
    };

    /// <summary>Parses `--flag value` and `--flag=value` (the shared grammar). A mistake is a <see cref="UsageException"/>.</summary>
    public static CommandLine Parse(IReadOnlyList<string> args)
    {
        var parsed = ArgumentParser.Parse(args, s_flags, s_rules);
        var mode = CommandMode.Run;
        foreach (var word in parsed.Positional.Concat(parsed.AfterDashDash is null ? [] : ["--", .. parsed.AfterDashDash]))
        {
            mode = word switch
            {
                "help" => CommandMode.Help,
                "version" => CommandMode.Version,
                _ => throw new UsageException($"unexpected argument '{word}'; orchd takes only flags (see orchd --help)"),
            };
        }
        var flags = new List<(Setting, string)>();
        foreach (var (flag, value) in parsed.Given)
        {
            switch (flag.Key)
            {
                case "--help":
                    mode = CommandMode.Help;
                    break;
                case "--version":
                    mode = CommandMode.Version;
                    break;
                case "--check-config":
                    mode = CommandMode.CheckConfig;
                    break;
                case "--config":
                    break;
                default:
                    flags.Add((ConfigSchema.ByFlag(flag.Key)!, value));
                    break;
            }
        }
        return new CommandLine(mode, parsed.Value("--config"), flags);
    }
}

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
    /// <summary>Parses `--flag value` and `--flag=value`. A mistake is a <see cref="UsageException"/>.</summary>
    public static CommandLine Parse(IReadOnlyList<string> args)
    {
        var mode = CommandMode.Run;
        string? configFile = null;
        var flags = new List<(Setting, string)>();
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            string name;
            string? inlineValue = null;
            var eq = arg.IndexOf('=', StringComparison.Ordinal);
            if (arg.StartsWith("--", StringComparison.Ordinal) && eq > 0)
            {
                name = arg[..eq];
                inlineValue = arg[(eq + 1)..];
            }
            else
            {
                name = arg;
            }

            switch (name)
            {
                case "-h" or "--help" or "help":
                    mode = CommandMode.Help;
                    continue;
                case "-V" or "--version" or "version":
                    mode = CommandMode.Version;
                    continue;
                case "--check-config":
                    mode = CommandMode.CheckConfig;
                    continue;
            }

            if (!name.StartsWith('-'))
            {
                throw new UsageException($"unexpected argument '{arg}'; orchd takes only flags (see orchd --help)");
            }
            var setting = name == "--config" ? null : ConfigSchema.ByFlag(name);
            if (setting is null && name != "--config")
            {
                var known = ConfigSchema.All.Select(s => s.Flag).Append("--config").Append("--check-config");
                var hint = ConfigSchema.Suggest(name, known) is { } close ? $"; did you mean {close}?" : "";
                throw new UsageException($"unknown flag '{name}'{hint} (see orchd --help)");
            }
            var value = inlineValue ?? (i + 1 < args.Count ? args[++i] : throw new UsageException($"flag {name} needs a value"));
            if (setting is null)
            {
                configFile = value;
                continue;
            }
            flags.Add((setting, value));
        }
        return new CommandLine(mode, configFile, flags);
    }
}

/// <summary>The command line is wrong (exit code 2).</summary>
public sealed class UsageException : Exception
{
    public UsageException() { }
    public UsageException(string message) : base(message) { }
    public UsageException(string message, Exception inner) : base(message, inner) { }
}

namespace Orchestrator.Ctl;

/// <summary>config view | get-contexts | current-context | use-context NAME | set-context NAME [--server …]: the contexts file.</summary>
internal static class ConfigCommands
{
    public static int Run(List<string> args, ConnectionFlags settings)
    {
        var parsed = ParsedArgs.Parse("config", args);
        var config = settings.Config;
        switch (parsed.Positional)
        {
            case ["view"]:
                Console.Out.WriteLine($"config file:  {config.Path}{(config.Exists ? "" : " (not there: defaults)")}");
                Console.Out.WriteLine($"context:      {settings.ContextName ?? "none"}{(settings.ContextName is null ? "" : $" ({settings.ContextSource})")}");
                Console.Out.WriteLine();
                Output.Table(["SETTING", "VALUE", "FROM"], ConnectionFlags.Specs.Select(s => new[] { s.Key, settings.Get(s.Key) ?? "-", settings.SourceOf(s.Key) }));
                if (config.Contexts.Count > 0)
                {
                    Console.Out.WriteLine();
                    Contexts(settings);
                }
                return 0;
            case ["get-contexts"]:
                if (config.Contexts.Count == 0)
                {
                    Console.Error.WriteLine($"no contexts in {config.Path}; add one with `orchctl config set-context NAME --server URL`");
                    return 0;
                }
                Contexts(settings);
                return 0;
            case ["current-context"]:
                if (settings.ContextName is null)
                {
                    Output.Error($"no current context in {config.Path}; set one with `orchctl config use-context NAME`");
                    return 1;
                }
                Console.Out.WriteLine(settings.ContextName);
                return 0;
            case ["use-context", var name]:
                config.UseContext(name);
                Console.Out.WriteLine($"current context: {name} ({config.Path})");
                return 0;
            case ["set-context", var name]:
                if (settings.FlagsGiven.Count == 0 && !parsed.Has("--current"))
                {
                    throw new UsageException($"set-context {name} needs settings to store: --server URL, --creds FILE, --nkey FILE, --tls-ca FILE, --node NODE, --timeout D, --sign-key FILE");
                }
                var values = settings.FlagsGiven.ToDictionary(kv => kv.Key, kv => ConnectionFlags.Specs.First(s => s.Key == kv.Key).IsFile ? Path.GetFullPath(kv.Value) : kv.Value, StringComparer.Ordinal);
                ContextConfig.SetContext(config.Path, name, values, parsed.Has("--current"));
                Console.Out.WriteLine($"context {name}: {(config.Contexts.ContainsKey(name) ? "updated" : "created")} in {config.Path}{(parsed.Has("--current") ? " (current)" : "")}");
                return 0;
            default:
                throw new UsageException("config view | get-contexts | current-context | use-context NAME | set-context NAME [--server URL] [--creds FILE] … [--current]");
        }
    }

    private static void Contexts(ConnectionFlags settings)
    {
        var config = settings.Config;
        Output.Table(["CURRENT", "NAME", "SERVER", "NODE", "AUTH"], config.Contexts.OrderBy(c => c.Key, StringComparer.Ordinal).Select(c => new[]
        {
            c.Key == settings.ContextName ? "*" : "", c.Key, c.Value.GetValueOrDefault("server") ?? "-", c.Value.GetValueOrDefault("node") ?? "-",
            c.Value.ContainsKey("creds") ? "creds" : c.Value.ContainsKey("nkey") ? "nkey" : "-",
        }));
    }
}

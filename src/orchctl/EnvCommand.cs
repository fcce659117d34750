using System.Text.Json;
using Orchestrator.Api;

namespace Orchestrator.Ctl;

/// <summary>
/// `orchctl env set|unset|ls`: environment variables for the fleet (--fleet), for the nodes with a
/// label (-l k=v) or for one device (--device NODE), optionally only for one deployment's containers
/// (--deployment), as balena's fleet and device variables. They override the template's env, the
/// narrower scope winning; the nodes restart the containers whose variables change.
/// </summary>
internal static class EnvCommand
{
    public static async Task<int> RunAsync(List<string> args, CommandContext context)
    {
        var parsed = ParsedArgs.Parse("env", args);
        var positional = parsed.Positional;
        var usage = $"orchctl {Commands.Find("env")!.Usage}";
        switch (positional)
        {
            case ["set", .. var pairs] when pairs.Count > 0:
                {
                    var (kind, which) = Scope(parsed);
                    var set = new Dictionary<string, string>(StringComparer.Ordinal);
                    foreach (var pair in pairs)
                    {
                        var eq = pair.IndexOf('=', StringComparison.Ordinal);
                        if (eq <= 0)
                        {
                            throw new UsageException($"env set {pair}: give KEY=VALUE (an empty value is KEY=)");
                        }
                        set[pair[..eq]] = pair[(eq + 1)..];
                    }
                    var scope = await context.Fleet.SetVariablesAsync(kind, which, parsed.Value("--deployment"), set, []).ConfigureAwait(false);
                    Console.Out.WriteLine($"{Describe(kind, which, parsed.Value("--deployment"))}: set {string.Join(", ", set.Keys)}");
                    return 0;
                }
            case ["unset", .. var keys] when keys.Count > 0:
                {
                    var (kind, which) = Scope(parsed);
                    await context.Fleet.SetVariablesAsync(kind, which, parsed.Value("--deployment"), new Dictionary<string, string>(), keys).ConfigureAwait(false);
                    Console.Out.WriteLine($"{Describe(kind, which, parsed.Value("--deployment"))}: unset {string.Join(", ", keys)}");
                    return 0;
                }
            case ["ls" or "list" or "get"]:
                {
                    var scopes = await context.Fleet.GetVariablesAsync().ConfigureAwait(false);
                    if (parsed.Value("--device") is { } node)
                    {
                        // What a node's containers get: the scopes that cover it, as the node works it out.
                        var entry = (await context.Fleet.GetNodesAsync().ConfigureAwait(false)).FirstOrDefault(n => n.Info.Node == node)
                            ?? throw new NodeRequestException(ErrorKind.NotFound, $"no node '{node}' has joined the fleet; `orchctl get nodes` lists the nodes");
                        scopes = [.. scopes.Where(s => s.Covers(node, entry.Info.Labels))];
                    }
                    if (ListFormat(parsed) == "json")
                    {
                        Console.Out.WriteLine(Output.PrettyJson(JsonSerializer.SerializeToUtf8Bytes(scopes.ToList(), SecretJsonContext.Default.ListVariableScope)));
                        return 0;
                    }
                    var rows = new List<string[]>();
                    foreach (var s in scopes)
                    {
                        var where = s.Kind switch { VariableScopeKind.Label => "label " + s.Label, VariableScopeKind.Node => "node " + s.Node, _ => "fleet" };
                        rows.AddRange(s.Vars.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => new[] { where, "*", kv.Key, kv.Value }));
                        foreach (var (deployment, vars) in (s.Deployments ?? []).OrderBy(kv => kv.Key, StringComparer.Ordinal))
                        {
                            rows.AddRange(vars.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => new[] { where, deployment, kv.Key, kv.Value }));
                        }
                    }
                    Output.Table(["SCOPE", "DEPLOYMENT", "KEY", "VALUE"], rows);
                    return 0;
                }
            default:
                throw new UsageException(usage);
        }
    }

    /// <summary>Exactly one of --fleet, -l KEY=VALUE, -n NODE.</summary>
    private static (VariableScopeKind Kind, string? Which) Scope(ParsedArgs parsed)
    {
        var scopes = new List<(VariableScopeKind, string?)>();
        if (parsed.Has("--fleet"))
        {
            scopes.Add((VariableScopeKind.Fleet, null));
        }
        if (parsed.Value("--label") is { } label)
        {
            scopes.Add((VariableScopeKind.Label, label));
        }
        if (parsed.Value("--device") is { } node)
        {
            scopes.Add((VariableScopeKind.Node, node));
        }
        return scopes.Count == 1 ? scopes[0]
            : throw new UsageException("say whose variables these are, once: --fleet (every node), -l KEY=VALUE (the nodes with that label) or --device NODE (one device)");
    }

    private static string Describe(VariableScopeKind kind, string? which, string? deployment)
        => (kind switch { VariableScopeKind.Label => $"nodes with {which}", VariableScopeKind.Node => $"node {which}", _ => "the fleet" })
            + (deployment is null ? "" : $", deployment {deployment}");

    private static string ListFormat(ParsedArgs parsed)
        => parsed.Value("--output") is not { } format ? "table"
            : format is "table" or "json" or "name" ? format
            : throw new UsageException($"-o {format}: use table, json or name");
}

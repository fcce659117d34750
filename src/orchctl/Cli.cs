using System.Text.Json;
using NATS.Client.Core;
using Orchestrator.Client;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Ctl;

/// <summary>NATS or every node that was asked did not answer: exit 3.</summary>
internal sealed class UnreachableException(string message) : Exception(message)
{
    public UnreachableException() : this("unreachable") { }
    public UnreachableException(string message, Exception inner) : this(message) => _ = inner;
}

/// <summary>A command's arguments, read by the shared parser against its flags in the command table (values, switches, positionals, and what follows --).</summary>
internal sealed class ParsedArgs
{
    private readonly ParsedArguments _parsed;

    private ParsedArgs(ParsedArguments parsed) => _parsed = parsed;

    public List<string> Positional => _parsed.Positional;

    /// <summary>What follows `--` (exec's command), or null when there was no `--`.</summary>
    public List<string>? AfterDashDash => _parsed.AfterDashDash;

    public static ParsedArgs Parse(string command, IReadOnlyList<string> args)
    {
        var spec = Commands.Find(command) ?? throw new UsageException($"unknown command '{command}'");
        var flags = new FlagSet();
        foreach (var flag in spec.Flags)
        {
            flags.Add(new Flag([.. flag.Each], TakesValue: flag.Value is not null, flag.Value));
        }
        return new ParsedArgs(ArgumentParser.Parse(args, flags, new ParseRules
        {
            UnknownFlagMessage = name => $"{command} has no flag {name}{NearestFlag(name, spec)}; `orchctl {command} --help` lists its flags",
            MissingValueMessage = (name, flag) => $"{name} needs a value: {name} {flag.ValueName}",
        }));
    }

    /// <summary>" (did you mean --X?)" for a misspelt long flag (the command's or a global one); empty when none is close.</summary>
    private static string NearestFlag(string name, CommandSpec spec)
    {
        if (!name.StartsWith("--", StringComparison.Ordinal))
        {
            return ""; // one letter off a short flag is another flag, not a typo of it
        }
        var known = spec.Flags.SelectMany(f => f.Each).Concat(ConnectionFlags.GlobalFlags().Names).Where(n => n.StartsWith("--", StringComparison.Ordinal)).Distinct().ToList();
        return EditDistance.Closest(name, known, maxDistance: 2) is { } near ? $" (did you mean {near}?)" : "";
    }

    public bool Has(string longName) => _parsed.Has(longName);

    public string? Value(string longName) => _parsed.Value(longName);

    public IReadOnlyList<string> Values(string longName) => _parsed.Values(longName);

    /// <summary>-o: table (default), wide, json, yaml, name, jsonpath=TEMPLATE or custom-columns=SPEC (checked here).</summary>
    public string Format()
    {
        var format = Value("--output") ?? "table";
        if (JsonTemplates.Handles(format))
        {
            JsonTemplates.Check(format);
            return format;
        }
        return format is "table" or "wide" or "json" or "yaml" or "name"
            ? format
            : throw new UsageException($"-o {format}: use table, wide, json, yaml, name, jsonpath=TEMPLATE or custom-columns=HEADER:PATH,…");
    }
}

/// <summary>-l/--selector as typed: Api's <see cref="LabelSelector"/>, its grammar errors as usage errors (exit 2).</summary>
internal static class Selectors
{
    public static LabelSelector? Parse(string? text)
    {
        if (text is null)
        {
            return null;
        }
        try
        {
            return LabelSelector.Parse(text);
        }
        catch (FormatException e)
        {
            throw new UsageException($"-l '{text}': {e.Message}");
        }
    }
}

/// <summary>What every fleet command gets: the connection, the settings, and the lookups they share.</summary>
internal sealed class CommandContext(NatsConnection connection, ConnectionFlags settings, string version)
{
    public NatsConnection Connection => connection;
    public ConnectionFlags Settings => settings;
    public string Version => version;
    public TimeSpan Timeout => settings.Timeout;
    /// <summary>The fleet, with this user's name stamped into every deployment revision it writes (ChangedBy).</summary>
    public FleetClient Fleet { get; } = new(connection) { Actor = settings.ToSettings().Actor };

    /// <summary>A node's API; operations that wait on the node (exec, stop) get at least 60 s.</summary>
    public NodeClient Node(string node, TimeSpan? timeout = null) => new(connection, node, timeout ?? (Timeout < TimeSpan.FromSeconds(60) ? TimeSpan.FromSeconds(60) : Timeout));

    public string RequireNode(string command)
        => settings.Node ?? throw new UsageException($"{command} needs a node: -n NODE (or ORCH_NODE, or node: in the context); `orchctl get nodes` lists them");

    /// <summary>The fleet's nodes from their heartbeats (JetStream KV); without JetStream, the ones that answer orch.fleet.info.</summary>
    public async Task<IReadOnlyList<NodeEntry>> NodesAsync()
    {
        try
        {
            return await Fleet.GetNodesAsync().ConfigureAwait(false);
        }
        catch (NATS.Client.JetStream.NatsJSException)
        {
            var infos = await Fleet.DiscoverNodesAsync(Timeout, TimeSpan.FromMilliseconds(300)).ConfigureAwait(false);
            return infos.Select(i => new NodeEntry { Info = i, State = NodeCondition.Ready }).ToList();
        }
    }

    /// <summary>The names of the nodes to ask for containers or images: -n NODE, or every node that is not lost.</summary>
    public async Task<IReadOnlyList<string>> NodesToAskAsync(LabelSelector? selector = null)
    {
        if (settings.Node is { } one)
        {
            return [one];
        }
        return (await NodesAsync().ConfigureAwait(false)).Where(n => n.State != NodeCondition.Lost && (selector is null || selector.Matches(n.Info.Labels)))
            .Select(n => n.Info.Node).Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>
    /// Asks every node the same thing at once; answers in node order, and a sentence on stderr for
    /// each node that failed. All failing is an error (unreachable when none answered at all).
    /// </summary>
    /// <param name="failed">Told of each node that failed, instead of a warning on stderr (get -w says it once, not every pass).</param>
    public async Task<IReadOnlyList<(string Node, T Result)>> AskEveryNodeAsync<T>(IReadOnlyList<string> nodes, Func<NodeClient, Task<T>> ask, Action<string, Exception>? failed = null)
    {
        var tasks = nodes.Select(async n =>
        {
            try
            {
                return (n, await ask(Node(n, Timeout)).ConfigureAwait(false), (Exception?)null);
            }
            catch (NodeRequestException e)
            {
                return (n, default(T)!, e);
            }
        }).ToList();
        var results = await Task.WhenAll(tasks).ConfigureAwait(false);
        foreach (var (node, _, error) in results.Where(r => r.Item3 is not null))
        {
            if (failed is not null)
            {
                failed(node, error!);
            }
            else
            {
                Output.Warning($"node {node}: {error!.Message}");
            }
        }
        if (results.Length > 0 && results.All(r => r.Item3 is not null))
        {
            var unreachable = results.All(r => r.Item3!.InnerException is NatsNoRespondersException or NatsNoReplyException);
            throw unreachable
                ? new UnreachableException(results.Length == 1 ? results[0].Item3!.Message : $"none of the {results.Length} nodes answered; `orchctl get nodes` shows their state")
                : new NodeRequestException(results.Length == 1 ? results[0].Item3!.Message : "every node refused the request (above)");
        }
        return results.Where(r => r.Item3 is null).Select(r => (r.Item1, r.Item2)).ToList();
    }

    /// <summary>
    /// The node that runs a container: -n NODE; else the deployment status (replica → node); else
    /// the one node whose ps lists it. A deployment's name gets its replicas as the fix.
    /// </summary>
    public async Task<string> FindContainerNodeAsync(string container)
    {
        if (settings.Node is { } node)
        {
            return node;
        }
        IReadOnlyList<DeploymentView> deployments = [];
        try
        {
            deployments = await Fleet.GetDeploymentsAsync().ConfigureAwait(false);
        }
        catch (NATS.Client.JetStream.NatsJSException)
        {
            // No JetStream: no deployments; ask the nodes.
        }
        foreach (var view in deployments)
        {
            if (view.Status?.Replicas.TryGetValue(container, out var placed) == true)
            {
                return placed;
            }
        }
        var nodes = await NodesToAskAsync().ConfigureAwait(false);
        if (nodes.Count == 0)
        {
            throw new UnreachableException($"no node has joined the fleet on {settings.Server}; start orchd, or check --server");
        }
        var lists = await AskEveryNodeAsync(nodes, c => c.ListAsync()).ConfigureAwait(false);
        var holders = lists.Where(l => l.Result.Any(c => c.Name == container)).Select(l => l.Node).ToList();
        if (holders.Count == 1)
        {
            return holders[0];
        }
        if (holders.Count > 1)
        {
            throw new UsageException($"a container '{container}' runs on {string.Join(", ", holders)}; pick one with -n NODE");
        }
        if (deployments.FirstOrDefault(d => d.Deployment.Name == container) is { } deployment)
        {
            var replicas = deployment.Status?.Replicas.OrderBy(r => r.Key, StringComparer.Ordinal).Select(r => $"{r.Key} (on {r.Value})").ToList() ?? [];
            throw new UsageException(replicas.Count == 0
                ? $"'{container}' is a deployment with no replica placed yet; `orchctl describe deployment {container}` says why"
                : $"'{container}' is a deployment; name one of its replicas: {string.Join(", ", replicas)}");
        }
        throw new NodeRequestException(ErrorKind.NotFound, $"no container '{container}' on any of the {nodes.Count} node(s) that answered; `orchctl get containers` lists them");
    }

    /// <summary>Writes a list as JSON objects with "node" first, then the item's own fields.</summary>
    public static JsonElement WithNode<T>(IEnumerable<(string Node, T Item)> items, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartArray();
            foreach (var (node, item) in items)
            {
                writer.WriteStartObject();
                writer.WriteString("node", node);
                using var doc = JsonDocument.Parse(JsonSerializer.SerializeToUtf8Bytes(item, type));
                foreach (var property in doc.RootElement.EnumerateObject())
                {
                    property.WriteTo(writer);
                }
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
        }
        using var result = JsonDocument.Parse(buffer.ToArray());
        return result.RootElement.Clone();
    }

    public static JsonElement ToElement<T>(T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type)
    {
        using var doc = JsonDocument.Parse(JsonSerializer.SerializeToUtf8Bytes(value, type));
        return doc.RootElement.Clone();
    }
}

using System.Globalization;
using System.Text.Json;
using Orchestrator.Client;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Ctl;

/// <summary>Reading the fleet: version, get, top, and the names shell completion asks for; describe in QueryCommands.Describe.</summary>
internal static partial class QueryCommands
{
    public static async Task<int> VersionAsync(CommandContext context)
    {
        Console.Out.WriteLine($"client: orchctl {context.Version}");
        var nodes = await context.Fleet.DiscoverNodesAsync(context.Timeout, TimeSpan.FromMilliseconds(300)).ConfigureAwait(false);
        if (nodes.Count == 0)
        {
            Console.Out.WriteLine($"nodes:  none answered on {context.Settings.Server} within {context.Timeout.TotalSeconds:0.#}s");
            return 0;
        }
        Output.Table(["NODE", "VERSION", "ARCH", "RUNTIME", "UPTIME"], nodes.Select(n => new[]
        {
            n.Node, n.Version, n.Arch, n.Runtime, TimeSpan.FromSeconds(Math.Floor(n.UptimeSeconds)).ToString("c", CultureInfo.InvariantCulture),
        }));
        return 0;
    }

    /// <summary>`orchctl __complete KIND`: names, one a line, for the completion scripts.</summary>
    public static async Task<int> CompleteAsync(string kind, CommandContext context)
    {
        IEnumerable<string> names = kind switch
        {
            "node" or "nodes" => (await context.NodesAsync().ConfigureAwait(false)).Select(n => n.Info.Node),
            "deployment" or "deployments" => (await context.Fleet.GetDeploymentsAsync().ConfigureAwait(false)).Select(d => d.Deployment.Name),
            "container" or "containers" => (await context.AskEveryNodeAsync(await context.NodesToAskAsync().ConfigureAwait(false), c => c.ListAsync()).ConfigureAwait(false))
                .SelectMany(l => l.Result.Select(c => c.Name)),
            _ => [],
        };
        foreach (var name in names.Distinct().Order(StringComparer.Ordinal))
        {
            Console.Out.WriteLine(name);
        }
        return 0;
    }

    public static Task<int> RunAsync(string command, List<string> args, CommandContext context)
    {
        var parsed = ParsedArgs.Parse(command, args);
        var what = parsed.Positional.FirstOrDefault();
        var names = parsed.Positional.Skip(1).Select(n => n.Contains('/', StringComparison.Ordinal) ? n[(n.IndexOf('/', StringComparison.Ordinal) + 1)..] : n).ToList();
        // kubectl's kind/name form: get deployment/web.
        if (what?.IndexOf('/', StringComparison.Ordinal) is > 0 and var slash)
        {
            names.Insert(0, what[(slash + 1)..]);
            what = what[..slash];
        }
        var kind = what switch
        {
            "node" or "nodes" or "no" => "nodes",
            "deployment" or "deployments" or "deploy" => "deployments",
            "container" or "containers" or "ct" => "containers",
            "image" or "images" or "img" => "images",
            "event" or "events" or "ev" => "events",
            _ => null,
        };
        return (command, kind) switch
        {
            ("get", "nodes") => GetNodesAsync(parsed, names, context),
            ("get", "deployments") => GetDeploymentsAsync(parsed, names, context),
            ("get", "containers") => GetContainersAsync(parsed, names, context),
            ("get", "images") when parsed.Has("--watch") => throw new UsageException("get images -w: images are not watched; -w goes with nodes, deployments, containers and events"),
            ("get", "images") => GetImagesAsync(parsed, names, context),
            ("get", "events") => GetEventsAsync(parsed, context),
            ("describe", "nodes") => DescribeNodeAsync(One(names, "node"), context),
            ("describe", "deployments") => DescribeDeploymentAsync(One(names, "deployment"), context),
            ("describe", "containers") => DescribeContainerAsync(One(names, "container"), context),
            ("top", "nodes") => TopNodesAsync(parsed, context),
            ("top", "containers") => TopContainersAsync(parsed, context),
            ("get", _) => throw new UsageException($"get {what ?? "what"}? nodes, deployments, containers, images or events (orchctl get --help)"),
            ("describe", _) => throw new UsageException($"describe {what ?? "what"}? node NAME, deployment NAME or container NAME"),
            _ => throw new UsageException($"top {what ?? "what"}? nodes or containers"),
        };
    }

    private static string One(List<string> names, string kind)
        => names.Count == 1 ? names[0] : throw new UsageException($"describe {kind} needs one name: orchctl describe {kind} NAME");

    /// <summary>-o json, yaml or name: writes it and returns true; false for the tables (table, wide), which the caller draws.</summary>
    internal static bool Emit(string format, JsonElement json, IEnumerable<string> names)
    {
        switch (format)
        {
            case "json" or "yaml":
                Output.Document(format, json);
                return true;
            case "name":
                foreach (var name in names)
                {
                    Console.Out.WriteLine(name);
                }
                return true;
            case var template when JsonTemplates.Handles(template):
                JsonTemplates.Write(template, json);
                return true;
            default:
                return false;
        }
    }

    private static void NotFound<T>(string kind, List<string> names, IEnumerable<T> found, Func<T, string> name)
    {
        var missing = names.Except(found.Select(name), StringComparer.Ordinal).ToList();
        if (missing.Count > 0)
        {
            throw new NodeRequestException(ErrorKind.NotFound, $"no {kind} '{missing[0]}' in the fleet; `orchctl get {kind}s` lists them");
        }
    }

    // ---- get ----

    private static async Task<int> GetNodesAsync(ParsedArgs parsed, List<string> names, CommandContext context)
    {
        var format = parsed.Format();
        var selector = Selectors.Parse(parsed.Value("--selector"));
        if (parsed.Has("--watch"))
        {
            return await WatchNodesAsync(format, names, selector, context).ConfigureAwait(false);
        }
        var nodes = (await context.NodesAsync().ConfigureAwait(false))
            .Where(n => (names.Count == 0 || names.Contains(n.Info.Node)) && (selector is null || selector.Matches(n.Info.Labels)))
            .OrderBy(n => n.Info.Node, StringComparer.Ordinal).ToList();
        NotFound("node", names, nodes, n => n.Info.Node);
        var json = names.Count == 1 && nodes.Count == 1
            ? CommandContext.ToElement(nodes[0], FleetJsonContext.Default.NodeEntry)
            : CommandContext.ToElement(nodes, FleetJsonContext.Default.ListNodeEntry);
        if (Emit(format, json, nodes.Select(n => n.Info.Node)))
        {
            return 0;
        }
        if (nodes.Count == 0)
        {
            Console.Error.WriteLine(selector is null ? $"no node has joined the fleet on {context.Settings.Server}; start orchd with --nats-url {context.Settings.Server}" : "no node matches the selector");
            return 0;
        }
        var wide = format == "wide";
        Output.Table(NodeHeader(wide), nodes.Select(n => NodeRow(n, wide)));
        // What makes nodes unsafe as they run (no NATS authentication, no trusted keys): one
        // line per warning with the nodes it holds for, on stderr (the table stays parseable).
        foreach (var warning in nodes.SelectMany(n => (n.Info.Warnings ?? []).Select(w => (n.Info.Node, Text: w))).GroupBy(x => x.Text, StringComparer.Ordinal))
        {
            Console.Error.WriteLine($"warning: {string.Join(", ", warning.Select(x => x.Node))}: {warning.Key}");
        }
        return 0;
    }

    private static string[] NodeHeader(bool wide) => wide
        ? ["NODE", "STATE", "ROLE", "HEARTBEAT", "VERSION", "CONTAINERS", "CPU REQ", "MEM USED", "ARCH", "KERNEL", "RUNTIME", "UPTIME", "CPU", "MEMORY", "LABELS"]
        : ["NODE", "STATE", "ROLE", "HEARTBEAT", "VERSION", "CONTAINERS", "CPU REQ", "MEM USED", "LABELS"];

    private static string[] NodeRow(NodeEntry n, bool wide)
    {
        var s = n.Info.Status;
        var row = new List<string>
        {
            n.Info.Node, WireNames.Of(n.State) + (n.Revoked ? ",revoked" : n.Draining ? ",draining" : n.Cordoned ? ",cordoned" : ""), n.Leader ? "scheduler" : "-",
            Output.Duration(TimeSpan.FromSeconds(n.HeartbeatAgeSeconds)) + " ago", n.Info.Version.Split('+')[0],
            s is null ? "-" : $"{s.Running}/{s.Containers}",
            s is null ? "-" : $"{s.CpuMilliRequested}m/{s.CpuMilliAllocatable}m",
            s is null ? "-" : Output.Bytes(s.MemoryUsedBytes),
        };
        if (wide)
        {
            row.AddRange([n.Info.Arch, n.Info.Kernel, n.Info.Runtime, Output.Duration(TimeSpan.FromSeconds(n.Info.UptimeSeconds)),
                s is null ? "-" : $"{s.CpuMilliCapacity}m", s is null ? "-" : Output.Bytes(s.MemoryCapacityBytes)]);
        }
        row.Add(Output.Labels(n.Info.Labels));
        return row.ToArray();
    }

    private static async Task<int> GetDeploymentsAsync(ParsedArgs parsed, List<string> names, CommandContext context)
    {
        var format = parsed.Format();
        var selector = Selectors.Parse(parsed.Value("--selector"));
        if (parsed.Has("--watch"))
        {
            return await WatchDeploymentsAsync(format, names, selector, context).ConfigureAwait(false);
        }
        var views = (await context.Fleet.GetDeploymentsAsync().ConfigureAwait(false))
            .Where(d => (names.Count == 0 || names.Contains(d.Deployment.Name)) && (selector is null || selector.Matches(d.Deployment.Template.Labels)))
            .OrderBy(d => d.Deployment.Name, StringComparer.Ordinal).ToList();
        NotFound("deployment", names, views, d => d.Deployment.Name);
        var json = names.Count == 1 && views.Count == 1
            ? CommandContext.ToElement(views[0], FleetJsonContext.Default.DeploymentView)
            : CommandContext.ToElement(views, FleetJsonContext.Default.ListDeploymentView);
        if (Emit(format, json, views.Select(v => v.Deployment.Name)))
        {
            return 0;
        }
        if (views.Count == 0)
        {
            Console.Error.WriteLine(selector is null ? "no deployments in the fleet; `orchctl apply -f FILE` adds one" : "no deployment matches the selector");
            return 0;
        }
        var wide = format == "wide";
        Output.Table(DeploymentHeader(wide), views.Select(v => DeploymentRow(v, wide)));
        return 0;
    }

    private static string[] DeploymentHeader(bool wide) => wide
        ? ["DEPLOYMENT", "REVISION", "DESIRED", "PLACED", "UPDATED", "READY", "PHASE", "IMAGE", "NODES", "SELECTOR", "STRATEGY", "SIGNED", "MESSAGE"]
        : ["DEPLOYMENT", "REVISION", "DESIRED", "PLACED", "UPDATED", "READY", "PHASE", "IMAGE", "MESSAGE"];

    private static string[] DeploymentRow(DeploymentView v, bool wide)
    {
        var d = v.Deployment;
        var s = v.Status;
        var row = new List<string>
        {
            d.Name, Output.Int((long)d.ShownRevision()), d.IsGlobal() ? (s is null ? "global" : $"global ({Output.Int(s.Desired)})") : Output.Int(d.Replicas), s is null ? "-" : Output.Int(s.Placed),
            s is null ? "-" : Output.Int(s.Updated), s is null ? "-" : Output.Int(s.UpdatedReady),
            s is null ? "pending" : s.Phase == RolloutPhase.Unknown ? "-" : WireNames.Of(s.Phase), d.Template.Image,
        };
        if (wide)
        {
            row.AddRange([s is null ? "-" : string.Join(",", s.Replicas.Values.Distinct().Order(StringComparer.Ordinal)),
                d.Selector is { Count: > 0 } sel ? Output.Labels(sel) : "-",
                (d.Strategy ?? "spread") + (d.SpreadBy is { } by ? $" by {by}" : "") + (d.AntiAffinity ? ", anti-affinity" : ""),
                d.Signature is null ? "no" : "yes"]);
        }
        row.Add(Message(v));
        return row.ToArray();
    }

    /// <summary>The one thing to know about a deployment that is not fine: why replicas have no node, or why it was rolled back.</summary>
    private static string Message(DeploymentView view)
    {
        var s = view.Status;
        if (s is null)
        {
            return "waiting for the scheduler";
        }
        if (s.Unschedulable.Count > 0)
        {
            return s.Unschedulable.Count == 1 ? s.Unschedulable[0] : $"{s.Unschedulable.Count} replicas unschedulable: {s.Unschedulable[0]}";
        }
        if (s.RolledBack is { } why)
        {
            return "rolled back: " + why;
        }
        return "";
    }

    private static async Task<int> GetContainersAsync(ParsedArgs parsed, List<string> names, CommandContext context)
    {
        var format = parsed.Format();
        var selector = Selectors.Parse(parsed.Value("--selector"));
        if (parsed.Has("--watch"))
        {
            return await WatchContainersAsync(format, names, selector, context).ConfigureAwait(false);
        }
        var asked = await context.NodesToAskAsync().ConfigureAwait(false);
        var lists = await context.AskEveryNodeAsync(asked, c => c.ListAsync()).ConfigureAwait(false);
        var all = lists.SelectMany(l => l.Result.Select(c => (l.Node, Item: c))).ToList();
        await MarkFleetTroubleAsync(all, asked, context).ConfigureAwait(false);
        var rows = all
            .Where(r => (names.Count == 0 || names.Contains(r.Item.Name)) && (selector is null || selector.Matches(r.Item.Labels)))
            .OrderBy(r => r.Item.Name, StringComparer.Ordinal).ThenBy(r => r.Node, StringComparer.Ordinal).ToList();
        NotFound("container", names, rows, r => r.Item.Name);
        if (Emit(format, CommandContext.WithNode(rows, FleetJsonContext.Default.ContainerStatus), rows.Select(r => r.Item.Name)))
        {
            return 0;
        }
        if (rows.Count == 0)
        {
            Console.Error.WriteLine($"no containers on the {lists.Count} node(s) that answered{(selector is null ? "" : " match the selector")}");
            return 0;
        }
        var wide = format == "wide";
        Output.Table(ContainerHeader(wide), rows.Select(r => ContainerRow(r, wide)));
        return 0;
    }

    private static string[] ContainerHeader(bool wide) => wide
        ? ["NAME", "NODE", "IMAGE", "STATE", "READY", "RESTARTS", "AGE", "PID", "SOURCE", "DEPLOYMENT", "LABELS", "MESSAGE"]
        : ["NAME", "NODE", "IMAGE", "STATE", "READY", "RESTARTS", "AGE", "MESSAGE"];

    private static string[] ContainerRow((string Node, ContainerStatus Item) r, bool wide)
    {
        var c = r.Item;
        var row = new List<string> { c.Name, r.Node, c.Image, WireNames.Of(c.State), c.Ready ? "yes" : "no", Output.Int(c.Restarts), Output.Age(c.StartedAt) };
        if (wide)
        {
            row.AddRange([c.Pid > 0 ? Output.Int(c.Pid) : "-", c.Source ?? "-", DeploymentOf(c) ?? "-", Output.Labels(c.Labels) is { Length: > 0 } l ? l : "-"]);
        }
        row.Add(c.Message ?? "");
        return row.ToArray();
    }

    /// <summary>
    /// What only the fleet's view shows, put in front of each row's message: an <c>orphan</c> (a
    /// fleet replica running on a node the scheduler does not assign it to: the fleet moved it
    /// while the node was cut off, or forgot it with its store), a <c>duplicate</c> (one replica
    /// running on more than one node), and the containers of a node that did not answer, from its
    /// last heartbeat (an orchd that is down while its containers run).
    /// </summary>
    private static async Task MarkFleetTroubleAsync(List<(string Node, ContainerStatus Item)> rows, IReadOnlyList<string> asked, CommandContext context)
    {
        Dictionary<string, HashSet<string>> assigned;
        IReadOnlyList<NodeEntry> nodes;
        try
        {
            assigned = await context.Fleet.GetAssignedAsync().ConfigureAwait(false);
            nodes = await context.NodesAsync().ConfigureAwait(false);
        }
        catch (NATS.Client.JetStream.NatsJSException)
        {
            return; // no JetStream: no fleet to compare with
        }
        var answered = rows.Select(r => r.Node).ToHashSet(StringComparer.Ordinal);
        foreach (var node in nodes.Where(n => asked.Contains(n.Info.Node) && !answered.Contains(n.Info.Node)))
        {
            foreach (var brief in node.Info.Containers ?? [])
            {
                var replica = assigned.Values.Any(a => a.Contains(brief.Name)) || DeploymentOf(new ContainerStatus { Name = brief.Name, Source = "fleet" }) is not null;
                rows.Add((node.Info.Node, new ContainerStatus
                {
                    Name = brief.Name, State = brief.State, Ready = brief.Ready, Source = replica ? "fleet" : null, Image = "?",
                    Message = $"node not answering ({WireNames.Of(node.State)}); as of its last heartbeat {node.HeartbeatAgeSeconds:0}s ago" + (brief.Message is { } m ? "; " + m : ""),
                }));
            }
        }
        var live = rows.Where(r => r.Item.Source == "fleet" && r.Item.State is ContainerState.Running or ContainerState.Created or ContainerState.Backoff).ToList();
        var holders = live.GroupBy(r => r.Item.Name, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Select(r => r.Node).ToList(), StringComparer.Ordinal);
        foreach (var (node, c) in live)
        {
            var notes = new List<string>();
            if (!(assigned.TryGetValue(node, out var mine) && mine.Contains(c.Name)))
            {
                var elsewhere = assigned.Where(a => a.Value.Contains(c.Name)).Select(a => a.Key).FirstOrDefault();
                notes.Add(elsewhere is null ? "orphan: the fleet assigns it to no node" : $"orphan: the fleet assigns it to {elsewhere}");
            }
            if (holders[c.Name].Count > 1)
            {
                notes.Add($"duplicate: also running on {string.Join(",", holders[c.Name].Where(n => n != node))}");
            }
            if (notes.Count > 0)
            {
                c.Message = string.Join("; ", notes) + (string.IsNullOrEmpty(c.Message) ? "" : "; " + c.Message);
            }
        }
    }

    /// <summary>A fleet container is replica i of a deployment: name-i.</summary>
    private static string? DeploymentOf(ContainerStatus c)
        => c.Source == "fleet" && c.Name.LastIndexOf('-') is var dash and > 0 && c.Name[(dash + 1)..].All(char.IsAsciiDigit) ? c.Name[..dash] : null;

    private static async Task<int> GetImagesAsync(ParsedArgs parsed, List<string> names, CommandContext context)
    {
        var format = parsed.Format();
        var lists = await context.AskEveryNodeAsync(await context.NodesToAskAsync(Selectors.Parse(parsed.Value("--selector"))).ConfigureAwait(false), c => c.ImagesAsync()).ConfigureAwait(false);
        var rows = lists.SelectMany(l => l.Result.Select(i => (l.Node, Item: i)))
            .Where(r => names.Count == 0 || names.Contains(r.Item.Name))
            .OrderBy(r => r.Item.Name, StringComparer.Ordinal).ThenBy(r => r.Node, StringComparer.Ordinal).ToList();
        if (Emit(format, CommandContext.WithNode(rows, FleetJsonContext.Default.ImageSummary), rows.Select(r => r.Item.Name)))
        {
            return 0;
        }
        if (rows.Count == 0)
        {
            Console.Error.WriteLine($"no images on the {lists.Count} node(s) that answered");
            return 0;
        }
        var wide = format == "wide";
        string[] header = wide ? ["IMAGE", "NODE", "PLATFORM", "SIZE", "CREATED", "MANIFEST", "STORE", "USED BY"] : ["IMAGE", "NODE", "PLATFORM", "SIZE", "USED BY"];
        Output.Table(header, rows.Select(r =>
        {
            var i = r.Item;
            var row = new List<string> { i.Name, r.Node, i.Platform, Output.Bytes(i.Size) };
            if (wide)
            {
                row.AddRange([Output.Time(i.Created), i.ManifestDigest, i.Store ?? "orchd"]);
            }
            row.Add(i.UsedBy.Count == 0 ? "-" : string.Join(",", i.UsedBy));
            return row.ToArray();
        }));
        return 0;
    }

    private static async Task<int> GetEventsAsync(ParsedArgs parsed, CommandContext context)
    {
        var format = parsed.Format();
        var sinceText = parsed.Value("--since") ?? "1h";
        if (!Duration.TryParse(sinceText, out var ago))
        {
            throw new UsageException($"--since '{sinceText}' is not a duration like 10m");
        }
        return await FleetCommands.EventsAsync(context, DateTimeOffset.UtcNow - ago, parsed.Has("--watch"), null, format).ConfigureAwait(false);
    }

    /// <summary>The last events about a subject (a container, a deployment's replicas, or a node) within the hour.</summary>
    private static async Task<List<NodeEvent>> RecentEventsAsync(CommandContext context, Func<NodeEvent, bool> about, int count = 10)
    {
        var events = new List<NodeEvent>();
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await foreach (var ev in context.Fleet.EventsAsync(DateTimeOffset.UtcNow - TimeSpan.FromHours(1), watch: false, cts.Token).ConfigureAwait(false))
            {
                if (about(ev))
                {
                    events.Add(ev);
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or NATS.Client.JetStream.NatsJSException)
        {
            // No events stream (no JetStream) or a slow one: describe without them.
        }
        return events.TakeLast(count).ToList();
    }

    // ---- top ----

    private static async Task<int> TopNodesAsync(ParsedArgs parsed, CommandContext context)
    {
        var selector = Selectors.Parse(parsed.Value("--selector"));
        var nodes = (await context.NodesAsync().ConfigureAwait(false))
            .Where(n => (context.Settings.Node is null || n.Info.Node == context.Settings.Node) && (selector is null || selector.Matches(n.Info.Labels)))
            .OrderBy(n => n.Info.Node, StringComparer.Ordinal).ToList();
        Output.Table(["NODE", "STATE", "CPU", "CPU %", "MEMORY", "MEMORY %", "CONTAINERS"], nodes.Select(n =>
        {
            var s = n.Info.Status;
            var cpu = n.Info.Containers?.Sum(c => c.CpuPercent ?? 0) ?? 0;
            return new[]
            {
                n.Info.Node, WireNames.Of(n.State), string.Create(CultureInfo.InvariantCulture, $"{cpu * 10:0}m"),
                s is null || s.CpuMilliCapacity == 0 ? "-" : string.Create(CultureInfo.InvariantCulture, $"{cpu * 10 * 100 / s.CpuMilliCapacity:0.0}%"),
                s is null ? "-" : Output.Bytes(s.MemoryUsedBytes),
                s is null || s.MemoryCapacityBytes == 0 ? "-" : string.Create(CultureInfo.InvariantCulture, $"{100.0 * s.MemoryUsedBytes / s.MemoryCapacityBytes:0.0}%"),
                s is null ? "-" : $"{s.Running}/{s.Containers}",
            };
        }));
        return 0;
    }

    private static async Task<int> TopContainersAsync(ParsedArgs parsed, CommandContext context)
    {
        var selector = Selectors.Parse(parsed.Value("--selector"));
        var nodes = await context.NodesAsync().ConfigureAwait(false);
        var heartbeatCpu = nodes.Where(n => n.Info.Containers is not null)
            .SelectMany(n => n.Info.Containers!.Where(c => c.CpuPercent is not null).Select(c => (Key: (n.Info.Node, c.Name), CpuPercent: c.CpuPercent!.Value)))
            .GroupBy(x => x.Key).ToDictionary(g => g.Key, g => g.First().CpuPercent);
        var names = context.Settings.Node is { } one ? [one] : nodes.Where(n => n.State != NodeCondition.Lost).Select(n => n.Info.Node).Order(StringComparer.Ordinal).ToList();
        var stats = await context.AskEveryNodeAsync(names, async c => (await c.StatsAsync().ConfigureAwait(false), selector is null ? null : await c.ListAsync().ConfigureAwait(false))).ConfigureAwait(false);
        var rows = new List<string[]>();
        foreach (var (node, (list, containers)) in stats)
        {
            foreach (var c in list.OrderBy(c => c.Name, StringComparer.Ordinal))
            {
                if (selector is not null && !selector.Matches(containers?.FirstOrDefault(x => x.Name == c.Name)?.Labels))
                {
                    continue;
                }
                var cpu = heartbeatCpu.TryGetValue((node, c.Name), out var fromHeartbeat) ? fromHeartbeat : c.CpuPercent;
                rows.Add(
                [
                    c.Name, node, string.Create(CultureInfo.InvariantCulture, $"{cpu * 10:0}m"), cpu.ToString("0.0", CultureInfo.InvariantCulture) + "%",
                    Output.Bytes(c.MemoryBytes), c.MemoryLimitBytes is { } l ? Output.Bytes(l) : "-",
                    c.MemoryLimitBytes is { } limit && limit > 0 ? string.Create(CultureInfo.InvariantCulture, $"{100.0 * c.MemoryBytes / limit:0.0}%") : "-",
                    Output.Int(c.Pids),
                ]);
            }
        }
        Output.Table(["NAME", "NODE", "CPU", "CPU %", "MEMORY", "LIMIT", "MEM %", "PIDS"], rows);
        return 0;
    }
}

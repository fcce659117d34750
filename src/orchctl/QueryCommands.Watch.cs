using System.Text.Json;
using System.Threading.Channels;
using NATS.Client.Core;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Client;

namespace Orchestrator.Ctl;

/// <summary>
/// get -w for nodes, deployments and containers, as kubectl's: the list once, then a line for
/// each object whose row changed (a table keeps its header and column widths; json, yaml and
/// jsonpath print the changed object; name its name), and a row marked <c>deleted</c> for one
/// that went, until Ctrl-C (exit 0).
///
/// What wakes a pass: a change in the fleet's KV buckets (nodes, node settings, the leader;
/// deployments and their status), or an event from the events stream (containers), gathered
/// for 250 ms so that a burst is one pass; and a timer, because some changes are only time
/// passing (a node whose heartbeats stopped turns unreachable, then lost, with no write at all).
/// Columns that move on their own (a heartbeat's age, memory used, uptime, a container's age)
/// are shown but do not count as a change, or every pass would print every row; a new run of
/// the same container (or a node's orchd restarted) does, though its row may read the same.
/// </summary>
internal static partial class QueryCommands
{
    /// <summary>One kind's watch: how to read its objects, key and draw them, and what wakes a pass.</summary>
    private sealed record Watched<T>(
        string[] Header,
        int StateColumn,
        int StateWidth,
        int[] Moving,
        Func<Action<string, Exception>, Task<WatchRead<T>>> Read,
        Func<T, string> Key,
        Func<T, string> Name,
        Func<T, string[]> Row,
        Func<T, JsonElement> Json,
        Func<CancellationToken, IAsyncEnumerable<string>> Changes,
        TimeSpan Every,
        Func<T, string>? Instance = null);

    /// <summary>
    /// The longest text a state column can show (each of its enum's names, with a suffix where
    /// rows add one, and "deleted"): a later row then never pushes the columns right of it, as a
    /// container going "stopping" under a list of "running" ones did.
    /// </summary>
    private static int StateWidth<TState>(int suffix = 0) where TState : struct, Enum
        => Math.Max("deleted".Length, WireNames.KnownNames<TState>().Max(n => n.Length) + suffix);

    /// <param name="Unknown">Keys whose absence says nothing this pass (their node did not answer): not shown as deleted.</param>
    private sealed record WatchRead<T>(List<T> Items, Func<string, bool>? Unknown = null);

    private static readonly TimeSpan s_gather = TimeSpan.FromMilliseconds(250);

    private static Task<int> WatchNodesAsync(string format, List<string> names, LabelSelector? selector, CommandContext context)
    {
        var wide = format == "wide";
        return WatchAsync(format, context, new Watched<NodeEntry>(
            NodeHeader(wide), StateColumn: 1, StateWidth: StateWidth<NodeCondition>(",cordoned".Length), Moving: wide ? [3, 7, 11] : [3, 7],
            Read: async _ => new WatchRead<NodeEntry>((await context.NodesAsync().ConfigureAwait(false))
                .Where(n => (names.Count == 0 || names.Contains(n.Info.Node)) && (selector is null || selector.Matches(n.Info.Labels)))
                .OrderBy(n => n.Info.Node, StringComparer.Ordinal).ToList()),
            Key: n => n.Info.Node, Name: n => n.Info.Node, Row: n => NodeRow(n, wide),
            Json: n => CommandContext.ToElement(n, FleetJsonContext.Default.NodeEntry),
            Changes: token => context.Fleet.ChangesAsync([Buckets.Nodes, Buckets.NodeSettings, Buckets.Leader], token),
            Every: TimeSpan.FromSeconds(1), Instance: n => n.Info.StartedAt.ToString("O", System.Globalization.CultureInfo.InvariantCulture)), names, "node");
    }

    private static Task<int> WatchDeploymentsAsync(string format, List<string> names, LabelSelector? selector, CommandContext context)
    {
        var wide = format == "wide";
        return WatchAsync(format, context, new Watched<DeploymentView>(
            DeploymentHeader(wide), StateColumn: 6, StateWidth: StateWidth<RolloutPhase>(), Moving: [],
            Read: async _ => new WatchRead<DeploymentView>((await context.Fleet.GetDeploymentsAsync().ConfigureAwait(false))
                .Where(d => (names.Count == 0 || names.Contains(d.Deployment.Name)) && (selector is null || selector.Matches(d.Deployment.Template.Labels)))
                .OrderBy(d => d.Deployment.Name, StringComparer.Ordinal).ToList()),
            Key: v => v.Deployment.Name, Name: v => v.Deployment.Name, Row: v => DeploymentRow(v, wide),
            Json: v => CommandContext.ToElement(v, FleetJsonContext.Default.DeploymentView),
            Changes: token => context.Fleet.ChangesAsync([Buckets.Deployments, Buckets.DeploymentStatus], token),
            Every: TimeSpan.FromSeconds(5)), names, "deployment");
    }

    private static Task<int> WatchContainersAsync(string format, List<string> names, LabelSelector? selector, CommandContext context)
    {
        var wide = format == "wide";
        return WatchAsync(format, context, new Watched<(string Node, ContainerStatus Item)>(
            ContainerHeader(wide), StateColumn: 3, StateWidth: StateWidth<ContainerState>(), Moving: [6],
            Read: async failed =>
            {
                var asked = await context.NodesToAskAsync().ConfigureAwait(false);
                var silent = new HashSet<string>(StringComparer.Ordinal);
                var lists = await context.AskEveryNodeAsync(asked, c => c.ListAsync(), (node, e) =>
                {
                    silent.Add(node);
                    failed(node, e);
                }).ConfigureAwait(false);
                var all = lists.SelectMany(l => l.Result.Select(c => (l.Node, Item: c))).ToList();
                await MarkFleetTroubleAsync(all, asked, context).ConfigureAwait(false);
                var rows = all.Where(r => (names.Count == 0 || names.Contains(r.Item.Name)) && (selector is null || selector.Matches(r.Item.Labels)))
                    .OrderBy(r => r.Item.Name, StringComparer.Ordinal).ThenBy(r => r.Node, StringComparer.Ordinal).ToList();
                // A node that did not answer (and whose heartbeat did not stand in) says nothing about its containers.
                return new WatchRead<(string, ContainerStatus)>(rows, key => silent.Contains(key[..key.IndexOf('/', StringComparison.Ordinal)]));
            },
            Key: r => $"{r.Node}/{r.Item.Name}", Name: r => r.Item.Name, Row: r => ContainerRow(r, wide),
            Json: r => CommandContext.WithNode([r], FleetJsonContext.Default.ContainerStatus)[0],
            Changes: token => EventKinds(context, token),
            Every: TimeSpan.FromSeconds(5),
            // A container removed and made again between two passes looks the same but for its age: its run is the change.
            Instance: r => $"{r.Item.StartedAt?.ToString("O", System.Globalization.CultureInfo.InvariantCulture)} {r.Item.Pid}"), names, "container");
    }

    /// <summary>The fleet's new events, by kind: each is a container starting, exiting, being removed… somewhere.</summary>
    private static async IAsyncEnumerable<string> EventKinds(CommandContext context, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var ev in context.Fleet.EventsAsync(DateTimeOffset.UtcNow, watch: true, cancellationToken).ConfigureAwait(false))
        {
            yield return ev.Kind;
        }
    }

    private static async Task<int> WatchAsync<T>(string format, CommandContext context, Watched<T> kind, List<string> names, string noun)
    {
        if (format.StartsWith("custom-columns=", StringComparison.Ordinal))
        {
            throw new UsageException("get -w prints a line per change: -o custom-columns does not go with -w; use -o jsonpath=…, json or the table");
        }
        using var interrupted = new CancellationTokenSource();
        using var onInterrupt = Terminal.OnInterrupt(interrupted);
        var token = interrupted.Token;
        var table = format is "table" or "wide";
        var shown = new Dictionary<string, (string[] Cells, string? Instance, T Item)>(StringComparer.Ordinal);
        int[]? widths = null;
        var failing = new HashSet<string>(StringComparer.Ordinal); // nodes said not to answer: said once, until they answer again
        string? readFailure = null;

        var wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
        var changes = Task.Run(async () =>
        {
            try
            {
                await foreach (var _ in kind.Changes(token).ConfigureAwait(false))
                {
                    wake.Writer.TryWrite(true);
                }
            }
            catch (Exception e) when (e is OperationCanceledException or NatsException or OrchestratorException)
            {
                // Without changes the timer still makes passes.
            }
        }, CancellationToken.None);

        void Print(string[] cells, T item, bool deleted)
        {
            if (table)
            {
                if (widths is null)
                {
                    widths = Output.Widths(kind.Header, [kind.Header, cells]);
                    widths[kind.StateColumn] = Math.Max(widths[kind.StateColumn], kind.StateWidth);
                    Output.TableRow(kind.Header, widths, kind.Header, isHeader: true);
                }
                Output.TableRow(kind.Header, widths, cells, isHeader: false);
            }
            else if (format == "name")
            {
                Console.Out.WriteLine(deleted ? $"{kind.Name(item)} deleted" : kind.Name(item));
            }
            else if (!deleted)
            {
                // A deleted object's document would read as the object that is there: json, yaml and
                // jsonpath print what is, and a name or the table says what went.
                Emit(format, kind.Json(item), [kind.Name(item)]);
            }
            Console.Out.Flush();
        }

        var first = true;
        try
        {
            while (true)
            {
                WatchRead<T>? read = null;
                var failedNow = new HashSet<string>(StringComparer.Ordinal);
                try
                {
                    read = await kind.Read((node, e) =>
                    {
                        if (failedNow.Add(node) && !failing.Contains(node))
                        {
                            Output.Warning($"node {node}: {e.Message}");
                        }
                    }).ConfigureAwait(false);
                    if (readFailure is not null)
                    {
                        Console.Error.WriteLine("orchctl: the fleet answers again; watching");
                        readFailure = null;
                    }
                }
                catch (Exception e) when (!first && !token.IsCancellationRequested && e is OrchestratorException or NatsException or JsonException or TimeoutException)
                {
                    if (readFailure != e.Message)
                    {
                        Output.Error($"{e.Message}; still watching");
                        readFailure = e.Message;
                    }
                }
                failing = failedNow;
                if (read is not null)
                {
                    if (first)
                    {
                        NotFound(noun, names, read.Items, kind.Name);
                        if (table)
                        {
                            // The first list sets the columns' widths, as a table printed without -w would.
                            var rows = read.Items.Select(kind.Row).ToList();
                            if (rows.Count > 0)
                            {
                                widths = Output.Widths(kind.Header, [kind.Header, .. rows]);
                                widths[kind.StateColumn] = Math.Max(widths[kind.StateColumn], kind.StateWidth);
                                Output.TableRow(kind.Header, widths, kind.Header, isHeader: true);
                            }
                        }
                    }
                    var keys = new HashSet<string>(StringComparer.Ordinal);
                    foreach (var item in read.Items)
                    {
                        var key = kind.Key(item);
                        keys.Add(key);
                        var cells = kind.Row(item);
                        var instance = kind.Instance?.Invoke(item);
                        if (!shown.TryGetValue(key, out var before) || !Same(before.Cells, cells, kind.Moving) || before.Instance != instance)
                        {
                            Print(cells, item, deleted: false);
                        }
                        shown[key] = (cells, instance, item);
                    }
                    foreach (var key in shown.Keys.Where(k => !keys.Contains(k) && read.Unknown?.Invoke(k) != true).ToList())
                    {
                        var (cells, _, item) = shown[key];
                        var gone = (string[])cells.Clone();
                        gone[kind.StateColumn] = "deleted";
                        Print(gone, item, deleted: true);
                        shown.Remove(key);
                    }
                    first = false;
                }
                using var timer = CancellationTokenSource.CreateLinkedTokenSource(token);
                timer.CancelAfter(kind.Every);
                try
                {
                    await wake.Reader.ReadAsync(timer.Token).ConfigureAwait(false);
                    await Task.Delay(s_gather, token).ConfigureAwait(false); // a burst of changes is one pass
                    wake.Reader.TryRead(out _);
                }
                catch (OperationCanceledException) when (!token.IsCancellationRequested)
                {
                    // the timer: time passing changes states too
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
        await changes.ConfigureAwait(false);
        return 0;
    }

    /// <summary>Equal cells, but for the columns that move on their own.</summary>
    private static bool Same(string[] before, string[] now, int[] moving)
    {
        if (before.Length != now.Length)
        {
            return false;
        }
        for (var i = 0; i < now.Length; i++)
        {
            if (before[i] != now[i] && !moving.Contains(i))
            {
                return false;
            }
        }
        return true;
    }
}

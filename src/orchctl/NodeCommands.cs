using System.Globalization;
using System.Text.Json;
using Orchestrator.Client;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Ctl;

/// <summary>
/// One node's containers and images: run, ps, logs, exec, attach, inspect, stats, stop, start, restart,
/// rm, status, images, pull, rmi, image-gc. Commands about one container find its node when -n
/// is not given (the deployment status, then every node's ps); the others need -n NODE.
/// </summary>
internal static class NodeCommands
{
    public static readonly IReadOnlySet<string> Names = new HashSet<string>(StringComparer.Ordinal)
    {
        "run", "ps", "logs", "exec", "attach", "cp", "port-forward", "inspect", "stats", "stop", "start", "restart", "rm", "status",
        "images", "pull", "rmi", "image-gc",
    };

    public static async Task<int> RunAsync(string command, List<string> args, CommandContext context)
    {
        var parsed = ParsedArgs.Parse(command, args);
        var positional = parsed.Positional;
        var rest = parsed.AfterDashDash ?? [];
        var tail = parsed.Value("--tail") is { } tailText
            ? int.TryParse(tailText, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : throw new UsageException($"--tail '{tailText}' is not a number of lines")
            : (int?)null;
        var since = parsed.Value("--since") is { } sinceText
            ? Duration.TryParse(sinceText, out var ago) ? DateTimeOffset.UtcNow - ago : throw new UsageException($"--since '{sinceText}' is not a duration like 10m")
            : (DateTimeOffset?)null;
        var file = parsed.Value("--file");
        var timeout = context.Timeout;
        var previous = command == "logs" && parsed.Has("--previous");
        if (previous && parsed.Has("--follow"))
        {
            throw new UsageException("logs: --previous and -f do not go together (a run that has ended writes no more lines)");
        }
        var run = command == "logs" && parsed.Value("--run") is { } runText
            ? int.TryParse(runText, NumberStyles.None, CultureInfo.InvariantCulture, out var r) && r > 0 ? r : throw new UsageException($"--run '{runText}' is not a run number (1, 2, …: describe container lists them)")
            : (int?)null;
        if (run is not null && (previous || parsed.Has("--follow") || parsed.Value("--selector") is not null))
        {
            throw new UsageException("logs: --run takes one container's run, without -p, -f or -l");
        }
        if (command == "logs" && parsed.Value("--selector") is { } selectorText)
        {
            if (positional.Count > 0)
            {
                throw new UsageException("logs takes a container name or -l SELECTOR, not both");
            }
            return await LogsOfSelectedAsync(context, Selectors.Parse(selectorText)!, parsed.Has("--follow"), tail, since, previous).ConfigureAwait(false);
        }
        if (command == "cp")
        {
            return await CopyCommand.RunAsync(parsed, context).ConfigureAwait(false);
        }
        if (command == "port-forward")
        {
            return await PortForwardCommand.RunAsync(parsed, context).ConfigureAwait(false);
        }
        if (command == "attach")
        {
            return await AttachCommand.RunAsync(parsed, context).ConfigureAwait(false);
        }
        string Name() => positional.Count > 0 ? positional[0] : throw new UsageException($"{command} needs a container name: orchctl {Commands.Find(command)!.Usage}");
        // Commands about one container find its node when -n is not given; the others need -n.
        var node = command is "logs" or "exec" or "inspect" or "stop" or "start" or "restart" or "rm"
            ? await context.FindContainerNodeAsync(Name()).ConfigureAwait(false)
            : context.RequireNode(command);
        var client = context.Node(node);
        switch (command)
        {
            case "run":
                if (file is null)
                {
                    throw new UsageException("run needs -f FILE (a workload manifest; see docs/manifest.md)");
                }
                var workloads = ManifestLoader.LoadFile(file);
                foreach (var workload in workloads)
                {
                    var status = await client.RunAsync(workload).ConfigureAwait(false);
                    Console.Out.WriteLine($"{status.Name}: {WireNames.Of(status.State)}{(status.Message is { } m ? $" ({m})" : "")}");
                }
                return 0;
            case "ps":
                var format = parsed.Format();
                var selector = Selectors.Parse(parsed.Value("--selector"));
                var list = (await client.ListAsync().ConfigureAwait(false)).Where(c => selector is null || selector.Matches(c.Labels)).ToList();
                if (QueryCommands.Emit(format, CommandContext.WithNode(list.Select(c => (node, c)), FleetJsonContext.Default.ContainerStatus), list.Select(c => c.Name)))
                {
                    return 0;
                }
                var wide = format == "wide";
                Output.Table(wide ? ["NAME", "IMAGE", "STATE", "READY", "RESTARTS", "PID", "AGE", "SOURCE", "LABELS", "MESSAGE"] : ["NAME", "IMAGE", "STATE", "READY", "RESTARTS", "PID", "AGE", "MESSAGE"],
                    list.Select(c => (string[])[
                        c.Name, c.Image, WireNames.Of(c.State), c.Ready ? "yes" : "no", c.Restarts.ToString(CultureInfo.InvariantCulture),
                        c.Pid > 0 ? c.Pid.ToString(CultureInfo.InvariantCulture) : "-", Output.Age(c.StartedAt),
                        .. wide ? [c.Source ?? "-", Output.Labels(c.Labels) is { Length: > 0 } l ? l : "-"] : Array.Empty<string>(),
                        c.Message ?? "",
                    ]));
                return 0;
            case "logs":
                if (parsed.Has("--follow"))
                {
                    using var interrupted = new CancellationTokenSource();
                    using var onInterrupt = Terminal.OnInterrupt(interrupted);
                    try
                    {
                        await foreach (var line in client.FollowLogsAsync(Name(), tail, since, interrupted.Token).ConfigureAwait(false))
                        {
                            (line.Stream == "stderr" ? Console.Error : Console.Out).WriteLine(line.Text);
                        }
                    }
                    catch (OperationCanceledException) when (interrupted.IsCancellationRequested)
                    {
                    }
                    return 0;
                }
                foreach (var line in await client.LogsAsync(Name(), tail, since, previous: previous, run: run).ConfigureAwait(false))
                {
                    (line.Stream == "stderr" ? Console.Error : Console.Out).WriteLine(line.Text);
                }
                return 0;
            case "exec":
                if (rest.Count == 0)
                {
                    throw new UsageException("exec needs a command after --, e.g. orchctl exec web-0 -- cat /etc/hostname");
                }
                if (parsed.Has("--stdin") || parsed.Has("--tty"))
                {
                    return await ExecCommand.RunAsync(client, Name(), rest, parsed.Has("--stdin"), parsed.Has("--tty")).ConfigureAwait(false);
                }
                return await ExecAsync(client, Name(), rest, timeout).ConfigureAwait(false);
            case "inspect":
                var inspected = await client.InspectAsync(Name()).ConfigureAwait(false);
                Console.Out.WriteLine(Output.PrettyJson(JsonSerializer.SerializeToUtf8Bytes(inspected, FleetJsonContext.Default.ContainerStatus)));
                return 0;
            case "stats":
                var stats = await client.StatsAsync(positional.FirstOrDefault()).ConfigureAwait(false);
                Output.Table(["NAME", "CPU %", "MEMORY", "LIMIT", "PIDS", "RESTARTS", "READY"], stats.Select(c => new[]
                {
                    c.Name, c.CpuPercent.ToString("F1", CultureInfo.InvariantCulture), Output.Bytes(c.MemoryBytes),
                    c.MemoryLimitBytes is { } l ? Output.Bytes(l) : "-", c.Pids.ToString(CultureInfo.InvariantCulture),
                    c.Restarts.ToString(CultureInfo.InvariantCulture), c.Ready ? "yes" : "no",
                }));
                return 0;
            case "status":
                var s = await client.StatusAsync().ConfigureAwait(false);
                Console.Out.WriteLine($"containers: {s.Containers} ({s.Running} running, {s.Ready} ready), driver {s.Driver}");
                Console.Out.WriteLine($"cpu:    capacity {s.CpuMilliCapacity}m, allocatable {s.CpuMilliAllocatable}m, requested {s.CpuMilliRequested}m");
                Console.Out.WriteLine($"memory: capacity {Output.Bytes(s.MemoryCapacityBytes)}, allocatable {Output.Bytes(s.MemoryAllocatableBytes)}, requested {Output.Bytes(s.MemoryRequestedBytes)}, used {Output.Bytes(s.MemoryUsedBytes)}");
                return 0;
            case "stop" or "start" or "restart":
                var changed = command switch
                {
                    "stop" => await client.StopAsync(Name()).ConfigureAwait(false),
                    "start" => await client.StartAsync(Name()).ConfigureAwait(false),
                    _ => await client.RestartAsync(Name()).ConfigureAwait(false),
                };
                Console.Out.WriteLine($"{changed.Name}: {WireNames.Of(changed.State)}");
                return 0;
            case "rm":
                await client.RemoveAsync(Name()).ConfigureAwait(false);
                Console.Out.WriteLine($"{Name()}: removed");
                return 0;
            case "images":
                var images = await client.ImagesAsync().ConfigureAwait(false);
                Output.Table(["IMAGE", "PLATFORM", "SIZE", "MANIFEST", "STORE", "USED BY"], images.Select(i => new[]
                {
                    i.Name, i.Platform, Output.Bytes(i.Size), i.ManifestDigest.Length > 19 ? i.ManifestDigest[..19] : i.ManifestDigest, i.Store ?? "orchd", string.Join(",", i.UsedBy),
                }));
                return 0;
            case "pull":
                return await PullAsync(client, positional.FirstOrDefault() ?? throw new UsageException("pull needs an image reference: orchctl pull -n NODE registry/name:tag")).ConfigureAwait(false);
            case "rmi":
                var image = positional.FirstOrDefault() ?? throw new UsageException("rmi needs an image: orchctl rmi -n NODE name:tag");
                await client.RemoveImageAsync(image).ConfigureAwait(false);
                Console.Out.WriteLine($"{image}: removed (image-gc frees its space)");
                return 0;
            case "image-gc":
                var gc = await client.GcImagesAsync().ConfigureAwait(false);
                Console.Out.WriteLine($"freed {Output.Bytes(gc.FreedBytes)} of blobs and {gc.PrunedLayers} unpacked layers");
                return 0;
            default:
                throw new UsageException($"unknown command '{command}'");
        }
    }

    /// <summary>
    /// exec: the command's output as it writes it, raw bytes to orchctl's stdout and stderr (a chunk
    /// may end inside a character, so no text decoding); exits with the command's code. Ctrl-C
    /// makes the node kill the command (exit 130).
    /// </summary>
    private static async Task<int> ExecAsync(NodeClient client, string name, IReadOnlyList<string> command, TimeSpan timeout)
    {
        using var interrupted = new CancellationTokenSource();
        using var onInterrupt = Terminal.OnInterrupt(interrupted);
        using var stdout = new StandardStream(1);
        using var stderr = new StandardStream(2);
        try
        {
            var end = await client.ExecStreamAsync(name, command, chunk =>
            {
                (chunk.Stream == "stderr" ? stderr : stdout).Write(chunk.Data);
                return ValueTask.CompletedTask;
            }, timeout.TotalSeconds < 30 ? 30 : timeout.TotalSeconds, interrupted.Token).ConfigureAwait(false);
            if (end.TimedOut)
            {
                Output.Error("the command timed out and was killed (exit 137); give it longer with --timeout");
            }
            return end.ExitCode;
        }
        catch (OperationCanceledException) when (interrupted.IsCancellationRequested)
        {
            return 130;
        }
    }

    /// <summary>
    /// pull: a progress bar on a terminal, else a plain line whenever a blob is stored; then the
    /// image. Ctrl-C cancels the pull on the node.
    /// </summary>
    private static async Task<int> PullAsync(NodeClient client, string reference)
    {
        using var interrupted = new CancellationTokenSource();
        using var onInterrupt = Terminal.OnInterrupt(interrupted);
        var tty = Terminal.IsTty;
        var color = Terminal.Color;
        var drawn = false;
        var blobs = -1;
        try
        {
            var pulled = await client.PullAsync(reference, p =>
            {
                // Off a terminal, a line per blob stored (byte updates in between would be a flood in a log).
                if (!tty && p.LayersDone == blobs)
                {
                    return;
                }
                blobs = p.LayersDone;
                var line = PullLine(reference, p);
                if (tty)
                {
                    const int width = 24;
                    var filled = p.BytesTotal > 0 ? (int)Math.Round(width * (double)Math.Min(p.BytesDone, p.BytesTotal) / p.BytesTotal) : 0;
                    var bar = new string('#', filled) + new string('-', width - filled);
                    Console.Out.Write($"\r\u001b[K[{Terminal.Paint(bar[..filled], Terminal.Green, color)}{bar[filled..]}] {line}");
                    drawn = true;
                }
                else
                {
                    Console.Out.WriteLine(line);
                }
            }, interrupted.Token).ConfigureAwait(false);
            EndBar(ref drawn);
            Console.Out.WriteLine($"pulled {pulled.Name} {pulled.ManifestDigest} ({pulled.Platform}, {Output.Bytes(pulled.Size)})");
            return 0;
        }
        catch (OperationCanceledException) when (interrupted.IsCancellationRequested)
        {
            EndBar(ref drawn);
            Output.Error($"the pull of {reference} was cancelled on the node; run it again to finish it (blobs already stored are kept)");
            return 130;
        }
        finally
        {
            EndBar(ref drawn); // an error ends the bar's line before it is printed
        }
    }

    private static void EndBar(ref bool drawn)
    {
        if (drawn)
        {
            Console.Out.WriteLine();
            drawn = false;
        }
    }

    internal static string PullLine(string reference, PullStreamReply p)
        => $"{reference}: {p.LayersDone}/{p.LayersTotal} blobs, {Output.Bytes(p.BytesDone)}/{Output.Bytes(p.BytesTotal)}";

    /// <summary>At most this many containers' logs at once with -l (kubectl's --max-log-requests is 5).</summary>
    private const int MaxSelectedLogs = 20;

    /// <summary>
    /// logs -l: every container on every node whose labels match, each line prefixed with
    /// [CONTAINER]; one container after the other (name order), or with -f all followed at once and
    /// merged as lines arrive. A node that does not answer is named on stderr (AskEveryNodeAsync).
    /// </summary>
    private static async Task<int> LogsOfSelectedAsync(CommandContext context, LabelSelector selector, bool follow, int? tail, DateTimeOffset? since, bool previous)
    {
        var lists = await context.AskEveryNodeAsync(await context.NodesToAskAsync().ConfigureAwait(false), c => c.ListAsync()).ConfigureAwait(false);
        var selected = lists.SelectMany(l => l.Result.Where(c => selector.Matches(c.Labels)).Select(c => (l.Node, c.Name)))
            .OrderBy(x => x.Name, StringComparer.Ordinal).ThenBy(x => x.Node, StringComparer.Ordinal).ToList();
        if (selected.Count == 0)
        {
            Console.Error.WriteLine($"no containers match the selector on the {lists.Count} node(s) that answered");
            return 0;
        }
        if (selected.Count > MaxSelectedLogs)
        {
            throw new UsageException($"{selected.Count} containers match; logs -l follows at most {MaxSelectedLogs}: narrow the selector (or -n NODE)");
        }
        var width = selected.Max(x => x.Name.Length);
        var gate = new Lock();
        void Print(string name, Orchestrator.Api.LogLine line)
        {
            lock (gate)
            {
                (line.Stream == "stderr" ? Console.Error : Console.Out).WriteLine($"[{name}]{new string(' ', width - name.Length)} {line.Text}");
            }
        }
        if (!follow)
        {
            var missing = 0;
            foreach (var (node, name) in selected)
            {
                IReadOnlyList<Orchestrator.Api.LogLine> lines;
                try
                {
                    lines = await context.Node(node).LogsAsync(name, tail, since, previous: previous).ConfigureAwait(false);
                }
                catch (OrchestratorException e) when (previous && e.Kind == ErrorKind.NotFound)
                {
                    // --previous over a selector: a replica that never restarted has none; the others still print.
                    Output.Error($"{name}: {e.Message}");
                    missing++;
                    continue;
                }
                foreach (var line in lines)
                {
                    Print(name, line);
                }
            }
            return missing == selected.Count ? 1 : 0;
        }
        using var interrupted = new CancellationTokenSource();
        using var onInterrupt = Terminal.OnInterrupt(interrupted);
        var failures = 0;
        await Task.WhenAll(selected.Select(async x =>
        {
            try
            {
                await foreach (var line in context.Node(x.Node).FollowLogsAsync(x.Name, tail, since, interrupted.Token).ConfigureAwait(false))
                {
                    Print(x.Name, line);
                }
            }
            catch (OperationCanceledException) when (interrupted.IsCancellationRequested)
            {
            }
            catch (OrchestratorException e)
            {
                // One container going away (a replica removed) ends its stream, not the others'.
                Interlocked.Increment(ref failures);
                Output.Error($"{x.Name}: {e.Message}");
            }
        })).ConfigureAwait(false);
        return failures == 0 ? 0 : 1;
    }
}

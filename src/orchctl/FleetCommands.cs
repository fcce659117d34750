using System.Globalization;
using System.Text.Json;
using Orchestrator.Client;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Ctl;

/// <summary>The fleet's deployments and nodes: scale, rollout, cordon, uncordon, drain, events.</summary>
internal static class FleetCommands
{
    /// <summary>
    /// What a revision changed against the one before it, for `rollout history`'s CHANGE column:
    /// created, deleted, the image or the template (what `rollout undo` goes back over), replicas,
    /// paused or resumed, signed, or other settings.
    /// </summary>
    internal static string Change(Deployment? before, Deployment? after)
    {
        if (after is null)
        {
            return "deleted";
        }
        if (before is null)
        {
            return "created";
        }
        var changes = new List<string>();
        if (before.Template.Image != after.Template.Image)
        {
            changes.Add($"image {before.Template.Image} -> {after.Template.Image}");
        }
        else if (before.Template.TemplateHash() != after.Template.TemplateHash())
        {
            changes.Add("template");
        }
        if (before.Replicas != after.Replicas)
        {
            changes.Add($"replicas {before.Replicas} -> {after.Replicas}");
        }
        var (wasPaused, isPaused) = (before.Rollout?.Paused ?? false, after.Rollout?.Paused ?? false);
        if (wasPaused != isPaused)
        {
            changes.Add(isPaused ? "paused" : "resumed");
        }
        if (changes.Count == 0)
        {
            changes.Add(before.Signature?.Sig != after.Signature?.Sig ? "signed" : "settings");
        }
        return string.Join(", ", changes);
    }

    /// <summary>--sign-key (or ORCH_SIGN_KEY, or the context's sign-key): the seed to sign deployments with, or null.</summary>
    public static string? SigningSeed(ParsedArgs parsed, CommandContext context)
    {
        if ((parsed.Value("--sign-key") ?? context.Settings.SignKey) is not { Length: > 0 } file)
        {
            return null;
        }
        try
        {
            return ManifestSigning.ReadSeed(file);
        }
        catch (ManifestSignatureException e)
        {
            throw new NodeRequestException(e.Message, e);
        }
    }

    public static async Task<int> RunAsync(string command, List<string> args, CommandContext context)
    {
        var parsed = ParsedArgs.Parse(command, args);
        var positional = parsed.Positional;
        var client = context.Fleet;
        switch (command)
        {
            case "scale":
                if (positional.Count != 2 || !int.TryParse(positional[1], NumberStyles.None, CultureInfo.InvariantCulture, out var replicas) || replicas > 10_000)
                {
                    throw new UsageException("scale DEPLOYMENT N, with N from 0 to 10000");
                }
                var scaled = await client.ScaleAsync(positional[0], replicas).ConfigureAwait(false);
                Console.Out.WriteLine($"deployment {positional[0]}: scaled to {replicas} (revision {scaled.ShownRevision()})");
                if (scaled.AntiAffinity)
                {
                    // Written all the same (a node may join), but not silently: one replica per node.
                    var nodes = await client.GetNodesAsync(cancellationToken: CancellationToken.None).ConfigureAwait(false);
                    var accepting = nodes.Count(n => n.Accepts(scaled));
                    if (replicas > accepting)
                    {
                        Output.Warning($"deployment {scaled.Name} runs one replica per node (antiAffinity) and {accepting} node(s) can take one"
                            + $"{(scaled.Selector is { Count: > 0 } ? " (ready, uncordoned, matching its selector)" : " (ready and uncordoned)")}: "
                            + $"{replicas - accepting} replica(s) stay unscheduled until more nodes join; `orchctl describe deployment {scaled.Name}` shows why");
                    }
                }
                return 0;
            case "events":
                var sinceText = parsed.Value("--since") ?? "1h";
                if (!Duration.TryParse(sinceText, out var ago))
                {
                    throw new UsageException($"--since '{sinceText}' is not a duration like 10m");
                }
                return await EventsAsync(context, DateTimeOffset.UtcNow - ago, parsed.Has("--watch"), parsed.Value("--for"), "table").ConfigureAwait(false);
            case "rollout" when positional is [var verb, var deploymentName]:
                switch (verb)
                {
                    case "status":
                        return parsed.Has("--watch")
                            ? await WatchRolloutAsync(context, deploymentName, parsed.Value("--wait-timeout")).ConfigureAwait(false)
                            : await RolloutStatusAsync(context, deploymentName).ConfigureAwait(false);
                    case "history":
                        var kept = await client.HistoryAsync(deploymentName).ConfigureAwait(false);
                        var rows = kept.Select((h, i) => new[]
                        {
                            (h.Deployment?.ShownRevision() ?? h.Revision).ToString(CultureInfo.InvariantCulture), Output.Time(h.At),
                            h.Deployment?.Template.Image ?? "(deleted)", h.Deployment?.Replicas.ToString(CultureInfo.InvariantCulture) ?? "-",
                            h.Deployment is null ? "-" : h.Deployment.Signature is null ? "no" : $"yes ({Orchestrator.Client.Identity.NatsJwt.Abbreviate(h.Deployment.Signature.Key)})",
                            h.Deployment?.ChangedBy ?? "-",
                            Change(i > 0 ? kept[i - 1].Deployment : null, h.Deployment),
                        }).ToList();
                        // An automatic rollback is the scheduler's decision about the last revision
                        // (kept in its status, not a revision of its own): shown as the row it undoes.
                        if ((await context.Fleet.GetDeploymentsAsync().ConfigureAwait(false)).FirstOrDefault(d => d.Deployment.Name == deploymentName) is { RolledBackTo: { } back } view)
                        {
                            rows.Add([
                                view.Deployment.ShownRevision().ToString(CultureInfo.InvariantCulture) + "*",
                                view.Status?.LastRollbackAt is { } at ? Output.Time(at) : "-",
                                back.Template.Image, view.Deployment.Replicas.ToString(CultureInfo.InvariantCulture), back.Signature is null ? "no" : "yes",
                                $"scheduler {view.Status?.Scheduler}",
                                $"rolled back by the scheduler to revision {back.Generation ?? back.Revision}'s template: {view.Status?.LastRollback}",
                            ]);
                        }
                        Output.Table(["REVISION", "AT", "IMAGE", "REPLICAS", "SIGNED", "BY", "CHANGE"], rows);
                        return 0;
                    case "pause" or "resume":
                        await client.SetPausedAsync(deploymentName, verb == "pause").ConfigureAwait(false);
                        Console.Out.WriteLine($"deployment {deploymentName}: rollout {(verb == "pause" ? "paused" : "resumed")}");
                        return 0;
                    case "undo":
                        var to = parsed.Value("--to-revision");
                        ulong? target = to is null ? null
                            : ulong.TryParse(to, NumberStyles.None, CultureInfo.InvariantCulture, out var r) ? r
                            : throw new UsageException($"--to-revision '{to}' is not a revision number; `orchctl rollout history {deploymentName}` lists them");
                        var revision = await client.UndoAsync(deploymentName, target, SigningSeed(parsed, context)).ConfigureAwait(false);
                        Console.Out.WriteLine($"deployment {deploymentName}: rolled back (revision {revision})");
                        return 0;
                    default:
                        throw new UsageException($"rollout {verb}: use status, history, pause, resume or undo");
                }
            case "rollout":
                throw new UsageException("rollout status|history|pause|resume|undo DEPLOYMENT (one deployment)");
            case "cordon" or "uncordon" or "drain":
                var node = positional is [var one] ? one : throw new UsageException($"{command} needs one node name: orchctl {command} NODE");
                await client.SetNodeAsync(node, cordoned: command == "cordon", draining: command == "drain").ConfigureAwait(false);
                Console.Out.WriteLine($"node {node}: {command switch { "cordon" => "cordoned", "uncordon" => "schedulable", _ => "draining" }}");
                return 0;
            default:
                throw new UsageException($"unknown command '{command}'");
        }
    }

    /// <summary>Events since a time (about <paramref name="about"/>, when given), as a table, JSON or YAML; with watch, until Ctrl-C.</summary>
    public static async Task<int> EventsAsync(CommandContext context, DateTimeOffset since, bool watch, string? about, string format)
    {
        using var interrupted = new CancellationTokenSource();
        using var onInterrupt = Terminal.OnInterrupt(interrupted);
        var collected = new List<NodeEvent>();
        string[] header = ["TIME", "NODE", "KIND", "SUBJECT", "MESSAGE"];
        string[] Row(NodeEvent e) => [Output.Time(e.At), e.Node, e.Kind, e.Subject, e.Message];
        var printedHeader = false;
        try
        {
            await foreach (var ev in context.Fleet.EventsAsync(since, watch, interrupted.Token).ConfigureAwait(false))
            {
                if (about is not null && ev.Subject != about && ev.Node != about
                    && !(ev.Subject.StartsWith(about + "-", StringComparison.Ordinal) && ev.Subject[(about.Length + 1)..].All(char.IsAsciiDigit)))
                {
                    continue;
                }
                if (!watch)
                {
                    collected.Add(ev);
                    continue;
                }
                // Watching: one line (or one JSON document) per event as it comes.
                switch (format)
                {
                    case "json":
                        Console.Out.WriteLine(JsonSerializer.Serialize(ev, FleetJsonContext.Default.NodeEvent));
                        break;
                    case "yaml":
                        Console.Out.Write("---\n" + Yaml.FromJson(CommandContext.ToElement(ev, FleetJsonContext.Default.NodeEvent)));
                        break;
                    case var template when JsonTemplates.Handles(template):
                        JsonTemplates.Write(template, CommandContext.ToElement(new List<NodeEvent> { ev }, OrchctlJsonContext.Default.ListNodeEvent));
                        break;
                    default:
                        if (!printedHeader)
                        {
                            Console.Out.WriteLine($"{"TIME",-20}  {"NODE",-16}  {"KIND",-24}  {"SUBJECT",-20}  MESSAGE");
                            printedHeader = true;
                        }
                        Console.Out.WriteLine($"{Output.Time(ev.At),-20}  {ev.Node,-16}  {ev.Kind,-24}  {ev.Subject,-20}  {ev.Message}");
                        break;
                }
                Console.Out.Flush();
            }
        }
        catch (OperationCanceledException) when (interrupted.IsCancellationRequested)
        {
        }
        if (watch)
        {
            return 0;
        }
        switch (format)
        {
            case "json" or "yaml":
                Output.Document(format, CommandContext.ToElement(collected, OrchctlJsonContext.Default.ListNodeEvent));
                break;
            case var template when JsonTemplates.Handles(template):
                JsonTemplates.Write(template, CommandContext.ToElement(collected, OrchctlJsonContext.Default.ListNodeEvent));
                break;
            case "name":
                foreach (var ev in collected)
                {
                    Console.Out.WriteLine(ev.Subject);
                }
                break;
            default:
                if (collected.Count == 0)
                {
                    Console.Error.WriteLine("no events in that time; --since 1d looks further back");
                    break;
                }
                Output.Table(header, collected.Select(Row));
                break;
        }
        return 0;
    }

    private static async Task<DeploymentView> ViewAsync(CommandContext context, string name)
        => (await context.Fleet.GetDeploymentsAsync().ConfigureAwait(false)).FirstOrDefault(d => d.Deployment.Name == name)
            ?? throw new NodeRequestException(ErrorKind.NotFound, $"no deployment '{name}' in the fleet; `orchctl get deployments` lists them");

    private static async Task<int> RolloutStatusAsync(CommandContext context, string name)
    {
        var view = await ViewAsync(context, name).ConfigureAwait(false);
        Console.Out.WriteLine(Summary(view));
        if (view.CurrentStatus?.Waves is { Count: > 0 } waves)
        {
            // Per wave: where it stands, and its replicas (devices, for a global deployment).
            Output.Table(["WAVE", "STATE", "REPLICAS", "UPDATED", "READY", "NOT-READY", "PENDING"], waves.Select(w => new[]
            {
                w.Name, w.State, Output.Int(w.Replicas), Output.Int(w.Updated), Output.Int(w.Ready), Output.Int(w.NotReady), Output.Int(w.Pending),
            }));
        }
        if (view.Status?.RolledBack is { } why)
        {
            Console.Out.WriteLine($"rolled back: {why}");
        }
        return view.Status is { Phase: RolloutPhase.Failed or RolloutPhase.RolledBack } ? 1 : 0;
    }

    private static string Summary(DeploymentView view)
    {
        var s = view.Status;
        var name = view.Deployment.Name;
        if (s is null)
        {
            return $"deployment {name}: revision {view.Deployment.ShownRevision()}, waiting for the scheduler";
        }
        if (view.CurrentStatus is null)
        {
            return $"deployment {name}: revision {view.Deployment.ShownRevision()}, waiting for the scheduler (its status is about an earlier revision)";
        }
        var details = new List<string>();
        if (s.Wave is { } wave)
        {
            details.Add($"wave {wave}");
        }
        if (s.Surge > 0)
        {
            details.Add($"surge {s.Surge}");
        }
        if (s.CanaryPassed)
        {
            details.Add("canary passed");
        }
        if (s.Unschedulable.Count > 0)
        {
            details.Add($"{s.Unschedulable.Count} unschedulable");
        }
        if (s.NotReady > 0)
        {
            details.Add($"{s.NotReady} not ready{(view.Deployment.Rollout?.MaxFailed is > 0 and var tolerated ? $" (maxFailed {tolerated})" : "")}");
        }
        if (s.Pending > 0)
        {
            details.Add($"{s.Pending} on offline nodes");
        }
        return $"deployment {name}: revision {view.Deployment.ShownRevision()}, {WireNames.Of(s.Phase)}: {s.UpdatedReady}/{s.Desired} {(view.Deployment.IsGlobal() ? "nodes" : "replicas")} updated and ready ({s.Updated} updated)"
            + (details.Count > 0 ? ", " + string.Join(", ", details) : "");
    }

    /// <summary>
    /// rollout status -w: a bar redrawn in place on a terminal, a line per change otherwise, until
    /// the revision being rolled out completes (0), is rolled back or fails (1), or the wait times out (3).
    /// </summary>
    private static async Task<int> WatchRolloutAsync(CommandContext context, string name, string? waitTimeout)
    {
        TimeSpan? limit = null;
        if (waitTimeout is not null)
        {
            limit = Duration.TryParse(waitTimeout, out var d) ? d : throw new UsageException($"--wait-timeout '{waitTimeout}' is not a duration like 5m");
        }
        using var interrupted = new CancellationTokenSource();
        using var onInterrupt = Terminal.OnInterrupt(interrupted);
        var started = DateTime.UtcNow;
        var tty = Terminal.IsTty;
        var color = Terminal.Color;
        var view = await ViewAsync(context, name).ConfigureAwait(false);
        var target = view.Deployment.Revision ?? 0;
        var targetShown = view.Deployment.ShownRevision();
        string? last = null;
        while (true)
        {
            var s = view.Status;
            // Rolled back: the scheduler's decision about this revision (an older scheduler wrote a
            // revision of its own for it).
            if ((view.RolledBackTo is not null && view.Deployment.Revision == target)
                || (view.CurrentStatus is { } rolled && rolled.Revision > target && rolled.RolledBack is not null))
            {
                Finish(tty);
                Console.Out.WriteLine(Summary(view));
                Output.Error($"deployment {name}: revision {targetShown} was rolled back: {view.Status?.RolledBack ?? view.Status?.LastRollback}");
                return 1;
            }
            var line = Summary(view);
            if (tty)
            {
                var desired = Math.Max(1, s?.Desired ?? view.Deployment.Replicas);
                var done = Math.Min(desired, s?.UpdatedReady ?? 0);
                const int width = 24;
                var filled = (int)Math.Round(width * (double)done / desired);
                var bar = new string('#', filled) + new string('-', width - filled);
                Console.Out.Write($"\r\u001b[K[{Terminal.Paint(bar[..filled], Terminal.Green, color)}{bar[filled..]}] {line}");
                Console.Out.Flush();
            }
            else if (line != last)
            {
                Console.Out.WriteLine(line);
                Console.Out.Flush();
            }
            last = line;
            if (view.CurrentStatus is { Phase: RolloutPhase.Complete })
            {
                Finish(tty);
                Console.Out.WriteLine($"deployment {name}: rollout of revision {view.Deployment.ShownRevision()} complete");
                return 0;
            }
            if (view.CurrentStatus is { Phase: RolloutPhase.Failed or RolloutPhase.RolledBack } ended)
            {
                Finish(tty);
                Output.Error($"deployment {name}: {WireNames.Of(ended.Phase)}: {ended.RolledBack ?? "see orchctl describe deployment " + name}");
                return 1;
            }
            if (limit is { } l && DateTime.UtcNow - started > l)
            {
                Finish(tty);
                Output.Error($"deployment {name}: the rollout did not finish within {waitTimeout}; `orchctl describe deployment {name}` shows what it waits for");
                return 3;
            }
            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(500), interrupted.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                Finish(tty);
                return 0;
            }
            view = await ViewAsync(context, name).ConfigureAwait(false);
        }
    }

    private static void Finish(bool tty)
    {
        if (tty)
        {
            Console.Out.WriteLine();
        }
    }
}

[System.Text.Json.Serialization.JsonSourceGenerationOptions(PropertyNamingPolicy = System.Text.Json.Serialization.JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
[System.Text.Json.Serialization.JsonSerializable(typeof(List<NodeEvent>))]
internal sealed partial class OrchctlJsonContext : System.Text.Json.Serialization.JsonSerializerContext;

using Orchestrator.Api;
using Orchestrator.Client;

namespace Orchestrator.Ctl;

/// <summary>
/// <c>wait KIND/NAME… --for=condition=C | --for=delete [--wait-timeout 30s]</c>, kubectl wait's
/// habit for scripts: returns when every object meets the condition (one line each as it does),
/// exit 3 when the time runs out (naming what was last seen), 1 for an object that does not exist.
/// <list type="bullet">
/// <item>deployment: <c>complete</c> (the current revision rolled out: rollout status says complete).</item>
/// <item>container: <c>ready</c>, or a state (<c>running</c>, <c>exited</c>, <c>stopped</c>, …); a
/// container not on any node yet is waited for (a replica the scheduler has still to place).</item>
/// <item>node: <c>ready</c>, <c>unreachable</c>, <c>lost</c>, <c>cordoned</c>.</item>
/// <item><c>--for=delete</c>: the object is gone.</item>
/// </list>
/// </summary>
internal static class WaitCommand
{
    private static readonly TimeSpan s_poll = TimeSpan.FromMilliseconds(500);

    public static async Task<int> RunAsync(List<string> args, CommandContext context)
    {
        var parsed = ParsedArgs.Parse("wait", args);
        var targets = ApplyCommands.Targets(parsed.Positional, "wait");
        if (targets.Count == 0)
        {
            throw new UsageException("wait needs what to wait for: orchctl wait deployment/web --for=condition=complete");
        }
        var forText = parsed.Value("--for") ?? throw new UsageException("wait needs --for=condition=NAME or --for=delete");
        var delete = forText == "delete";
        var condition = delete ? "delete"
            : forText.StartsWith("condition=", StringComparison.Ordinal) && forText.Length > "condition=".Length ? forText["condition=".Length..]
            : throw new UsageException($"--for={forText}: write --for=condition=NAME or --for=delete");
        foreach (var (kind, _) in targets)
        {
            if (!delete && Conditions(kind) is var known && !known.Contains(condition, StringComparer.Ordinal))
            {
                throw new UsageException($"--for=condition={condition}: a {kind} has {string.Join(", ", known)}");
            }
        }
        var waitText = parsed.Value("--wait-timeout") ?? "30s";
        var limit = Duration.TryParse(waitText, out var d) ? d : throw new UsageException($"--wait-timeout '{waitText}' is not a duration like 5m");

        using var interrupted = new CancellationTokenSource();
        using var onInterrupt = Terminal.OnInterrupt(interrupted);
        var deadline = DateTime.UtcNow + limit;
        var pending = targets.Distinct().ToList();
        var lastSeen = new Dictionary<(string, string), string>();
        while (true)
        {
            foreach (var target in pending.ToList())
            {
                var (met, seen) = await CheckAsync(context, target.Kind, target.Name, condition).ConfigureAwait(false);
                lastSeen[target] = seen;
                if (met)
                {
                    Console.Out.WriteLine($"{target.Kind}/{target.Name} {(delete ? "deleted" : "condition met")}");
                    pending.Remove(target);
                }
            }
            if (pending.Count == 0)
            {
                return 0;
            }
            if (DateTime.UtcNow >= deadline)
            {
                foreach (var target in pending)
                {
                    Output.Error($"timed out after {waitText} waiting for {target.Kind}/{target.Name} to be {(delete ? "deleted" : condition)} (last seen: {lastSeen[target]})");
                }
                return ExitCodes.Unreachable;
            }
            try
            {
                await Task.Delay(s_poll, interrupted.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return 130; // Ctrl-C, as a shell reports it
            }
        }
    }

    private static string[] Conditions(string kind) => kind switch
    {
        "deployment" => ["complete"],
        "node" => ["ready", "unreachable", "lost", "cordoned"],
        _ => ["ready", .. Enum.GetValues<ContainerState>().Where(s => s != ContainerState.Unknown).Select(s => WireNames.Of(s))],
    };

    /// <summary>Whether the object meets the condition now, and what was seen (for the timeout's message).</summary>
    private static async Task<(bool Met, string Seen)> CheckAsync(CommandContext context, string kind, string name, string condition)
    {
        switch (kind)
        {
            case "deployment":
                var view = (await context.Fleet.GetDeploymentsAsync().ConfigureAwait(false)).FirstOrDefault(v => v.Deployment.Name == name);
                if (view is null)
                {
                    return condition == "delete" ? (true, "gone") : throw new NodeRequestException(ErrorKind.NotFound, $"no deployment '{name}' in the fleet; `orchctl get deployments` lists them");
                }
                var s = view.CurrentStatus;
                var seen = s is null ? $"revision {view.Deployment.ShownRevision()} not yet seen by the scheduler"
                    : $"{WireNames.Of(s.Phase)}, {s.UpdatedReady}/{s.Desired} updated and ready";
                if (condition == "complete" && s is { Phase: RolloutPhase.Failed or RolloutPhase.RolledBack })
                {
                    // It will not complete by waiting: said now, as rollout status -w says it.
                    throw new NodeRequestException(ErrorKind.Conflict, $"deployment '{name}' will not complete: {WireNames.Of(s.Phase)}{(s.RolledBack is { } why ? ": " + why : "")}");
                }
                return (condition == "complete" && s is { Phase: RolloutPhase.Complete }, seen);
            case "node":
                var node = (await context.NodesAsync().ConfigureAwait(false)).FirstOrDefault(n => n.Info.Node == name);
                if (node is null)
                {
                    return condition == "delete" ? (true, "gone") : throw new NodeRequestException(ErrorKind.NotFound, $"no node '{name}' has joined the fleet; `orchctl get nodes` lists the nodes");
                }
                var state = WireNames.Of(node.State) + (node.Cordoned ? ",cordoned" : "");
                return (condition == "cordoned" ? node.Cordoned : condition == WireNames.Of(node.State), state);
            default:
                ContainerStatus container;
                try
                {
                    container = await context.Node(await context.FindContainerNodeAsync(name).ConfigureAwait(false)).InspectAsync(name).ConfigureAwait(false);
                }
                catch (OrchestratorException e) when (e.Kind == ErrorKind.NotFound)
                {
                    return (condition == "delete", "not on any node");
                }
                var shown = WireNames.Of(container.State) + (container.Ready ? ", ready" : ", not ready");
                return (condition == "ready" ? container.Ready : condition == WireNames.Of(container.State), shown);
        }
    }
}

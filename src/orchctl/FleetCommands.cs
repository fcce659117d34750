using System.Globalization;
using NATS.Client.Core;
using Orchestrator.Fleet.Client;
using Orchestrator.Node.Workloads;

namespace Orchestrator.Ctl;

/// <summary>The fleet as a whole: get nodes, apply deployments, get deployments, scale, delete.</summary>
internal static class FleetCommands
{
    public static readonly IReadOnlySet<string> Names = new HashSet<string>(StringComparer.Ordinal) { "get", "apply", "scale", "delete", "cordon", "uncordon", "drain", "rollout", "events" };

    public const string Help = """
          get nodes                  every node that joined: state (ready, unreachable, lost), heartbeat age, usage
          get deployments            deployments with desired and placed replicas, and why any cannot be placed
          apply -f FILE [--sign-key SEED]
                                     store the file's deployments (kind: Deployment) in the fleet; the scheduler places them;
                                     --sign-key (env ORCH_SIGN_KEY) signs them for nodes with fleet.trusted_keys
          scale DEPLOYMENT N         set a deployment's replicas
          delete deployment NAME     remove a deployment and its replicas
          cordon|uncordon|drain NODE no new replicas on NODE / back to normal / move its replicas off too
          events [-w] [--since 1h]   what happened in the fleet (containers, rollbacks, scaling); -w keeps watching
          rollout status|history|pause|resume|undo DEPLOYMENT [--to-revision N] [--sign-key SEED]
                                     a rolling update's progress, kept revisions, pause, resume, go back
        """;

    /// <summary>--sign-key FILE or ORCH_SIGN_KEY: the seed to sign deployments with, or null.</summary>
    private static string? SigningSeed(List<string> args)
    {
        if ((args.SkipWhile(a => a != "--sign-key").Skip(1).FirstOrDefault() ?? Environment.GetEnvironmentVariable("ORCH_SIGN_KEY")) is not { Length: > 0 } file)
        {
            return null;
        }
        try
        {
            return Orchestrator.Fleet.Protocol.ManifestSigning.ReadSeed(file);
        }
        catch (Orchestrator.Fleet.Protocol.ManifestSignatureException e)
        {
            throw new NodeRequestException(e.Message, e);
        }
    }

    public static async Task<int> RunAsync(string command, List<string> args, NatsConnection connection)
    {
        var client = new FleetClient(connection);
        switch (command)
        {
            case "get" when args.FirstOrDefault() is "nodes" or "node" or "no":
                var nodes = await client.GetNodesAsync().ConfigureAwait(false);
                Output.Table(["NODE", "STATE", "HEARTBEAT", "VERSION", "ARCH", "CONTAINERS", "CPU REQ", "MEM USED", "LABELS"], nodes.Select(n => new[]
                {
                    n.Info.Node + (n.Leader ? " (scheduler)" : ""), n.State + (n.Draining ? ",draining" : n.Cordoned ? ",cordoned" : ""), $"{n.HeartbeatAgeSeconds:0.#}s ago", n.Info.Version.Split('+')[0], n.Info.Arch,
                    n.Info.Status is { } s ? $"{s.Running}/{s.Containers}" : "-",
                    n.Info.Status is { } c ? $"{c.CpuMilliRequested}m/{c.CpuMilliAllocatable}m" : "-",
                    n.Info.Status is { } m ? $"{m.MemoryUsedBytes >> 20}Mi" : "-",
                    string.Join(",", n.Info.Labels.Select(kv => $"{kv.Key}={kv.Value}")),
                }));
                return 0;
            case "get" when args.FirstOrDefault() is "deployments" or "deployment" or "deploy":
                var deployments = await client.GetDeploymentsAsync().ConfigureAwait(false);
                Output.Table(["DEPLOYMENT", "REVISION", "DESIRED", "PLACED", "IMAGE", "NODES", "PROBLEMS"], deployments.Select(d => new[]
                {
                    d.Deployment.Name, (d.Deployment.Revision ?? 0).ToString(CultureInfo.InvariantCulture), d.Deployment.Replicas.ToString(CultureInfo.InvariantCulture),
                    d.Status?.Placed.ToString(CultureInfo.InvariantCulture) ?? "-", d.Deployment.Template.Image,
                    d.Status is { } s ? string.Join(",", s.Replicas.Values.Distinct().Order(StringComparer.Ordinal)) : "-",
                    d.Status is { Unschedulable.Count: > 0 } u ? string.Join("; ", u.Unschedulable) : "",
                }));
                return 0;
            case "get":
                throw new UsageException("get what? nodes or deployments (containers of one node: orchctl ps -n NODE)");
            case "apply":
                var file = args.SkipWhile(a => a is not ("-f" or "--file")).Skip(1).FirstOrDefault()
                    ?? throw new UsageException("apply needs -f FILE (deployments; see docs/manifest.md)");
                IReadOnlyList<Deployment> parsed;
                try
                {
                    parsed = ManifestLoader.ParseDeployments(file == "-" ? await Console.In.ReadToEndAsync().ConfigureAwait(false) : File.ReadAllText(file), file);
                }
                catch (ManifestException e)
                {
                    Console.Error.WriteLine(e.Message);
                    return 1;
                }
                catch (IOException e)
                {
                    Console.Error.WriteLine($"orchctl: cannot read {file}: {e.Message}");
                    return 1;
                }
                foreach (var (name, revision) in await client.ApplyAsync(parsed, SigningSeed(args)).ConfigureAwait(false))
                {
                    Console.Out.WriteLine($"deployment {name}: applied (revision {revision})");
                }
                return 0;
            case "scale":
                if (args.Count < 2 || !int.TryParse(args[1], NumberStyles.None, CultureInfo.InvariantCulture, out var replicas) || replicas > 10_000)
                {
                    throw new UsageException("scale DEPLOYMENT N, with N from 0 to 10000");
                }
                var revisionAfter = await client.ScaleAsync(args[0], replicas).ConfigureAwait(false);
                Console.Out.WriteLine($"deployment {args[0]}: scaled to {replicas} (revision {revisionAfter})");
                return 0;
            case "delete" when args is ["deployment" or "deploy", var name]:
                await client.DeleteDeploymentAsync(name).ConfigureAwait(false);
                Console.Out.WriteLine($"deployment {name}: deleted");
                return 0;
            case "delete":
                throw new UsageException("delete deployment NAME (a container on one node: orchctl rm -n NODE NAME)");
            case "events":
                var sinceText = args.SkipWhile(a => a != "--since").Skip(1).FirstOrDefault() ?? "1h";
                if (!Quantities.TryParseDuration(sinceText, out var ago))
                {
                    throw new UsageException($"--since '{sinceText}' is not a duration like 10m");
                }
                using (var interrupted = new CancellationTokenSource())
                {
                    Console.CancelKeyPress += (_, e) =>
                    {
                        e.Cancel = true;
                        interrupted.Cancel();
                    };
                    try
                    {
                        await foreach (var ev in client.EventsAsync(DateTimeOffset.UtcNow - ago, watch: args.Contains("-w") || args.Contains("--watch"), interrupted.Token).ConfigureAwait(false))
                        {
                            Console.Out.WriteLine($"{ev.At.ToLocalTime():yyyy-MM-dd HH:mm:ss}  {ev.Node,-16} {ev.Kind,-24} {ev.Subject,-20} {ev.Message}");
                        }
                    }
                    catch (OperationCanceledException) when (interrupted.IsCancellationRequested)
                    {
                    }
                }
                return 0;
            case "rollout" when args is [var verb, var deploymentName, ..]:
                switch (verb)
                {
                    case "status":
                        var view = (await client.GetDeploymentsAsync().ConfigureAwait(false)).FirstOrDefault(d => d.Deployment.Name == deploymentName)
                            ?? throw new NodeRequestException($"no deployment '{deploymentName}' in the fleet; `orchctl get deployments` lists them");
                        var s = view.Status;
                        Console.Out.WriteLine(s is null
                            ? $"deployment {deploymentName}: revision {view.Deployment.Revision}, not scheduled yet"
                            : $"deployment {deploymentName}: revision {s.Revision}, {s.Phase}: {s.UpdatedReady}/{s.Desired} replicas updated and ready ({s.Updated} updated)");
                        if (s?.RolledBack is { } why)
                        {
                            Console.Out.WriteLine($"rolled back: {why}");
                        }
                        return s is { Phase: "complete" } ? 0 : s is { Phase: "failed" or "rolled-back" } ? 1 : 0;
                    case "history":
                        Output.Table(["REVISION", "AT", "IMAGE", "REPLICAS"], (await client.HistoryAsync(deploymentName).ConfigureAwait(false)).Select(h => new[]
                        {
                            h.Revision.ToString(CultureInfo.InvariantCulture), h.At.ToString("u", CultureInfo.InvariantCulture),
                            h.Deployment?.Template.Image ?? "(deleted)", h.Deployment?.Replicas.ToString(CultureInfo.InvariantCulture) ?? "-",
                        }));
                        return 0;
                    case "pause" or "resume":
                        await client.SetPausedAsync(deploymentName, verb == "pause").ConfigureAwait(false);
                        Console.Out.WriteLine($"deployment {deploymentName}: rollout {(verb == "pause" ? "paused" : "resumed")}");
                        return 0;
                    case "undo":
                        var to = args.SkipWhile(a => a != "--to-revision").Skip(1).FirstOrDefault();
                        var revision = await client.UndoAsync(deploymentName, to is null ? null : ulong.Parse(to, CultureInfo.InvariantCulture), SigningSeed(args)).ConfigureAwait(false);
                        Console.Out.WriteLine($"deployment {deploymentName}: rolled back (revision {revision})");
                        return 0;
                    default:
                        throw new UsageException($"rollout {verb}: use status, history, pause, resume or undo");
                }
            case "rollout":
                throw new UsageException("rollout status|history|pause|resume|undo DEPLOYMENT");
            case "cordon" or "uncordon" or "drain":
                var target = args.FirstOrDefault() ?? throw new UsageException($"{command} needs a node name");
                await client.SetNodeAsync(target, cordoned: command == "cordon", draining: command == "drain").ConfigureAwait(false);
                Console.Out.WriteLine($"node {target}: {command switch { "cordon" => "cordoned", "uncordon" => "schedulable", _ => "draining" }}");
                return 0;
            default:
                throw new UsageException($"unknown command '{command}'");
        }
    }
}

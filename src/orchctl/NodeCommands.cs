using System.Globalization;
using System.Text.Json;
using NATS.Client.Core;
using Orchestrator.Fleet.Client;
using Orchestrator.Fleet.Protocol;
using Orchestrator.Node.Workloads;

namespace Orchestrator.Ctl;

/// <summary>
/// One node's containers: run, ps, logs, exec, inspect, stats, stop, start, restart, rm, status.
/// Every command names its node with --node (env ORCH_NODE). Issue 8 adds the fleet-wide
/// verbs (apply, get, describe) on top of the same protocol.
/// </summary>
internal static class NodeCommands
{
    public static readonly IReadOnlySet<string> Names = new HashSet<string>(StringComparer.Ordinal)
    {
        "run", "ps", "logs", "exec", "inspect", "stats", "stop", "start", "restart", "rm", "status",
        "images", "pull", "rmi", "image-gc",
    };

    public const string Help = """
          run -n NODE -f FILE        run the workloads of a manifest file (YAML or JSON) on a node
          ps -n NODE                 the node's containers
          logs -n NODE NAME [-f] [--tail N] [--since 10m]
                                     a container's log lines (stdout and stderr); -f keeps following
          exec -n NODE NAME -- CMD…  run a command in a container; exits with its exit code
          inspect -n NODE NAME       a container's status and spec, as JSON
          stats -n NODE [NAME]       CPU, memory, pids, restarts
          stop|start|restart|rm -n NODE NAME
          status -n NODE             the node's capacity, requests and usage
          images -n NODE             the node's images and the containers using them
          pull -n NODE REF           pull an image onto the node (registry, or nats:NAME)
          rmi -n NODE IMAGE          remove an image no workload uses
          image-gc -n NODE           free blobs and layers nothing uses
        """;

    public static async Task<int> RunAsync(string command, List<string> args, NatsConnection connection, TimeSpan timeout)
    {
        var node = Environment.GetEnvironmentVariable("ORCH_NODE");
        string? file = null;
        var follow = false;
        int? tail = null;
        DateTimeOffset? since = null;
        var positional = new List<string>();
        var rest = new List<string>();
        for (var i = 0; i < args.Count; i++)
        {
            switch (args[i])
            {
                case "--":
                    rest.AddRange(args.Skip(i + 1));
                    i = args.Count;
                    break;
                case "-n" or "--node" when i + 1 < args.Count:
                    node = args[++i];
                    break;
                case "-f" or "--file" when command != "logs" && i + 1 < args.Count:
                    file = args[++i];
                    break;
                case "-f" or "--follow" when command == "logs":
                    follow = true;
                    break;
                case "--tail" when i + 1 < args.Count:
                    tail = int.TryParse(args[++i], NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : throw new UsageException($"--tail '{args[i]}' is not a number of lines");
                    break;
                case "--since" when i + 1 < args.Count:
                    since = Quantities.TryParseDuration(args[++i], out var ago) ? DateTimeOffset.UtcNow - ago : throw new UsageException($"--since '{args[i]}' is not a duration like 10m");
                    break;
                default:
                    positional.Add(args[i]);
                    break;
            }
        }
        if (node is null)
        {
            throw new UsageException($"{command} needs a node: -n NODE (or ORCH_NODE); `orchctl version` lists the nodes");
        }
        // Commands that wait on the node (exec, stop) get the longer of the two.
        var client = new NodeClient(connection, node, timeout < TimeSpan.FromSeconds(60) ? TimeSpan.FromSeconds(60) : timeout);
        string Name() => positional.Count > 0 ? positional[0] : throw new UsageException($"{command} needs a container name");
        switch (command)
        {
            case "run":
                if (file is null)
                {
                    throw new UsageException("run needs -f FILE (a workload manifest; see docs/manifest.md)");
                }
                IReadOnlyList<Workload> workloads;
                try
                {
                    workloads = ManifestLoader.LoadFile(file);
                }
                catch (ManifestException e)
                {
                    Console.Error.WriteLine(e.Message);
                    return 1;
                }
                foreach (var workload in workloads)
                {
                    var status = await client.RunAsync(workload).ConfigureAwait(false);
                    Console.Out.WriteLine($"{status.Name}: {status.State}{(status.Message is { } m ? $" ({m})" : "")}");
                }
                return 0;
            case "ps":
                var list = await client.ListAsync().ConfigureAwait(false);
                Output.Table(["NAME", "IMAGE", "STATE", "READY", "RESTARTS", "PID", "AGE", "MESSAGE"], list.Select(c => new[]
                {
                    c.Name, c.Image, c.State, c.Ready ? "yes" : "no", c.Restarts.ToString(CultureInfo.InvariantCulture),
                    c.Pid > 0 ? c.Pid.ToString(CultureInfo.InvariantCulture) : "-", Age(c.StartedAt), c.Message ?? "",
                }));
                return 0;
            case "logs":
                if (follow)
                {
                    using var interrupted = new CancellationTokenSource();
                    Console.CancelKeyPress += (_, e) =>
                    {
                        e.Cancel = true;
                        interrupted.Cancel();
                    };
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
                foreach (var line in await client.LogsAsync(Name(), tail, since).ConfigureAwait(false))
                {
                    (line.Stream == "stderr" ? Console.Error : Console.Out).WriteLine(line.Text);
                }
                return 0;
            case "exec":
                if (rest.Count == 0)
                {
                    throw new UsageException("exec needs a command after --, e.g. orchctl exec -n gw1 web -- cat /etc/hostname");
                }
                var result = await client.ExecAsync(Name(), rest, timeout.TotalSeconds < 30 ? 30 : timeout.TotalSeconds).ConfigureAwait(false);
                Console.Out.Write(result.Stdout);
                Console.Error.Write(result.Stderr);
                if (result.TimedOut)
                {
                    Console.Error.WriteLine("orchctl: the command timed out and was killed");
                }
                return result.ExitCode;
            case "inspect":
                var inspected = await client.InspectAsync(Name()).ConfigureAwait(false);
                Console.Out.WriteLine(JsonSerializer.Serialize(inspected, PrettyJson.Default.ContainerStatus));
                return 0;
            case "stats":
                var stats = await client.StatsAsync(positional.FirstOrDefault()).ConfigureAwait(false);
                Output.Table(["NAME", "CPU %", "MEMORY", "LIMIT", "PIDS", "RESTARTS", "READY"], stats.Select(c => new[]
                {
                    c.Name, c.CpuPercent.ToString("F1", CultureInfo.InvariantCulture), Bytes(c.MemoryBytes),
                    c.MemoryLimitBytes is { } l ? Bytes(l) : "-", c.Pids.ToString(CultureInfo.InvariantCulture),
                    c.Restarts.ToString(CultureInfo.InvariantCulture), c.Ready ? "yes" : "no",
                }));
                return 0;
            case "status":
                var s = await client.StatusAsync().ConfigureAwait(false);
                Console.Out.WriteLine($"containers: {s.Containers} ({s.Running} running, {s.Ready} ready), driver {s.Driver}");
                Console.Out.WriteLine($"cpu:    capacity {s.CpuMilliCapacity}m, allocatable {s.CpuMilliAllocatable}m, requested {s.CpuMilliRequested}m");
                Console.Out.WriteLine($"memory: capacity {Bytes(s.MemoryCapacityBytes)}, allocatable {Bytes(s.MemoryAllocatableBytes)}, requested {Bytes(s.MemoryRequestedBytes)}, used {Bytes(s.MemoryUsedBytes)}");
                return 0;
            case "stop" or "start" or "restart":
                var changed = command switch
                {
                    "stop" => await client.StopAsync(Name()).ConfigureAwait(false),
                    "start" => await client.StartAsync(Name()).ConfigureAwait(false),
                    _ => await client.RestartAsync(Name()).ConfigureAwait(false),
                };
                Console.Out.WriteLine($"{changed.Name}: {changed.State}");
                return 0;
            case "rm":
                await client.RemoveAsync(Name()).ConfigureAwait(false);
                Console.Out.WriteLine($"{Name()}: removed");
                return 0;
            case "images":
                var images = await client.ImagesAsync().ConfigureAwait(false);
                Output.Table(["IMAGE", "PLATFORM", "SIZE", "MANIFEST", "USED BY"], images.Select(i => new[]
                {
                    i.Name, i.Platform, Bytes(i.Size), i.ManifestDigest.Length > 19 ? i.ManifestDigest[..19] : i.ManifestDigest, string.Join(",", i.UsedBy),
                }));
                return 0;
            case "pull":
                var pulled = await client.PullAsync(Name()).ConfigureAwait(false);
                Console.Out.WriteLine($"pulled {pulled.Name} {pulled.ManifestDigest} ({pulled.Platform}, {Bytes(pulled.Size)})");
                return 0;
            case "rmi":
                await client.RemoveImageAsync(Name()).ConfigureAwait(false);
                Console.Out.WriteLine($"{Name()}: removed (image-gc frees its space)");
                return 0;
            case "image-gc":
                var gc = await client.GcImagesAsync().ConfigureAwait(false);
                Console.Out.WriteLine($"freed {Bytes(gc.FreedBytes)} of blobs and {gc.PrunedLayers} unpacked layers");
                return 0;
            default:
                throw new UsageException($"unknown command '{command}'");
        }
    }

    private static string Age(DateTimeOffset? since)
    {
        if (since is not { } at)
        {
            return "-";
        }
        var age = DateTimeOffset.UtcNow - at;
        return age.TotalDays >= 1 ? $"{(int)age.TotalDays}d" : age.TotalHours >= 1 ? $"{(int)age.TotalHours}h" : age.TotalMinutes >= 1 ? $"{(int)age.TotalMinutes}m" : $"{(int)age.TotalSeconds}s";
    }

    private static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):F1}Gi",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):F1}Mi",
        >= 1L << 10 => $"{bytes / 1024.0:F0}Ki",
        _ => $"{bytes}B",
    };
}

/// <summary>How orchctl prints: aligned columns (the last one free).</summary>
internal static class Output
{
    public static void Table(string[] header, IEnumerable<string[]> rows)
    {
        var all = rows.Prepend(header).ToList();
        var widths = Enumerable.Range(0, header.Length).Select(i => all.Max(r => r[i].Length)).ToArray();
        foreach (var row in all)
        {
            Console.Out.WriteLine(string.Join("  ", row.Select((cell, i) => i == row.Length - 1 ? cell : cell.PadRight(widths[i]))).TrimEnd());
        }
    }
}

internal sealed class UsageException(string message) : Exception(message)
{
    public UsageException() : this("bad usage") { }
    public UsageException(string message, Exception inner) : this(message) => _ = inner;
}

[System.Text.Json.Serialization.JsonSourceGenerationOptions(PropertyNamingPolicy = System.Text.Json.Serialization.JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull, WriteIndented = true)]
[System.Text.Json.Serialization.JsonSerializable(typeof(Orchestrator.Node.Reconcile.ContainerStatus))]
internal sealed partial class PrettyJson : System.Text.Json.Serialization.JsonSerializerContext;

using System.Globalization;
using System.Text.Json;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.ObjectStore;
using NATS.Client.ObjectStore.Models;
using Orchestrator.Daemon.Configuration;
using Orchestrator.Client;
using Orchestrator.Api;

namespace Orchestrator.Daemon.Update;

/// <summary>
/// `orchd release`: publish a signed orchd binary to the fleet's object store, and roll it out in
/// waves: each wave's nodes swap and restart, and the next wave starts only when every node of
/// this one runs the release's binary and is connected again. A node that rolls back stops the
/// rollout there, with the node and its reason.
/// </summary>
internal static class ReleaseCommand
{
    public const string Usage = """
        Usage: orchd release COMMAND [flags]   (plus orchd's --config, --nats-url…)
          publish FILE --version V --sign-key SEED [--arch amd64|arm64]
                                     sign FILE (an orchd binary) and put it in the fleet's bucket orch-releases
          rollout VERSION [--waves 1,50%,100%] [--nodes a,b,c] [--timeout 120s]
                                     update the nodes in waves (cumulative counts or percentages), each wave
                                     confirmed healthy before the next; stops at the first node that fails
          status [--nodes a,b,c]     each node's orchd version, binary digest and last update
        """;

    /// <summary>release's own flags, all with a value; the rest of the --flags are orchd's.</summary>
    private static readonly Dictionary<string, string?> s_flags = new(StringComparer.Ordinal)
    {
        ["--version"] = null, ["--sign-key"] = null, ["--arch"] = null, ["--waves"] = null, ["--nodes"] = null, ["--timeout"] = null,
    };

    public static async Task<int> RunAsync(string[] args)
    {
        var split = SubcommandArgs.Split(args, s_flags, []);
        if (split.Help)
        {
            Console.Out.Write(Usage);
            return ExitCodes.Ok;
        }
        var positional = split.Positional;
        if (positional.Count < 1)
        {
            Console.Error.Write(Usage);
            return ExitCodes.Usage;
        }
        var config = ConfigLoader.Load(CommandLine.Parse(split.DaemonFlags), Environment.GetEnvironmentVariable);
        // The operator's tool: its replies come to the default inbox, not the node's.
        await using var nats = new NatsConnection((config.ToNatsSettings() with { InboxPrefix = null }).ToNatsOpts("orchd-release"));
        try
        {
            await nats.ConnectAsync().ConfigureAwait(false);
        }
        catch (NatsException e)
        {
            throw new ReleaseException($"cannot reach NATS at {string.Join(",", config.NatsUrls)}: {e.Message}; start it or pass --nats-url");
        }
        try
        {
            return await DispatchAsync(nats, positional, split).ConfigureAwait(false);
        }
        catch (NatsJSException e)
        {
            throw new ReleaseException($"the fleet's JetStream refused: {e.Message}; is bucket {Release.Bucket} there (orchd release publish makes it) and JetStream on?");
        }
    }

    private static async Task<int> DispatchAsync(NatsConnection nats, IReadOnlyList<string> positional, SubcommandArgs own)
    {
        return positional[0] switch
        {
            "publish" => await PublishAsync(nats, positional.Count > 1 ? positional[1] : throw new UsageException("release publish needs the orchd binary to publish"), own).ConfigureAwait(false),
            "rollout" => await RolloutAsync(nats, positional.Count > 1 ? positional[1] : throw new UsageException("release rollout needs a version"), own).ConfigureAwait(false),
            "status" => await StatusAsync(nats, own).ConfigureAwait(false),
            var other => throw new UsageException($"unknown release command '{other}'; use publish, rollout or status"),
        };
    }

    private static async Task<int> PublishAsync(NatsConnection nats, string file, SubcommandArgs own)
    {
        var version = own.Value("--version") ?? throw new UsageException("release publish needs --version");
        var arch = own.Value("--arch") ?? Release.ThisArch;
        var seed = Orchestrator.Client.ManifestSigning.ReadSeed(own.Value("--sign-key") ?? throw new UsageException("release publish needs --sign-key (an operator seed, orchctl keys create)"));
        if (!File.Exists(file))
        {
            throw new ReleaseException($"'{file}' does not exist; give the orchd binary to publish (make publish builds it)");
        }
        var manifest = Release.Sign(file, version, arch, seed);
        var objects = new NatsObjContext(new NatsJSContext(nats));
        INatsObjStore store;
        try
        {
            store = await objects.GetObjectStoreAsync(Release.Bucket).ConfigureAwait(false);
        }
        catch (NatsJSApiException)
        {
            store = await objects.CreateObjectStoreAsync(new NatsObjConfig(Release.Bucket) { Description = "Orchestrator orchd releases" }).ConfigureAwait(false);
        }
        await using (var binary = File.OpenRead(file))
        {
            await store.PutAsync(new ObjectMetadata { Name = Release.BinaryObject(version, arch) }, binary).ConfigureAwait(false);
        }
        await store.PutAsync(Release.ManifestObject(version, arch), JsonSerializer.SerializeToUtf8Bytes(manifest, UpdateJsonContext.Default.ReleaseManifest)).ConfigureAwait(false);
        Console.Out.WriteLine($"published orchd {version} ({arch}, {manifest.Size} bytes, sha256 {manifest.Sha256[..12]}…) signed by {manifest.Key}");
        return ExitCodes.Ok;
    }

    private static async Task<List<string>> NodesAsync(NatsConnection nats, SubcommandArgs own)
    {
        if (own.Value("--nodes") is { } list)
        {
            return list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
        }
        var found = await new FleetClient(nats).DiscoverNodesAsync(TimeSpan.FromSeconds(3), TimeSpan.FromMilliseconds(500)).ConfigureAwait(false);
        return found.Select(n => n.Node).Order(StringComparer.Ordinal).ToList();
    }

    private static async Task<UpdateStatus?> StatusOfAsync(NatsConnection nats, string node)
    {
        try
        {
            var reply = await nats.RequestAsync<byte[], byte[]>(Release.StatusSubject(node), [], replyOpts: new NatsSubOpts { Timeout = TimeSpan.FromSeconds(2) }).ConfigureAwait(false);
            return reply.Data is { Length: > 0 } data ? JsonSerializer.Deserialize(data, UpdateJsonContext.Default.UpdateStatus) : null;
        }
        catch (Exception e) when (e is NatsNoRespondersException or NatsNoReplyException or NatsException or TimeoutException or JsonException)
        {
            return null;
        }
    }

    private static async Task<int> StatusAsync(NatsConnection nats, SubcommandArgs own)
    {
        Console.Out.WriteLine($"{"NODE",-20} {"VERSION",-24} {"ARCH",-6} {"SHA256",-14} LAST UPDATE");
        foreach (var node in await NodesAsync(nats, own).ConfigureAwait(false))
        {
            var status = await StatusOfAsync(nats, node).ConfigureAwait(false);
            Console.Out.WriteLine(status is null
                ? $"{node,-20} (no answer: not connected, or fleet.trusted_keys not set)"
                : $"{node,-20} {status.Version,-24} {status.Arch,-6} {status.Sha256[..12],-14} {(status.Pending is { } p ? $"pending {p}" : status.Last is { } l ? $"{l.Outcome} {l.Version}: {l.Message}" : "-")}");
        }
        return ExitCodes.Ok;
    }

    /// <summary>Cumulative wave sizes: "1,50%,100%" over 10 nodes is 1, 5, 10.</summary>
    public static List<int> Waves(string spec, int nodes)
    {
        var sizes = new List<int>();
        foreach (var part in spec.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var size = part.EndsWith('%')
                ? (int)Math.Ceiling(nodes * double.Parse(part[..^1], CultureInfo.InvariantCulture) / 100)
                : int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : throw new UsageException($"--waves '{spec}': '{part}' is not a count or a percentage");
            sizes.Add(Math.Min(nodes, Math.Max(size, sizes.Count > 0 ? sizes[^1] : 0)));
        }
        if (sizes.Count == 0 || sizes[^1] < nodes)
        {
            sizes.Add(nodes);
        }
        return sizes.Distinct().Where(s => s > 0).ToList();
    }

    private static async Task<int> RolloutAsync(NatsConnection nats, string version, SubcommandArgs own)
    {
        var nodes = await NodesAsync(nats, own).ConfigureAwait(false);
        if (nodes.Count == 0)
        {
            throw new ReleaseException("no node answered on orch.fleet.info; is the fleet connected to this NATS?");
        }
        var timeout = own.Value("--timeout") is { } t ? ConfigValues.Duration(t) : TimeSpan.FromMinutes(2);
        var store = await new NatsObjContext(new NatsJSContext(nats)).GetObjectStoreAsync(Release.Bucket).ConfigureAwait(false);
        var done = 0;
        var wave = 0;
        foreach (var size in Waves(own.Value("--waves") ?? "1,50%,100%", nodes.Count))
        {
            wave++;
            var members = nodes.Skip(done).Take(size - done).ToList();
            Console.Out.WriteLine($"wave {wave}: {string.Join(", ", members)}");
            var expected = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var node in members)
            {
                var status = await StatusOfAsync(nats, node).ConfigureAwait(false)
                             ?? throw new ReleaseException($"node '{node}' does not answer {Release.StatusSubject(node)}; it is offline or has no fleet.trusted_keys; rollout stopped before it");
                var manifest = JsonSerializer.Deserialize(await store.GetBytesAsync(Release.ManifestObject(version, status.Arch)).ConfigureAwait(false), UpdateJsonContext.Default.ReleaseManifest)!;
                expected[node] = manifest.Sha256;
                if (status.Sha256 == manifest.Sha256)
                {
                    Console.Out.WriteLine($"  {node}: already runs {version}");
                    continue;
                }
                var reply = await nats.RequestAsync<byte[], byte[]>(Release.ApplySubject(node),
                    JsonSerializer.SerializeToUtf8Bytes(new UpdateRequest { Version = version }, UpdateJsonContext.Default.UpdateRequest),
                    replyOpts: new NatsSubOpts { Timeout = TimeSpan.FromSeconds(60) }).ConfigureAwait(false);
                var answer = JsonSerializer.Deserialize(reply.Data!, UpdateJsonContext.Default.UpdateReply)!;
                if (!answer.Ok)
                {
                    Console.Error.WriteLine($"orchd: rollout of {version} stopped at node '{node}': {answer.Error}");
                    return ExitCodes.Failure;
                }
                Console.Out.WriteLine($"  {node}: {answer.Message}");
            }
            // The wave is done when each node runs the release's binary, connected and confirmed.
            var deadline = DateTime.UtcNow + timeout;
            foreach (var node in members)
            {
                while (true)
                {
                    var status = await StatusOfAsync(nats, node).ConfigureAwait(false);
                    if (status is { Pending: null } && status.Sha256 == expected[node])
                    {
                        Console.Out.WriteLine($"  {node}: running {version}, confirmed");
                        break;
                    }
                    if (status is { Pending: null, Last.Outcome: "rolled-back" } && status.Last.Version == version)
                    {
                        Console.Error.WriteLine($"orchd: rollout of {version} stopped: node '{node}' rolled back ({status.Last.Message}); the remaining nodes were not touched");
                        return ExitCodes.Failure;
                    }
                    if (DateTime.UtcNow > deadline)
                    {
                        Console.Error.WriteLine($"orchd: rollout of {version} stopped: node '{node}' did not come back on {version} within {timeout.TotalSeconds:0} s; check it with orchd release status");
                        return ExitCodes.Failure;
                    }
                    await Task.Delay(500).ConfigureAwait(false);
                }
            }
            done = size;
        }
        Console.Out.WriteLine($"rollout of {version} complete: {nodes.Count} nodes");
        return ExitCodes.Ok;
    }
}

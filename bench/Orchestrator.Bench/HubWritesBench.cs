using System.Diagnostics;
using System.Globalization;
using System.Net.Http;
using System.Text.Json;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using Orchestrator.Client;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Testing;

namespace Orchestrator.Bench;

internal sealed record HubWritesSettings
{
    public int Nodes { get; init; } = 4;
    public int ContainersPerNode { get; init; } = 3;
    public double HeartbeatSeconds { get; init; } = 2;
    /// <summary>The measured window, after the replicas are ready and 10 s of settling.</summary>
    public int Seconds { get; init; } = 90;
    /// <summary>Makes orch-nodes in memory before the nodes start (they use a bucket that exists as it is): what that would save.</summary>
    public bool NodesInMemory { get; init; }
}

/// <summary>
/// The hub's writes (issue 15, item 5): a real nats-server -js and real orchd nodes (the published
/// binaries) heartbeating at 2 s with a few busybox replicas each, as the fault run that found 577
/// MB/day had them. Measured over a window in steady state: what nats-server's writes put into
/// the page cache (/proc/PID/io write_bytes: the pages the disk will be written, each time a page
/// is dirtied again after a writeback), the store's size on disk, and per stream (/jsz) the
/// messages written and their size. Then the nodes stop and a whole day of their heartbeats is
/// written into orch-nodes as fast as the server takes them: the store must not grow with it.
/// </summary>
internal static class HubWritesBench
{
    /// <summary>
    /// The budget, in MB (10^6 bytes) of pages written per node per day with heartbeats every 2 s
    /// and 3 replicas a node (docs/benchmarks.md, "Hub writes"): 2.3 KB a heartbeat. A slower
    /// heartbeat writes less, so it bounds those too.
    /// </summary>
    public const double BudgetMBPerNodeDay = 100;

    /// <summary>The most a day of heartbeats may add to the store on disk: two 4 MB blocks of orch-nodes.</summary>
    public const double StoreGrowthBudgetMB = 8.4;

    private const string Image = "busybox:latest";

    public static async Task<int> RunAsync(HubWritesSettings s)
    {
        var orchd = Repo.Binary("orchd");
        using var work = new TempDir("bench-hub");
        var monitor = FreePort.Next();
        await using var nats = await NatsServer.StartAsync($"http: \"127.0.0.1:{monitor}\"\n");
        var natsPid = nats.Pid;
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{monitor}"), Timeout = TimeSpan.FromSeconds(10) };
        var replicas = s.Nodes * s.ContainersPerNode;
        Console.WriteLine($"## Hub writes: {s.Nodes} orchd nodes, heartbeat {s.HeartbeatSeconds:0.##} s, {replicas} replicas, {DateTime.UtcNow:yyyy-MM-dd HH:mm}Z, {Environment.ProcessorCount} cpus");
        Console.WriteLine($"# {NatsVersion(nats.Binary)} -js, store {nats.StoreDir} ({FileSystemOf(nats.StoreDir)}); orchd {orchd}");

        await using var control = new NatsConnection(new NatsOpts { Url = nats.Url, Name = "bench-hub", RequestTimeout = TimeSpan.FromSeconds(10) });
        await control.ConnectAsync();
        var js = new NatsJSContext(control);
        var kv = new NatsKVContext(js);
        if (s.NodesInMemory)
        {
            await kv.CreateStoreAsync(FleetStore.ConfigFor(Buckets.Nodes, 1) with { Storage = NatsKVStorageType.Memory });
            Console.WriteLine("# variant: orch-nodes made in memory before the nodes start");
        }

        var layout = work.Combine("layout");
        BusyboxImage.CreateLayout(layout);
        var daemons = new List<DaemonProcess>();
        var names = Enumerable.Range(1, s.Nodes).Select(i => $"hub-{i}").ToList();
        try
        {
            foreach (var name in names)
            {
                var dir = work.Combine(name);
                await RunToEndAsync(orchd, ["image", "import", layout, "--name", Image, "--state-dir", Path.Combine(dir, "state"), "--config", "/dev/null"]);
                daemons.Add(DaemonProcess.Start(orchd, ["--config", "/dev/null", "--node-name", name, "--state-dir", Path.Combine(dir, "state"), "--run-dir", Path.Combine(dir, "run"),
                    "--manifest-dir", "none", "--nats-url", nats.Url, "--bridge", "none", "--log-level", "warn",
                    "--heartbeat", s.HeartbeatSeconds.ToString("0.###", CultureInfo.InvariantCulture) + "s"]));
            }

            // The nodes make the buckets (as in a fleet): this process opens them only once they exist,
            // so the limits measured are the ones the orchd under test sets.
            var buckets = new[] { Buckets.Nodes, Buckets.Leader, Buckets.Deployments, Buckets.Assignments, Buckets.NodeSettings, Buckets.DeploymentStatus };
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while ((await StreamsAsync(http)).Count(st => buckets.Any(b => st.Name == "KV_" + b)) < buckets.Length)
            {
                if (DateTime.UtcNow > deadline || daemons.Any(d => d.HasExited))
                {
                    Console.Error.WriteLine($"hub: the nodes did not make the fleet's buckets within 60 s:\n{string.Join("\n", daemons.Select(d => d.Output))}");
                    return 1;
                }
                await Task.Delay(200);
            }
            var client = new FleetClient(control);
            while ((await client.GetNodesAsync()).Count(n => n.State == NodeCondition.Ready) < s.Nodes)
            {
                if (DateTime.UtcNow > deadline)
                {
                    Console.Error.WriteLine("hub: not every node is ready within 60 s");
                    return 1;
                }
                await Task.Delay(200);
            }
            await client.ApplyAsync([new Deployment
            {
                Name = "sleepers",
                Replicas = replicas,
                Template = new Workload { Image = Image, Command = ["sleep", "1000000"], Network = NetworkMode.None, StopGracePeriodSeconds = 0 },
            }]);
            deadline = DateTime.UtcNow.AddSeconds(120);
            while (await client.GetDeploymentsAsync() is not [{ Status.UpdatedReady: var ready }, ..] || ready < replicas)
            {
                if (DateTime.UtcNow > deadline)
                {
                    Console.Error.WriteLine($"hub: {replicas} replicas not ready within 120 s");
                    return 1;
                }
                await Task.Delay(500);
            }
            await Task.Delay(10_000); // settle: the rollout's writes are done, heartbeats carry every replica

            // The window.
            var before = await SampleAsync(natsPid, nats.StoreDir, http);
            var clock = Stopwatch.StartNew();
            var growth = new List<(double At, long Disk)> { (0, before.DiskBytes) };
            while (clock.Elapsed.TotalSeconds < s.Seconds)
            {
                await Task.Delay(TimeSpan.FromSeconds(Math.Min(30, s.Seconds - clock.Elapsed.TotalSeconds)));
                growth.Add((clock.Elapsed.TotalSeconds, DiskBytes(nats.StoreDir)));
            }
            var after = await SampleAsync(natsPid, nats.StoreDir, http);
            var seconds = clock.Elapsed.TotalSeconds;
            var perNodeDay = 86400.0 / seconds / s.Nodes / 1e6;

            Console.WriteLine();
            Console.WriteLine($"Steady state, {seconds:F0} s: per stream, what was written (messages, by the stream's last sequence) and what it holds");
            Console.WriteLine();
            Console.WriteLine("| stream | storage | history | max bytes | max value | messages written | per s | bytes per message | messages, MB/node/day | holds (messages, bytes) |");
            Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|");
            double records = 0;
            foreach (var st in after.Streams.OrderBy(st => st.Name, StringComparer.Ordinal))
            {
                var was = before.Streams.FirstOrDefault(b => b.Name == st.Name);
                var written = (double)(st.LastSeq - (was?.LastSeq ?? 0));
                var perMessage = st.Messages > 0 ? (double)st.Bytes / st.Messages : 0;
                records += written * perMessage;
                Console.WriteLine($"| {st.Name} | {st.Storage} | {(st.History > 0 ? st.History.ToString(CultureInfo.InvariantCulture) : "-")} | {Size(st.MaxBytes)} | {Size(st.MaxValue)} | {written:F0} | {written / seconds:F2} | {perMessage:F0} | {written * perMessage * perNodeDay:F2} | {st.Messages}, {st.Bytes:N0} |");
            }
            var pages = after.WriteBytes - before.WriteBytes;
            var cancelled = after.CancelledWriteBytes - before.CancelledWriteBytes;
            var heartbeats = Math.Max(1, (after.Streams.FirstOrDefault(st => st.Name == "KV_" + Buckets.Nodes)?.LastSeq ?? 0) - (before.Streams.FirstOrDefault(st => st.Name == "KV_" + Buckets.Nodes)?.LastSeq ?? 0));
            var pagesPerNodeDay = (pages - cancelled) * perNodeDay;
            Console.WriteLine();
            Console.WriteLine("| nats-server, per node per day | MB | |");
            Console.WriteLine("|---|---|---|");
            Console.WriteLine($"| messages written into the streams above (file or memory) | {records * perNodeDay:F1} | {records / heartbeats:F0} B per heartbeat |");
            Console.WriteLine($"| **pages written** (write_bytes − cancelled_write_bytes) | **{pagesPerNodeDay:F1}** | {(pages - cancelled) / (double)heartbeats:F0} B per heartbeat; budget {BudgetMBPerNodeDay:F0}: **{(pagesPerNodeDay <= BudgetMBPerNodeDay ? "met" : "EXCEEDED")}** |");
            Console.WriteLine($"| write syscalls (wchar: files, and the sockets to clients and /jsz) | {(after.WriteChars - before.WriteChars) * perNodeDay:F1} | not the disk |");
            Console.WriteLine($"| the store on disk (du), change over the window | {(after.DiskBytes - before.DiskBytes) * perNodeDay:F1} | {string.Join(" → ", growth.Select(g => $"{g.Disk / 1e6:F2} MB"))} |");

            // A day of heartbeats at once: the nodes stop, and this process writes their last
            // heartbeats again (the same keys and values) as many times as a day of them would be.
            foreach (var daemon in daemons)
            {
                daemon.Signal(Signals.SIGTERM);
            }
            foreach (var daemon in daemons)
            {
                await daemon.WaitForExitAsync(TimeSpan.FromSeconds(20));
            }
            var nodes = await kv.GetStoreAsync(Buckets.Nodes);
            var last = new List<(string Key, byte[] Value)>();
            foreach (var name in names)
            {
                var entry = await nodes.GetEntryAsync<byte[]>(name);
                last.Add((name, entry.Value!));
            }
            var day = (int)(86400 / s.HeartbeatSeconds) * s.Nodes;
            var replayBefore = await SampleAsync(natsPid, nats.StoreDir, http);
            var replay = Stopwatch.StartNew();
            using var replayDone = new CancellationTokenSource();
            var peak = Task.Run(async () =>
            {
                var most = 0L;
                while (!replayDone.IsCancellationRequested)
                {
                    most = Math.Max(most, DiskBytes(nats.StoreDir));
                    await Task.Delay(250, CancellationToken.None);
                }
                return most;
            });
            var inFlight = new List<Task>();
            for (var i = 0; i < day; i++)
            {
                var (key, value) = last[i % last.Count];
                inFlight.Add(nodes.PutAsync(key, value).AsTask());
                if (inFlight.Count == 256)
                {
                    await Task.WhenAll(inFlight);
                    inFlight.Clear();
                }
            }
            await Task.WhenAll(inFlight);
            var replaySeconds = replay.Elapsed.TotalSeconds;
            await replayDone.CancelAsync();
            var replayPeak = await peak;
            var replayAfter = await SampleAsync(natsPid, nats.StoreDir, http);
            var stream = replayAfter.Streams.First(st => st.Name == "KV_" + Buckets.Nodes);
            Console.WriteLine();
            Console.WriteLine($"A day of the {s.Nodes} nodes' heartbeats ({day:N0} puts, {day * (double)last.Average(l => l.Value.Length) / 1e6:F0} MB of values) written in {replaySeconds:F0} s: "
                + $"the store went from {replayBefore.DiskBytes / 1e6:F2} to {replayAfter.DiskBytes / 1e6:F2} MB on disk, {replayPeak / 1e6:F2} MB at most on the way "
                + $"(at most {(replayPeak - replayBefore.DiskBytes) / 1e6:+0.00;-0.00} MB; budget {StoreGrowthBudgetMB} MB: **{((replayPeak - replayBefore.DiskBytes) / 1e6 <= StoreGrowthBudgetMB ? "met" : "EXCEEDED")}**); "
                + $"orch-nodes holds {stream.Messages} messages, {stream.Bytes:N0} bytes, in {BlockFiles(nats.StoreDir, "KV_" + Buckets.Nodes)}.");
            return 0;
        }
        finally
        {
            foreach (var daemon in daemons)
            {
                await daemon.DisposeAsync();
            }
            foreach (var name in names)
            {
                var runtimeRoot = work.Combine(name, "run", "runtime");
                foreach (var id in Directory.Exists(runtimeRoot) ? Directory.GetDirectories(runtimeRoot).Select(Path.GetFileName) : [])
                {
                    await RunToEndAsync(Repo.Binary("orch-runc"), ["--root", runtimeRoot, "delete", "--force", id!]);
                }
            }
            foreach (var mount in File.ReadAllLines("/proc/self/mountinfo").Select(l => l.Split(' ')[4]).Where(m => m.StartsWith(work.Path, StringComparison.Ordinal)).Reverse())
            {
                await RunToEndAsync("/usr/bin/umount", ["-l", mount]);
            }
        }
    }

    private sealed record StreamFigures(string Name, string Storage, long History, long MaxBytes, long MaxValue, ulong LastSeq, ulong Messages, ulong Bytes);

    private sealed record Sample(long WriteBytes, long CancelledWriteBytes, long WriteChars, long DiskBytes, IReadOnlyList<StreamFigures> Streams);

    private static async Task<Sample> SampleAsync(int pid, string storeDir, HttpClient http)
    {
        var io = File.ReadAllLines($"/proc/{pid}/io").Select(l => l.Split(':', 2)).ToDictionary(p => p[0], p => long.Parse(p[1].Trim(), CultureInfo.InvariantCulture));
        var streams = await StreamsAsync(http);
        return new Sample(io["write_bytes"], io["cancelled_write_bytes"], io["wchar"], DiskBytes(storeDir), streams);
    }

    private static async Task<IReadOnlyList<StreamFigures>> StreamsAsync(HttpClient http)
    {
        using var doc = JsonDocument.Parse(await http.GetStringAsync("/jsz?streams=true&config=true"));
        var result = new List<StreamFigures>();
        if (!doc.RootElement.TryGetProperty("account_details", out var accounts) || accounts.ValueKind != JsonValueKind.Array)
        {
            return result;
        }
        foreach (var account in accounts.EnumerateArray())
        {
            if (!account.TryGetProperty("stream_detail", out var streams) || streams.ValueKind != JsonValueKind.Array)
            {
                continue;
            }
            foreach (var st in streams.EnumerateArray())
            {
                var config = st.GetProperty("config");
                var state = st.GetProperty("state");
                result.Add(new StreamFigures(
                    st.GetProperty("name").GetString()!,
                    config.TryGetProperty("storage", out var storage) ? storage.GetString()! : "?",
                    config.TryGetProperty("max_msgs_per_subject", out var history) ? history.GetInt64() : -1,
                    config.TryGetProperty("max_bytes", out var maxBytes) ? maxBytes.GetInt64() : -1,
                    config.TryGetProperty("max_msg_size", out var maxValue) ? maxValue.GetInt64() : -1,
                    state.GetProperty("last_seq").GetUInt64(),
                    state.GetProperty("messages").GetUInt64(),
                    state.GetProperty("bytes").GetUInt64()));
            }
        }
        return result;
    }

    /// <summary>Bytes the store's files take on disk (allocated blocks, as du counts them).</summary>
    private static long DiskBytes(string dir)
    {
        using var du = Process.Start(new ProcessStartInfo("du", ["-s", "-B1", dir]) { RedirectStandardOutput = true })!;
        var text = du.StandardOutput.ReadToEnd();
        du.WaitForExit();
        return long.Parse(text.Split('\t')[0], CultureInfo.InvariantCulture);
    }

    private static string BlockFiles(string storeDir, string stream)
    {
        var msgs = Path.Combine(storeDir, "jetstream", "$G", "streams", stream, "msgs");
        var blocks = Directory.Exists(msgs) ? Directory.GetFiles(msgs, "*.blk").Select(f => new FileInfo(f)).OrderBy(f => f.Name, StringComparer.Ordinal).ToList() : [];
        return blocks.Count == 0 ? "no block file (memory)" : $"{blocks.Count} block file(s): {string.Join(", ", blocks.Select(b => $"{b.Name} {b.Length / 1e6:F2} MB"))}";
    }

    private static string Size(long bytes) => bytes <= 0 ? "none" : bytes >= 1 << 20 ? $"{bytes / 1048576.0:0.#} MiB" : $"{bytes / 1024.0:0.#} KiB";

    private static string FileSystemOf(string path)
    {
        using var df = Process.Start(new ProcessStartInfo("df", ["--output=fstype", Path.GetDirectoryName(path)!]) { RedirectStandardOutput = true })!;
        var text = df.StandardOutput.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        df.WaitForExit();
        return text.Length > 1 ? text[1] : "?";
    }

    private static async Task RunToEndAsync(string binary, string[] args)
    {
        await using var process = DaemonProcess.Start(binary, args);
        await process.WaitForExitAsync(TimeSpan.FromSeconds(60));
    }


    private static string NatsVersion(string binary)
    {
        using var p = Process.Start(new ProcessStartInfo(binary, "--version") { RedirectStandardOutput = true })!;
        var text = p.StandardOutput.ReadToEnd().Trim();
        p.WaitForExit();
        return text;
    }
}

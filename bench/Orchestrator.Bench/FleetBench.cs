using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using Orchestrator.Fleet.Agent;
using Orchestrator.Client;
using Orchestrator.Api;
using Orchestrator.Fleet.Scheduler;
using Orchestrator.Node.Reconcile;
using Orchestrator.Api.Workloads;
using Orchestrator.Testing;

namespace Orchestrator.Bench;

// Over 600 lines on purpose: the simulated fleet (agents, heartbeats, assignment watches) and the
// figures it reports live together, so that a run is one file to read.

/// <summary>Sizes of the simulated fleet (issue 6: 1,000 nodes, 10,000 replicas).</summary>
internal sealed record FleetBenchSettings
{
    public int Nodes { get; init; } = 1000;
    public int Deployments { get; init; } = 10;
    public int Replicas { get; init; } = 1000;
    public int AgentsPerConnection { get; init; } = 50;
    public double HeartbeatSeconds { get; init; } = 1;
    public int Requests { get; init; } = 3000;
    public int Responders { get; init; } = 10;
}

/// <summary>
/// A simulated fleet against a real nats-server with JetStream: N node agents in this process
/// (a few NATS connections, 50 agents each) heartbeat the real <see cref="NodeInfo"/> into
/// orch-nodes and watch their own <c>&lt;node&gt;.*</c> keys in orch-assignments, as
/// <see cref="FleetMember"/> does; an assigned replica is reported running and ready (with the
/// spec hash the scheduler checks) in the agent's next heartbeat. No containers run. The real
/// <see cref="FleetScheduler"/> does its passes against the same buckets, as the elected leader
/// would, and the operator applies the deployments with the real <see cref="FleetClient"/>.
/// Measured: pure placement (<see cref="FleetScheduler.Plan"/>), the first full pass end to end
/// (KV reads, plan, KV writes), apply → every replica reported running, and the node API's
/// request/reply round trip.
/// </summary>
internal static class FleetBench
{
    private const string Image = "busybox:latest";
    private const long CpuRequestMilli = 10;
    private const long MemoryRequestBytes = 16L << 20;

    public static async Task<int> RunAsync(FleetBenchSettings s)
    {
        var total = s.Deployments * s.Replicas;
        var options = new FleetOptions { Heartbeat = TimeSpan.FromSeconds(s.HeartbeatSeconds) };
        using var stop = new CancellationTokenSource();
        var ct = stop.Token;
        var started = Stopwatch.GetTimestamp();

        await using var nats = await NatsServer.StartAsync();
        Console.WriteLine($"## Fleet: {s.Nodes} simulated nodes, {s.Deployments} deployments × {s.Replicas} replicas, {DateTime.UtcNow:yyyy-MM-dd HH:mm}Z, {Environment.ProcessorCount} cpus");
        Console.WriteLine($"# nats-server {NatsVersion(nats.Binary)} -js on {nats.Url} (store {nats.StoreDir}); heartbeat {s.HeartbeatSeconds:0.##} s, schedule period {options.SchedulePeriod.TotalSeconds:0.##} s, {s.AgentsPerConnection} agents per connection");
        Console.WriteLine();

        // The scheduler's connection (and the buckets, made once, as the first node would).
        await using var control = await ConnectAsync(nats.Url, "bench-scheduler");
        var kv = new NatsKVContext(new NatsJSContext(control));
        var buckets = new SchedulerBuckets(
            await FleetStore.OpenAsync(kv, Buckets.Nodes, 1, ct),
            await FleetStore.OpenAsync(kv, Buckets.Deployments, Buckets.DeploymentHistory, ct),
            await FleetStore.OpenAsync(kv, Buckets.Assignments, 1, ct),
            await FleetStore.OpenAsync(kv, Buckets.DeploymentStatus, 1, ct),
            await FleetStore.OpenAsync(kv, Buckets.NodeSettings, 1, ct));

        // The agents: one connection per AgentsPerConnection, each with its own KV handles.
        var run = new FleetRun(s.Nodes, total);
        var connections = new List<NatsConnection>();
        var agents = new List<SimAgent>();
        var agentTasks = new List<Task>();
        var period = TimeSpan.FromSeconds(s.HeartbeatSeconds);
        try
        {
            for (var g = 0; g * s.AgentsPerConnection < s.Nodes; g++)
            {
                var connection = await ConnectAsync(nats.Url, $"bench-agents-{g}");
                connections.Add(connection);
                var groupKv = new NatsKVContext(new NatsJSContext(connection));
                var nodes = await FleetStore.OpenAsync(groupKv, Buckets.Nodes, 1, ct);
                var assignments = await FleetStore.OpenAsync(groupKv, Buckets.Assignments, 1, ct);
                for (var i = g * s.AgentsPerConnection; i < Math.Min(s.Nodes, (g + 1) * s.AgentsPerConnection); i++)
                {
                    var agent = new SimAgent($"sim-{i:0000}", i, run);
                    agents.Add(agent);
                    agentTasks.Add(agent.WatchAsync(assignments, ct));
                    // Heartbeats spread evenly over the period, as independent nodes' would be.
                    agentTasks.Add(agent.HeartbeatAsync(nodes, period, period * i / s.Nodes, ct));
                }
            }
            if (!await run.Joined.Task.WaitAsync(TimeSpan.FromSeconds(120)).ContinueWith(t => t.IsCompletedSuccessfully, TaskScheduler.Default))
            {
                Console.Error.WriteLine($"fleet: only {run.Watching} watches and {run.Beating} first heartbeats of {s.Nodes} agents within 120 s; failures: {run.Failures}");
                return 1;
            }
            var setupSeconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            Console.WriteLine($"# {s.Nodes} agents watching and heartbeating after {setupSeconds:F1} s ({connections.Count} connections)");

            // A few agents answer their node API (status, ps), as NodeApiResponder would.
            var responders = agents.Where((_, i) => i % Math.Max(1, s.Nodes / s.Responders) == 0).Take(s.Responders).ToList();
            for (var i = 0; i < responders.Count; i++)
            {
                var connection = connections[agents.IndexOf(responders[i]) / s.AgentsPerConnection];
                agentTasks.Add(await responders[i].ServeAsync(connection, ct));
            }

            // The scheduler, as the elected leader runs it: a pass, the period, a pass…
            var scheduler = new FleetScheduler("bench-scheduler", options, NullLogger.Instance, (_, _, _) => { });
            var passes = new ConcurrentQueue<Pass>();
            var natsPid = nats.Pid;
            using var leadStop = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var lead = LeadAsync(scheduler, buckets, options.SchedulePeriod, passes, run, natsPid, leadStop.Token);
            while (passes.IsEmpty)
            {
                await Task.Delay(50, ct);
            }
            var emptyPass = passes.First();

            // The operator's side: a client connection (apply, status watch, node API requests).
            await using var client = await ConnectAsync(nats.Url, "bench-operator");
            var statusWatch = WatchStatusAsync(buckets.Status, total, run, ct);
            var deployments = Enumerable.Range(0, s.Deployments).Select(MakeDeployment(s.Replicas)).ToList();
            var responderNames = responders.Select(a => a.Name).ToArray();
            using var probeStop = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var probe = RoundTripsAsync(client, responderNames, int.MaxValue, TimeSpan.FromMilliseconds(5), probeStop.Token);

            var applyStart = Stopwatch.GetTimestamp();
            await new FleetClient(client).ApplyAsync(deployments, cancellationToken: ct);
            var applied = Stopwatch.GetTimestamp();
            run.Applied = applied;
            var allReported = await Within(run.AllReported.Task, TimeSpan.FromSeconds(150));
            var allReady = await Within(run.StatusComplete.Task, TimeSpan.FromSeconds(allReported ? 60 : 1));
            await probeStop.CancelAsync();
            var underLoad = await probe;
            var afterReady = passes.Count;

            // Steady state: every replica placed and reported, heartbeats flowing.
            await Task.Delay(1000, ct);
            var steadyRtt = await RoundTripsAsync(client, responderNames, s.Requests, TimeSpan.Zero, ct);
            var passDeadline = DateTime.UtcNow.AddSeconds(60);
            while (passes.Count < afterReady + 2 && DateTime.UtcNow < passDeadline)
            {
                await Task.Delay(100, ct);
            }
            var reportedAtEnd = run.ReportedTotal;

            // The node list a pass reads while heartbeats arrive: does a node come back twice?
            var duplicates = new List<int>();
            for (var i = 0; i < 5; i++)
            {
                var read = await FleetState.ReadNodesAsync(buckets.Nodes, options, ct, settings: buckets.Settings);
                duplicates.Add(read.Count - read.Select(n => n.Info.Node).Distinct(StringComparer.Ordinal).Count());
            }

            // The same 10,000 assignments written again into the live fleet (1,000 watches, heartbeats
            // flowing; the values are unchanged), 64 puts in flight instead of one: what pipelining would give.
            await leadStop.CancelAsync();
            await Quietly(lead);
            var lastDeliveryAt = run.LastDeliveryAt;
            var current = new List<KeyValuePair<string, byte[]>>();
            DateTimeOffset firstPut = DateTimeOffset.MaxValue, lastPut = DateTimeOffset.MinValue;
            await foreach (var entry in buckets.Assignments.WatchAsync<byte[]>(opts: new NatsKVWatchOpts { IgnoreDeletes = true }, cancellationToken: ct))
            {
                current.Add(new(entry.Key, entry.Value!));
                firstPut = entry.Created < firstPut ? entry.Created : firstPut;
                lastPut = entry.Created > lastPut ? entry.Created : lastPut;
                if (entry.Delta == 0)
                {
                    break;
                }
            }
            var (rewriteNats0, rewriteSelf0) = (CpuSeconds(natsPid), Environment.CpuUsage.TotalTime.TotalSeconds);
            var rewriteStart = Stopwatch.GetTimestamp();
            var inFlight = new List<Task>();
            foreach (var (key, value) in current)
            {
                inFlight.Add(buckets.Assignments.PutAsync(key, value, cancellationToken: ct).AsTask());
                if (inFlight.Count == 64)
                {
                    await Task.WhenAll(inFlight);
                    inFlight.Clear();
                }
            }
            await Task.WhenAll(inFlight);
            var rewriteSeconds = Stopwatch.GetElapsedTime(rewriteStart).TotalSeconds;
            var (rewriteNats, rewriteSelf) = (CpuSeconds(natsPid) - rewriteNats0, Environment.CpuUsage.TotalTime.TotalSeconds - rewriteSelf0);
            await Task.Delay(1500, ct); // the agents take the deliveries in before everything stops

            // Everything stops; what follows reads the buckets on a quiet server.
            await stop.CancelAsync();
            await Quietly(lead);
            await Quietly(statusWatch);
            foreach (var task in agentTasks)
            {
                await Quietly(task);
            }
            using var offline = new CancellationTokenSource(TimeSpan.FromMinutes(2));
            var analysis = await AnalyseAsync(buckets, options, total, natsPid, offline.Token);

            // ---------------------------------------------------------------- report
            var passList = passes.ToList();
            var first = passList.FirstOrDefault(p => p.Writes > 0); // one value per node: 1,000 writes place 10,000 replicas
            var firstIndex = first is null ? -1 : passList.IndexOf(first);
            var steadyPasses = passList.Skip(afterReady).Where(p => p.Writes == 0).ToList();
            var placeRate = total / (analysis.PlanFirstMs / 1000);
            var e2eRate = first is null ? double.NaN : total / (first.Ms / 1000);
            var applyMs = Stopwatch.GetElapsedTime(applyStart, applied).TotalMilliseconds;
            var toRunning = allReported ? Stopwatch.GetElapsedTime(applied, run.AllReportedAt).TotalSeconds : double.NaN;
            var toStatus = allReady ? Stopwatch.GetElapsedTime(applied, run.StatusCompleteAt).TotalSeconds : double.NaN;
            var lastDelivery = lastDeliveryAt == 0 ? double.NaN : Stopwatch.GetElapsedTime(applied, lastDeliveryAt).TotalSeconds;
            var writeSpanMs = current.Count > 0 ? (lastPut - firstPut).TotalMilliseconds : double.NaN;
            var passStart = first is null ? double.NaN : Stopwatch.GetElapsedTime(applied, first.Start).TotalSeconds;
            var (p50, p99, max) = Percentiles(steadyRtt.Samples);
            var (lp50, lp99, lmax) = Percentiles(underLoad.Samples);

            Console.WriteLine();
            Console.WriteLine("| measure | result | target |");
            Console.WriteLine("|---|---|---|");
            Console.WriteLine($"| pure placement: `FleetScheduler.Plan`, {s.Nodes} nodes, {total} new replicas (median of {analysis.PlanRuns}) | {analysis.PlanFirstMs:F0} ms = **{placeRate:N0} placements/s** | ≥ 10,000/s: {Verdict(placeRate >= 10000, $"missed by {10000 - placeRate:N0}/s")} |");
            Console.WriteLine($"| of which `Placement.Place` alone (filter + pick per replica) | {analysis.PlaceOnlyMs:F0} ms | |");
            Console.WriteLine($"| first full pass end to end (`ScheduleOnceAsync`: KV reads, plan, {first?.Writes ?? 0} KV puts) | {(first is null ? "-" : $"{first.Ms / 1000:F2} s = **{e2eRate:N0} placements/s** written")} | ≥ 10,000/s: {(first is null ? "-" : Verdict(e2eRate >= 10000, $"missed by {10000 - e2eRate:N0}/s"))} |");
            Console.WriteLine($"| its {current.Count} puts (one value per node, {total} replicas), by the server's timestamps | {writeSpanMs / 1000:F2} s = {writeSpanMs * 1000 / Math.Max(1, current.Count):F0} µs per put | |");
            Console.WriteLine($"| apply → every replica reported running+ready in a heartbeat | {Show(toRunning, "s")} | |");
            Console.WriteLine($"|   apply → first full pass starts / last assignment delivered to its node | {Show(passStart, "s")} / {Show(lastDelivery, "s")} | |");
            Console.WriteLine($"| apply → orch-deployment-status says all {total} updated+ready (next pass) | {Show(toStatus, "s")} | |");
            Console.WriteLine($"| node API round trip, `NodeClient.StatusAsync`, steady state ({steadyRtt.Samples.Count} requests, {steadyRtt.Errors} errors) | p50 {p50:F2} ms, p99 **{p99:F2} ms**, max {max:F2} ms | p99 ≤ 5 ms: {Verdict(p99 <= 5, $"missed by {p99 - 5:F2} ms")} |");
            Console.WriteLine($"| the same during apply → all running ({underLoad.Samples.Count} requests, one per 5 ms, {underLoad.Errors} errors) | p50 {lp50:F2} ms, p99 {lp99:F2} ms, max {lmax:F2} ms | |");
            Console.WriteLine($"| the same {current.Count} assignment puts into the live fleet again, 64 in flight (what pipelined writes would give) | {rewriteSeconds:F2} s = {current.Count / rewriteSeconds:N0} puts/s | |");
            Console.WriteLine();
            Console.WriteLine($"CPU during the first full pass ({first?.Ms / 1000 ?? double.NaN:F2} s of wall time, {Environment.ProcessorCount} cores = {Environment.ProcessorCount * (first?.Ms ?? double.NaN) / 1000:F1} core-s): nats-server {first?.NatsCpuSeconds ?? double.NaN:F2} s, the bench process ({s.Nodes} agents, scheduler, client) {first?.BenchCpuSeconds ?? double.NaN:F2} s."
                + $" During the pipelined rewrite ({rewriteSeconds:F2} s): nats-server {rewriteNats:F2} s, bench {rewriteSelf:F2} s.");
            Console.WriteLine($"Scheduler passes that failed: {run.PassFailures.Count}{(run.PassFailures.IsEmpty ? "" : ": " + string.Join("; ", run.PassFailures))}.");
            Console.WriteLine($"Duplicate node entries in FleetState.ReadNodesAsync while heartbeats flow (5 reads): {string.Join(", ", duplicates)}.");
            Console.WriteLine($"Sizes: an assignment value {current.FirstOrDefault().Value?.Length ?? 0} bytes; a heartbeat with {total / s.Nodes} containers {analysis.HeartbeatBytes} bytes.");
            Console.WriteLine($"Apply of {s.Deployments} deployments: {applyMs:F0} ms. Replicas reported running at the end: {reportedAtEnd} of {total}; in the bucket: {analysis.RunningInHeartbeats}. Assignments in the bucket: {analysis.Assignments}. Heartbeat failures: {run.Failures}.");
            Console.WriteLine($"Scheduler passes: empty fleet ({s.Nodes} nodes, no deployments) {emptyPass.Ms:F0} ms; first full pass #{firstIndex} {first?.Ms ?? double.NaN:F0} ms; steady state (0 writes) {string.Join(", ", steadyPasses.Select(p => $"{p.Ms:F0}"))} ms.");
            Console.WriteLine($"All passes (ms/writes): {string.Join(", ", passList.Select(p => $"{p.Ms:F0}/{p.Writes}"))}.");
            Console.WriteLine($"Reads on a quiet server: {s.Nodes} nodes (one watch, as the pass reads them) {analysis.ReadNodesMs:F0} ms; the assignments of {analysis.Assignments} replicas (one value per node) with one get per key {analysis.ReadAssignedPerKeyMs:F0} ms, with one watch (ordered consumer, as the pass reads them) {analysis.ReadAssignedWatchMs:F0} ms.");
            Console.WriteLine($"Plan with everything placed and reported (the steady-state pass's arithmetic, median of {analysis.PlanRuns}): {analysis.PlanSteadyMs:F0} ms.");
            foreach (var cost in new[] { analysis.Quiet, analysis.Watched })
            {
                Console.WriteLine($"KV puts on a quiet server, {cost.Puts} assignment-sized values into a bucket with {cost.Watchers} KV watches: one at a time {cost.SequentialUs:F0} µs each ({1e6 / cost.SequentialUs:N0}/s);"
                    + $" 64 in flight {cost.PipelinedUs:F1} µs each ({1e6 / cost.PipelinedUs:N0}/s); nats-server CPU {cost.NatsCpuUsPerPut:F0} µs per put.");
            }
            Console.WriteLine();
            Console.WriteLine("Peer figures (published by HashiCorp, not measured here): Nomad C1M (2015), 1,000,000 containers on 5,000 nodes in under 5 minutes, about 3,300 placements/s;");
            Console.WriteLine("Nomad C2M (2020), 2,000,000 containers on 6,100 nodes in 22 minutes, about 1,500 placements/s.");
            Console.WriteLine($"Whole run: {Stopwatch.GetElapsedTime(started).TotalSeconds:F0} s.");
            return allReported ? 0 : 1;
        }
        finally
        {
            await stop.CancelAsync();
            foreach (var task in agentTasks)
            {
                await Quietly(task);
            }
            foreach (var connection in connections)
            {
                await connection.DisposeAsync();
            }
        }
    }

    private sealed record Pass(long Start, double Ms, int Writes, double NatsCpuSeconds, double BenchCpuSeconds);

    private sealed record Analysis(int PlanRuns, double PlanFirstMs, double PlaceOnlyMs, double PlanSteadyMs, double ReadNodesMs, double ReadAssignedPerKeyMs,
        double ReadAssignedWatchMs, int Assignments, int RunningInHeartbeats, int HeartbeatBytes, PutCost Quiet, PutCost Watched);

    private sealed record PutCost(int Watchers, int Puts, double SequentialUs, double PipelinedUs, double NatsCpuUsPerPut);

    /// <summary>Puts into a fresh bucket with <paramref name="watchers"/> KV watches on it (each on its own n&lt;i&gt;.* keys), one at a time and 64 in flight.</summary>
    private static async Task<PutCost> PutCostAsync(INatsJSContext js, string bucket, int watchers, byte[] value, int natsPid, CancellationToken ct)
    {
        var store = await FleetStore.OpenAsync(new NatsKVContext((NatsJSContext)js), bucket, 1, ct);
        using var stopWatching = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var ready = 0;
        var watches = Enumerable.Range(0, watchers).Select(i => Task.Run(async () =>
        {
            var opts = new NatsKVWatchOpts { OnNoData = _ => { Interlocked.Increment(ref ready); return ValueTask.FromResult(false); } };
            try
            {
                await foreach (var _ in store.WatchAsync<byte[]>($"n{i:0000}.*", opts: opts, cancellationToken: stopWatching.Token))
                {
                }
            }
            catch (OperationCanceledException)
            {
            }
        }, CancellationToken.None)).ToList();
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (Volatile.Read(ref ready) < watchers && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50, ct);
        }
        const int Puts = 3000;
        var nats0 = CpuSeconds(natsPid);
        var t = Stopwatch.GetTimestamp();
        for (var i = 0; i < Puts; i++)
        {
            await store.PutAsync($"n{i % Math.Max(1, watchers == 0 ? 1000 : watchers):0000}.r{i}", value, cancellationToken: ct);
        }
        var sequentialUs = Stopwatch.GetElapsedTime(t).TotalMicroseconds / Puts;
        t = Stopwatch.GetTimestamp();
        var inFlight = new List<Task>();
        for (var i = 0; i < Puts; i++)
        {
            inFlight.Add(store.PutAsync($"n{i % Math.Max(1, watchers == 0 ? 1000 : watchers):0000}.p{i}", value, cancellationToken: ct).AsTask());
            if (inFlight.Count == 64)
            {
                await Task.WhenAll(inFlight);
                inFlight.Clear();
            }
        }
        await Task.WhenAll(inFlight);
        var pipelinedUs = Stopwatch.GetElapsedTime(t).TotalMicroseconds / Puts;
        var natsCpuUs = (CpuSeconds(natsPid) - nats0) * 1e6 / (2 * Puts);
        await stopWatching.CancelAsync();
        foreach (var watch in watches)
        {
            await Quietly(watch);
        }
        if (Volatile.Read(ref ready) < watchers)
        {
            Console.Error.WriteLine($"fleet: only {ready} of {watchers} scratch watches were ready");
        }
        return new PutCost(watchers, Puts, sequentialUs, pipelinedUs, natsCpuUs);
    }

    private static Func<int, Deployment> MakeDeployment(int replicas) => i => new Deployment
    {
        Name = $"app{i}",
        Replicas = replicas,
        SpreadBy = "zone",
        Template = new Workload
        {
            Name = $"app{i}",
            Image = Image,
            Command = ["sleep", "1000000"],
            Network = NetworkMode.None,
            Resources = new Resources { Cpu = $"{CpuRequestMilli}m", Memory = $"{MemoryRequestBytes >> 20}Mi" },
        },
    };

    private static async Task LeadAsync(FleetScheduler scheduler, SchedulerBuckets buckets, TimeSpan period, ConcurrentQueue<Pass> passes, FleetRun run, int natsPid, CancellationToken ct)
    {
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var start = Stopwatch.GetTimestamp();
                var (nats0, self0) = (CpuSeconds(natsPid), Environment.CpuUsage.TotalTime.TotalSeconds);
                try
                {
                    await scheduler.ScheduleOnceAsync(buckets, ct);
                    passes.Enqueue(new Pass(start, Stopwatch.GetElapsedTime(start).TotalMilliseconds, scheduler.LastWrites,
                        CpuSeconds(natsPid) - nats0, Environment.CpuUsage.TotalTime.TotalSeconds - self0));
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    run.PassFailed($"after {Stopwatch.GetElapsedTime(start).TotalMilliseconds:F0} ms, {(run.Applied == 0 ? "before apply" : $"{Stopwatch.GetElapsedTime(run.Applied, start).TotalSeconds:F1} s after apply")}: {e.GetType().Name}: {e.Message}");
                }
                await Task.Delay(period, ct);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>utime + stime of a process, in seconds (/proc/PID/stat, clock ticks of 10 ms).</summary>
    private static double CpuSeconds(int pid)
    {
        if (pid == 0)
        {
            return double.NaN;
        }
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
    }


    /// <summary>Watches orch-deployment-status until the deployments' updatedReady add up to every replica.</summary>
    private static async Task WatchStatusAsync(INatsKVStore status, int total, FleetRun run, CancellationToken ct)
    {
        var ready = new Dictionary<string, int>(StringComparer.Ordinal);
        await foreach (var entry in status.WatchAsync<byte[]>(cancellationToken: ct))
        {
            if (entry.Value is { Length: > 0 } value)
            {
                ready[entry.Key] = JsonSerializer.Deserialize(value, FleetJsonContext.Default.DeploymentStatus)!.UpdatedReady;
                if (ready.Values.Sum() >= total)
                {
                    run.StatusCompleteAt = Stopwatch.GetTimestamp();
                    run.StatusComplete.TrySetResult();
                    return;
                }
            }
        }
    }

    private sealed record RoundTrips(List<double> Samples, int Errors);

    /// <summary>Requests to the responders' node API (status), round robin; after 200 unrecorded warm-up requests.</summary>
    private static async Task<RoundTrips> RoundTripsAsync(NatsConnection connection, string[] nodes, int count, TimeSpan spacing, CancellationToken ct)
    {
        var clients = nodes.Select(n => new NodeClient(connection, n, TimeSpan.FromSeconds(5))).ToArray();
        var samples = new List<double>();
        var errors = 0;
        try
        {
            for (var i = -200; i < count && !ct.IsCancellationRequested; i++)
            {
                var start = Stopwatch.GetTimestamp();
                try
                {
                    await clients[(i + 200) % clients.Length].StatusAsync(ct);
                    if (i >= 0)
                    {
                        samples.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                    }
                }
                catch (NodeRequestException)
                {
                    errors++;
                }
                if (spacing > TimeSpan.Zero)
                {
                    await Task.Delay(spacing, ct);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        return new RoundTrips(samples, errors);
    }

    /// <summary>Reads the buckets as a pass does, times <see cref="FleetScheduler.Plan"/>, and times KV puts, on a quiet server.</summary>
    private static async Task<Analysis> AnalyseAsync(SchedulerBuckets buckets, FleetOptions options, int total, int natsPid, CancellationToken ct)
    {
        var t = Stopwatch.GetTimestamp();
        var nodes = await FleetState.ReadNodesAsync(buckets.Nodes, options, ct, settings: buckets.Settings);
        var readNodesMs = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
        var deployments = await FleetState.ReadDeploymentsAsync(buckets.Deployments, ct);

        // The assignments (one value per node), one get per key, then with one watch (what ScheduleOnceAsync does).
        t = Stopwatch.GetTimestamp();
        var perNodeValues = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        await foreach (var key in buckets.Assignments.GetKeysAsync(cancellationToken: ct))
        {
            var entry = await buckets.Assignments.TryGetEntryAsync<byte[]>(key, cancellationToken: ct);
            if (entry.Success && entry.Value.Value is { Length: > 0 } value)
            {
                perNodeValues[key] = value;
            }
        }
        var perKeyMs = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
        var assigned = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var (node, value) in perNodeValues)
        {
            foreach (var assignment in NodeAssignments.Parse(value).Replicas)
            {
                assigned[$"{node}.{assignment.Replica}"] = assignment.ToBytes();
            }
        }
        t = Stopwatch.GetTimestamp();
        var watched = 0;
        if (perNodeValues.Count > 0)
        {
            await foreach (var entry in buckets.Assignments.WatchAsync<byte[]>(opts: new NatsKVWatchOpts { IgnoreDeletes = true }, cancellationToken: ct))
            {
                watched++;
                if (entry.Delta == 0)
                {
                    break;
                }
            }
        }
        var watchMs = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
        if (watched != perNodeValues.Count)
        {
            Console.Error.WriteLine($"fleet: the watch saw {watched} node values, the per-key read {perNodeValues.Count}");
        }
        var statuses = new Dictionary<string, DeploymentStatus>(StringComparer.Ordinal);
        await foreach (var key in buckets.Status.GetKeysAsync(cancellationToken: ct))
        {
            var entry = await buckets.Status.TryGetEntryAsync<byte[]>(key, cancellationToken: ct);
            if (entry.Success && entry.Value.Value is { Length: > 0 } value)
            {
                statuses[key] = JsonSerializer.Deserialize(value, FleetJsonContext.Default.DeploymentStatus)!;
            }
        }
        var running = nodes.Sum(n => (n.Info.Containers ?? []).Count(c => c is { State: ContainerState.Running, Ready: true }));

        // Plan as in the first pass: the same nodes with nothing on them, nothing assigned yet.
        var fresh = nodes.Select(n => n with
        {
            Info = n.Info with { Containers = [], Status = SimAgent.StatusFor(0) },
        }).ToList();
        const int Runs = 5;
        var planFirst = new List<double>();
        var placeOnly = new List<double>();
        var planSteady = new List<double>();
        var now = DateTimeOffset.UtcNow;
        for (var i = 0; i < Runs; i++)
        {
            t = Stopwatch.GetTimestamp();
            var desired = FleetScheduler.Plan(deployments, fresh, new Dictionary<string, byte[]>(), new Dictionary<string, DeploymentStatus>(), now, out var reports);
            planFirst.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
            if (desired.Count != total || reports.Values.Any(r => r.Unschedulable.Count > 0))
            {
                Console.Error.WriteLine($"fleet: Plan placed {desired.Count} of {total}; unschedulable: {reports.Values.Sum(r => r.Unschedulable.Count)}");
            }
            t = Stopwatch.GetTimestamp();
            var perNode = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var deployment in deployments)
            {
                foreach (var (_, node) in Placement.Place(deployment, fresh, new Dictionary<string, string>(), perNode).Replicas)
                {
                    perNode[node] = perNode.GetValueOrDefault(node) + 1;
                }
            }
            placeOnly.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
            t = Stopwatch.GetTimestamp();
            FleetScheduler.Plan(deployments, nodes, assigned, statuses, now, out _);
            planSteady.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
        }

        // KV puts of assignment-sized values into scratch buckets, on the now quiet server: with
        // no watcher, then with one watch per simulated node (n0000.* …), each put matching one.
        var sample = assigned.Values.FirstOrDefault() ?? new byte[300];
        var quiet = await PutCostAsync(buckets.Assignments.JetStreamContext, "bench-scratch-0", 0, sample, natsPid, ct);
        var watched1000 = await PutCostAsync(buckets.Assignments.JetStreamContext, "bench-scratch-w", nodes.Count, sample, natsPid, ct);

        return new Analysis(Runs, Median(planFirst), Median(placeOnly), Median(planSteady), readNodesMs, perKeyMs, watchMs, assigned.Count,
            running, nodes.Count == 0 ? 0 : JsonSerializer.SerializeToUtf8Bytes(nodes[0].Info, FleetJsonContext.Default.NodeInfo).Length, quiet, watched1000);
    }

    /// <summary>What the agents share: counters and the moments the run waits for.</summary>
    private sealed class FleetRun(int nodes, int total)
    {
        private int _watching, _beating, _reported, _failures;
        public TaskCompletionSource Joined { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public TaskCompletionSource AllReported { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public TaskCompletionSource StatusComplete { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public long Applied { get; set; }
        public long AllReportedAt { get; private set; }
        public long StatusCompleteAt { get; set; }
        public long LastDeliveryAt { get; private set; }
        public int Watching => Volatile.Read(ref _watching);
        public int Beating => Volatile.Read(ref _beating);
        public int ReportedTotal => Volatile.Read(ref _reported);
        public int Failures => Volatile.Read(ref _failures);

        public void WatchReady() => Check(Interlocked.Increment(ref _watching), Beating);
        public void FirstBeat() => Check(Watching, Interlocked.Increment(ref _beating));
        public void Failed() => Interlocked.Increment(ref _failures);
        public ConcurrentQueue<string> PassFailures { get; } = new();
        public void PassFailed(string why) => PassFailures.Enqueue(why);
        public void Delivered() => LastDeliveryAt = Stopwatch.GetTimestamp();

        public void Reported(int delta)
        {
            if (delta != 0 && Interlocked.Add(ref _reported, delta) == total)
            {
                AllReportedAt = Stopwatch.GetTimestamp();
                AllReported.TrySetResult();
            }
        }

        private void Check(int watching, int beating)
        {
            if (watching >= nodes && beating >= nodes)
            {
                Joined.TrySetResult();
            }
        }
    }

    /// <summary>One simulated node: the real heartbeat and assignment watch, no containers.</summary>
    private sealed class SimAgent(string name, int index, FleetRun run)
    {
        private readonly ConcurrentDictionary<string, ContainerBrief> _containers = new(StringComparer.Ordinal);
        private readonly DateTimeOffset _startedAt = DateTimeOffset.UtcNow;
        private readonly NodeInfo _info = new()
        {
            Node = name,
            NodeId = Guid.NewGuid().ToString("N"),
            Version = "bench",
            Arch = "x64",
            Kernel = Environment.OSVersion.Version.ToString(),
            Runtime = "simulated",
            Labels = new Dictionary<string, string>(StringComparer.Ordinal) { ["zone"] = $"z{index % 10}" },
            StartedAt = DateTimeOffset.UtcNow,
        };
        private int _reported;
        private bool _watchReady;

        public string Name => name;

        public static NodeStatus StatusFor(int containers) => new()
        {
            CpuMilliCapacity = 4000,
            CpuMilliAllocatable = 3900,
            MemoryCapacityBytes = 8L << 30,
            MemoryAllocatableBytes = (8L << 30) - (256L << 20),
            CpuMilliRequested = (int)(containers * CpuRequestMilli),
            MemoryRequestedBytes = containers * MemoryRequestBytes,
            MemoryUsedBytes = containers * (2L << 20),
            Containers = containers,
            Running = containers,
            Ready = containers,
            Driver = "simulated",
        };

        public async Task HeartbeatAsync(INatsKVStore nodes, TimeSpan period, TimeSpan offset, CancellationToken ct)
        {
            try
            {
                await Task.Delay(offset, ct);
                using var timer = new PeriodicTimer(period);
                var first = true;
                do
                {
                    var briefs = _containers.Values.OrderBy(c => c.Name, StringComparer.Ordinal).ToList();
                    var info = _info with
                    {
                        UptimeSeconds = Math.Round((DateTimeOffset.UtcNow - _startedAt).TotalSeconds, 1),
                        Status = StatusFor(briefs.Count),
                        Containers = briefs,
                    };
                    try
                    {
                        await nodes.PutAsync(name, JsonSerializer.SerializeToUtf8Bytes(info, FleetJsonContext.Default.NodeInfo), cancellationToken: ct);
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        run.Failed(); // FleetMember logs and carries on; so does this
                        continue;
                    }
                    run.Reported(briefs.Count - _reported);
                    _reported = briefs.Count;
                    if (first)
                    {
                        first = false;
                        run.FirstBeat();
                    }
                }
                while (await timer.WaitForNextTickAsync(ct));
            }
            catch (OperationCanceledException)
            {
            }
        }

        /// <summary>Its own key, as <c>FleetMember.FollowAssignmentsAsync</c> watches it; a replica assigned is a replica running.</summary>
        public async Task WatchAsync(INatsKVStore assignments, CancellationToken ct)
        {
            var opts = new NatsKVWatchOpts
            {
                OnNoData = _ =>
                {
                    Ready();
                    return ValueTask.FromResult(false);
                },
            };
            try
            {
                await foreach (var entry in assignments.WatchAsync<byte[]>(name, opts: opts, cancellationToken: ct))
                {
                    Ready();
                    var replicas = entry.Operation is NatsKVOperation.Del or NatsKVOperation.Purge || entry.Value is not { Length: > 0 } value
                        ? [] : NodeAssignments.Parse(value).Replicas;
                    var names = new HashSet<string>(StringComparer.Ordinal);
                    foreach (var assignment in replicas)
                    {
                        names.Add(assignment.Replica);
                        var hash = Supervisor.SpecHash(assignment.ToWorkload());
                        if (!_containers.TryGetValue(assignment.Replica, out var had) || had.SpecHash != hash)
                        {
                            _containers[assignment.Replica] = new ContainerBrief { Name = assignment.Replica, State = ContainerState.Running, Ready = true, SpecHash = hash };
                            run.Delivered();
                        }
                    }
                    foreach (var gone in _containers.Keys.Where(k => !names.Contains(k)).ToList())
                    {
                        _containers.TryRemove(gone, out _);
                    }
                }
            }
            catch (OperationCanceledException)
            {
            }
        }

        private void Ready()
        {
            if (!_watchReady)
            {
                _watchReady = true;
                run.WatchReady();
            }
        }

        /// <summary>Answers orch.node.&lt;name&gt;.* like the node API: status and ps; anything else is an error reply.</summary>
        public async Task<Task> ServeAsync(NatsConnection connection, CancellationToken ct)
        {
            var sub = await connection.SubscribeCoreAsync<byte[]>(Subjects.NodeAll(name), cancellationToken: ct);
            return Task.Run(async () =>
            {
                try
                {
                    await foreach (var message in sub.Msgs.ReadAllAsync(ct))
                    {
                        var op = message.Subject[(message.Subject.LastIndexOf('.') + 1)..];
                        var reply = op switch
                        {
                            NodeOps.Status => JsonSerializer.SerializeToUtf8Bytes(StatusFor(_containers.Count), FleetJsonContext.Default.NodeStatus),
                            NodeOps.List => JsonSerializer.SerializeToUtf8Bytes(new ContainerListReply
                            {
                                Containers = _containers.Values.Select(c => new ContainerStatus { Name = c.Name, Image = Image, State = c.State, Ready = c.Ready }).ToList(),
                            }, FleetJsonContext.Default.ContainerListReply),
                            _ => JsonSerializer.SerializeToUtf8Bytes(new ErrorReply { Error = $"the simulated node {name} answers status and ps only" }, FleetJsonContext.Default.ErrorReply),
                        };
                        await message.ReplyAsync(reply, cancellationToken: ct);
                    }
                }
                catch (OperationCanceledException)
                {
                }
                finally
                {
                    await sub.DisposeAsync();
                }
            }, CancellationToken.None);
        }
    }

    private static async Task<NatsConnection> ConnectAsync(string url, string name)
    {
        var connection = new NatsConnection(new NatsOpts { Url = url, Name = name, RequestTimeout = TimeSpan.FromSeconds(10) });
        await connection.ConnectAsync();
        return connection;
    }

    private static async Task<bool> Within(Task task, TimeSpan timeout)
    {
        try
        {
            await task.WaitAsync(timeout);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    private static async Task Quietly(Task task)
    {
        try
        {
            await task.WaitAsync(TimeSpan.FromSeconds(30));
        }
        catch (OperationCanceledException)
        {
        }
        catch (TimeoutException)
        {
            Console.Error.WriteLine("fleet: a task did not stop within 30 s");
        }
    }

    private static (double P50, double P99, double Max) Percentiles(List<double> samples)
    {
        if (samples.Count == 0)
        {
            return (double.NaN, double.NaN, double.NaN);
        }
        var sorted = samples.Order().ToArray();
        double At(double q) => sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(q * sorted.Length) - 1)];
        return (At(0.50), At(0.99), sorted[^1]);
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    private static string Verdict(bool met, string missed) => met ? "met" : $"**{missed}**";

    private static string Show(double value, string unit) => double.IsNaN(value) ? "-" : $"{value.ToString("F2", CultureInfo.InvariantCulture)} {unit}";

    private static string NatsVersion(string binary)
    {
        using var p = Process.Start(new ProcessStartInfo(binary, "--version") { RedirectStandardOutput = true })!;
        var text = p.StandardOutput.ReadToEnd().Trim();
        p.WaitForExit();
        return text;
    }
}

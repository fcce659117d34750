using System.Diagnostics;
using System.Globalization;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Fleet.Scheduler;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Bench;

/// <summary>Sizes of the global-deployment bench (issue 19).</summary>
internal sealed record GlobalBenchSettings
{
    public int Nodes { get; init; } = 1000;
    public int HoldSeconds { get; init; } = 60;
    /// <summary>Global deployments for the per-pass cost, each on every node of <see cref="CostNodes"/>.</summary>
    public int Deployments { get; init; } = 1000;
    public int CostNodes { get; init; } = 100;
}

/// <summary>
/// The scheduler's arithmetic for global deployments in simulated time (no NATS: the fleet bench
/// measures the wire): a release to N nodes in four waves (1%, 10%, 50%, the rest) with a hold per
/// wave, passes every schedule period (2 s), each node running what it was assigned and reporting
/// it ready at the next pass; then the cost of one pass with many global deployments. There is no
/// competitor to run side by side here: Kubernetes' DaemonSet controller has no waves, and Nomad's
/// system jobs need a Nomad cluster; docs/benchmarks.md compares with their documented behaviour.
/// </summary>
internal static class GlobalRolloutBench
{
    public static int Run(GlobalBenchSettings s)
    {
        Console.WriteLine($"## Global deployments: {s.Nodes} simulated nodes, 4 waves held {s.HoldSeconds} s each; {s.Deployments} global deployments on {s.CostNodes} nodes, {DateTime.UtcNow:yyyy-MM-dd HH:mm}Z, {Environment.ProcessorCount} cpus");
        var nodes = Enumerable.Range(0, s.Nodes).Select(i => Node($"gw-{i:D5}")).ToList();
        var period = TimeSpan.FromSeconds(2);
        var rollout = new RolloutSpec
        {
            MaxUnavailablePercent = 100, ProgressDeadlineSeconds = 600,
            Waves = [new WaveSpec { Percent = 1, HoldSeconds = s.HoldSeconds }, new WaveSpec { Percent = 10, HoldSeconds = s.HoldSeconds }, new WaveSpec { Percent = 50, HoldSeconds = s.HoldSeconds }],
        };
        Deployment Release(int version) => new()
        {
            Name = "sensor", Mode = DeploymentMode.Global, Revision = (ulong)version, Rollout = rollout,
            Template = new Workload { Image = "busybox:latest", Command = ["sleep", version.ToString(CultureInfo.InvariantCulture)] },
        };

        var assigned = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        var statuses = new Dictionary<string, DeploymentStatus>(StringComparer.Ordinal);
        var now = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        var passTimes = new List<double>();
        DeploymentStatus Pass(Deployment deployment)
        {
            var reported = Report(nodes, assigned);
            var t = Stopwatch.GetTimestamp();
            assigned = FleetScheduler.Plan([deployment], reported, assigned, statuses, now, out var reports);
            passTimes.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
            statuses[deployment.Name] = reports[deployment.Name];
            now += period;
            return reports[deployment.Name];
        }

        // v1 everywhere, then the release of v2 in waves.
        var v1 = Release(1);
        for (var i = 0; i < 10 && Pass(v1).Phase != RolloutPhase.Complete; i++)
        {
        }
        passTimes.Clear();
        var v2 = Release(2);
        var start = now;
        var wall = Stopwatch.GetTimestamp();
        var waveDone = new List<(string Wave, TimeSpan At)>();
        string? wave = null;
        DeploymentStatus status;
        do
        {
            status = Pass(v2);
            if (status.Wave != wave)
            {
                if (wave is not null)
                {
                    waveDone.Add((wave, now - start));
                }
                wave = status.Wave;
            }
        }
        while (status.Phase != RolloutPhase.Complete && now - start < TimeSpan.FromHours(2));
        var wallMs = Stopwatch.GetElapsedTime(wall).TotalMilliseconds;
        var simulated = now - start;
        var floor = TimeSpan.FromSeconds(3 * s.HoldSeconds);
        Console.WriteLine($"release of v2 to {s.Nodes} nodes: {status.Phase} after {simulated.TotalSeconds:0} s simulated ({simulated.TotalSeconds / floor.TotalSeconds:0.00}× the 3 holds' {floor.TotalSeconds:0} s floor), {passTimes.Count} passes, {wallMs:0} ms of scheduler time");
        Console.WriteLine($"  waves passed at: {string.Join(", ", waveDone.Select(w => $"{w.Wave} {w.At.TotalSeconds:0} s"))}");
        Console.WriteLine($"  pass (Plan) p50 {Percentile(passTimes, 0.5):0.0} ms, p99 {Percentile(passTimes, 0.99):0.0} ms, max {passTimes.Max():0.0} ms");

        // The cost of a pass with many global deployments, each on every node, steady (all running).
        var costNodes = Enumerable.Range(0, s.CostNodes).Select(i => Node($"c-{i:D5}")).ToList();
        var many = Enumerable.Range(0, s.Deployments).Select(i => new Deployment
        {
            Name = $"app{i:D4}", Mode = DeploymentMode.Global, Revision = 1,
            Template = new Workload { Image = "busybox:latest", Command = ["sleep", i.ToString(CultureInfo.InvariantCulture)] },
        }).ToList();
        var manyAssigned = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        var manyStatuses = new Dictionary<string, DeploymentStatus>(StringComparer.Ordinal);
        var before = GC.GetAllocatedBytesForCurrentThread();
        var t0 = Stopwatch.GetTimestamp();
        manyAssigned = FleetScheduler.Plan(many, Report(costNodes, manyAssigned), manyAssigned, manyStatuses, now, out var first);
        var firstMs = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        var firstAlloc = GC.GetAllocatedBytesForCurrentThread() - before;
        foreach (var (name, report) in first)
        {
            manyStatuses[name] = report;
        }
        var steady = Report(costNodes, manyAssigned);
        var steadyTimes = new List<double>();
        long steadyAlloc = 0;
        for (var i = 0; i < 3; i++)
        {
            before = GC.GetAllocatedBytesForCurrentThread();
            t0 = Stopwatch.GetTimestamp();
            FleetScheduler.Plan(many, steady, manyAssigned, manyStatuses, now, out _);
            steadyTimes.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
            steadyAlloc = GC.GetAllocatedBytesForCurrentThread() - before;
        }
        Console.WriteLine($"{s.Deployments} global deployments × {s.CostNodes} nodes = {manyAssigned.Count} copies: first pass {firstMs:0} ms ({firstAlloc / (1 << 20)} MiB allocated), steady pass p50 {Percentile(steadyTimes, 0.5):0} ms ({steadyAlloc / (1 << 20)} MiB allocated, {(double)steadyAlloc / manyAssigned.Count:0} B per copy)");
        Console.WriteLine();
        return status.Phase == RolloutPhase.Complete ? 0 : 1;
    }

    private static NodeEntry Node(string name) => new()
    {
        State = NodeCondition.Ready,
        Info = new NodeInfo
        {
            Node = name, NodeId = name, Version = "1", Arch = "x64", Kernel = "6", Runtime = "native", Labels = new Dictionary<string, string>(),
            Status = new NodeStatus { CpuMilliAllocatable = 4000, MemoryAllocatableBytes = 4L << 30 },
        },
    };

    /// <summary>Every node reports what it was assigned as running and ready (with the spec hash the scheduler checks).</summary>
    private static List<NodeEntry> Report(List<NodeEntry> nodes, Dictionary<string, byte[]> assigned)
    {
        var byNode = new Dictionary<string, List<ContainerBrief>>(StringComparer.Ordinal);
        foreach (var (key, value) in assigned)
        {
            var node = key[..key.IndexOf('.', StringComparison.Ordinal)];
            var workload = Assignment.Parse(value).ToWorkload();
            if (!byNode.TryGetValue(node, out var list))
            {
                byNode[node] = list = [];
            }
            list.Add(new ContainerBrief { Name = workload.Name, State = ContainerState.Running, Ready = true, SpecHash = Supervisor.SpecHash(workload) });
        }
        return [.. nodes.Select(n => n with { Info = n.Info with { Containers = byNode.GetValueOrDefault(n.Info.Node) ?? [] } })];
    }

    private static double Percentile(List<double> values, double p)
    {
        var sorted = values.Order().ToList();
        return sorted.Count == 0 ? 0 : sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];
    }
}

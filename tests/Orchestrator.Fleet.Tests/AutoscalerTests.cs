using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Orchestrator.Api.Workloads;
using Orchestrator.Fleet.Scheduler;
using Orchestrator.Fleet.Tests.Simulation;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Fleet.Tests;

/// <summary>
/// The CPU autoscaler in the real scheduler (FleetScheduler.ScheduleOnceAsync) against in-memory
/// buckets, with nodes whose heartbeats carry each container's CPU: only replicas that run count
/// (issue 26, item 5: one unplaceable replica made the count go 4 → 3 → 4 within 10 s).
/// </summary>
public sealed class AutoscalerTests
{
    /// <summary>
    /// A fleet of simulated nodes: each pass, every node reports the replicas assigned to it as
    /// running and ready on their spec, with the CPU figure <see cref="Cpu"/> gives (null: no figure),
    /// and what they request (so a node that is full says so).
    /// </summary>
    private sealed class Fleet
    {
        private readonly SimClock _clock = new(DateTimeOffset.UtcNow);
        private readonly FleetScheduler _scheduler;
        private readonly List<string> _nodes;
        private SchedulerBuckets _buckets = null!;

        /// <summary>Per replica name: its CPU % in the heartbeat; null for no figure. Default 0.</summary>
        public Dictionary<string, double?> Cpu { get; } = new(StringComparer.Ordinal);

        /// <summary>Replica names that a node reports in another state than running (e.g. "created").</summary>
        public Dictionary<string, ContainerState> States { get; } = new(StringComparer.Ordinal);

        /// <summary>Every replica count the deployment had after a pass, in order.</summary>
        public List<int> Counts { get; } = [];

        private Fleet(int nodes)
        {
            _nodes = [.. Enumerable.Range(1, nodes).Select(i => $"n{i}")];
            _scheduler = new FleetScheduler("n1", new FleetOptions { Heartbeat = TimeSpan.FromSeconds(1), UnreachableAfter = TimeSpan.FromSeconds(3), Clock = _clock },
                NullLogger.Instance, (_, _, _) => { });
        }

        public static async Task<Fleet> StartAsync(int nodes, Deployment deployment, CancellationToken ct)
        {
            var fleet = new Fleet(nodes);
            var context = new InMemoryKVContext(fleet._clock);
            fleet._buckets = new SchedulerBuckets(
                await FleetStore.OpenAsync(context, Buckets.Nodes, 1, ct),
                await FleetStore.OpenAsync(context, Buckets.Deployments, Buckets.DeploymentHistory, ct),
                await FleetStore.OpenAsync(context, Buckets.Assignments, 1, ct),
                await FleetStore.OpenAsync(context, Buckets.DeploymentStatus, 1, ct),
                await FleetStore.OpenAsync(context, Buckets.NodeSettings, 1, ct));
            await fleet._buckets.Deployments.PutAsync(deployment.Name, JsonSerializer.SerializeToUtf8Bytes(deployment, WorkloadJsonContext.Default.Deployment), cancellationToken: ct);
            return fleet;
        }

        /// <summary>Heartbeats from every node (what it runs now), a second, then one scheduler pass.</summary>
        public async Task PassAsync(CancellationToken ct)
        {
            var assignments = await FleetState.ReadAllAsync(_buckets.Assignments, ct);
            foreach (var node in _nodes)
            {
                var replicas = assignments.TryGetValue(node, out var entry) ? NodeAssignments.Parse(entry.Value).Replicas : [];
                var containers = replicas.Select(a =>
                {
                    var workload = a.ToWorkload();
                    var state = States.GetValueOrDefault(a.Replica, ContainerState.Running);
                    return new ContainerBrief
                    {
                        Name = a.Replica, State = state, Ready = state == ContainerState.Running, SpecHash = Supervisor.SpecHash(workload),
                        CpuPercent = Cpu.TryGetValue(a.Replica, out var cpu) ? cpu : 0,
                    };
                }).ToList();
                var requested = replicas.Sum(a => Placement.Requests(a.ToWorkload()).CpuMilli);
                var info = new NodeInfo
                {
                    Node = node, NodeId = node, Version = "sim", Arch = "x64", Kernel = "6", Runtime = "native",
                    Status = new NodeStatus
                    {
                        CpuMilliCapacity = 1000, CpuMilliAllocatable = 1000, CpuMilliRequested = (int)requested,
                        MemoryCapacityBytes = 1L << 30, MemoryAllocatableBytes = 1L << 30,
                    },
                    Containers = containers,
                };
                await _buckets.Nodes.PutAsync(node, JsonSerializer.SerializeToUtf8Bytes(info, FleetJsonContext.Default.NodeInfo), cancellationToken: ct);
            }
            _clock.Advance(TimeSpan.FromSeconds(1));
            await _scheduler.ScheduleOnceAsync(_buckets, ct);
            Counts.Add((await DeploymentAsync(ct)).Replicas);
        }

        /// <summary>The deployment as the operator stored it (the scheduler never writes it).</summary>
        public async Task<Deployment> StoredAsync(CancellationToken ct)
        {
            var entry = await _buckets.Deployments.GetEntryAsync<byte[]>("web", cancellationToken: ct);
            var deployment = JsonSerializer.Deserialize(entry.Value, WorkloadJsonContext.Default.Deployment)!;
            deployment.Revision = entry.Revision;
            return deployment;
        }

        /// <summary>The deployment as the fleet runs it: the stored one with the autoscaler's count (kept in the status).</summary>
        public async Task<Deployment> DeploymentAsync(CancellationToken ct)
        {
            var status = await _buckets.Status.TryGetEntryAsync<byte[]>("web", cancellationToken: ct);
            return SchedulerDecisions.Apply(await StoredAsync(ct),
                status.Success ? JsonSerializer.Deserialize(status.Value.Value, FleetJsonContext.Default.DeploymentStatus) : null);
        }

        public async Task<DeploymentStatus> StatusAsync(CancellationToken ct)
            => JsonSerializer.Deserialize((await _buckets.Status.GetEntryAsync<byte[]>("web", cancellationToken: ct)).Value, FleetJsonContext.Default.DeploymentStatus)!;
    }

    /// <summary>Each replica asks for 600m of a node's 1000m: one replica per node.</summary>
    private static Deployment Web(int replicas, double target) => new()
    {
        Name = "web", Replicas = replicas,
        Autoscale = new AutoscaleSpec { Min = 1, Max = 8, TargetCpuPercent = target, CooldownSeconds = 2 },
        Template = new Workload { Image = "busybox", Command = ["sleep", "3600"], Resources = new Resources { Cpu = "600m" } },
    };

    [Fact]
    public async Task An_unplaceable_replica_neither_raises_nor_lowers_the_count_over_a_minute()
    {
        var ct = TestContext.Current.CancellationToken;
        // Three nodes, four replicas: web-3 fits nowhere. The three that run use 55-68 % against a
        // 50 % target: ceil(3 × 61.3 / 50) = 4 is what runs plus the one that cannot, so nothing moves.
        // (Counting the desired 4 as running at the average asked for ceil(4 × 61.3 / 50) = 5, and
        // the unplaceable replica pushed the count up, and on a lower average down again.)
        var fleet = await Fleet.StartAsync(3, Web(4, target: 50), ct);
        fleet.Cpu["web-0"] = 55;
        fleet.Cpu["web-1"] = 68;
        fleet.Cpu["web-2"] = 61;
        for (var i = 0; i < 60; i++)
        {
            await fleet.PassAsync(ct);
        }
        var status = await fleet.StatusAsync(ct);
        Assert.Equal(3, status.Placed);
        Assert.Contains(status.Unschedulable, u => u.StartsWith("web-3: ", StringComparison.Ordinal) && u.Contains("not enough room", StringComparison.Ordinal));
        Assert.Equal(RolloutPhase.Degraded, status.Phase);
        Assert.All(fleet.Counts, count => Assert.Equal(4, count));
        Assert.Null(status.LastScale);
    }

    [Fact]
    public async Task A_replica_that_runs_without_a_cpu_figure_does_not_pull_the_average_down()
    {
        var ct = TestContext.Current.CancellationToken;
        // Four nodes, four replicas; web-3 runs but its node has no figure for it yet. The others
        // run at 55-68 % against a 65 % target: ceil(4 × 61.3 / 65) = 4. Read as 0 %, it made the
        // average 46 % and the count ceil(4 × 46 / 65) = 3.
        var fleet = await Fleet.StartAsync(4, Web(4, target: 65), ct);
        fleet.Cpu["web-0"] = 55;
        fleet.Cpu["web-1"] = 68;
        fleet.Cpu["web-2"] = 61;
        fleet.Cpu["web-3"] = null;
        for (var i = 0; i < 30; i++)
        {
            await fleet.PassAsync(ct);
        }
        Assert.Equal(4, (await fleet.StatusAsync(ct)).Placed);
        Assert.All(fleet.Counts, count => Assert.Equal(4, count));
    }

    [Fact]
    public async Task The_average_is_over_what_runs_so_the_count_follows_real_load_both_ways()
    {
        var ct = TestContext.Current.CancellationToken;
        var fleet = await Fleet.StartAsync(3, Web(2, target: 50), ct);
        // Two replicas at 90 %: ceil(2 × 90 / 50) = 4, of which three can be placed.
        fleet.Cpu["web-0"] = 90;
        fleet.Cpu["web-1"] = 90;
        fleet.Cpu["web-2"] = 90;
        for (var i = 0; i < 20 && (await fleet.DeploymentAsync(ct)).Replicas == 2; i++)
        {
            await fleet.PassAsync(ct);
        }
        Assert.Equal(4, (await fleet.DeploymentAsync(ct)).Replicas);
        var status = await fleet.StatusAsync(ct);
        Assert.Equal(4, status.AutoscaledReplicas);
        // The decision is the status's: the operator's deployment is as it was applied.
        var stored = await fleet.StoredAsync(ct);
        Assert.Equal(2, stored.Replicas);
        Assert.Equal(status.Revision, stored.Revision);
        Assert.Contains("2 → 4 replicas (average CPU 90% of a CPU over 2 running replicas, target 50%)", status.LastScale, StringComparison.Ordinal);

        // Three run at 90 %, one cannot be placed: ceil(3 × 90 / 50) = 6, clamped by nothing; it
        // asks for more because the replicas that run are loaded, not because of the one that waits.
        for (var i = 0; i < 10; i++)
        {
            await fleet.PassAsync(ct);
        }
        Assert.Equal(6, (await fleet.DeploymentAsync(ct)).Replicas);

        // Idle: three at 5 % → ceil(3 × 5 / 50) = 1 (the min).
        fleet.Cpu["web-0"] = 5;
        fleet.Cpu["web-1"] = 5;
        fleet.Cpu["web-2"] = 5;
        for (var i = 0; i < 10; i++)
        {
            await fleet.PassAsync(ct);
        }
        Assert.Equal(1, (await fleet.DeploymentAsync(ct)).Replicas);
    }

    [Fact]
    public async Task A_replica_not_yet_running_holds_the_autoscaler_until_it_runs()
    {
        var ct = TestContext.Current.CancellationToken;
        // web-2 placed but created, not running: the rollout is not complete, so nothing is scaled
        // on a partial picture (and it is not a 0 % sample when it does run).
        var fleet = await Fleet.StartAsync(3, Web(3, target: 50), ct);
        fleet.Cpu["web-0"] = 20;
        fleet.Cpu["web-1"] = 20;
        fleet.States["web-2"] = ContainerState.Created;
        for (var i = 0; i < 15; i++)
        {
            await fleet.PassAsync(ct);
        }
        Assert.All(fleet.Counts, count => Assert.Equal(3, count));
        Assert.Equal(RolloutPhase.Progressing, (await fleet.StatusAsync(ct)).Phase);
    }
}

using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using NATS.Client.KeyValueStore;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Client;
using Orchestrator.Fleet.Scheduler;
using Orchestrator.Fleet.Tests.Simulation;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Fleet.Tests;

/// <summary>
/// The scheduler is alive by the fact of its own pass: a stale heartbeat of its own node (its
/// heartbeat loop behind after a reconnect) never moves its replicas, while another node as
/// silent is judged lost and its replicas move (the control: the same clock, the same buckets).
/// A CI fault run saw a scheduler move every replica off itself 12 s after it reconnected.
/// </summary>
public sealed class SchedulerSelfTests
{
    private sealed class Fleet
    {
        public SimClock Clock { get; } = new();
        public InMemoryKVContext Kv { get; }
        public FleetOptions Options { get; }
        public FleetScheduler Scheduler { get; }
        public SchedulerBuckets Buckets { get; }

        public Fleet(string self, Microsoft.Extensions.Logging.ILogger? logger = null)
        {
            Kv = new InMemoryKVContext(Clock);
            Options = new FleetOptions { Heartbeat = TimeSpan.FromSeconds(1), UnreachableAfter = TimeSpan.FromSeconds(4), LostAfter = TimeSpan.FromSeconds(8), Clock = Clock };
            Scheduler = new FleetScheduler(self, Options, logger ?? NullLogger.Instance, (_, _, _) => { });
            Buckets = new SchedulerBuckets(Kv.GetOrCreate(Api.Buckets.Nodes), Kv.GetOrCreate(Api.Buckets.Deployments, Api.Buckets.DeploymentHistory),
                Kv.GetOrCreate(Api.Buckets.Assignments), Kv.GetOrCreate(Api.Buckets.DeploymentStatus), Kv.GetOrCreate(Api.Buckets.NodeSettings));
        }

        public async Task BeatAsync(string node) => await Buckets.Nodes.PutAsync(node, JsonSerializer.SerializeToUtf8Bytes(new NodeInfo
        {
            Node = node, NodeId = node, Version = "test", Arch = "x64", Kernel = "6", Runtime = "test", StartedAt = SimClock.DefaultStart,
        }, FleetJsonContext.Default.NodeInfo));

        public async Task<Dictionary<string, string>> WhereAsync()
        {
            var where = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var (node, entry) in await FleetState.ReadAllAsync(Buckets.Assignments, CancellationToken.None))
            {
                foreach (var replica in NodeAssignments.Parse(entry.Value).Replicas)
                {
                    where[replica.Replica] = node;
                }
            }
            return where;
        }

        /// <summary>Passes every 2 s for <paramref name="seconds"/>, the listed nodes heartbeating every second.</summary>
        public async Task RunAsync(int seconds, params string[] beating)
        {
            for (var t = 0; t < seconds; t++)
            {
                foreach (var node in beating)
                {
                    await BeatAsync(node);
                }
                if (t % 2 == 0)
                {
                    await Scheduler.ScheduleOnceAsync(Buckets, CancellationToken.None);
                }
                Clock.Advance(TimeSpan.FromSeconds(1));
            }
        }
    }

    private static async Task<Fleet> PlacedAsync()
    {
        var fleet = new Fleet("a");
        var deployment = new Deployment
        {
            Name = "calm", Replicas = 4, AntiAffinity = false,
            Template = new Workload { Image = "busybox:latest", Network = NetworkMode.None, Command = ["sleep", "100000"] },
        };
        await fleet.Buckets.Deployments.PutAsync("calm", JsonSerializer.SerializeToUtf8Bytes(deployment, WorkloadJsonContext.Default.Deployment));
        await fleet.RunAsync(12, "a", "b");
        var where = await fleet.WhereAsync();
        Assert.Equal(4, where.Count);
        Assert.Contains("a", where.Values);
        Assert.Contains("b", where.Values);
        return fleet;
    }

    [Fact]
    public async Task A_scheduler_whose_own_heartbeat_is_stale_keeps_its_replicas()
    {
        var fleet = await PlacedAsync();
        var before = await fleet.WhereAsync();
        // Three times lost_after with only b heard from: a's heartbeat loop is stuck, a schedules.
        await fleet.RunAsync(24, "b");
        var after = await fleet.WhereAsync();
        Assert.Equal(before.OrderBy(kv => kv.Key), after.OrderBy(kv => kv.Key));
        var self = (await FleetState.ReadNodesAsync(fleet.Buckets.Nodes, fleet.Options, CancellationToken.None)).Single(n => n.Info.Node == "a");
        Assert.Equal(NodeCondition.Lost, self.State); // as anyone else reads it: the rule is the scheduler's own view of itself
    }

    [Fact]
    public async Task Another_node_as_silent_is_judged_lost_and_its_replicas_move()
    {
        var fleet = await PlacedAsync();
        await fleet.RunAsync(24, "a");
        var after = await fleet.WhereAsync();
        Assert.Equal(4, after.Count);
        Assert.All(after.Values, node => Assert.Equal("a", node));
    }

    [Fact]
    public async Task An_unschedulable_replica_is_logged_when_it_becomes_so_not_on_every_pass()
    {
        // Anti-affinity, three replicas, two nodes: replica 2 has nowhere to go for 40 s (20 passes).
        var log = new ListLogger();
        var fleet = new Fleet("a", log);
        var deployment = new Deployment
        {
            Name = "spread", Replicas = 3, AntiAffinity = true,
            Template = new Workload { Image = "busybox:latest", Network = NetworkMode.None, Command = ["sleep", "100000"] },
        };
        await fleet.Buckets.Deployments.PutAsync("spread", JsonSerializer.SerializeToUtf8Bytes(deployment, WorkloadJsonContext.Default.Deployment));
        await fleet.RunAsync(40, "a", "b");
        Assert.Equal(2, (await fleet.WhereAsync()).Count);
        // The first passes wait for heartbeats (a new scheduler settles), said once per replica.
        var unschedulable = log.Lines.Where(l => l.Id == 4005).ToList();
        Assert.True(unschedulable.Count(l => l.Text.Contains("spread-2: node a: already runs a replica", StringComparison.Ordinal)) == 1, string.Join("\n", unschedulable.Select(l => l.Text)));
        Assert.True(unschedulable.Count <= 4, string.Join("\n", unschedulable.Select(l => l.Text)));

        // A change of reason is said again: a fourth replica, one more line.
        deployment.Replicas = 4;
        await fleet.Buckets.Deployments.PutAsync("spread", JsonSerializer.SerializeToUtf8Bytes(deployment, WorkloadJsonContext.Default.Deployment));
        await fleet.RunAsync(20, "a", "b");
        Assert.Equal(1, log.Lines.Count(l => l.Id == 4005 && l.Text.Contains("spread-3", StringComparison.Ordinal)));

        // A third node takes one; nothing more is logged while the last one waits.
        var before = log.Lines.Count(l => l.Id == 4005);
        await fleet.RunAsync(20, "a", "b", "c");
        Assert.Equal(3, (await fleet.WhereAsync()).Count);
        Assert.True(log.Lines.Count(l => l.Id == 4005) - before <= 1, string.Join("\n", log.Lines.Select(l => l.Text)));
    }

    /// <summary>Keeps what was logged: event id and the formatted message.</summary>
    private sealed class ListLogger : Microsoft.Extensions.Logging.ILogger
    {
        private readonly Lock _lock = new();
        private readonly List<(int Id, string Text)> _lines = [];

        public IReadOnlyList<(int Id, string Text)> Lines
        {
            get
            {
                lock (_lock)
                {
                    return [.. _lines];
                }
            }
        }

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

        public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (_lock)
            {
                _lines.Add((eventId.Id, formatter(state, exception)));
            }
        }
    }
}

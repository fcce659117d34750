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

        public Fleet(string self)
        {
            Kv = new InMemoryKVContext(Clock);
            Options = new FleetOptions { Heartbeat = TimeSpan.FromSeconds(1), UnreachableAfter = TimeSpan.FromSeconds(4), LostAfter = TimeSpan.FromSeconds(8), Clock = Clock };
            Scheduler = new FleetScheduler(self, Options, NullLogger.Instance, (_, _, _) => { });
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
}

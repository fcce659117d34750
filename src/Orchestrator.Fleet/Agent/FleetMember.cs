using System.Text.Json;
using Microsoft.Extensions.Logging;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using Orchestrator.Fleet.Protocol;
using Orchestrator.Fleet.Scheduler;
using Orchestrator.Node.Reconcile;
using Orchestrator.Node.Workloads;

namespace Orchestrator.Fleet.Agent;

/// <summary>
/// The node's part in the fleet, while connected: it heartbeats into the nodes bucket, runs
/// what the assignments bucket gives it (and only that, of the fleet's), and takes its turn as
/// the one scheduler (a lease in the leader bucket, renewed and taken over by compare-and-set).
/// When NATS goes away all three stop; the node keeps running its last assignments, which the
/// supervisor keeps on disk.
/// </summary>
public sealed partial class FleetMember
{
    private const string LeaderKey = "scheduler";
    private readonly NodeIdentity identity;
    private readonly Supervisor supervisor;
    private readonly FleetOptions options;
    private readonly ILogger logger;

    // Events wait here while NATS is away (the newest 1000; an offline week must not fill memory).
    private readonly System.Threading.Channels.Channel<NodeEvent> _events = System.Threading.Channels.Channel.CreateBounded<NodeEvent>(
        new System.Threading.Channels.BoundedChannelOptions(1000) { FullMode = System.Threading.Channels.BoundedChannelFullMode.DropOldest });

    private readonly FleetScheduler _scheduler;
    private readonly SignatureLedger _ledger;

    public FleetMember(NodeIdentity identity, Supervisor supervisor, FleetOptions options, ILogger logger)
    {
        this.identity = identity;
        this.supervisor = supervisor;
        this.options = options;
        this.logger = logger;
        supervisor.Emitted += (kind, name, message) => Emit(kind, name, message);
        _scheduler = new FleetScheduler(identity.NodeName, options, logger, Emit);
        _ledger = new SignatureLedger(Path.Combine(supervisor.StateDir, "fleet-signatures.json"));
    }

    /// <summary>Queues an event for the fleet's stream (published once connected).</summary>
    public void Emit(string kind, string name, string message)
        => _events.Writer.TryWrite(new NodeEvent { At = DateTimeOffset.UtcNow, Node = identity.NodeName, Kind = kind, Subject = name, Message = message });
    private INatsKVStore? _settings;

    /// <summary>True while this node holds the scheduler lease.</summary>
    public bool IsLeader { get; private set; }

    public async Task RunAsync(NatsConnection connection, Func<NodeInfo> describe, CancellationToken cancellationToken)
    {
        var kv = new NatsKVContext(new NatsJSContext(connection));
        INatsKVStore nodes, deployments, assignments, leader, status;
        // A worker's credentials cannot create the buckets (docs/nats-security.md): until a
        // scheduler node or the operator has, it waits here and says why, rather than failing.
        while (true)
        {
            try
            {
                nodes = await OpenAsync(kv, Buckets.Nodes, 1, cancellationToken).ConfigureAwait(false);
                deployments = await OpenAsync(kv, Buckets.Deployments, Buckets.DeploymentHistory, cancellationToken).ConfigureAwait(false);
                assignments = await OpenAsync(kv, Buckets.Assignments, 1, cancellationToken).ConfigureAwait(false);
                leader = await OpenAsync(kv, Buckets.Leader, 1, cancellationToken).ConfigureAwait(false);
                status = await OpenAsync(kv, FleetBuckets.DeploymentStatus, 1, cancellationToken).ConfigureAwait(false);
                _settings = await OpenAsync(kv, Buckets.NodeSettings, 1, cancellationToken).ConfigureAwait(false);
                break;
            }
            catch (Exception e) when (e is NatsJSException or NatsException or TimeoutException && !cancellationToken.IsCancellationRequested)
            {
                LogLoopFailed(logger, "bucket", $"the fleet's buckets cannot be opened or created ({e.Message}); with worker credentials, start a scheduler node first or create them as the operator");
                await Task.Delay(TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false);
            }
        }
        var js = new NatsJSContext(connection);
        await Task.WhenAll(
            options.Scheduler ? Forever("metrics", () => FollowMetricsAsync(connection, cancellationToken), cancellationToken) : Task.CompletedTask,
            Forever("events", () => PublishEventsAsync(js, cancellationToken), cancellationToken),
            Forever("heartbeat", () => HeartbeatAsync(nodes, describe, cancellationToken), cancellationToken),
            Forever("assignments", () => FollowAssignmentsAsync(assignments, cancellationToken), cancellationToken),
            options.Scheduler
                ? Forever("scheduler", () => LeadAsync(leader, nodes, deployments, assignments, status, cancellationToken), cancellationToken)
                : Task.CompletedTask).ConfigureAwait(false);
    }

    /// <summary>
    /// The events stream: looked up, and made only when missing (every node may be the first),
    /// so a worker needs no right to change an existing stream's limits.
    /// </summary>
    public static async Task EnsureEventStreamAsync(INatsJSContext js, CancellationToken cancellationToken)
    {
        try
        {
            await js.GetStreamAsync(NodeEvent.Stream, cancellationToken: cancellationToken).ConfigureAwait(false);
            return;
        }
        catch (NatsJSApiException e) when (e.Error.Code == 404)
        {
        }
        await js.CreateStreamAsync(new NATS.Client.JetStream.Models.StreamConfig(NodeEvent.Stream, [NodeEvent.Subjects])
        {
            MaxAge = TimeSpan.FromDays(7),
            MaxBytes = 64L << 20,
            Description = "Orchestrator events",
        }, cancellationToken).ConfigureAwait(false);
    }

    private NodeEvent? _unsent;

    private async Task PublishEventsAsync(NatsJSContext js, CancellationToken cancellationToken)
    {
        await EnsureEventStreamAsync(js, cancellationToken).ConfigureAwait(false);
        while (!cancellationToken.IsCancellationRequested)
        {
            var next = _unsent ?? await _events.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            _unsent = next; // kept until the server has it
            var ack = await js.PublishAsync(NodeEvent.SubjectFor(next.Node, next.Kind), JsonSerializer.SerializeToUtf8Bytes(next, FleetJsonContext.Default.NodeEvent), cancellationToken: cancellationToken).ConfigureAwait(false);
            ack.EnsureSuccess();
            _unsent = null;
        }
    }

    /// <summary>Custom metrics for the autoscaler: the latest number on each orch.metrics.… subject.</summary>
    private async Task FollowMetricsAsync(NatsConnection connection, CancellationToken cancellationToken)
    {
        await foreach (var message in connection.SubscribeAsync<byte[]>(Subjects.Metrics, cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            if (message.Data is { Length: > 0 and < 64 } data
                && double.TryParse(System.Text.Encoding.UTF8.GetString(data).Trim(), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var value)
                && double.IsFinite(value))
            {
                _scheduler.Metrics[message.Subject] = (value, DateTimeOffset.UtcNow);
            }
        }
    }

    public static async Task<INatsKVStore> OpenAsync(INatsKVContext kv, string bucket, int history, CancellationToken cancellationToken)
    {
        try
        {
            return await kv.GetStoreAsync(bucket, cancellationToken).ConfigureAwait(false);
        }
        catch (NatsKVException)
        {
        }
        catch (NatsJSApiException e) when (e.Error.Code == 404)
        {
        }
        return await kv.CreateOrUpdateStoreAsync(new NatsKVConfig(bucket) { History = history, Description = "Orchestrator fleet state" }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Runs a loop again after a failure (a server restart, a JetStream hiccup), until cancelled.</summary>
    private async Task Forever(string what, Func<Task> loop, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await loop().ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                LogLoopFailed(logger, what, e.Message);
            }
            try
            {
                await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task HeartbeatAsync(INatsKVStore nodes, Func<NodeInfo> describe, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            var containers = await supervisor.ListAsync().ConfigureAwait(false);
            var cpu = (await supervisor.StatsAsync(null).ConfigureAwait(false)).ToDictionary(s => s.Name, s => s.CpuPercent, StringComparer.Ordinal);
            var info = describe() with
            {
                Status = await supervisor.NodeStatusAsync().ConfigureAwait(false),
                Containers = containers.Select(c => new ContainerBrief
                {
                    Name = c.Name, State = c.State, Ready = c.Ready, SpecHash = c.SpecHash, Message = c.Message, CpuPercent = cpu.GetValueOrDefault(c.Name),
                }).ToList(),
            };
            await nodes.PutAsync(identity.NodeName, JsonSerializer.SerializeToUtf8Bytes(info, FleetJsonContext.Default.NodeInfo), cancellationToken: cancellationToken).ConfigureAwait(false);
            await Task.Delay(options.Heartbeat, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Runs what is assigned to this node (its one key in the assignments bucket, watched) and
    /// removes the fleet's workloads that no longer are. Each replica is acted on when its
    /// assignment changes: checked (<see cref="Refusal"/>), then applied; a refused one keeps
    /// what already runs under its name.
    /// </summary>
    private async Task FollowAssignmentsAsync(INatsKVStore assignments, CancellationToken cancellationToken)
    {
        var owned = await supervisor.AssignedAsync().ConfigureAwait(false);
        var seen = new Dictionary<string, byte[]>(StringComparer.Ordinal);

        async Task ConvergeAsync(NodeAssignments? value)
        {
            var keep = new HashSet<string>(StringComparer.Ordinal);
            foreach (var assignment in value?.Replicas ?? [])
            {
                var bytes = assignment.ToBytes();
                if (seen.TryGetValue(assignment.Replica, out var last) && last.AsSpan().SequenceEqual(bytes))
                {
                    if (owned.Contains(assignment.Replica))
                    {
                        keep.Add(assignment.Replica);
                    }
                    continue;
                }
                seen[assignment.Replica] = bytes;
                if (Refusal(assignment, assignment.Replica) is { } why)
                {
                    // Refused: nothing new runs, and what already runs under that name keeps running.
                    LogBadAssignment(logger, assignment.Replica, why);
                    Emit("deployment.refused", assignment.Deployment, why);
                    if (owned.Contains(assignment.Replica))
                    {
                        keep.Add(assignment.Replica);
                    }
                    continue;
                }
                try
                {
                    await supervisor.ApplyAssignedAsync(assignment.ToWorkload()).ConfigureAwait(false);
                    keep.Add(assignment.Replica);
                    owned.Add(assignment.Replica);
                }
                catch (Exception e) when (e is JsonException or NodeApiException)
                {
                    LogBadAssignment(logger, assignment.Replica, e.Message);
                }
            }
            foreach (var name in owned.Where(n => !keep.Contains(n)).ToList())
            {
                owned.Remove(name);
                seen.Remove(name);
                LogUnassigned(logger, name);
            }
            await supervisor.SyncAssignedAsync(keep).ConfigureAwait(false);
        }

        // The watch gives the current value first (nothing at all when the node has no key: then
        // everything the fleet gave it before goes), then every change as it comes.
        var options = new NatsKVWatchOpts
        {
            OnNoData = async _ =>
            {
                await ConvergeAsync(null).ConfigureAwait(false);
                return false;
            },
        };
        await foreach (var entry in assignments.WatchAsync<byte[]>(identity.NodeName, opts: options, cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            NodeAssignments? value = null;
            if (entry.Operation == NatsKVOperation.Put && entry.Value is { Length: > 0 } bytes)
            {
                try
                {
                    value = NodeAssignments.Parse(bytes);
                }
                catch (JsonException e)
                {
                    LogBadAssignment(logger, entry.Key, "not a node's assignments: " + e.Message);
                    continue;
                }
                if (value.Node != identity.NodeName)
                {
                    LogBadAssignment(logger, entry.Key, $"the value is for node '{value.Node}'");
                    continue;
                }
            }
            await ConvergeAsync(value).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Why this node will not run an assignment, or null: the replica must belong to the
    /// deployment, this node's labels must satisfy the selector the operator signed, and with
    /// trusted keys configured the signature must verify and not be older than what ran here.
    /// </summary>
    private string? Refusal(Assignment assignment, string key)
    {
        if (assignment.Replica != key || !key.StartsWith(assignment.Deployment + "-", StringComparison.Ordinal)
            || !int.TryParse(key.AsSpan(assignment.Deployment.Length + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out _))
        {
            return $"assignment '{key}' names replica '{assignment.Replica}' of deployment '{assignment.Deployment}', which do not match";
        }
        if (options.TrustedKeys.Count > 0
            && ManifestSigning.Verify(assignment.Deployment, assignment.Selector, assignment.Template, assignment.Signature, options.TrustedKeys) is { } bad)
        {
            return bad;
        }
        foreach (var (label, value) in assignment.Selector ?? [])
        {
            if (!identity.Labels.TryGetValue(label, out var has) || has != value)
            {
                return $"deployment '{assignment.Deployment}' selects nodes with {label}={value} and this node has {(has is null ? "no " + label : label + "=" + has)}; the scheduler should not have placed it here";
            }
        }
        return options.TrustedKeys.Count > 0 ? _ledger.Accept(assignment.Deployment, assignment.Signature!.Serial) : null;
    }

    /// <summary>The lease: create it when there is none, renew it while ours, take it over when its holder went quiet.</summary>
    private async Task LeadAsync(INatsKVStore leader, INatsKVStore nodes, INatsKVStore deployments, INatsKVStore assignments, INatsKVStore status, CancellationToken cancellationToken)
    {
        var me = JsonSerializer.SerializeToUtf8Bytes(identity.NodeName, FleetJsonContext.Default.String);
        ulong seenRevision = 0;
        var seenSince = DateTime.UtcNow;
        IsLeader = false;
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                var entry = await leader.TryGetEntryAsync<byte[]>(LeaderKey, cancellationToken: cancellationToken).ConfigureAwait(false);
                bool holding;
                if (!entry.Success || entry.Value.Operation is NatsKVOperation.Del or NatsKVOperation.Purge)
                {
                    holding = (entry.Success
                        ? await leader.TryUpdateAsync(LeaderKey, me, entry.Value.Revision, cancellationToken: cancellationToken).ConfigureAwait(false)
                        : await leader.TryCreateAsync(LeaderKey, me, cancellationToken: cancellationToken).ConfigureAwait(false)).Success;
                }
                else
                {
                    var holder = entry.Value.Value is { } v ? JsonSerializer.Deserialize(v, FleetJsonContext.Default.String) : null;
                    if (entry.Value.Revision != seenRevision)
                    {
                        seenRevision = entry.Value.Revision;
                        seenSince = DateTime.UtcNow;
                    }
                    // Renew ours; take over one whose holder has not renewed within the lease.
                    holding = (holder == identity.NodeName || DateTime.UtcNow - seenSince > options.LeaderLease)
                        && (await leader.TryUpdateAsync(LeaderKey, me, entry.Value.Revision, cancellationToken: cancellationToken).ConfigureAwait(false)).Success;
                }
                if (holding != IsLeader)
                {
                    IsLeader = holding;
                    LogLeadership(logger, holding ? "is now the fleet's scheduler" : "is no longer the scheduler");
                    if (holding)
                    {
                        Emit("scheduler.elected", identity.NodeName, "took the scheduler lease");
                    }
                }
                if (IsLeader)
                {
                    await _scheduler.ScheduleOnceAsync(new SchedulerBuckets(nodes, deployments, assignments, status, _settings), cancellationToken).ConfigureAwait(false);
                }
                await Task.Delay(options.SchedulePeriod, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            IsLeader = false;
        }
    }

    [LoggerMessage(EventId = 4001, Level = LogLevel.Warning, Message = "fleet {What} loop failed: {Reason}; retrying")]
    private static partial void LogLoopFailed(ILogger logger, string what, string reason);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Information, Message = "this node {What}")]
    private static partial void LogLeadership(ILogger logger, string what);

    [LoggerMessage(EventId = 4006, Level = LogLevel.Information, Message = "fleet: {Name} is no longer assigned here; removing it")]
    private static partial void LogUnassigned(ILogger logger, string name);

    [LoggerMessage(EventId = 4007, Level = LogLevel.Error, Message = "fleet: assignment {Key} cannot be run: {Reason}")]
    private static partial void LogBadAssignment(ILogger logger, string key, string reason);
}

/// <summary>Buckets beyond the protocol's core set.</summary>
public static class FleetBuckets
{
    public const string DeploymentStatus = "orch-deployment-status";
}

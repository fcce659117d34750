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

    public FleetMember(NodeIdentity identity, Supervisor supervisor, FleetOptions options, ILogger logger)
    {
        this.identity = identity;
        this.supervisor = supervisor;
        this.options = options;
        this.logger = logger;
        supervisor.Emitted += (kind, name, message) => Emit(kind, name, message);
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
        var nodes = await OpenAsync(kv, Buckets.Nodes, 1, cancellationToken).ConfigureAwait(false);
        var deployments = await OpenAsync(kv, Buckets.Deployments, Buckets.DeploymentHistory, cancellationToken).ConfigureAwait(false);
        var assignments = await OpenAsync(kv, Buckets.Assignments, 1, cancellationToken).ConfigureAwait(false);
        var leader = await OpenAsync(kv, Buckets.Leader, 1, cancellationToken).ConfigureAwait(false);
        var status = await OpenAsync(kv, FleetBuckets.DeploymentStatus, 1, cancellationToken).ConfigureAwait(false);
        _settings = await OpenAsync(kv, Buckets.NodeSettings, 1, cancellationToken).ConfigureAwait(false);
        var js = new NatsJSContext(connection);
        await Task.WhenAll(
            Forever("events", () => PublishEventsAsync(js, cancellationToken), cancellationToken),
            Forever("heartbeat", () => HeartbeatAsync(nodes, describe, cancellationToken), cancellationToken),
            Forever("assignments", () => FollowAssignmentsAsync(assignments, cancellationToken), cancellationToken),
            options.Scheduler
                ? Forever("scheduler", () => LeadAsync(leader, nodes, deployments, assignments, status, cancellationToken), cancellationToken)
                : Task.CompletedTask).ConfigureAwait(false);
    }

    /// <summary>The events stream, made if missing (every node may be the first).</summary>
    public static Task EnsureEventStreamAsync(INatsJSContext js, CancellationToken cancellationToken)
        => js.CreateOrUpdateStreamAsync(new NATS.Client.JetStream.Models.StreamConfig(NodeEvent.Stream, [NodeEvent.Subjects])
        {
            MaxAge = TimeSpan.FromDays(7),
            MaxBytes = 64L << 20,
            Description = "Orchestrator events",
        }, cancellationToken).AsTask();

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

    /// <summary>Runs what is assigned to this node; removes the fleet's workloads that no longer are.</summary>
    private async Task FollowAssignmentsAsync(INatsKVStore assignments, CancellationToken cancellationToken)
    {
        var prefix = identity.NodeName + ".";
        // First the whole current set (so that what was unassigned while we were away goes),
        // then every change as it comes.
        var current = new HashSet<string>(StringComparer.Ordinal);
        await foreach (var key in assignments.GetKeysAsync([prefix + "*"], cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            current.Add(key[prefix.Length..]);
        }
        await supervisor.SyncAssignedAsync(current).ConfigureAwait(false);
        await foreach (var entry in assignments.WatchAsync<byte[]>(prefix + "*", cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            var name = entry.Key[prefix.Length..];
            if (entry.Operation is NatsKVOperation.Del or NatsKVOperation.Purge || entry.Value is not { Length: > 0 })
            {
                if (current.Remove(name))
                {
                    await supervisor.SyncAssignedAsync(current).ConfigureAwait(false);
                    LogUnassigned(logger, name);
                }
                continue;
            }
            try
            {
                var workload = JsonSerializer.Deserialize(entry.Value, WorkloadJsonContext.Default.Workload)!;
                current.Add(name);
                await supervisor.ApplyAssignedAsync(workload).ConfigureAwait(false);
            }
            catch (Exception e) when (e is JsonException or NodeApiException)
            {
                LogBadAssignment(logger, entry.Key, e.Message);
            }
        }
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
                    await ScheduleOnceAsync(nodes, deployments, assignments, status, cancellationToken).ConfigureAwait(false);
                }
                await Task.Delay(options.SchedulePeriod, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            IsLeader = false;
        }
    }

    /// <summary>One level-triggered pass: the assignments every deployment should have, written where they differ.</summary>
    private async Task ScheduleOnceAsync(INatsKVStore nodesBucket, INatsKVStore deploymentsBucket, INatsKVStore assignmentsBucket, INatsKVStore statusBucket, CancellationToken cancellationToken)
    {
        var nodes = await FleetState.ReadNodesAsync(nodesBucket, options, cancellationToken, settings: _settings).ConfigureAwait(false);
        var deployments = await FleetState.ReadDeploymentsAsync(deploymentsBucket, cancellationToken).ConfigureAwait(false);
        var assigned = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        await foreach (var key in assignmentsBucket.GetKeysAsync(cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            var entry = await assignmentsBucket.TryGetEntryAsync<byte[]>(key, cancellationToken: cancellationToken).ConfigureAwait(false);
            if (entry.Success && entry.Value.Value is { Length: > 0 } value)
            {
                assigned[key] = value;
            }
        }
        var perNode = assigned.Keys.GroupBy(k => k[..k.IndexOf('.', StringComparison.Ordinal)]).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        var desired = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var deployment in deployments)
        {
            var current = assigned.Keys
                .Select(k => (Node: k[..k.IndexOf('.', StringComparison.Ordinal)], Replica: k[(k.IndexOf('.', StringComparison.Ordinal) + 1)..]))
                .Where(a => a.Replica.StartsWith(deployment.Name + "-", StringComparison.Ordinal) && int.TryParse(a.Replica.AsSpan(deployment.Name.Length + 1), out _))
                .GroupBy(a => a.Replica).ToDictionary(g => g.Key, g => g.First().Node, StringComparer.Ordinal);
            var placement = Placement.Place(deployment, nodes, current, perNode);
            foreach (var reason in placement.Unschedulable)
            {
                LogUnschedulable(logger, reason);
            }
            var previous = await statusBucket.TryGetEntryAsync<byte[]>(deployment.Name, cancellationToken: cancellationToken).ConfigureAwait(false);
            var before = previous.Success && previous.Value.Value is { Length: > 0 } pv ? JsonSerializer.Deserialize(pv, FleetJsonContext.Default.DeploymentStatus) : null;
            var report = Roll(deployment, placement, nodes, assigned, desired, before) with { Scheduler = identity.NodeName };
            if (report.Phase == "progressing" && deployment.Rollout is not { AutoRollback: false }
                && DateTimeOffset.UtcNow - report.LastProgressAt > TimeSpan.FromSeconds(deployment.Rollout?.ProgressDeadlineSeconds ?? 120)
                && report.Updated > report.UpdatedReady)
            {
                report = await RollBackAsync(deploymentsBucket, deployment, nodes, report, cancellationToken).ConfigureAwait(false);
            }
            report = await AutoscaleAsync(deploymentsBucket, deployment, nodes, report, before, cancellationToken).ConfigureAwait(false);
            // Written only when something in it changed: a pass every 2 s must not be a JetStream
            // write per deployment on a node's small flash disk.
            if (before is null || !SameStatus(before, report))
            {
                await statusBucket.PutAsync(deployment.Name, JsonSerializer.SerializeToUtf8Bytes(report, FleetJsonContext.Default.DeploymentStatus), cancellationToken: cancellationToken).ConfigureAwait(false);
            }
        }
        foreach (var (key, value) in desired)
        {
            if (!assigned.TryGetValue(key, out var existing) || !existing.AsSpan().SequenceEqual(value))
            {
                await assignmentsBucket.PutAsync(key, value, cancellationToken: cancellationToken).ConfigureAwait(false);
                LogAssigned(logger, key);
            }
        }
        foreach (var key in assigned.Keys.Where(k => !desired.ContainsKey(k)))
        {
            await assignmentsBucket.DeleteAsync(key, cancellationToken: cancellationToken).ConfigureAwait(false);
            LogUnassignedKey(logger, key);
        }
        var names = deployments.Select(d => d.Name).ToHashSet(StringComparer.Ordinal);
        await foreach (var key in statusBucket.GetKeysAsync(cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            if (!names.Contains(key))
            {
                await statusBucket.DeleteAsync(key, cancellationToken: cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// The assignments of one deployment for this pass, rolling: a replica already on the
    /// template, or new, gets it at once; replicas on an older template move to the new one only
    /// while fewer than maxUnavailable updated replicas are not yet running it ready.
    /// </summary>
    private static DeploymentStatus Roll(Deployment deployment, PlacementResult placement, IReadOnlyList<NodeEntry> nodes,
        Dictionary<string, byte[]> assigned, Dictionary<string, byte[]> desired, DeploymentStatus? before)
    {
        var briefs = new Dictionary<(string Node, string Name), ContainerBrief>();
        foreach (var node in nodes)
        {
            foreach (var brief in node.Info.Containers ?? [])
            {
                briefs[(node.Info.Node, brief.Name)] = brief;
            }
        }
        var rollout = deployment.Rollout ?? new RolloutSpec();
        int updated = 0, updatedReady = 0, notReady = 0;
        var waiting = new List<(string Key, byte[] Spec, int Index)>();
        foreach (var (replica, node) in placement.Replicas)
        {
            var workload = JsonSerializer.Deserialize(JsonSerializer.SerializeToUtf8Bytes(deployment.Template, WorkloadJsonContext.Default.Workload), WorkloadJsonContext.Default.Workload)!;
            workload.Name = replica;
            workload.Labels = new Dictionary<string, string>(workload.Labels ?? [], StringComparer.Ordinal) { ["orch.deployment"] = deployment.Name };
            var spec = JsonSerializer.SerializeToUtf8Bytes(workload, WorkloadJsonContext.Default.Workload);
            var key = $"{node}.{replica}";
            if (assigned.TryGetValue(key, out var existing) && !existing.AsSpan().SequenceEqual(spec))
            {
                waiting.Add((key, spec, int.Parse(replica.AsSpan(deployment.Name.Length + 1), System.Globalization.CultureInfo.InvariantCulture)));
                continue;
            }
            desired[key] = spec;
            updated++;
            var hash = Supervisor.SpecHash(workload);
            if (briefs.TryGetValue((node, replica), out var b) && b is { State: "running", Ready: true } && b.SpecHash == hash)
            {
                updatedReady++;
            }
            else if (assigned.ContainsKey(key))
            {
                notReady++; // updated (or restarted) and not ready yet: counts against maxUnavailable
            }
        }
        var allowed = rollout.Paused ? 0 : Math.Max(0, rollout.MaxUnavailable - notReady);
        foreach (var (key, spec, _) in waiting.OrderBy(w => w.Index))
        {
            if (allowed > 0)
            {
                desired[key] = spec;
                updated++;
                allowed--;
            }
            else
            {
                desired[key] = assigned[key]; // stays on its template until its turn
            }
        }
        var now = DateTimeOffset.UtcNow;
        var sameRevision = before is not null && before.Revision == (deployment.Revision ?? 0);
        var progressed = !sameRevision || updatedReady > before!.UpdatedReady;
        var phase = waiting.Count == 0 && updatedReady == placement.Replicas.Count ? "complete" : rollout.Paused ? "paused" : "progressing";
        return new DeploymentStatus
        {
            Name = deployment.Name, Desired = deployment.Replicas, Placed = placement.Replicas.Count, Replicas = placement.Replicas,
            Unschedulable = placement.Unschedulable, At = now, Revision = deployment.Revision ?? 0,
            Updated = updated, UpdatedReady = updatedReady, Phase = phase,
            LastProgressAt = progressed || phase != "progressing" ? now : before!.LastProgressAt,
            RolledBack = sameRevision ? before!.RolledBack : null,
        };
    }

    /// <summary>Puts the previous template back (a new revision with the old content) and says why.</summary>
    private async Task<DeploymentStatus> RollBackAsync(INatsKVStore deployments, Deployment deployment, IReadOnlyList<NodeEntry> nodes, DeploymentStatus report, CancellationToken cancellationToken)
    {
        var template = JsonSerializer.SerializeToUtf8Bytes(deployment.Template, WorkloadJsonContext.Default.Workload);
        Deployment? previous = null;
        var history = new List<NatsKVEntry<byte[]>>();
        await foreach (var entry in deployments.HistoryAsync<byte[]>(deployment.Name, cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            history.Add(entry);
        }
        foreach (var entry in history.Where(e => e.Operation == NatsKVOperation.Put && e.Revision < (deployment.Revision ?? ulong.MaxValue)).OrderByDescending(e => e.Revision))
        {
            var candidate = entry.Value is { Length: > 0 } v ? JsonSerializer.Deserialize(v, WorkloadJsonContext.Default.Deployment) : null;
            if (candidate is not null && !JsonSerializer.SerializeToUtf8Bytes(candidate.Template, WorkloadJsonContext.Default.Workload).AsSpan().SequenceEqual(template))
            {
                previous = candidate;
                break;
            }
        }
        var stuck = nodes.SelectMany(n => (n.Info.Containers ?? []).Select(c => (Node: n.Info.Node, Brief: c)))
            .FirstOrDefault(c => report.Replicas.TryGetValue(c.Brief.Name, out var on) && on == c.Node && !c.Brief.Ready);
        var why = $"revision {deployment.Revision}: {(stuck.Brief is { } b ? $"replica {b.Name} on {stuck.Node} not ready ({b.State}{(b.Message is { } m ? ": " + m : "")})" : "replicas not ready")} within {deployment.Rollout?.ProgressDeadlineSeconds ?? 120}s";
        if (previous is null)
        {
            LogRollback(logger, deployment.Name, why + "; no earlier template to go back to");
            return report with { Phase = "failed", RolledBack = why + "; no earlier template to go back to" };
        }
        previous.Replicas = deployment.Replicas; // the replica count is not part of what failed
        previous.Revision = null;
        var revision = await deployments.PutAsync(deployment.Name, JsonSerializer.SerializeToUtf8Bytes(previous, WorkloadJsonContext.Default.Deployment), cancellationToken: cancellationToken).ConfigureAwait(false);
        LogRollback(logger, deployment.Name, why);
        Emit("deployment.rolled-back", deployment.Name, why);
        return report with { Phase = "rolled-back", RolledBack = why, Revision = revision, LastProgressAt = DateTimeOffset.UtcNow };
    }

    /// <summary>Equal but for the time of the pass.</summary>
    private static bool SameStatus(DeploymentStatus a, DeploymentStatus b)
    {
        static byte[] Essence(DeploymentStatus s) => JsonSerializer.SerializeToUtf8Bytes(
            s with { At = default, LastProgressAt = s.Phase == "progressing" ? s.LastProgressAt : default }, FleetJsonContext.Default.DeploymentStatus);
        return Essence(a).AsSpan().SequenceEqual(Essence(b));
    }

    /// <summary>The autoscaler: the ready replicas' average CPU against the target, within min/max, once per cooldown.</summary>
    private async Task<DeploymentStatus> AutoscaleAsync(INatsKVStore deployments, Deployment deployment, IReadOnlyList<NodeEntry> nodes,
        DeploymentStatus report, DeploymentStatus? before, CancellationToken cancellationToken)
    {
        report = report with { LastScaledAt = before?.LastScaledAt, LastScale = before?.LastScale };
        if (deployment.Autoscale is not { } auto || report.Phase != "complete")
        {
            return report; // not while a rollout is under way: its replicas' CPU says little
        }
        var now = DateTimeOffset.UtcNow;
        if (before?.LastScaledAt is { } last && now - last < TimeSpan.FromSeconds(auto.CooldownSeconds))
        {
            return report;
        }
        var samples = nodes.SelectMany(n => (n.Info.Containers ?? []).Where(c => report.Replicas.TryGetValue(c.Name, out var on) && on == n.Info.Node && c.Ready))
            .Select(c => c.CpuPercent).ToList();
        var current = deployment.Replicas;
        var wanted = samples.Count == 0 ? Math.Clamp(current, auto.Min, auto.Max)
            : Math.Clamp((int)Math.Ceiling(current * samples.Average() / auto.TargetCpuPercent - 0.0001), auto.Min, auto.Max);
        if (wanted == current)
        {
            return report;
        }
        var entry = await deployments.TryGetEntryAsync<byte[]>(deployment.Name, cancellationToken: cancellationToken).ConfigureAwait(false);
        if (!entry.Success || entry.Value.Revision != deployment.Revision)
        {
            return report; // changed meanwhile: the next pass decides again
        }
        var scaled = JsonSerializer.Deserialize(entry.Value.Value, WorkloadJsonContext.Default.Deployment)!;
        scaled.Replicas = wanted;
        scaled.Revision = null;
        var put = await deployments.TryUpdateAsync(deployment.Name, JsonSerializer.SerializeToUtf8Bytes(scaled, WorkloadJsonContext.Default.Deployment), entry.Value.Revision, cancellationToken: cancellationToken).ConfigureAwait(false);
        if (!put.Success)
        {
            return report;
        }
        var why = $"{current} → {wanted} replicas (average CPU {(samples.Count == 0 ? 0 : samples.Average()):0.#}% of a CPU, target {auto.TargetCpuPercent:0.#}%)";
        LogAutoscaled(logger, deployment.Name, why);
        Emit("deployment.scaled", deployment.Name, why);
        return report with { LastScaledAt = now, LastScale = why, Revision = put.Value };
    }

    [LoggerMessage(EventId = 4009, Level = LogLevel.Information, Message = "autoscaler: deployment {Name}: {Why}")]
    private static partial void LogAutoscaled(ILogger logger, string name, string why);

    [LoggerMessage(EventId = 4008, Level = LogLevel.Warning, Message = "scheduler: deployment {Name} rolled back: {Why}")]
    private static partial void LogRollback(ILogger logger, string name, string why);

    [LoggerMessage(EventId = 4001, Level = LogLevel.Warning, Message = "fleet {What} loop failed: {Reason}; retrying")]
    private static partial void LogLoopFailed(ILogger logger, string what, string reason);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Information, Message = "this node {What}")]
    private static partial void LogLeadership(ILogger logger, string what);

    [LoggerMessage(EventId = 4003, Level = LogLevel.Information, Message = "scheduler: assigned {Key}")]
    private static partial void LogAssigned(ILogger logger, string key);

    [LoggerMessage(EventId = 4004, Level = LogLevel.Information, Message = "scheduler: unassigned {Key}")]
    private static partial void LogUnassignedKey(ILogger logger, string key);

    [LoggerMessage(EventId = 4005, Level = LogLevel.Warning, Message = "scheduler: unschedulable {Reason}")]
    private static partial void LogUnschedulable(ILogger logger, string reason);

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

/// <summary>Reads of the fleet's state shared by the scheduler and the operator's client.</summary>
public static class FleetState
{
    public static async Task<IReadOnlyList<NodeEntry>> ReadNodesAsync(INatsKVStore nodes, FleetOptions options, CancellationToken cancellationToken, string? leader = null, INatsKVStore? settings = null)
    {
        var result = new List<NodeEntry>();
        var cordon = new Dictionary<string, NodeSettings>(StringComparer.Ordinal);
        if (settings is not null)
        {
            await foreach (var key in settings.GetKeysAsync(cancellationToken: cancellationToken).ConfigureAwait(false))
            {
                var entry = await settings.TryGetEntryAsync<byte[]>(key, cancellationToken: cancellationToken).ConfigureAwait(false);
                if (entry.Success && entry.Value.Value is { Length: > 0 } v)
                {
                    try
                    {
                        cordon[key] = JsonSerializer.Deserialize(v, FleetJsonContext.Default.NodeSettings) ?? new NodeSettings();
                    }
                    catch (JsonException)
                    {
                    }
                }
            }
        }
        await foreach (var key in nodes.GetKeysAsync(cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            var entry = await nodes.TryGetEntryAsync<byte[]>(key, cancellationToken: cancellationToken).ConfigureAwait(false);
            if (!entry.Success || entry.Value.Value is not { Length: > 0 } value)
            {
                continue;
            }
            NodeInfo? info;
            try
            {
                info = JsonSerializer.Deserialize(value, FleetJsonContext.Default.NodeInfo);
            }
            catch (JsonException)
            {
                continue;
            }
            if (info is null)
            {
                continue;
            }
            var age = DateTimeOffset.UtcNow - entry.Value.Created;
            var set = cordon.GetValueOrDefault(info.Node);
            result.Add(new NodeEntry
            {
                Info = info, State = options.StateOf(age), HeartbeatAgeSeconds = Math.Max(0, Math.Round(age.TotalSeconds, 1)), Leader = leader == info.Node,
                Cordoned = set?.Cordoned == true, Draining = set?.Draining == true,
            });
        }
        return result.OrderBy(n => n.Info.Node, StringComparer.Ordinal).ToList();
    }

    public static async Task<IReadOnlyList<Deployment>> ReadDeploymentsAsync(INatsKVStore deployments, CancellationToken cancellationToken)
    {
        var result = new List<Deployment>();
        await foreach (var key in deployments.GetKeysAsync(cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            var entry = await deployments.TryGetEntryAsync<byte[]>(key, cancellationToken: cancellationToken).ConfigureAwait(false);
            if (entry.Success && entry.Value.Value is { Length: > 0 } value)
            {
                try
                {
                    if (JsonSerializer.Deserialize(value, WorkloadJsonContext.Default.Deployment) is { } deployment)
                    {
                        deployment.Revision = entry.Value.Revision;
                        result.Add(deployment);
                    }
                }
                catch (JsonException)
                {
                }
            }
        }
        return result.OrderBy(d => d.Name, StringComparer.Ordinal).ToList();
    }
}

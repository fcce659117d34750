using System.Text.Json;
using Microsoft.Extensions.Logging;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using Orchestrator.Api;
using Orchestrator.Fleet.Scheduler;
using Orchestrator.Node.Reconcile;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Fleet.Agent;

/// <summary>
/// The node's part in the fleet, while connected: it heartbeats into the nodes bucket, runs
/// what the assignments bucket gives it (and only that, of the fleet's), and takes its turn as
/// the one scheduler (a lease in the leader bucket, renewed and taken over by compare-and-set).
/// When NATS goes away all three stop; the node keeps running its last assignments, which the
/// supervisor keeps on disk.
/// </summary>
public sealed partial class FleetMember : IDisposable
{
    private readonly NodeIdentity identity;
    private readonly Supervisor supervisor;
    private readonly FleetOptions options;
    private readonly ILogger logger;

    // Events wait here while NATS is away (the newest 1000; an offline week must not fill memory).
    private readonly System.Threading.Channels.Channel<NodeEvent> _events = System.Threading.Channels.Channel.CreateBounded<NodeEvent>(
        new System.Threading.Channels.BoundedChannelOptions(1000) { FullMode = System.Threading.Channels.BoundedChannelFullMode.DropOldest });

    private readonly FleetScheduler _scheduler;
    private INatsKVStore? _assignments;
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
        Secrets = new NodeSecrets(identity.NodeName, supervisor.StateDir, options.TrustedKeys);
        supervisor.Secrets = Secrets;
        if (Secrets.KeyReplaced is { } replaced)
        {
            LogSealKeyReplaced(logger, replaced);
            Emit("node.seal-key-replaced", identity.NodeName, replaced);
        }
        Variables = new NodeVariables(supervisor.StateDir, identity.NodeName, () => identity.CurrentLabels);
        supervisor.Variables = Variables.For;
        if (supervisor.Bridge is { } bridge && options.ServicesCidr is { } services)
        {
            Services = new ServiceProxy(identity.NodeName, supervisor, bridge, services, logger, options.Clock);
        }
        // A restarted orchd carries on from the last contact an earlier one had (the fence file in
        // the run directory): a restart is no contact with the fleet.
        var now = options.Clock.GetUtcNow();
        Contact = new FleetContact(FenceFile.Read(Path.Combine(supervisor.RunDir, FenceFile.Name)) is { } fence && fence.ContactAt < now ? fence.ContactAt : now);
    }

    /// <summary>Queues an event for the fleet's stream (published once connected).</summary>
    public void Emit(string kind, string name, string message)
        => _events.Writer.TryWrite(new NodeEvent { At = DateTimeOffset.UtcNow, Node = identity.NodeName, Kind = kind, Subject = name, Message = message });

    /// <summary>When this node last renewed its presence (a heartbeat NATS accepted): what fencing counts from.</summary>
    public FleetContact Contact { get; }

    /// <summary>This node's sealing key and its secrets and configs (the supervisor opens them at each start).</summary>
    public NodeSecrets Secrets { get; }

    /// <summary>The operators' variables for this node's containers (orchctl env).</summary>
    public NodeVariables Variables { get; }

    /// <summary>Deployment names across nodes: this node's endpoints out, the others' in; null without a bridge or services range.</summary>
    public ServiceProxy? Services { get; }

    /// <summary>True while this node holds the scheduler lease.</summary>
    public bool IsLeader { get; private set; }

    public async Task RunAsync(NatsConnection connection, Func<NodeInfo> describe, CancellationToken cancellationToken)
    {
        var js = new NatsJSContext(connection);
        var kv = new NatsKVContext(js);
        Secrets.Connection = connection;
        if (Services is { } services)
        {
            services.Connection = connection;
        }
        // Each loop opens its buckets when it starts and again after any failure: a server that
        // came back with an empty store has them made again by the first node back (a worker's
        // credentials cannot create them: it waits and says why, docs/nats-security.md).
        await Task.WhenAll(
            options.Scheduler ? Forever("metrics", _ => FollowMetricsAsync(connection, cancellationToken), cancellationToken) : Task.CompletedTask,
            Forever("events", _ => PublishEventsAsync(js, cancellationToken), cancellationToken),
            Services is { } proxy
                ? Task.WhenAll(
                    Forever("endpoints", async attempt => await proxy.PublishAsync(await OpenFleetBucketAsync(kv, Buckets.Endpoints, 1, attempt).ConfigureAwait(false), attempt).ConfigureAwait(false), cancellationToken, startOverOnReconnect: true),
                    Forever("services", async _ => await proxy.WatchAsync(await OpenFleetBucketAsync(kv, Buckets.Endpoints, 1, cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false), cancellationToken))
                : Task.CompletedTask,
            Forever("variables", async _ => await Variables.WatchAsync(await VariablesBucketAsync(kv, cancellationToken).ConfigureAwait(false),
                supervisor.VariablesChangedAsync, cancellationToken).ConfigureAwait(false), cancellationToken),
            Forever("heartbeat", async attempt => await HeartbeatAsync(await OpenFleetBucketAsync(kv, Buckets.Nodes, 1, attempt).ConfigureAwait(false), describe, attempt).ConfigureAwait(false), cancellationToken, startOverOnReconnect: true),
            Forever("assignments", async _ => await FollowAssignmentsAsync(await OpenFleetBucketAsync(kv, Buckets.Assignments, 1, cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false), cancellationToken),
            options.Scheduler
                ? Forever("scheduler", async _ => await LeadAsync(
                    await OpenFleetBucketAsync(kv, Buckets.Leader, 1, cancellationToken).ConfigureAwait(false),
                    new SchedulerBuckets(
                        await OpenFleetBucketAsync(kv, Buckets.Nodes, 1, cancellationToken).ConfigureAwait(false),
                        await OpenFleetBucketAsync(kv, Buckets.Deployments, Buckets.DeploymentHistory, cancellationToken).ConfigureAwait(false),
                        await OpenFleetBucketAsync(kv, Buckets.Assignments, 1, cancellationToken).ConfigureAwait(false),
                        await OpenFleetBucketAsync(kv, Buckets.DeploymentStatus, 1, cancellationToken).ConfigureAwait(false),
                        await OpenFleetBucketAsync(kv, Buckets.NodeSettings, 1, cancellationToken).ConfigureAwait(false)),
                    cancellationToken).ConfigureAwait(false), cancellationToken)
                : Task.CompletedTask).ConfigureAwait(false);
    }

    /// <summary>The connection to NATS came back: the scheduler watches heartbeats again before it judges anyone lost.</summary>
    public void ConnectionRestored()
    {
        _scheduler.Restart();
        // Every loop waiting out a failure backoff tries again now, and the heartbeat starts over
        // whatever it was waiting for (a bucket opened or a put sent into the dead connection waits
        // out its 5 s request timeout; a node heard from that late after a reconnect looks lost,
        // and a scheduler can settle without it). Cancelled on the thread pool: this runs on the
        // connection's own event, which must not run a loop's next request inline.
        var old = Interlocked.Exchange(ref _reconnected, new CancellationTokenSource());
        _ = Task.Run(old.Cancel);
    }

    /// <summary>Cancelled (and replaced) when the connection to NATS comes back.</summary>
    private CancellationTokenSource _reconnected = new();

    public void Dispose()
    {
        _reconnected.Dispose();
        Secrets.Dispose();
        Services?.Dispose();
    }

    /// <summary>
    /// The variables bucket once an operator has made it (the first `orchctl env set`): looked for
    /// every 10 s until then, quietly, as a fleet without variables is the usual case and a worker
    /// may not make buckets.
    /// </summary>
    private static async Task<INatsKVStore> VariablesBucketAsync(NatsKVContext kv, CancellationToken cancellationToken)
    {
        while (true)
        {
            try
            {
                return await kv.GetStoreAsync(Buckets.Variables, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is NatsKVException or NatsJSApiException { Error.Code: 404 })
            {
                await Task.Delay(TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>A bucket, created when missing; the failure, when it cannot be, as a sentence with the fix.</summary>
    private static async Task<INatsKVStore> OpenFleetBucketAsync(INatsKVContext kv, string bucket, int history, CancellationToken cancellationToken)
    {
        try
        {
            return await FleetStore.OpenAsync(kv, bucket, history, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is NatsJSException or NatsException or TimeoutException && !cancellationToken.IsCancellationRequested)
        {
            throw new FleetUnavailableException($"the fleet's bucket {bucket} cannot be opened or created ({e.Message}); with worker credentials, start a scheduler node first or create the buckets as the operator", e);
        }
    }

    private NodeEvent? _unsent;

    private async Task PublishEventsAsync(NatsJSContext js, CancellationToken cancellationToken)
    {
        await FleetStore.EnsureEventStreamAsync(js, cancellationToken).ConfigureAwait(false);
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

    /// <summary>
    /// Runs a loop again after a failure (a server restart, a store lost, a JetStream hiccup),
    /// until cancelled: after 1 s, doubling to 8 s while it keeps failing at once; at once when the
    /// connection comes back. With <paramref name="startOverOnReconnect"/> the loop's token is also
    /// cancelled by a reconnect, and it starts over on the new connection. The same failure is
    /// logged once and then every 20th time: an outage of a day must not fill the disk.
    /// </summary>
    private async Task Forever(string what, Func<CancellationToken, Task> loop, CancellationToken cancellationToken, bool startOverOnReconnect = false)
    {
        var delay = TimeSpan.FromSeconds(1);
        string? lastReason = null;
        var repeats = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            var started = options.Clock.GetUtcNow();
            // A reconnect from now on ends the backoff below (and, for the heartbeat, the attempt itself).
            using var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, Volatile.Read(ref _reconnected).Token);
            try
            {
                await loop(startOverOnReconnect ? attempt.Token : cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (OperationCanceledException) when (attempt.IsCancellationRequested)
            {
                continue; // the connection came back: start over at once on it
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                if (e.Message != lastReason || ++repeats % 20 == 0)
                {
                    LogLoopFailed(logger, what, e.Message);
                    repeats = e.Message != lastReason ? 0 : repeats;
                }
                lastReason = e.Message;
            }
            delay = options.Clock.GetUtcNow() - started > TimeSpan.FromSeconds(30) ? TimeSpan.FromSeconds(1) : delay;
            try
            {
                await Task.Delay(delay + TimeSpan.FromMilliseconds(Random.Shared.Next(0, 250)), attempt.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                delay = TimeSpan.FromSeconds(1); // reconnected: try now, then back off from 1 s (the server may need a moment for JetStream)
                continue;
            }
            catch (OperationCanceledException)
            {
                return;
            }
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(8).Ticks));
        }
    }

    /// <summary>A unit's CPU: its containers' sum, or null when none of them was sampled.</summary>
    private static double? CpuOf(Orchestrator.Node.Reconcile.Supervisor.Unit unit, Dictionary<string, double?> cpu)
    {
        var sampled = unit.Containers.Select(c => cpu.GetValueOrDefault(c)).Where(c => c is not null).ToList();
        return sampled.Count == 0 ? null : sampled.Sum();
    }

    /// <summary>The node's labels when the heartbeat last had the variables looked at.</summary>
    private string? _variablesLabels;

    private async Task HeartbeatAsync(INatsKVStore nodes, Func<NodeInfo> describe, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            identity.LabelStore?.Observe(); // hw.* labels follow what is plugged in
            // A label gained or lost can change a container's variables: looked at when the labels
            // changed, and not waited for. The heartbeat never waits for the supervisor's loop,
            // which may be busy for a while (a stop's grace period, a pull): waiting held the
            // heartbeats back, and the scheduler judged a rollout on what the node said before it.
            var labels = string.Join(",", identity.CurrentLabels.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => kv.Key + "=" + kv.Value));
            if (labels != _variablesLabels)
            {
                _variablesLabels = labels;
                _ = supervisor.VariablesChangedAsync().ContinueWith(t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
            }
            // An app's containers are one replica to the scheduler: folded into one brief under the app's name.
            var units = await supervisor.UnitsAsync().ConfigureAwait(false);
            // A figure only for a container the sampler could read (a running one's cgroup has used CPU time): the autoscaler averages those alone.
            var cpu = (await supervisor.StatsAsync(null, forHeartbeat: true).ConfigureAwait(false)).Where(s => s.CpuNanoseconds > 0).ToDictionary(s => s.Name, s => (double?)s.CpuPercent, StringComparer.Ordinal);
            var info = describe() with
            {
                SealKey = Secrets.PublicKey,
                Status = await supervisor.NodeStatusAsync().ConfigureAwait(false),
                Containers = units.Select(u => new ContainerBrief
                {
                    Name = u.Status.Name, State = u.Status.State, Ready = u.Status.Ready, SpecHash = u.Status.SpecHash, Message = u.Status.Message,
                    CpuPercent = u.Status.State == ContainerState.Running ? CpuOf(u, cpu) : null,
                }).ToList(),
            };
            await nodes.PutAsync(identity.NodeName, JsonSerializer.SerializeToUtf8Bytes(info, FleetJsonContext.Default.NodeInfo), cancellationToken: cancellationToken).ConfigureAwait(false);
            Contact.Renewed(options.Clock.GetUtcNow());
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
        _assignments = assignments;
        var follower = new AssignmentFollower(await supervisor.AssignedAsync().ConfigureAwait(false), new SupervisedReplicas(this));
        var owned = follower.Owned;
        Task ConvergeAsync(NodeAssignments? value) => follower.ConvergeAsync(value);

        // The watch gives the current value first, then every change as it comes. A key deleted
        // by the scheduler (a delete marker) takes everything the fleet gave this node away. No
        // key at all is a bucket that never had one for this node, or one made anew after the
        // server lost its store: the node keeps what it runs (the fleet forgot, the node did
        // not) until the scheduler writes its key again, and `orchctl get containers` shows
        // those replicas as orphans meanwhile.
        var options = new NatsKVWatchOpts
        {
            OnNoData = async _ =>
            {
                if (owned.Count > 0)
                {
                    LogNoAssignments(logger, owned.Count);
                }
                await Task.CompletedTask.ConfigureAwait(false);
                return false;
            },
        };
        // The watch and a read of the key every heartbeat both feed one converge, each value once.
        // The read is the level-triggered net under the watch: after a reconnect or a store made
        // anew, a watch can miss values written before it noticed (its consumer resumes past
        // them); and a read that fails (the bucket gone) ends this loop, so Forever opens the
        // bucket again and starts a fresh watch.
        using var gate = new SemaphoreSlim(1, 1);
        (ulong Revision, DateTimeOffset Created) last = default;
        async Task OfferAsync(NatsKVEntry<byte[]> entry)
        {
            await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                if ((entry.Revision, entry.Created) == last)
                {
                    return;
                }
                last = (entry.Revision, entry.Created);
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
                        return;
                    }
                    if (value.Node != identity.NodeName)
                    {
                        LogBadAssignment(logger, entry.Key, $"the value is for node '{value.Node}'");
                        return;
                    }
                }
                await ConvergeAsync(value).ConfigureAwait(false);
            }
            finally
            {
                gate.Release();
            }
        }

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var watching = Task.Run(async () =>
        {
            await foreach (var entry in assignments.WatchAsync<byte[]>(identity.NodeName, opts: options, cancellationToken: stop.Token).ConfigureAwait(false))
            {
                await OfferAsync(entry).ConfigureAwait(false);
            }
        }, CancellationToken.None);
        try
        {
            while (!watching.IsCompleted)
            {
                await Task.WhenAny(Task.Delay(this.options.Heartbeat, stop.Token), watching).ConfigureAwait(false);
                if (watching.IsCompleted || stop.IsCancellationRequested)
                {
                    break;
                }
                // Read through a one-shot watch of the key (a worker may create consumers on its own
                // key only; a direct get would read any key). A failure (the bucket gone) starts over.
                if (await ReadOwnKeyAsync(assignments, stop.Token).ConfigureAwait(false) is { } read)
                {
                    await OfferAsync(read).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            try
            {
                await watching.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    /// <summary>This node's key in the assignments bucket now (a delete marker included), or null when there is none.</summary>
    private async Task<NatsKVEntry<byte[]>?> ReadOwnKeyAsync(INatsKVStore assignments, CancellationToken cancellationToken)
    {
        NatsKVEntry<byte[]>? last = null;
        var once = new NatsKVWatchOpts { OnNoData = _ => ValueTask.FromResult(true) };
        await foreach (var entry in assignments.WatchAsync<byte[]>(identity.NodeName, opts: once, cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            last = entry;
            if (entry.Delta == 0)
            {
                break;
            }
        }
        return last;
    }

    /// <summary>The replicas of <see cref="FollowAssignmentsAsync"/>: orchd's supervisor, with logs and events.</summary>
    private sealed class SupervisedReplicas(FleetMember member) : IAssignedReplicas
    {
        public string? Refusal(Assignment assignment) => member.Refusal(assignment, assignment.Replica);

        public async Task<string?> ApplyAsync(Assignment assignment)
        {
            try
            {
                if (assignment.Fence == true)
                {
                    member.ArmFence(assignment.Replica);
                }
                await member.supervisor.ApplyAssignedAsync(assignment.ToWorkload()).ConfigureAwait(false);
                return null;
            }
            catch (Exception e) when (e is JsonException or NodeApiException)
            {
                return e.Message;
            }
        }

        public Task SyncAsync(IReadOnlySet<string> keep) => member.supervisor.SyncAssignedAsync(keep);

        public void Refused(Assignment assignment, string why)
        {
            LogBadAssignment(member.logger, assignment.Replica, why);
            member.Emit("deployment.refused", assignment.Deployment, why);
        }

        public void Failed(string replica, string why) => LogBadAssignment(member.logger, replica, why);

        public void Unassigned(string replica) => LogUnassigned(member.logger, replica);
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
            if (!identity.CurrentLabels.TryGetValue(label, out var has) || has != value)
            {
                return $"deployment '{assignment.Deployment}' selects nodes with {label}={value} and this node has {(has is null ? "no " + label : label + "=" + has)}; the scheduler should not have placed it here";
            }
        }
        return options.TrustedKeys.Count > 0 ? _ledger.Accept(assignment.Deployment, assignment.Signature!.Serial) : null;
    }

    /// <summary>
    /// The scheduler lease and the passes it allows. The lease is renewed every
    /// <see cref="FleetOptions.LeaseRenewal"/> on a loop of its own (a slow pass on a loaded node
    /// does not delay it), by compare-and-set; another node takes it over only when it has seen the
    /// same revision for a whole <see cref="FleetOptions.LeaderLease"/>. The holder schedules only
    /// while its last renewal is younger than the lease less two renewal periods, so it has
    /// stopped before anyone may take over.
    /// </summary>
    private async Task LeadAsync(INatsKVStore leader, SchedulerBuckets buckets, CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var lease = new SchedulerLease(identity.NodeName, options);
        IsLeader = false;
        var renewing = RenewAsync(leader, lease, stop.Token);
        try
        {
            while (!cancellationToken.IsCancellationRequested && !renewing.IsCompleted)
            {
                if (lease.MayScheduleAt(options.Clock.GetUtcNow()) && await lease.StillHeldAsync(leader, cancellationToken).ConfigureAwait(false))
                {
                    await _scheduler.ScheduleOnceAsync(buckets, cancellationToken).ConfigureAwait(false);
                }
                await Task.WhenAny(Task.Delay(options.SchedulePeriod, cancellationToken), renewing).ConfigureAwait(false);
            }
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            IsLeader = false;
            try
            {
                await renewing.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
        await renewing.ConfigureAwait(false); // a failed renewal ends the lead (Forever starts it again)
    }

    private async Task RenewAsync(INatsKVStore leader, SchedulerLease lease, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            var holding = await lease.TryHoldAsync(leader, cancellationToken).ConfigureAwait(false);
            if (holding && IsLeader && lease.TakenAfresh)
            {
                _scheduler.Restart(); // the lease was gone (the store lost): what the scheduler saw is too
            }
            if (holding != IsLeader)
            {
                IsLeader = holding;
                LogLeadership(logger, holding ? "is now the fleet's scheduler" : "is no longer the scheduler");
                if (holding)
                {
                    _scheduler.Restart(); // a new scheduler watches heartbeats before it judges anyone lost
                    Emit("scheduler.elected", identity.NodeName, "took the scheduler lease");
                }
            }
            // Jitter: two candidates that saw the lease expire together do not keep colliding.
            var jitter = TimeSpan.FromTicks((long)(options.LeaseRenewal.Ticks * (Random.Shared.NextDouble() * 0.2 - 0.1)));
            await Task.Delay(options.LeaseRenewal + jitter, cancellationToken).ConfigureAwait(false);
        }
    }

    [LoggerMessage(EventId = 4010, Level = LogLevel.Warning, Message = "fleet: the assignments bucket has no key for this node; keeping the {Count} replica(s) the fleet gave it until the scheduler assigns again (a server that lost its store, or a new bucket)")]
    private static partial void LogNoAssignments(ILogger logger, int count);

    [LoggerMessage(EventId = 4015, Level = LogLevel.Warning, Message = "fleet: {Reason}")]
    private static partial void LogSealKeyReplaced(ILogger logger, string reason);

    [LoggerMessage(EventId = 4001, Level = LogLevel.Warning, Message = "fleet {What} loop failed: {Reason}; retrying")]
    private static partial void LogLoopFailed(ILogger logger, string what, string reason);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Information, Message = "this node {What}")]
    private static partial void LogLeadership(ILogger logger, string what);

    [LoggerMessage(EventId = 4006, Level = LogLevel.Information, Message = "fleet: {Name} is no longer assigned here; removing it")]
    private static partial void LogUnassigned(ILogger logger, string name);

    [LoggerMessage(EventId = 4007, Level = LogLevel.Error, Message = "fleet: assignment {Key} cannot be run: {Reason}")]
    private static partial void LogBadAssignment(ILogger logger, string key, string reason);
}

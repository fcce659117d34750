using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using NATS.Client.KeyValueStore;
using Orchestrator.Fleet.Agent;
using Orchestrator.Api;
using Orchestrator.Node.Reconcile;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Fleet.Scheduler;

/// <summary>The buckets one scheduling pass reads and writes.</summary>
public sealed record SchedulerBuckets(INatsKVStore Nodes, INatsKVStore Deployments, INatsKVStore Assignments, INatsKVStore Status, INatsKVStore? Settings);

/// <summary>
/// What the elected scheduler does every pass, level-triggered: read the nodes and the
/// deployments, place every replica (<see cref="Placement"/>), roll templates out wave by wave
/// within maxUnavailable/maxSurge, roll back a rollout that does not get ready in time, run the
/// autoscalers, and write the assignments and each deployment's status where they changed.
/// It holds no state between passes but the custom metrics it was sent: a new leader carries on
/// from the buckets.
/// </summary>
public sealed partial class FleetScheduler(string nodeName, FleetOptions options, ILogger logger, Action<string, string, string> emit)
{
    /// <summary>The latest value of each custom metric subject (orch.metrics.…), fed by the member's subscription.</summary>
    public ConcurrentDictionary<string, (double Value, DateTimeOffset At)> Metrics { get; } = new(StringComparer.Ordinal);

    /// <summary>Passes that ran to their end (not one cut short by a lost lease or connection): a test waits for N of them instead of sleeping.</summary>
    public PassCounter Passes { get; } = new();

    /// <summary>Node values written or deleted by the last pass (for benchmarks and logs).</summary>
    public int LastWrites { get; private set; }

    private DateTimeOffset? _lastPass;
    private DateTimeOffset _watchingSince;

    /// <summary>
    /// Forget that the fleet has been watched: the next pass starts the settle time again
    /// (called on taking the lease, and when the connection to NATS came back).
    /// </summary>
    public void Restart()
    {
        Interlocked.Increment(ref _restarts);
        _lastPass = null;
    }

    private int _restarts;

    /// <summary>
    /// True while this scheduler has watched heartbeats for less than the settle time: it has just
    /// taken over, its connection just came back, or its passes stalled. It judges no node lost then.
    /// </summary>
    public bool Settling => _lastPass is null || options.Clock.GetUtcNow() - _watchingSince < options.SettleTime;

    /// <summary>One pass over the whole fleet.</summary>
    public async Task ScheduleOnceAsync(SchedulerBuckets buckets, CancellationToken cancellationToken)
    {
        var started = options.Clock.GetUtcNow();
        var generation = Volatile.Read(ref _restarts);
        // A pass that comes long after the last one (a takeover, an outage, a stalled process)
        // sees heartbeats that could not land meanwhile: watch them again before judging anyone lost.
        var stall = TimeSpan.FromTicks(Math.Max(3 * options.SchedulePeriod.Ticks, 2 * options.Heartbeat.Ticks));
        if (_lastPass is not { } last || started - last > stall)
        {
            _watchingSince = started;
        }
        var settling = started - _watchingSince < options.SettleTime;
        // This node is alive by the fact of this pass: never lost in its own eyes (self).
        var nodes = await FleetState.ReadNodesAsync(buckets.Nodes, options, cancellationToken, settings: buckets.Settings, watchedFor: started - _watchingSince, self: nodeName).ConfigureAwait(false);
        var stored = await FleetState.ReadDeploymentsAsync(buckets.Deployments, cancellationToken).ConfigureAwait(false);
        // Per node in the bucket, per replica here: the plan works on <node>.<replica>.
        var storedAssignments = await FleetState.ReadAllAsync(buckets.Assignments, cancellationToken).ConfigureAwait(false);
        var assigned = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var (node, entry) in storedAssignments)
        {
            try
            {
                foreach (var assignment in NodeAssignments.Parse(entry.Value).Replicas)
                {
                    assigned[$"{node}.{assignment.Replica}"] = assignment.ToBytes();
                }
            }
            catch (JsonException)
            {
                // Not this version's value (or a key of an older layout): rewritten or removed below.
            }
        }
        var statuses = new Dictionary<string, DeploymentStatus>(StringComparer.Ordinal);
        foreach (var (key, entry) in await FleetState.ReadAllAsync(buckets.Status, cancellationToken).ConfigureAwait(false))
        {
            try
            {
                statuses[key] = JsonSerializer.Deserialize(entry.Value, FleetJsonContext.Default.DeploymentStatus)!;
            }
            catch (JsonException)
            {
            }
        }
        // What the fleet runs: the operator's revisions with this scheduler's decisions about them
        // (a rollback, an autoscaled count), which are kept in the statuses (SchedulerDecisions).
        var deployments = stored.Select(d => SchedulerDecisions.Apply(d, statuses.GetValueOrDefault(d.Name))).ToList();
        var now = options.Clock.GetUtcNow();
        if (Volatile.Read(ref _restarts) != generation)
        {
            return; // the connection dropped (or the lease was made anew) while reading: what was read is stale
        }
        var desired = Plan(deployments, nodes, assigned, statuses, now, out var reports, settling ? options.SettleTime : null);
        foreach (var deployment in deployments)
        {
            var before = statuses.GetValueOrDefault(deployment.Name);
            // The decisions about this revision stay until the operator writes a new one.
            var decided = SchedulerDecisions.IsAbout(before, deployment) ? before : null;
            var report = reports[deployment.Name] with { Scheduler = nodeName, AutoscaledReplicas = decided?.AutoscaledReplicas, RolledBackTo = decided?.RolledBackTo };
            // Said once, when it starts: a replica that stays unschedulable (anti-affinity with
            // fewer nodes than replicas) was two warnings every pass, 44 lines in 45 s. The
            // deployment's status keeps the reasons for `orchctl describe` and `rollout status`.
            foreach (var reason in report.Unschedulable.Except(before?.Unschedulable ?? [], StringComparer.Ordinal))
            {
                LogUnschedulable(logger, reason);
            }
            // Rolled back: a template the fleet has never run complete whose rollout made no
            // progress within the deadline. A template seen complete is not rolled back when a
            // node goes away later: that is not the template's fault, and a rollback would go
            // to an older template than the one the operator chose.
            if (report.Phase == RolloutPhase.Progressing && deployment.Rollout is not { AutoRollback: false }
                && now - report.LastProgressAt > TimeSpan.FromSeconds(deployment.Rollout?.ProgressDeadlineSeconds ?? 120)
                && report.NotReady > (deployment.Rollout?.MaxFailed ?? 0)
                && !report.ReadyTemplates.Contains(report.Template!, StringComparer.Ordinal))
            {
                report = await RollBackAsync(buckets.Deployments, deployment, nodes, report, cancellationToken).ConfigureAwait(false);
            }
            report = Autoscale(deployment, nodes, report, before);
            if (before is null || before.Revision != report.Revision)
            {
                // The audit trail of desired state: each revision once, with who wrote it and
                // the key that signed it (the one nodes check), in the events stream.
                emit("deployment.changed", deployment.Name, Audit(deployment));
            }
            // Written only when something in it changed: a pass every 2 s must not be a JetStream
            // write per deployment on a node's small flash disk.
            if (before is null || !SameStatus(before, report))
            {
                await buckets.Status.PutAsync(deployment.Name, JsonSerializer.SerializeToUtf8Bytes(report, FleetJsonContext.Default.DeploymentStatus), cancellationToken: cancellationToken).ConfigureAwait(false);
            }
        }
        var writes = 0;
        var puts = new List<Task>();
        foreach (var group in desired.GroupBy(kv => kv.Key[..kv.Key.IndexOf('.', StringComparison.Ordinal)], StringComparer.Ordinal))
        {
            var value = NodeAssignments.Compose(group.Key, group.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => kv.Value));
            if (!storedAssignments.TryGetValue(group.Key, out var existing) || !existing.Value.AsSpan().SequenceEqual(value))
            {
                // Pipelined: up to 64 puts in flight (one at a time, each waits out a round trip).
                puts.Add(buckets.Assignments.PutAsync(group.Key, value, cancellationToken: cancellationToken).AsTask());
                if (puts.Count == 64)
                {
                    await Task.WhenAll(puts).ConfigureAwait(false);
                    puts.Clear();
                }
                writes++;
                foreach (var key in group.Select(kv => kv.Key).Where(k => !assigned.TryGetValue(k, out var was) || !was.AsSpan().SequenceEqual(desired[k])))
                {
                    LogAssigned(logger, key);
                }
            }
        }
        await Task.WhenAll(puts).ConfigureAwait(false);
        var nodesWanted = desired.Keys.Select(k => k[..k.IndexOf('.', StringComparison.Ordinal)]).ToHashSet(StringComparer.Ordinal);
        // A node with no key keeps what it runs (a store made anew must not empty the fleet): a
        // ready node that runs a replica of a deployment the fleet knows but does not assign it
        // (the deployment applied again after a wipe, its replica placed elsewhere) is given an
        // empty value, which takes the replica away. Replicas of deployments the fleet does not
        // know stay (orchctl get containers shows them as orphans).
        var known = deployments.Select(d => d.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var node in nodes.Where(n => n.State == NodeCondition.Ready && !nodesWanted.Contains(n.Info.Node) && !storedAssignments.ContainsKey(n.Info.Node)
            && (n.Info.Containers ?? []).Any(c => c.Name.LastIndexOf('-') is var dash and > 0 && known.Contains(c.Name[..dash]))))
        {
            await buckets.Assignments.PutAsync(node.Info.Node, NodeAssignments.Compose(node.Info.Node, []), cancellationToken: cancellationToken).ConfigureAwait(false);
            writes++;
        }
        foreach (var key in storedAssignments.Keys.Where(k => !nodesWanted.Contains(k)))
        {
            await buckets.Assignments.DeleteAsync(key, cancellationToken: cancellationToken).ConfigureAwait(false);
            writes++;
            LogUnassignedKey(logger, key);
        }
        LastWrites = writes;
        if (Volatile.Read(ref _restarts) == generation)
        {
            _lastPass = started; // not over a restart made during the pass
        }
        var names = deployments.Select(d => d.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var key in statuses.Keys.Where(k => !names.Contains(k)))
        {
            await buckets.Status.DeleteAsync(key, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        Passes.PassCompleted();
    }

    /// <summary>
    /// The assignments every deployment should have now (no I/O: the pass's arithmetic, also
    /// what the benchmark times), and a status per deployment.
    /// </summary>
    public static Dictionary<string, byte[]> Plan(IReadOnlyList<Deployment> deployments, IReadOnlyList<NodeEntry> nodes,
        IReadOnlyDictionary<string, byte[]> assigned, IReadOnlyDictionary<string, DeploymentStatus> statuses, DateTimeOffset now,
        out Dictionary<string, DeploymentStatus> reports, TimeSpan? settleTime = null)
    {
        var briefs = new Dictionary<(string Node, string Name), ContainerBrief>();
        foreach (var node in nodes)
        {
            foreach (var brief in node.Info.Containers ?? [])
            {
                briefs[(node.Info.Node, brief.Name)] = brief;
            }
        }
        var perNode = new Dictionary<string, int>(StringComparer.Ordinal);
        var byDeployment = new Dictionary<string, Dictionary<string, string>>(StringComparer.Ordinal);
        foreach (var key in assigned.Keys)
        {
            var dot = key.IndexOf('.', StringComparison.Ordinal);
            if (dot <= 0)
            {
                continue;
            }
            var node = key[..dot];
            var replica = key[(dot + 1)..];
            perNode[node] = perNode.GetValueOrDefault(node) + 1;
            var dash = replica.LastIndexOf('-');
            if (dash > 0 && int.TryParse(replica.AsSpan(dash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out _))
            {
                var owner = replica[..dash];
                if (!byDeployment.TryGetValue(owner, out var map))
                {
                    byDeployment[owner] = map = new Dictionary<string, string>(StringComparer.Ordinal);
                }
                map.TryAdd(replica, node);
            }
        }
        // A replica assigned to no node that a ready node runs (the store was made anew, the
        // deployment applied again) stays where it runs rather than starting anew somewhere else.
        foreach (var node in nodes.Where(n => n.State == NodeCondition.Ready))
        {
            foreach (var brief in node.Info.Containers ?? [])
            {
                var dash = brief.Name.LastIndexOf('-');
                if (brief.State == ContainerState.Running && dash > 0 && int.TryParse(brief.Name.AsSpan(dash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out _)
                    && deployments.Any(d => d.Name.Length == dash && brief.Name.StartsWith(d.Name, StringComparison.Ordinal))
                    && !(byDeployment.TryGetValue(brief.Name[..dash], out var held) && held.ContainsKey(brief.Name)))
                {
                    if (!byDeployment.TryGetValue(brief.Name[..dash], out var map))
                    {
                        byDeployment[brief.Name[..dash]] = map = new Dictionary<string, string>(StringComparer.Ordinal);
                    }
                    map[brief.Name] = node.Info.Node;
                    perNode[node.Info.Node] = perNode.GetValueOrDefault(node.Info.Node) + 1;
                }
            }
        }
        var desired = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        reports = new Dictionary<string, DeploymentStatus>(StringComparer.Ordinal);
        foreach (var deployment in deployments)
        {
            var current = byDeployment.GetValueOrDefault(deployment.Name) ?? new Dictionary<string, string>(StringComparer.Ordinal);
            reports[deployment.Name] = Roll(deployment, nodes, current, perNode, assigned, briefs, desired,
                statuses.GetValueOrDefault(deployment.Name), now, settleTime);
        }
        return desired;
    }

    /// <summary>
    /// One deployment's assignments for this pass. A replica already on the template, or new,
    /// gets it at once. A replica on an older template moves to the new one when its wave is open
    /// (the canary first; the rest once every canary replica has been ready for holdSeconds) and
    /// the replicas running ready would not fall below replicas − maxUnavailable. While a rollout
    /// runs, maxSurge extra replicas on the new template keep the count up.
    /// </summary>
    private static DeploymentStatus Roll(Deployment deployment, IReadOnlyList<NodeEntry> nodes, Dictionary<string, string> current,
        Dictionary<string, int> perNode, IReadOnlyDictionary<string, byte[]> assigned, Dictionary<(string Node, string Name), ContainerBrief> briefs,
        Dictionary<string, byte[]> desired, DeploymentStatus? before, DateTimeOffset now, TimeSpan? settleTime)
    {
        var rollout = deployment.Rollout ?? new RolloutSpec();
        var revision = deployment.Revision ?? 0;
        // The same revision on the same template: a rollback keeps the revision and changes the template.
        var sameRevision = before is not null && before.Revision == revision && (before.Template is null || before.Template == TemplateHash(deployment));
        var labelsOf = nodes.ToDictionary(n => n.Info.Node, n => n.Info.Labels, StringComparer.Ordinal);

        // Each replica's assignment bytes and spec hash, made once a pass (the stale check, the
        // placement loop and the readiness checks all ask for them).
        var specs = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        var hashes = new Dictionary<string, string>(StringComparer.Ordinal);
        byte[] NewSpec(string replica) => specs.TryGetValue(replica, out var bytes) ? bytes : specs[replica] = Assignment.For(deployment, replica).ToBytes();
        string NewHash(string replica) => hashes.TryGetValue(replica, out var hash) ? hash : hashes[replica] = Supervisor.SpecHash(Assignment.For(deployment, replica).ToWorkload());
        bool Ready(string node, string replica) => briefs.TryGetValue((node, replica), out var b) && b.Up;
        bool ReadyOnNew(string node, string replica)
            => briefs.TryGetValue((node, replica), out var b) && b.Up && b.SpecHash is { } h && h == NewHash(replica);

        // Where the rollout stands before placing: which replicas still run an older template.
        var stale = current.Where(r => assigned.TryGetValue($"{r.Value}.{r.Key}", out var spec) && !spec.AsSpan().SequenceEqual(NewSpec(r.Key)))
            .Select(r => r.Key).ToHashSet(StringComparer.Ordinal);
        Assignment? old = stale.Count > 0 ? TryParse(assigned[$"{current[stale.First()]}.{stale.First()}"]) : null;

        // The waves (rollout.waves, or the canary as the one wave), then what no wave takes: which
        // wave each replica is in, and how many have passed their hold for this revision.
        var global = deployment.IsGlobal();
        List<WaveSpec> waves = rollout.Waves is { Count: > 0 } w0 ? w0 : rollout.Canary is { } canary ? [canary] : [];
        var passedBefore = !sameRevision ? 0 : Math.Max(before!.WavesPassed, before.CanaryPassed ? 1 : 0);
        var passed = stale.Count == 0 ? waves.Count : passedBefore;

        var surgeActive = !global && rollout.MaxSurge > 0 && passed == waves.Count && !rollout.Paused
            && (stale.Count > 0 || (current.Keys.Any(r => Index(r, deployment) >= deployment.Replicas)
                && Enumerable.Range(0, deployment.Replicas).Count(i => current.TryGetValue($"{deployment.Name}-{i}", out var n) && ReadyOnNew(n, $"{deployment.Name}-{i}")) < deployment.Replicas));
        var placement = global ? Placement.PlaceGlobal(deployment, nodes, current) : Placement.Place(deployment, nodes, current, perNode, surgeActive ? rollout.MaxSurge : 0);
        if (settleTime is { } settle)
        {
            // A scheduler that has just taken over (or come back) has not yet seen every node's
            // heartbeat: placing now would pile new replicas onto the nodes heard from first.
            // What runs stays; what has no node waits for the settle time.
            var waitingFor = placement.Replicas.Where(r => !(current.TryGetValue(r.Key, out var n) && n == r.Value)).Select(r => r.Key).ToList();
            if (waitingFor.Count > 0)
            {
                placement = new PlacementResult(
                    placement.Replicas.Where(r => !waitingFor.Contains(r.Key)).ToDictionary(StringComparer.Ordinal),
                    [.. placement.Unschedulable, .. waitingFor.Select(r => $"{r}: waiting for the fleet's heartbeats before placing (a scheduler that has just taken over watches them for {settle.TotalSeconds:0}s first)")]);
            }
        }
        foreach (var (replica, node) in placement.Replicas)
        {
            if (!current.ContainsKey(replica))
            {
                perNode[node] = perNode.GetValueOrDefault(node) + 1; // the next deployment sees this one's new replicas
            }
        }

        // How many replicas the deployment has: the count, or (global) the copies placed. Percent
        // waves take the replicas in index order (a global copy's index is its node's, for good).
        // A global copy on a lost node is in no wave but the last (rest): a device gone for good
        // must not hold a wave back (simulator seed 824487: both first-wave devices had died). An
        // unreachable one still counts: it may be back in a moment.
        var online = nodes.Where(n => n.State == NodeCondition.Ready).Select(n => n.Info.Node).ToHashSet(StringComparer.Ordinal);
        var lost = nodes.Where(n => n.State == NodeCondition.Lost).Select(n => n.Info.Node).ToHashSet(StringComparer.Ordinal);
        var rank = new Dictionary<string, int>(StringComparer.Ordinal);
        if (global)
        {
            foreach (var r in placement.Replicas.Where(r => !lost.Contains(r.Value)).Select(r => r.Key).OrderBy(r => Index(r, deployment)))
            {
                rank[r] = rank.Count;
            }
        }
        var replicas = global ? rank.Count : deployment.Replicas;
        bool InWave(WaveSpec wave, string node, int position) => wave switch
        {
            { Selector: { Count: > 0 } selector } => labelsOf.TryGetValue(node, out var labels) && selector.All(kv => labels.TryGetValue(kv.Key, out var v) && v == kv.Value),
            { Replicas: { } n } => position < n,
            { Percent: { } p } => position < Math.Max(1, (int)Math.Ceiling(replicas * p / 100.0)),
            _ => true,
        };
        int WaveOf(string replica, string node)
        {
            if (global && lost.Contains(node))
            {
                return waves.Count;
            }
            var position = global ? rank.GetValueOrDefault(replica, int.MaxValue) : Index(replica, deployment);
            for (var i = 0; i < waves.Count; i++)
            {
                if (InWave(waves[i], node, position))
                {
                    return i;
                }
            }
            return waves.Count;
        }

        var waveCount = waves.Count + 1;
        var inWave = new int[waveCount];
        var updatedIn = new int[waveCount];
        var readyIn = new int[waveCount];
        var notReadyIn = new int[waveCount];
        var pendingIn = new int[waveCount];
        var waitingOnlineIn = new int[waveCount];
        int updated = 0, updatedReady = 0, available = 0;
        var waiting = new List<(string Key, string Replica, string Node, int Index, bool Ready, int Wave)>();
        foreach (var (replica, node) in placement.Replicas)
        {
            var key = $"{node}.{replica}";
            var index = Index(replica, deployment);
            var wave = WaveOf(replica, node);
            inWave[wave]++;
            pendingIn[wave] += online.Contains(node) ? 0 : 1;
            var spec = NewSpec(replica);
            if (assigned.TryGetValue(key, out var existing) && !existing.AsSpan().SequenceEqual(spec))
            {
                var ready = Ready(node, replica);
                waiting.Add((key, replica, node, index, ready, wave));
                available += ready ? 1 : 0;
                continue;
            }
            if (!assigned.ContainsKey(key) && wave > passed && old is not null)
            {
                // New here while an earlier wave is on trial: the template the rest still runs.
                desired[key] = (old with { Replica = replica }).ToBytes();
                continue;
            }
            desired[key] = spec;
            updated++;
            updatedIn[wave]++;
            var readyNew = ReadyOnNew(node, replica);
            updatedReady += readyNew ? 1 : 0;
            readyIn[wave] += readyNew ? 1 : 0;
            notReadyIn[wave] += !readyNew && online.Contains(node) ? 1 : 0;
            available += readyNew ? 1 : 0;
        }

        // Of what can be placed: with fewer nodes than replicas (antiAffinity, a selector, room),
        // counting the unplaceable ones would let no ready replica ever be replaced. Replicas that
        // may fail (maxFailed) do not use up the room for progress.
        var maxUnavailable = Math.Max(rollout.MaxUnavailable, rollout.MaxUnavailablePercent is { } percent ? (int)Math.Ceiling(replicas * percent / 100.0) : 0);
        var minAvailable = Math.Min(replicas, placement.Replicas.Count(r => Index(r.Key, deployment) < deployment.Replicas)) - maxUnavailable - rollout.MaxFailed;
        // A global deployment's copies do not stand in for each other (each is its device's app):
        // its budget is how many copies update at once, updated and not yet ready on online nodes.
        // Counting availability instead deadlocked: a copy on a lost node (never moved) or a copy
        // not ready in a wave not yet open held every ready copy back (simulator seeds 42, 725061).
        var inFlight = notReadyIn.Sum();
        foreach (var w in waiting.OrderBy(w => w.Wave).ThenBy(w => w.Ready ? 1 : 0).ThenBy(w => w.Index))
        {
            var open = !rollout.Paused && w.Wave <= passed;
            // A replica that is not running ready costs nothing to replace; a ready one only while enough others are.
            if (open && (!w.Ready || (global ? inFlight < maxUnavailable + rollout.MaxFailed : available - 1 >= minAvailable)))
            {
                desired[w.Key] = NewSpec(w.Replica);
                updated++;
                updatedIn[w.Wave]++;
                notReadyIn[w.Wave] += online.Contains(w.Node) ? 1 : 0;
                inFlight += online.Contains(w.Node) ? 1 : 0;
                available -= w.Ready ? 1 : 0;
            }
            else
            {
                desired[w.Key] = assigned[w.Key]; // stays on its template until its turn
                waitingOnlineIn[w.Wave] += online.Contains(w.Node) ? 1 : 0;
            }
        }

        // The holds: the open wave passes once every replica of it and of the waves before it on
        // an online node is updated, and no more than maxFailed of them are not ready, for its
        // holdSeconds. A wave with no replica passes at once; so does every wave when nothing is stale.
        // A wave whose devices are all offline passes after its hold if an earlier wave tried the
        // template (they take it when they come back); a first wave waits for one of its own.
        DateTimeOffset? waveReadySince = null;
        while (passed < waves.Count)
        {
            if (inWave[passed] == 0)
            {
                passed++;
                continue;
            }
            int waitingSoFar = 0, notReadySoFar = 0, readySoFar = 0;
            for (var i = 0; i <= passed; i++)
            {
                waitingSoFar += waitingOnlineIn[i];
                notReadySoFar += notReadyIn[i];
                readySoFar += readyIn[i];
            }
            // Tried: at least one replica runs the template ready, in this wave or an earlier one.
            // Without it (every device offline, or every node unreachable to a scheduler that has
            // just come back from a hub outage) nothing has tested the template (simulator seed 471).
            if (waitingSoFar > 0 || notReadySoFar > rollout.MaxFailed || readySoFar == 0)
            {
                break;
            }
            waveReadySince = sameRevision && before!.WavesPassed == passed && before.WaveReadySince is { } since ? since : now;
            if (now - waveReadySince.Value < TimeSpan.FromSeconds(waves[passed].HoldSeconds))
            {
                break;
            }
            passed++;
            waveReadySince = null;
        }

        var notReady = notReadyIn.Sum();
        var pending = pendingIn.Sum();
        // Complete: every wave passed, every replica on an online node updated, and no more than
        // maxFailed of them not ready. A global deployment's copies on offline devices do not hold
        // it up (some of thousands always are; each takes the template on its return); a
        // replicated one's do, since they are moved once their node is lost.
        var complete = passed == waves.Count && waitingOnlineIn.Sum() == 0 && notReady <= rollout.MaxFailed && !surgeActive
            && (updatedReady > 0 || placement.Replicas.Count == 0)
            && (global || (pending == 0 && waiting.Count == 0 && updated == placement.Replicas.Count));
        var canaryHeld = rollout.Canary is not null && waves.Count > 0 && passed >= 1 && !complete;
        // Progress (which the deadline counts from): a new revision, a rollout starting again
        // (from complete, when a replica had to be placed anew), one more replica ready on the
        // template, or a wave's hold passed.
        var progressed = !sameRevision || before!.Phase is RolloutPhase.Complete or RolloutPhase.Degraded || updatedReady > before.UpdatedReady || passed != passedBefore;
        var template = TemplateHash(deployment);
        var readyTemplates = before?.ReadyTemplates ?? [];
        if (complete && placement.Replicas.Count > 0 && !readyTemplates.Contains(template, StringComparer.Ordinal))
        {
            readyTemplates = [template, .. readyTemplates.Take(9)];
        }
        // An older template whose replicas all run ready now has run ready, whether or not a pass
        // saw its rollout complete (a new revision applied right after the last replica got ready).
        // Ready on it means the node runs that very spec ready (not an older container under the name).
        foreach (var group in waiting.Select(w => (w, Assigned: TryParse(assigned[w.Key]))).GroupBy(x => x.Assigned?.Template is { } t ? TemplateHash(t) : ""))
        {
            if (group.Key.Length > 0 && !readyTemplates.Contains(group.Key, StringComparer.Ordinal)
                && group.All(x => briefs.TryGetValue((x.w.Node, x.w.Replica), out var b) && b.Up
                    && b.SpecHash == Supervisor.SpecHash(x.Assigned!.ToWorkload())))
            {
                readyTemplates = [group.Key, .. readyTemplates.Take(9)];
            }
        }
        IReadOnlyList<WaveProgress>? progress = waves.Count == 0 ? null : [.. Enumerable.Range(0, waveCount).Select(i => new WaveProgress
        {
            Name = i == waves.Count ? "rest" : rollout.Canary is not null ? "canary" : waves[i].Describe(),
            Replicas = inWave[i], Updated = updatedIn[i], Ready = readyIn[i], NotReady = notReadyIn[i], Pending = pendingIn[i],
            State = complete || i < passed ? "passed" : i > passed ? "waiting" : waveReadySince is not null ? "held" : "open",
        })];
        // Every placed replica updated and ready, but some replica has no node: as far as the fleet
        // allows, not complete (rollout status -w keeps waiting; the reasons are in Unschedulable).
        var phase = complete ? (placement.Unschedulable.Count > 0 ? RolloutPhase.Degraded : RolloutPhase.Complete) : rollout.Paused ? RolloutPhase.Paused : RolloutPhase.Progressing;
        return new DeploymentStatus
        {
            Name = deployment.Name, Desired = global ? placement.Replicas.Count + placement.Unschedulable.Count : deployment.Replicas,
            Placed = placement.Replicas.Count, Replicas = placement.Replicas,
            Unschedulable = placement.Unschedulable, At = now, Revision = revision,
            Updated = updated, UpdatedReady = updatedReady, Phase = phase, NotReady = notReady, Pending = pending,
            Wave = complete ? null : progress?[Math.Min(passed, waves.Count)].Name ?? "rest",
            Surge = surgeActive ? placement.Replicas.Count - Math.Min(deployment.Replicas, placement.Replicas.Count) : 0,
            CanaryReadySince = rollout.Canary is not null && passed == 0 ? waveReadySince : null, CanaryPassed = canaryHeld,
            WavesPassed = complete ? 0 : passed, WaveReadySince = waveReadySince, Waves = progress,
            LastProgressAt = progressed || phase != RolloutPhase.Progressing ? now : before!.LastProgressAt,
            // The reason of a rollback stays while the revision it went back to is rolling out;
            // once that is complete it is history (LastRollback).
            RolledBack = sameRevision && !complete ? before!.RolledBack : null,
            LastRollback = before?.LastRollback, LastRollbackAt = before?.LastRollbackAt,
            Template = template, ReadyTemplates = readyTemplates, RejectedTemplates = before?.RejectedTemplates ?? [],
        };
    }

    /// <summary>The deployment's <see cref="Workload.TemplateHash"/>.</summary>
    public static string TemplateHash(Deployment deployment) => deployment.Template.TemplateHash();

    public static string TemplateHash(Workload template) => template.TemplateHash();

    private static int Index(string replica, Deployment deployment)
        => int.TryParse(replica.AsSpan(deployment.Name.Length + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var i) ? i : int.MaxValue;

    private static Assignment? TryParse(byte[] value)
    {
        try
        {
            return Assignment.Parse(value);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>
    /// Goes back to the newest earlier template the fleet has run complete (that revision's
    /// template, selector and signature, recorded in the status as <see cref="DeploymentStatus.RolledBackTo"/>:
    /// the deployments bucket is the operator's, docs/nats-security.md), never one it rolled back
    /// from, and says why. Without such a template the deployment is failed and nothing is rolled back.
    /// </summary>
    /// <summary>"revision 3 written by alice (UABC…) at …; signed by UDEF…" for the events stream.</summary>
    public static string Audit(Deployment deployment)
        => $"revision {deployment.ShownRevision()} written by {deployment.ChangedBy ?? "unknown"}"
            + (deployment.ChangedAt is { } at ? $" at {at.UtcDateTime:yyyy-MM-dd HH:mm:ss}Z" : "")
            + (deployment.Signature is { } signature ? $"; signed by {signature.Key}" : "; unsigned");

    private async Task<DeploymentStatus> RollBackAsync(INatsKVStore deployments, Deployment deployment, IReadOnlyList<NodeEntry> nodes, DeploymentStatus report, CancellationToken cancellationToken)
    {
        var template = report.Template ?? TemplateHash(deployment);
        Deployment? previous = null;
        var history = new List<NatsKVEntry<byte[]>>();
        await foreach (var entry in deployments.HistoryAsync<byte[]>(deployment.Name, cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            history.Add(entry);
        }
        foreach (var entry in history.Where(e => e.Operation == NatsKVOperation.Put && e.Revision < (deployment.Revision ?? ulong.MaxValue)).OrderByDescending(e => e.Revision))
        {
            Deployment? candidate;
            try
            {
                candidate = entry.Value is { Length: > 0 } v ? JsonSerializer.Deserialize(v, WorkloadJsonContext.Default.Deployment) : null;
            }
            catch (JsonException)
            {
                continue;
            }
            if (candidate is null || candidate.Name != deployment.Name)
            {
                continue;
            }
            candidate.Revision = entry.Revision;
            var hash = TemplateHash(candidate);
            if (hash != template && report.ReadyTemplates.Contains(hash, StringComparer.Ordinal) && !report.RejectedTemplates.Contains(hash, StringComparer.Ordinal))
            {
                previous = candidate;
                break;
            }
        }
        var stuck = nodes.SelectMany(n => (n.Info.Containers ?? []).Select(c => (Node: n.Info.Node, Brief: c)))
            .FirstOrDefault(c => report.Replicas.TryGetValue(c.Brief.Name, out var on) && on == c.Node && !c.Brief.Ready);
        var wave = report.Wave == "canary" ? "the canary wave of " : "";
        var why = $"{wave}revision {deployment.Revision}: {(stuck.Brief is { } b ? $"replica {b.Name} on {stuck.Node} not ready ({WireNames.Of(b.State)}{(b.Message is { } m ? ": " + m : "")})" : "replicas not ready")} within {deployment.Rollout?.ProgressDeadlineSeconds ?? 120}s";
        var now = options.Clock.GetUtcNow();
        IReadOnlyList<string> rejected = report.RejectedTemplates.Contains(template, StringComparer.Ordinal)
            ? report.RejectedTemplates : [template, .. report.RejectedTemplates.Take(9)];
        if (previous is null)
        {
            var failed = why + "; no earlier template that ran ready to go back to";
            if (report.RolledBack != failed)
            {
                LogRollback(logger, deployment.Name, failed);
            }
            return report with { Phase = RolloutPhase.Failed, RolledBack = failed, RejectedTemplates = rejected };
        }
        // Only the signed part goes back: the replica count and how to roll out are not what failed.
        var to = SchedulerDecisions.RollbackTo(previous);
        LogRollback(logger, deployment.Name, why);
        emit("deployment.rolled-back", deployment.Name, why);
        return report with
        {
            Phase = RolloutPhase.RolledBack, RolledBack = why, RolledBackTo = to, LastProgressAt = now, Wave = null, CanaryReadySince = null, CanaryPassed = false,
            LastRollback = why, LastRollbackAt = now, RejectedTemplates = rejected, Template = TemplateHash(to.Template),
        };
    }

    /// <summary>Equal but for the time of the pass.</summary>
    private static bool SameStatus(DeploymentStatus a, DeploymentStatus b)
    {
        static byte[] Essence(DeploymentStatus s) => JsonSerializer.SerializeToUtf8Bytes(
            s with { At = default, LastProgressAt = s.Phase == RolloutPhase.Progressing ? s.LastProgressAt : default }, FleetJsonContext.Default.DeploymentStatus);
        return Essence(a).AsSpan().SequenceEqual(Essence(b));
    }

    [LoggerMessage(EventId = 4008, Level = LogLevel.Warning, Message = "scheduler: deployment {Name} rolled back: {Why}")]
    private static partial void LogRollback(ILogger logger, string name, string why);

    [LoggerMessage(EventId = 4003, Level = LogLevel.Information, Message = "scheduler: assigned {Key}")]
    private static partial void LogAssigned(ILogger logger, string key);

    [LoggerMessage(EventId = 4004, Level = LogLevel.Information, Message = "scheduler: nothing assigned to {Key} any more")]
    private static partial void LogUnassignedKey(ILogger logger, string key);

    [LoggerMessage(EventId = 4005, Level = LogLevel.Warning, Message = "scheduler: unschedulable {Reason}")]
    private static partial void LogUnschedulable(ILogger logger, string reason);

    /// <summary>The node this scheduler runs on (recorded in each status).</summary>
    public string NodeName => nodeName;
}

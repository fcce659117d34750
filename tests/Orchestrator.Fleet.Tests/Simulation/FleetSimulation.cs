using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using NATS.Client.KeyValueStore;
using Orchestrator.Fleet.Agent;
using Orchestrator.Api;
using Orchestrator.Fleet.Scheduler;
using Orchestrator.Node.Reconcile;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Fleet.Tests.Simulation;

/// <summary>
/// A deterministic fleet simulation (in the manner of FoundationDB's and TigerBeetle's simulation
/// testing): the real <see cref="FleetScheduler"/>, <see cref="SchedulerLease"/>,
/// <see cref="AssignmentFollower"/> and <see cref="FleetState"/> run against in-memory KV buckets
/// in simulated time, on simulated nodes whose containers start, get ready (or never do, for a
/// bad template) and keep running while their orchd is down. A seeded random schedule injects
/// faults: nodes cut off and back, orchd crashes with containers alive, nodes that die, hub
/// outages of any length, a scheduler that stalls (a loaded machine), delayed and reordered
/// heartbeats, bad rollouts, scale changes and a wiped store. After every step the invariants
/// are checked (<see cref="Check"/>); the first one broken ends the run with the seed and the
/// events that led there. One seed is one run, the same every time.
/// </summary>
public sealed class FleetSimulation
{
    public static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(250);

    private readonly int _seed;
    private readonly Random _rng;
    private readonly SimClock _clock = new();
    private readonly InMemoryKVContext _kv;
    private readonly FleetOptions _options;
    private readonly List<SimNode> _nodes = [];
    private readonly Dictionary<string, DeploymentPlan> _plans = new(StringComparer.Ordinal);
    private readonly StringBuilder _log = new();
    private readonly DateTimeOffset _start;
    private readonly TimeSpan _faultsFor;
    private DateTimeOffset _lastFaultEnd;
    private DateTimeOffset _hubBackAt = DateTimeOffset.MinValue;
    private readonly Random? _revocations;
    private readonly Random? _globalReleases;
    private DateTimeOffset? _reapplyAt;
    private int _writesChecked;

    /// <summary>The invariant broken first, with the seed and the recent events; null when the run held.</summary>
    public string? Failure { get; private set; }

    /// <summary>Scheduler elections seen (for the churn check).</summary>
    public int Elections { get; private set; }

    public int Steps { get; private set; }

    /// <summary>Bounds of the convergence check: after the last fault ends, the fleet must be right within this.</summary>
    public TimeSpan ConvergeWithin { get; }

    public FleetSimulation(int seed, TimeSpan? faultsFor = null)
    {
        _seed = seed;
        _rng = new Random(seed);
        _kv = new InMemoryKVContext(_clock);
        // Half the runs against a server whose watches say 0 pending early (nats-server 2.9 under
        // writers). Drawn from a generator of its own: the seeds kept as tests replay as they did.
        _kv.LyingPending = new Random(seed ^ 0x5EED) is var lying && lying.Next(2) == 0 ? lying : null;
        // A third of the runs also revoke nodes now and then (orchctl node revoke), from a generator
        // of its own so that the other faults are drawn as before.
        _revocations = new Random(seed ^ 0x2E70CE) is var revoking && revoking.Next(3) == 0 ? revoking : null;
        // Half the runs also have a global deployment (one copy per node, released in two waves),
        // with new releases (half of them bad) drawn from a generator of its own.
        _globalReleases = new Random(seed ^ 0x610BA1) is var releasing && releasing.Next(2) == 0 ? releasing : null;
        _start = _clock.GetUtcNow();
        _faultsFor = faultsFor ?? TimeSpan.FromSeconds(_rng.Next(60, 240));
        // Timings: mostly a fast profile (more faults per simulated minute), sometimes orchd's defaults.
        _options = _rng.Next(4) == 0
            ? new FleetOptions { Heartbeat = TimeSpan.FromSeconds(2), Clock = _clock }
            : new FleetOptions
            {
                Heartbeat = TimeSpan.FromSeconds(1), UnreachableAfter = TimeSpan.FromSeconds(4), LostAfter = TimeSpan.FromSeconds(10),
                LeaderLease = TimeSpan.FromSeconds(4), Clock = _clock,
            };
        ConvergeWithin = _options.SettleTime + _options.LostAfter + _options.LeaderLease + TimeSpan.FromSeconds(DeadlineSeconds * 2 + 30);
        var count = _rng.Next(3, 7);
        for (var i = 0; i < count; i++)
        {
            var node = new SimNode(this, $"n{i}", new Dictionary<string, string> { ["zone"] = i % 2 == 0 ? "a" : "b" });
            node.Phase = TimeSpan.FromMilliseconds(_rng.Next(0, 1000));
            _nodes.Add(node);
        }
        var deployments = _rng.Next(1, 4);
        for (var i = 0; i < deployments; i++)
        {
            var plan = new DeploymentPlan
            {
                Name = $"d{i}", Replicas = _rng.Next(1, 6), MaxSurge = _rng.Next(0, 2), Fence = _rng.Next(3) == 0,
                AntiAffinity = _rng.Next(5) == 0, Version = 1, DeadlineSeconds = DeadlineSeconds,
            };
            _plans[plan.Name] = plan;
        }
        if (_globalReleases is not null)
        {
            _plans["g"] = new DeploymentPlan { Name = "g", Global = true, Version = 1, DeadlineSeconds = DeadlineSeconds };
        }
    }

    /// <summary>The replicated plans (the ones the main generator picks from: a global plan must not change its draws).</summary>
    private List<DeploymentPlan> Replicated => [.. _plans.Values.Where(p => !p.Global)];

    private int DeadlineSeconds => _options.Heartbeat >= TimeSpan.FromSeconds(2) ? 30 : 12;

    /// <summary>Runs the whole scenario: faults for a while, then quiet until it must have converged.</summary>
    public FleetSimulation Run()
    {
        foreach (var plan in _plans.Values)
        {
            Apply(plan);
        }
        var end = _start + _faultsFor;
        while (Failure is null && _clock.GetUtcNow() < end)
        {
            InjectFaults();
            Step();
        }
        // Quiet: every fault healed, nothing new; the fleet must converge within the bound.
        HealAll();
        _lastFaultEnd = _clock.GetUtcNow();
        while (Failure is null && _clock.GetUtcNow() < _lastFaultEnd + ConvergeWithin)
        {
            Step();
        }
        if (Failure is null)
        {
            CheckConverged(final: true);
        }
        return this;
    }

    internal DateTimeOffset Now => _clock.GetUtcNow();
    internal FleetOptions Options => _options;
    internal InMemoryKVContext Kv => _kv;
    internal bool HubDown => _kv.Outage;

    internal void Log(string line)
    {
        _log.Append(CultureInfo($"{(Now - _start).TotalSeconds,7:0.00}s ")).AppendLine(line);
        if (_log.Length > 64_000)
        {
            _log.Remove(0, _log.Length - 48_000);
        }
    }

    private static string CultureInfo(FormattableString s) => s.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private void Step()
    {
        // Nodes act in a random order each tick: messages from different nodes land interleaved.
        foreach (var node in _nodes.OrderBy(_ => _rng.Next()).ToList())
        {
            node.Step(_rng);
            if (Failure is not null)
            {
                return;
            }
        }
        if (_reapplyAt is { } at && Now >= at && !HubDown)
        {
            _reapplyAt = null;
            Log("operator: re-applies every deployment (the store was wiped)");
            foreach (var plan in _plans.Values)
            {
                plan.ReappliedAt = Now;
                Apply(plan);
            }
        }
        Check();
        Steps++;
        _clock.Advance(Tick);
    }

    // ---- the operator ----

    private void Apply(DeploymentPlan plan)
    {
        var deployment = plan.ToDeployment();
        try
        {
            // An apply to a store that lost the deployment (wiped) is a re-apply, whoever made it:
            // the nodes kept what they ran, duplicates included, until a scheduler has settled.
            if (StoredDeployment(plan.Name) is null)
            {
                plan.ReappliedAt = Now;
            }
            var store = Bucket(Buckets.Deployments, Buckets.DeploymentHistory);
            store.PutAsync(deployment.Name, JsonSerializer.SerializeToUtf8Bytes(deployment, WorkloadJsonContext.Default.Deployment)).AsTask().GetAwaiter().GetResult();
            _operatorWrote = ((InMemoryKVStore)store, ((InMemoryKVStore)store).Wipes, ((InMemoryKVStore)store).LastSequence);
            plan.OperatorTemplate = FleetScheduler.TemplateHash(deployment);
            if (!plan.Bad)
            {
                plan.GoodTemplates.Add(plan.OperatorTemplate);
            }
            Log($"operator: applied {plan.Name} v{plan.Version}{(plan.Bad ? " (bad: exits)" : "")} x{plan.Replicas}");
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Log($"operator: apply of {plan.Name} failed ({e.GetType().Name}); will retry");
            _reapplyAt = Now + TimeSpan.FromSeconds(5);
        }
    }

    /// <summary>A bucket as a node or the operator opens it (made again after a wipe, like FleetStore.OpenAsync).</summary>
    internal INatsKVStore Bucket(string name, int history)
    {
        if (_kv.Outage)
        {
            throw new TimeoutException("hub down");
        }
        return FleetStore.OpenAsync(_kv, name, history, CancellationToken.None).GetAwaiter().GetResult();
    }

    // ---- faults ----

    private void InjectFaults()
    {
        var now = Now;
        if (HubDown && now >= _hubBackAt)
        {
            _kv.Outage = false;
            Log("hub back");
        }
        // About one revocation every 2 simulated minutes in the runs that revoke: the identity
        // service sets the node's settings to revoked and the server cuts it off; the device hears
        // it and removes the fleet's replicas (for the fleet, it is gone).
        if (_revocations is { } revoking && !HubDown && revoking.NextDouble() < Tick.TotalSeconds / 120
            && _nodes.Where(n => n.Alive && n.RevokedAt is null).ToList() is { Count: > 2 } candidates)
        {
            var revoked = candidates[revoking.Next(candidates.Count)];
            try
            {
                Bucket(Buckets.NodeSettings, 1).PutAsync(revoked.Name, JsonSerializer.SerializeToUtf8Bytes(new NodeSettings { Revoked = true, Cordoned = true }, FleetJsonContext.Default.NodeSettings))
                    .AsTask().GetAwaiter().GetResult();
                revoked.Die();
                revoked.RevokedAt = now;
                Log($"fault: {revoked.Name} revoked (cut off; it removed the fleet's replicas)");
            }
            catch (Exception e) when (e is TimeoutException or NatsKVException)
            {
            }
        }
        // About one release of the global deployment every 40 simulated seconds, half of them bad.
        if (_globalReleases is { } releases && releases.NextDouble() < Tick.TotalSeconds / 40)
        {
            var global = _plans["g"];
            global.Version++;
            global.Bad = releases.Next(2) == 0;
            Apply(global);
        }
        // About one fault every 20 simulated seconds, of a random kind.
        if (_rng.NextDouble() > Tick.TotalSeconds / 20)
        {
            return;
        }
        var node = _nodes[_rng.Next(_nodes.Count)];
        var lost = _options.LostAfter;
        TimeSpan Length() => _rng.Next(3) switch
        {
            0 => TimeSpan.FromSeconds(_rng.NextDouble() * _options.UnreachableAfter.TotalSeconds), // a blip
            1 => TimeSpan.FromSeconds(_rng.NextDouble() * lost.TotalSeconds * 1.5), // around lost_after
            _ => TimeSpan.FromSeconds(lost.TotalSeconds + _rng.NextDouble() * lost.TotalSeconds * 3), // well past it
        };
        switch (_rng.Next(11))
        {
            case 0 or 1 when node.Alive:
                node.LinkDownUntil = Max(node.LinkDownUntil, now + Length());
                Log($"fault: {node.Name} cut off until {(node.LinkDownUntil - _start).TotalSeconds:0.0}s");
                break;
            case 2 when node.Alive && node.OrchdUp:
                node.CrashOrchd(now + Length());
                Log($"fault: {node.Name} orchd crashed (containers live on) until {(node.OrchdDownUntil - _start).TotalSeconds:0.0}s");
                break;
            case 3 when node.Alive && _nodes.Count(n => n.Alive) > 2 && _rng.Next(3) == 0:
                node.Die();
                Log($"fault: {node.Name} died (power off, its containers too)");
                break;
            case 4 when !HubDown:
                _hubBackAt = now + Length();
                _kv.Outage = true;
                Log($"fault: hub outage until {(_hubBackAt - _start).TotalSeconds:0.0}s");
                break;
            case 5 when node.Alive:
                node.StalledUntil = now + TimeSpan.FromSeconds(_rng.NextDouble() * _options.LeaderLease.TotalSeconds * 1.5);
                Log($"fault: {node.Name} stalls (CPU starved) until {(node.StalledUntil - _start).TotalSeconds:0.0}s");
                break;
            case 6 when node.Alive:
                node.HeartbeatDelay = TimeSpan.FromSeconds(_rng.NextDouble() * _options.UnreachableAfter.TotalSeconds);
                node.DelayUntil = now + Length();
                Log($"fault: {node.Name} heartbeats delayed by up to {node.HeartbeatDelay.TotalSeconds:0.0}s until {(node.DelayUntil - _start).TotalSeconds:0.0}s");
                break;
            case 7:
                var bad = Replicated[_rng.Next(Replicated.Count)];
                bad.Version++;
                bad.Bad = _rng.Next(2) == 0;
                Apply(bad);
                break;
            case 8:
                var scaled = Replicated[_rng.Next(Replicated.Count)];
                scaled.PreviousReplicas = Math.Max(scaled.Replicas, now - scaled.ScaledAt < ConvergeWithin ? scaled.PreviousReplicas : 0);
                scaled.ScaledAt = now;
                scaled.Replicas = _rng.Next(1, 7);
                Apply(scaled);
                break;
            case 9 when !HubDown && _rng.Next(4) == 0:
                _kv.WipeAll();
                _storedCache.Clear();
                _writesChecked = 0;
                foreach (var n in _nodes)
                {
                    n.EverAssigned.Clear(); // a new store: placements start over
                    n.ServerRestarted(); // a store is lost with a server restart: every connection drops and comes back
                }
                foreach (var plan in _plans.Values)
                {
                    plan.RejectedByFleet.Clear(); // the fleet's memory of them went with the store
                }
                _reapplyAt = now + TimeSpan.FromSeconds(_rng.Next(2, 30));
                Log("fault: the hub's store is wiped (nats-server restarted on an empty store)");
                break;
            case 10 when !node.Alive && _rng.Next(2) == 0:
                if (node.RevokedAt is not null)
                {
                    // Enrolled again under a new key: the identity service puts its settings back.
                    try
                    {
                        Bucket(Buckets.NodeSettings, 1).PutAsync(node.Name, JsonSerializer.SerializeToUtf8Bytes(new NodeSettings(), FleetJsonContext.Default.NodeSettings))
                            .AsTask().GetAwaiter().GetResult();
                        node.RevokedAt = null;
                    }
                    catch (Exception e) when (e is TimeoutException or NatsKVException)
                    {
                        break;
                    }
                }
                node.Revive();
                Log($"fault: {node.Name} replaced and booted empty");
                break;
        }
    }

    private void HealAll()
    {
        _kv.Outage = false;
        foreach (var node in _nodes)
        {
            // Ended now (not never): the node's last fault is this moment.
            node.LinkDownUntil = Min(node.LinkDownUntil, Now);
            node.StalledUntil = Min(node.StalledUntil, Now);
            node.DelayUntil = Min(node.DelayUntil, Now);
            if (!node.OrchdUp && node.Alive)
            {
                node.OrchdDownUntil = Now;
            }
        }
        if (_plans.Values.Any(p => p.Bad))
        {
            // The operator fixes the bad ones: the last word is a good template.
            foreach (var plan in _plans.Values.Where(p => p.Bad))
            {
                plan.Version++;
                plan.Bad = false;
                Apply(plan);
            }
        }
        if (_reapplyAt is not null)
        {
            _reapplyAt = Now;
        }
        Log("quiet: every fault healed");
    }

    internal void NoteFaultActivity() => _lastFaultEnd = Now;

    private static DateTimeOffset Max(DateTimeOffset a, DateTimeOffset b) => a > b ? a : b;

    private static DateTimeOffset Min(DateTimeOffset a, DateTimeOffset b) => a < b ? a : b;

    // ---- invariants ----

    internal void Fail(string invariant)
    {
        if (Failure is not null)
        {
            return;
        }
        Failure = $"seed {_seed}, at {(Now - _start).TotalSeconds:0.00}s: {invariant}\nreplay: ORCH_SIM_SEED={_seed} dotnet test tests/Orchestrator.Fleet.Tests --filter FullyQualifiedName~Replay\n"
            + $"timings: heartbeat {_options.Heartbeat.TotalSeconds}s, unreachable {_options.UnreachableAfter.TotalSeconds}s, lost {_options.LostAfter.TotalSeconds}s, lease {_options.LeaderLease.TotalSeconds}s\n"
            + "last events:\n" + string.Join('\n', _log.ToString().Split('\n').TakeLast(60));
    }

    /// <summary>Healthy: alive, orchd up, linked, not stalled, heartbeats on time, for at least <paramref name="since"/>.</summary>
    private bool Healthy(SimNode node, TimeSpan since) => node.Alive && Now - node.LastIndividualFault >= since && node.OrchdUp && !node.CutOff && !HubDown && Now - _hubBackAt >= since;

    /// <summary>The deployments bucket and its sequence after the operator's last write to it.</summary>
    private (InMemoryKVStore? Store, int Wipes, ulong Sequence) _operatorWrote;

    private void Check()
    {
        var now = Now;
        // 0. The desired state is the operator's alone: no scheduler writes the deployments bucket
        //    (its rollbacks and autoscaled counts go into the statuses; docs/nats-security.md).
        if (_kv.Stores.TryGetValue(Buckets.Deployments, out var deploymentsBucket) && ReferenceEquals(deploymentsBucket, _operatorWrote.Store)
            && deploymentsBucket.Wipes == _operatorWrote.Wipes && deploymentsBucket.LastSequence != _operatorWrote.Sequence)
        {
            Fail($"the deployments bucket was written by someone other than the operator (sequence {deploymentsBucket.LastSequence}, the operator's last write {_operatorWrote.Sequence})");
            return;
        }
        var healthyFor = _options.LostAfter;
        foreach (var plan in _plans.Values)
        {
            // 1. Never a template the fleet rejected, nor a bad one the operator did not ask for:
            //    a rollback goes only to a template that ran ready.
            var (_, stored, storedHash) = Stored(plan.Name);
            if (stored is not null && storedHash is { } hash)
            {
                if (hash != plan.OperatorTemplate && !plan.GoodTemplates.Contains(hash))
                {
                    Fail($"deployment {plan.Name} was put back on a template that never ran ready ({hash}); the operator's is {plan.OperatorTemplate}");
                    return;
                }
            }

            // (A deployment the store lost with a wipe has no desired count until it is applied
            // again: the nodes keep what they ran, duplicates included, and the re-apply sorts them.)
            if (stored is null || now - plan.ReappliedAt < _options.LeaderLease + _options.SettleTime + 2 * _options.SchedulePeriod + TimeSpan.FromSeconds(2))
            {
                continue;
            }

            // 2. Never more live copies than desired + maxSurge on nodes that have been healthy
            //    (copies on a node that is or was lately cut off are the unreachable exception),
            //    and never one replica running twice on healthy nodes.
            // Only the scheduler can tell two nodes that both run a replica which one keeps it (a node
            // back without a key after a wipe keeps what it ran): a pass must have seen them healthy.
            var window = TimeSpan.FromSeconds(3) + _options.Heartbeat * 2;
            var passSeen = _lastPassAt > now - window + _options.Heartbeat;
            var copies = _nodes.Where(n => Healthy(n, TimeSpan.FromSeconds(3)))
                .SelectMany(n => n.Containers.Values.Where(c => c.Deployment == plan.Name && c.Running).Select(c => (Node: n, C: c))).ToList();
            if (plan.Global)
            {
                // 2g. A global deployment: never two copies on one healthy node.
                foreach (var twice in copies.GroupBy(c => c.Node).Where(g => g.Count() > 1))
                {
                    if (Healthy(twice.Key, window) && passSeen && Persists($"global twice {twice.Key.Name}", now))
                    {
                        Fail($"global deployment {plan.Name} runs {twice.Count()} copies on {twice.Key.Name}: {string.Join(", ", twice.Select(c => c.C.Name))}");
                        return;
                    }
                }
                continue;
            }
            var desired = StoredDeployment(plan.Name)?.Replicas ?? plan.Replicas;
            // A scale-down takes a pass to reach the nodes (longer while no scheduler can run).
            var allowed = Math.Max(desired, now - plan.ScaledAt < ConvergeWithin ? plan.PreviousReplicas : 0) + plan.MaxSurge;
            // A move starts the new copy as the old node learns it lost it: a second, no more.
            var duplicated = copies.GroupBy(c => c.C.Name).Any(g => g.Count() > 1);
            if (copies.Count > allowed && (passSeen || !duplicated) && Persists($"count {plan.Name}", now))
            {
                Fail($"deployment {plan.Name}: {copies.Count} copies run on healthy nodes, at most {allowed} allowed: {string.Join(", ", copies.Select(c => c.C.Name + "@" + c.Node.Name))}");
                return;
            }
            foreach (var twice in copies.GroupBy(c => c.C.Name).Where(g => g.Count() > 1))
            {
                if (twice.All(c => Healthy(c.Node, window)) && passSeen && Persists($"twice {twice.Key}", now))
                {
                    Fail($"replica {twice.Key} runs on {string.Join(" and ", twice.Select(c => c.Node.Name))}, all healthy");
                    return;
                }
            }

            // 3. Fencing: a fenced replica never runs on a node out of contact for longer than fence_after (+ one check).
            if (plan.Fence)
            {
                foreach (var node in _nodes.Where(n => n.Alive))
                {
                    // By the node's own clock and CPU: a stalled process fences when it runs again.
                    var silent = now - Max(node.Contact.Last + _options.EffectiveFenceAfter, node.StalledUntil) + _options.EffectiveFenceAfter;
                    if (silent > _options.EffectiveFenceAfter + TimeSpan.FromSeconds(2) && node.Containers.Values.Any(c => c.Deployment == plan.Name && c.Running && c.Fenced))
                    {
                        Fail($"fenced deployment {plan.Name} still runs on {node.Name}, {silent.TotalSeconds:0.0}s without contact (fence_after {_options.EffectiveFenceAfter.TotalSeconds}s)");
                        return;
                    }
                }
            }
        }

        // 5. A revoked node is lost at once: once a scheduler could have run a pass since the
        //    revocation (hub up, another node healthy long enough to take the lease, settle and
        //    pass), nothing is assigned to it.
        var revokedWindow = _options.LeaderLease + _options.SettleTime + 2 * _options.SchedulePeriod + _options.Heartbeat * 2 + TimeSpan.FromSeconds(2);
        foreach (var node in _nodes.Where(n => n.RevokedAt is { } at && now - Max(at, _hubBackAt) > revokedWindow && !HubDown
            && _nodes.Any(other => other != n && Healthy(other, revokedWindow))))
        {
            if (node.AssignedNow() is { Count: > 0 } still && Persists($"revoked {node.Name}", now))
            {
                Fail($"{node.Name} was revoked {(now - node.RevokedAt!.Value).TotalSeconds:0.0}s ago and still has replicas assigned: {string.Join(", ", still)}");
                return;
            }
        }

        // 4. No node judged lost while it was healthy: the scheduler never moves a replica off a
        //    node that has had no fault of its own for lost_after (a hub outage is not the node's fault).
        var assignments = _kv.Stores.TryGetValue(Buckets.Assignments, out var store) && !store.Unavailable ? store.LastSequence : 0;
        if (assignments != 0 && (ulong)_writesChecked != assignments)
        {
            _writesChecked = (int)assignments;
            var now2 = _nodes.ToDictionary(n => n, n => n.AssignedNow());
            foreach (var node in _nodes)
            {
                var added = (now2[node] ?? []).Where(r => !node.EverAssigned.Contains(r)).ToList();
                var removed = node.EverAssigned.Where(r => now2[node]?.Contains(r) == false).ToList();
                if (added.Count + removed.Count > 0)
                {
                    Log($"assignments of {node.Name}:{string.Concat(added.Select(r => " +" + r))}{string.Concat(removed.Select(r => " -" + r))}");
                }
            }
            foreach (var node in _nodes.Where(n => n.Alive && n.OrchdUp && now - n.LastIndividualFault > healthyFor + _options.Heartbeat * 2))
            {
                if (now2[node] is not { } assigned)
                {
                    continue;
                }
                foreach (var moved in node.EverAssigned.Where(r => !assigned.Contains(r)))
                {
                    var dash = moved.LastIndexOf('-');
                    var stillWanted = StoredDeployment(moved[..dash]) is { } d && (d.IsGlobal() || int.Parse(moved[(dash + 1)..], System.Globalization.CultureInfo.InvariantCulture) < d.Replicas);
                    var elsewhere = _nodes.Where(n => n != node).FirstOrDefault(n => now2[n]?.Contains(moved) == true);
                    if (stillWanted && elsewhere is not null)
                    {
                        Fail($"replica {moved} was moved off {node.Name} to {elsewhere.Name}, though {node.Name} has had no fault of its own for {(now - node.LastIndividualFault).TotalSeconds:0}s (lost_after {healthyFor.TotalSeconds}s)");
                        return;
                    }
                }
            }
            foreach (var node in _nodes)
            {
                node.EverAssigned.Clear();
                if (now2[node] is { } a2)
                {
                    node.EverAssigned.UnionWith(a2);
                }
            }
        }
    }

    private readonly Dictionary<string, (ulong Sequence, Deployment? Deployment, string? Hash)> _storedCache = new(StringComparer.Ordinal);

    private readonly Dictionary<string, (DateTimeOffset Since, int Step)> _transient = new(StringComparer.Ordinal);

    /// <summary>True when the same condition has held for more than a second (checked every step; a gap starts it over).</summary>
    private bool Persists(string key, DateTimeOffset now)
    {
        if (!_transient.TryGetValue(key, out var seen) || seen.Step != Steps - 1)
        {
            seen.Since = now;
        }
        _transient[key] = (seen.Since, Steps);
        return now - seen.Since > TimeSpan.FromSeconds(1);
    }

    private Deployment? StoredDeployment(string name) => Stored(name).Deployment;

    /// <summary>
    /// A deployment as the fleet runs it now (the stored revision with the scheduler's decisions
    /// from its status: a rollback, an autoscaled count), and its template's hash (read again only
    /// when either bucket changed).
    /// </summary>
    private (ulong Sequence, Deployment? Deployment, string? Hash) Stored(string name)
    {
        if (!_kv.Stores.TryGetValue(Buckets.Deployments, out var store) || store.Unavailable)
        {
            return default;
        }
        var statuses = _kv.Stores.TryGetValue(Buckets.DeploymentStatus, out var s) && !s.Unavailable ? s : null;
        // Both buckets' sequences in one number (each far below 2^32 in a run).
        var sequence = (store.LastSequence << 32) | (statuses?.LastSequence ?? 0);
        if (_storedCache.TryGetValue(name, out var cached) && cached.Sequence == sequence && store.LastSequence != 0)
        {
            return cached;
        }
        var entry = store.TryGetEntryAsync<byte[]>(name).AsTask().GetAwaiter().GetResult();
        var deployment = entry.Success && entry.Value.Value is { Length: > 0 } v ? JsonSerializer.Deserialize(v, WorkloadJsonContext.Default.Deployment) : null;
        if (deployment is not null)
        {
            deployment.Revision = entry.Value.Revision;
            var status = statuses?.TryGetEntryAsync<byte[]>(name).AsTask().GetAwaiter().GetResult();
            deployment = SchedulerDecisions.Apply(deployment, status is { Success: true } && status.Value.Value.Value is { Length: > 0 } sv
                ? JsonSerializer.Deserialize(sv, FleetJsonContext.Default.DeploymentStatus) : null);
        }
        return _storedCache[name] = (sequence, deployment, deployment is null ? null : FleetScheduler.TemplateHash(deployment));
    }

    /// <summary>5. After the quiet period: every deployment complete, on a good template, each replica once, spread where it can be.</summary>
    private void CheckConverged(bool final)
    {
        var alive = _nodes.Where(n => n.Alive).ToList();
        foreach (var plan in _plans.Values)
        {
            var stored = StoredDeployment(plan.Name);
            if (stored is null)
            {
                Fail($"deployment {plan.Name} is missing from the store after the quiet period");
                return;
            }
            var hash = FleetScheduler.TemplateHash(stored);
            var copies = alive.SelectMany(n => n.Containers.Values.Where(c => c.Deployment == plan.Name && c.Running).Select(c => (Node: n, C: c))).ToList();
            if (plan.Global)
            {
                // Every node that is alive runs exactly one copy, ready, on the good template.
                var wrong = alive.Where(n => copies.Count(c => c.Node == n) != 1 || !copies.Any(c => c.Node == n && c.C.Ready && c.C.Template == hash)).ToList();
                if (wrong.Count > 0)
                {
                    Fail($"not converged {ConvergeWithin.TotalSeconds:0}s after the last fault: global deployment {plan.Name} wants one copy on {hash} ready on each of {alive.Count} nodes; {string.Join(", ", wrong.Select(n => $"{n.Name} runs [{string.Join(" ", copies.Where(c => c.Node == n).Select(c => $"{c.C.Name}{(c.C.Ready ? "" : "(not ready)")}{(c.C.Template == hash ? "" : "(old)")}"))}]"))}");
                    return;
                }
                continue;
            }
            var expectedCount = plan.AntiAffinity ? Math.Min(stored.Replicas, alive.Count) : stored.Replicas;
            var ready = copies.Count(c => c.C.Ready && c.C.Template == hash);
            if (ready != expectedCount || copies.Count != expectedCount)
            {
                Fail($"not converged {ConvergeWithin.TotalSeconds:0}s after the last fault: deployment {plan.Name} wants {expectedCount} on {hash}; runs {copies.Count} ({ready} ready on it): {string.Join(", ", copies.Select(c => $"{c.C.Name}@{c.Node.Name}{(c.C.Ready ? "" : "(not ready)")}{(c.C.Template == hash ? "" : "(old)")}"))}");
                return;
            }
            if (copies.GroupBy(c => c.C.Name).Any(g => g.Count() > 1))
            {
                Fail($"not converged: deployment {plan.Name} runs a replica twice");
                return;
            }
        }
        _ = final;
    }

    /// <summary>When a scheduler pass last completed, on any node.</summary>
    private DateTimeOffset _lastPassAt = DateTimeOffset.MinValue;

    internal void PassCompleted() => _lastPassAt = Now;

    internal void Elected(SimNode node)
    {
        Elections++;
        Log($"{node.Name}: took the scheduler lease");
    }

    /// <summary>What a simulated deployment is, as the operator last applied it.</summary>
    internal sealed class DeploymentPlan
    {
        public required string Name { get; init; }
        public int Replicas { get; set; }
        public int MaxSurge { get; init; }
        public bool Fence { get; init; }
        public bool AntiAffinity { get; init; }
        /// <summary>mode: global, released in two waves (half the nodes, then the rest).</summary>
        public bool Global { get; init; }
        public int Version { get; set; }
        public int PreviousReplicas { get; set; }
        public DateTimeOffset ScaledAt { get; set; }
        public DateTimeOffset ReappliedAt { get; set; }
        public int DeadlineSeconds { get; init; }
        public bool Bad { get; set; }
        public string OperatorTemplate { get; set; } = "";
        public HashSet<string> GoodTemplates { get; } = new(StringComparer.Ordinal);
        public HashSet<string> RejectedByFleet { get; } = new(StringComparer.Ordinal);

        public Deployment ToDeployment() => new()
        {
            Name = Name, Replicas = Global ? 1 : Replicas, Fence = Fence, AntiAffinity = AntiAffinity, Mode = Global ? DeploymentMode.Global : null,
            Rollout = Global
                ? new RolloutSpec { MaxUnavailable = 1, ProgressDeadlineSeconds = DeadlineSeconds, Waves = [new WaveSpec { Percent = 50, HoldSeconds = 2 }] }
                : new RolloutSpec { MaxSurge = MaxSurge, MaxUnavailable = 1, ProgressDeadlineSeconds = DeadlineSeconds },
            Template = new Workload
            {
                Image = "busybox:latest", Network = NetworkMode.None,
                Command = Bad ? ["sh", "-c", "exit 1"] : ["sleep", "100000"],
                Env = new() { ["VERSION"] = Version.ToString(System.Globalization.CultureInfo.InvariantCulture) },
            },
        };
    }
}

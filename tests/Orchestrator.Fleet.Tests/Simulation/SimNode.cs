using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using NATS.Client.KeyValueStore;
using Orchestrator.Fleet.Agent;
using Orchestrator.Api;
using Orchestrator.Fleet.Scheduler;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Fleet.Tests.Simulation;

/// <summary>
/// One simulated node: what orchd's FleetMember does (heartbeats, following its assignments with
/// the real <see cref="AssignmentFollower"/>, the real <see cref="SchedulerLease"/> and
/// <see cref="FleetScheduler"/>, fencing as FleetMember.GuardAsync does it), each at its own
/// cadence, over a link that faults can cut; and containers that outlive orchd.
/// </summary>
internal sealed class SimNode : IAssignedReplicas
{
    private readonly FleetSimulation _sim;
    private AssignmentFollower _follower;
    private SchedulerLease _lease;
    private FleetScheduler _scheduler;
    private readonly List<(DateTimeOffset LandsAt, byte[] Info)> _inFlight = [];
    private DateTimeOffset _nextHeartbeat;
    private DateTimeOffset _nextRenew;
    private DateTimeOffset _nextPass;
    private bool _leader;
    private bool _wasCutOff;
    private DateTimeOffset _bootedAt;

    public SimNode(FleetSimulation sim, string name, Dictionary<string, string> labels)
    {
        _sim = sim;
        Name = name;
        Labels = labels;
        Contact = new FleetContact(sim.Now);
        _follower = new AssignmentFollower([], this);
        _lease = new SchedulerLease(name, sim.Options);
        _scheduler = new FleetScheduler(name, sim.Options, NullLogger.Instance, (_, _, _) => { });
        _bootedAt = sim.Now;
    }

    public string Name { get; }
    public Dictionary<string, string> Labels { get; }
    public TimeSpan Phase { get; set; }
    public bool Alive { get; private set; } = true;
    /// <summary>When an operator revoked this node's credentials (orchctl node revoke), or null.</summary>
    public DateTimeOffset? RevokedAt { get; set; }
    public bool OrchdUp => Alive && _sim.Now >= OrchdDownUntil;
    public DateTimeOffset OrchdDownUntil { get; set; } = DateTimeOffset.MinValue;
    public DateTimeOffset LinkDownUntil { get; set; } = DateTimeOffset.MinValue;
    public DateTimeOffset StalledUntil { get; set; } = DateTimeOffset.MinValue;
    public DateTimeOffset DelayUntil { get; set; } = DateTimeOffset.MinValue;
    public TimeSpan HeartbeatDelay { get; set; }
    public bool CutOff => _sim.Now < LinkDownUntil;
    public FleetContact Contact { get; private set; }
    public Dictionary<string, SimContainer> Containers { get; } = new(StringComparer.Ordinal);
    public HashSet<string> EverAssigned { get; } = new(StringComparer.Ordinal);

    /// <summary>When this node last had a fault of its own (cut off, crashed, stalled, late heartbeats), or its boot.</summary>
    public DateTimeOffset LastIndividualFault
    {
        get
        {
            var now = _sim.Now;
            DateTimeOffset last = _bootedAt;
            foreach (var until in new[] { LinkDownUntil, OrchdDownUntil, StalledUntil, DelayUntil })
            {
                var end = until > now ? now : until;
                if (end > last)
                {
                    last = end;
                }
            }
            return last;
        }
    }

    public void CrashOrchd(DateTimeOffset until) => OrchdDownUntil = until;

    /// <summary>The server restarted: the connection dropped and comes back (NodeAgent → FleetMember.ConnectionRestored).</summary>
    public void ServerRestarted() => _wasCutOff = true;

    public void Die()
    {
        Alive = false;
        Containers.Clear();
        _inFlight.Clear();
    }

    public void Revive()
    {
        Alive = true;
        OrchdDownUntil = DateTimeOffset.MinValue;
        Containers.Clear();
        Boot();
    }

    /// <summary>orchd starts: what it knew is in its state dir (the containers), the rest is new.</summary>
    private void Boot()
    {
        _follower = new AssignmentFollower(Containers.Values.Where(c => c.FromFleet).Select(c => c.Name), this);
        _converged = default;
        _lease = new SchedulerLease(Name, _sim.Options);
        _scheduler = new FleetScheduler(Name, _sim.Options, NullLogger.Instance, (_, _, _) => { });
        _leader = false;
        if (!Containers.Values.Any(c => c.Fenced && c.Running))
        {
            Contact = new FleetContact(_sim.Now); // no fence file: orchd counts from its start
        }
        _bootedAt = _sim.Now;
        _inFlight.Clear();
    }

    private bool _wasDown;
    private (ulong, DateTimeOffset) _converged;

    public void Step(Random rng)
    {
        var now = _sim.Now;
        if (!Alive)
        {
            return;
        }
        foreach (var c in Containers.Values)
        {
            c.Advance(now);
        }
        if (!OrchdUp)
        {
            _wasDown = true;
            _leader = false;
            // The fence keeper: orchd is down, so it fences from the last contact orchd wrote down.
            if (now - Contact.Last > _sim.Options.EffectiveFenceAfter)
            {
                foreach (var c in Containers.Values.Where(c => c.Fenced && c.Running))
                {
                    c.StopFenced();
                    _sim.Log($"{Name}: the fence keeper fenced {c.Name}");
                }
            }
            return;
        }
        if (_wasDown)
        {
            _wasDown = false;
            Boot();
            _sim.Log($"{Name}: orchd restarted");
        }
        if (now < StalledUntil)
        {
            return; // the process gets no CPU: nothing it does happens
        }
        var linked = !CutOff && !_sim.HubDown;
        if (!linked)
        {
            _wasCutOff = true;
        }
        else if (_wasCutOff)
        {
            _wasCutOff = false;
            _scheduler.Restart(); // NodeAgent's reconnect → FleetMember.ConnectionRestored
            // FleetMember: the reconnect ends the heartbeat loop's failure backoff and a put stuck
            // in the dead connection, and a fresh heartbeat goes out; JetStream may need a moment.
            // (With the 5 s of a stuck put's request timeout here, seeds 415, 774, 1164, 1348, 1374,
            // 1549, 1903 and 1907 failed: a scheduler settled after a wiped store without a node
            // that ran a replica, and placed that replica a second time.)
            _nextHeartbeat = now + TimeSpan.FromSeconds(rng.NextDouble());
        }

        // Heartbeats leave on time and land after the link's delay (reordered when delays differ).
        if (now >= _nextHeartbeat)
        {
            _nextHeartbeat = now + _sim.Options.Heartbeat;
            if (linked)
            {
                var delay = now < DelayUntil ? TimeSpan.FromSeconds(rng.NextDouble() * HeartbeatDelay.TotalSeconds) : TimeSpan.Zero;
                _inFlight.Add((now + delay, Heartbeat(now)));
            }
        }
        foreach (var beat in _inFlight.Where(b => b.LandsAt <= now).OrderBy(_ => rng.Next()).ToList())
        {
            _inFlight.Remove(beat);
            if (linked && Try(() => _sim.Bucket(Buckets.Nodes, 1).PutAsync(Name, beat.Info).AsTask().GetAwaiter().GetResult()))
            {
                Contact.Renewed(now);
            }
        }

        // Assignments: the watch delivers every change at once; here, the key read every tick.
        if (linked)
        {
            Try(() =>
            {
                var bucket = _sim.Bucket(Buckets.Assignments, 1);
                var entry = bucket.TryGetEntryAsync<byte[]>(Name).AsTask().GetAwaiter().GetResult();
                // The watch delivers each change once: a value already converged to is not again.
                var seen = entry.Success ? (entry.Value.Revision, entry.Value.Created) : default;
                if (entry.Success && seen == _converged)
                {
                    return;
                }
                _converged = seen;
                if (entry.Success && entry.Value.Value is { Length: > 0 } bytes)
                {
                    var value = NodeAssignments.Parse(bytes);
                    _follower.ConvergeAsync(value).GetAwaiter().GetResult();
                }
                else if (entry.Error is NatsKVKeyDeletedException)
                {
                    _follower.ConvergeAsync(null).GetAwaiter().GetResult();
                }
                // No key at all: keep what runs (FleetMember's OnNoData).
            });
        }

        // The lease on its own cadence, the passes on theirs (FleetMember.LeadAsync).
        if (linked && now >= _nextRenew + Phase)
        {
            _nextRenew = now + _sim.Options.LeaseRenewal;
            var held = false;
            var ok = Try(() => held = _lease.TryHoldAsync(_sim.Bucket(Buckets.Leader, 1), CancellationToken.None).GetAwaiter().GetResult());
            if (!ok)
            {
                _lease = new SchedulerLease(Name, _sim.Options); // Forever starts LeadAsync again
                held = false;
            }
            if (held && !_leader)
            {
                _scheduler.Restart();
                _sim.Elected(this);
            }
            else if (held && _lease.TakenAfresh)
            {
                _scheduler.Restart(); // FleetMember.RenewAsync: the lease was gone, the store with it
            }
            _leader = held;
        }
        if (_leader && linked && now >= _nextPass && _lease.MayScheduleAt(now)
            && Try(() => { if (!_lease.StillHeldAsync(_sim.Bucket(Buckets.Leader, 1), CancellationToken.None).GetAwaiter().GetResult()) { throw new InvalidOperationException("lease lost"); } }))
        {
            _nextPass = now + _sim.Options.SchedulePeriod;
            var ok = Try(() => _scheduler.ScheduleOnceAsync(new SchedulerBuckets(
                _sim.Bucket(Buckets.Nodes, 1), _sim.Bucket(Buckets.Deployments, Buckets.DeploymentHistory), _sim.Bucket(Buckets.Assignments, 1),
                _sim.Bucket(Buckets.DeploymentStatus, 1), _sim.Bucket(Buckets.NodeSettings, 1)), CancellationToken.None).GetAwaiter().GetResult());
            if (!ok)
            {
                _leader = false;
                _lease = new SchedulerLease(Name, _sim.Options);
            }
            else
            {
                _sim.PassCompleted();
            }
        }

        Fence(now, linked);
    }

    /// <summary>FleetMember.GuardAsync's rule: stop fenced replicas after fence_after without contact; start them when contact is back and they are still assigned.</summary>
    private void Fence(DateTimeOffset now, bool linked)
    {
        if (now - Contact.Last > _sim.Options.EffectiveFenceAfter)
        {
            foreach (var c in Containers.Values.Where(c => c.Fenced && c.Running))
            {
                c.StopFenced();
                _sim.Log($"{Name}: fenced {c.Name}");
            }
        }
        else if (linked && Containers.Values.Any(c => c.FencedStop) && AssignedNow() is { } assigned)
        {
            foreach (var c in Containers.Values.Where(c => c.FencedStop && assigned.Contains(c.Name)))
            {
                c.Start(now);
                _sim.Log($"{Name}: {c.Name} starts again after the fence");
            }
        }
    }

    /// <summary>The replicas the assignments bucket gives this node now (null: unreadable).</summary>
    public HashSet<string>? AssignedNow()
    {
        if (!_sim.Kv.Stores.TryGetValue(Buckets.Assignments, out var store) || store.Unavailable)
        {
            return null;
        }
        var entry = store.TryGetEntryAsync<byte[]>(Name).AsTask().GetAwaiter().GetResult();
        return entry.Success && entry.Value.Value is { Length: > 0 } bytes
            ? NodeAssignments.Parse(bytes).Replicas.Select(r => r.Replica).ToHashSet(StringComparer.Ordinal)
            : [];
    }

    private static bool Try(Action action)
    {
        try
        {
            action();
            return true;
        }
        catch (Exception e) when (e is NatsKVException or NATS.Client.JetStream.NatsJSException or NATS.Client.Core.NatsException or TimeoutException or InvalidOperationException)
        {
            return false;
        }
    }

    private byte[] Heartbeat(DateTimeOffset now) => JsonSerializer.SerializeToUtf8Bytes(new NodeInfo
    {
        Node = Name, NodeId = Name, Version = "sim", Arch = "x64", Kernel = "6", Runtime = "sim", Labels = Labels, StartedAt = _bootedAt,
        UptimeSeconds = (now - _bootedAt).TotalSeconds,
        Containers = Containers.Values.OrderBy(c => c.Name, StringComparer.Ordinal).Select(c => new ContainerBrief
        {
            Name = c.Name, State = c.State, Ready = c.Ready, SpecHash = c.SpecHash,
        }).ToList(),
    }, FleetJsonContext.Default.NodeInfo);

    // ---- IAssignedReplicas: the supervisor's part ----

    string? IAssignedReplicas.Refusal(Assignment assignment) => null;

    Task<string?> IAssignedReplicas.ApplyAsync(Assignment assignment)
    {
        var workload = assignment.ToWorkload();
        var hash = Supervisor.SpecHash(workload);
        if (Containers.TryGetValue(assignment.Replica, out var existing) && existing.SpecHash == hash)
        {
            if (existing.FencedStop)
            {
                existing.Start(_sim.Now); // re-applied with contact: ApplyAssignedAsync removes the stop marker
            }
            return Task.FromResult<string?>(null);
        }
        var deployment = new Orchestrator.Api.Workloads.Deployment { Name = assignment.Deployment, Template = assignment.Template };
        Containers[assignment.Replica] = new SimContainer
        {
            Name = assignment.Replica, Deployment = assignment.Deployment, SpecHash = hash, FromFleet = true,
            Template = FleetScheduler.TemplateHash(deployment),
            Bad = assignment.Template.Command is [_, _, "exit 1"], Fenced = assignment.Fence == true,
        };
        Containers[assignment.Replica].Start(_sim.Now);
        return Task.FromResult<string?>(null);
    }

    Task IAssignedReplicas.SyncAsync(IReadOnlySet<string> keep)
    {
        foreach (var name in Containers.Keys.Where(n => Containers[n].FromFleet && !keep.Contains(n)).ToList())
        {
            Containers.Remove(name);
        }
        return Task.CompletedTask;
    }

    void IAssignedReplicas.Refused(Assignment assignment, string why) => _sim.Log($"{Name}: refused {assignment.Replica}: {why}");

    void IAssignedReplicas.Failed(string replica, string why) => _sim.Log($"{Name}: {replica} failed: {why}");

    void IAssignedReplicas.Unassigned(string replica) => _sim.Log($"{Name}: {replica} no longer assigned");
}

/// <summary>A simulated container: ready a moment after it starts, unless its template is bad (it exits, again and again).</summary>
internal sealed class SimContainer
{
    public required string Name { get; init; }
    public required string Deployment { get; init; }
    public required string SpecHash { get; init; }
    public required string Template { get; init; }
    public bool FromFleet { get; init; }
    public bool Bad { get; init; }
    public bool Fenced { get; init; }
    public bool FencedStop { get; private set; }
    public ContainerState State { get; private set; } = ContainerState.Created;
    public bool Ready { get; private set; }
    private DateTimeOffset _readyAt;

    /// <summary>A process runs (a bad one between its crashes counts too: it is there).</summary>
    public bool Running => State is ContainerState.Running or ContainerState.Backoff;

    public void Start(DateTimeOffset now)
    {
        FencedStop = false;
        State = Bad ? ContainerState.Backoff : ContainerState.Running;
        Ready = false;
        _readyAt = now + TimeSpan.FromMilliseconds(500);
    }

    public void StopFenced()
    {
        FencedStop = true;
        State = ContainerState.Stopped;
        Ready = false;
    }

    public void Advance(DateTimeOffset now)
    {
        if (State == ContainerState.Running && !Ready && now >= _readyAt)
        {
            Ready = true;
        }
    }
}

using Microsoft.Extensions.Logging;
using NATS.Client.KeyValueStore;
using Orchestrator.Api;

namespace Orchestrator.Fleet.Agent;

/// <summary>The node's fence (docs/protocol.md, "Fencing"): stopping fence: true replicas when it has been out of contact too long, and the keeper that does it for a dead orchd.</summary>
public sealed partial class FleetMember
{
    private readonly HashSet<string> _fencedHere = new(StringComparer.Ordinal);
    private FenceKeeper? _keeper;

    /// <summary>
    /// Fencing (docs/protocol.md, "Fencing"), from the node's start until it stops, with or without
    /// NATS: once this node has not renewed its presence for fence_after, the replicas of
    /// <c>fence: true</c> deployments are stopped (the fleet has placed them elsewhere); when
    /// contact is back, those the fleet still assigns here start again. For an orchd that dies,
    /// the fence keeper does the same from the file this loop keeps current.
    /// </summary>
    public async Task GuardAsync(CancellationToken cancellationToken)
    {
        var fenceAfter = options.EffectiveFenceAfter;
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await GuardOnceAsync(fenceAfter, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                LogLoopFailed(logger, "fence", e.Message);
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

    private async Task GuardOnceAsync(TimeSpan fenceAfter, CancellationToken cancellationToken)
    {
        var now = options.Clock.GetUtcNow();
        var contact = Contact.Last;
        var containers = await supervisor.ListAsync().ConfigureAwait(false);
        var fenced = containers.Where(c => c.Labels is { } l && l.TryGetValue(Assignment.FenceLabel, out var v) && v == "true").ToList();
        var reasons = fenced.Count > 0 ? await supervisor.StopReasonsAsync().ConfigureAwait(false) : [];
        if (now - contact > fenceAfter)
        {
            foreach (var c in fenced.Where(c => !reasons.ContainsKey(c.Name)))
            {
                var why = $"{FencedPrefix} no contact with the fleet since {contact:u} (fence_after {fenceAfter.TotalSeconds:0}s); the fleet runs it elsewhere";
                await supervisor.StopAsync(c.Name, why).ConfigureAwait(false);
                _fencedHere.Add(c.Name);
                LogFenced(logger, c.Name, why);
                Emit("replica.fenced", c.Name, why);
            }
        }
        else
        {
            var waiting = fenced.Where(c => reasons.TryGetValue(c.Name, out var r) && r.StartsWith(FencedPrefix, StringComparison.Ordinal)).Select(c => c.Name).ToList();
            if (waiting.Count > 0 && _assignments is { } bucket)
            {
                // Contact is back: read what the fleet assigns here now (the watch may not have
                // caught up yet), and start only what it still does; the rest goes with the watch.
                var entry = await ReadOwnKeyAsync(bucket, cancellationToken).ConfigureAwait(false);
                var assigned = entry is { Operation: NatsKVOperation.Put, Value: { Length: > 0 } bytes }
                    ? NodeAssignments.Parse(bytes).Replicas.Select(r => r.Replica).ToHashSet(StringComparer.Ordinal)
                    : [];
                foreach (var name in waiting.Where(assigned.Contains))
                {
                    await supervisor.StartAsync(name).ConfigureAwait(false);
                    _fencedHere.Remove(name);
                    LogUnfenced(logger, name);
                    Emit("replica.unfenced", name, "contact with the fleet is back and the replica is still assigned here");
                }
            }
        }
        // The keeper's file: what to fence, and from when, should orchd die.
        var running = fenced.Where(c => c.State == ContainerState.Running && c.Pid > 0)
            .Select(c => Orchestrator.Linux.ProcessStat.StartTime(c.Pid) is { } start ? new FencedProcess(c.Name, c.Pid, start) : null)
            .OfType<FencedProcess>().ToList();
        var names = fenced.Where(c => !reasons.ContainsKey(c.Name)).Select(c => c.Name).ToList();
        lock (_armed)
        {
            names.AddRange(_armed.Where(n => !names.Contains(n)));
            _armed.Clear();
        }
        WriteFence(names, running, contact, fenceAfter);
    }

    private readonly List<string> _armed = [];

    /// <summary>
    /// The server said this node's credentials are revoked (orchctl node revoke): the fleet took it
    /// for lost and placed its replicas elsewhere, and it can never hear its assignments again. It
    /// removes every replica the fleet gave it at once (fence or not: they run elsewhere now), and
    /// keeps its own workloads (node API, manifest directory). Returns how many went.
    /// </summary>
    public async Task<int> DisownAsync(string why)
    {
        var assigned = await supervisor.AssignedAsync().ConfigureAwait(false);
        if (assigned.Count == 0)
        {
            return 0;
        }
        LogRevoked(logger, assigned.Count, why);
        await supervisor.SyncAssignedAsync(new HashSet<string>(StringComparer.Ordinal)).ConfigureAwait(false);
        Emit("node.revoked", identity.NodeName, $"{why}: {assigned.Count} replica(s) removed");
        return assigned.Count;
    }

    [LoggerMessage(EventId = 4014, Level = LogLevel.Warning, Message = "fleet: this node's credentials were revoked ({Why}); removing the {Count} replica(s) the fleet gave it, which it runs elsewhere now")]
    private static partial void LogRevoked(ILogger logger, int count, string why);

    /// <summary>
    /// Before a fenced replica starts: the keeper is told its name (it finds the process from the
    /// supervisor's record when it fences), so no crash of orchd between the start and the next
    /// guard round leaves it unfenced.
    /// </summary>
    private void ArmFence(string name)
    {
        var path = Path.Combine(supervisor.RunDir, FenceFile.Name);
        var current = FenceFile.Read(path);
        var names = (current?.Names ?? []).Append(name).Distinct(StringComparer.Ordinal).ToList();
        lock (_armed)
        {
            _armed.Add(name);
        }
        WriteFence(names, current?.Replicas ?? [], Contact.Last, options.EffectiveFenceAfter);
    }

    private void WriteFence(List<string> names, IReadOnlyList<FencedProcess> running, DateTimeOffset contact, TimeSpan fenceAfter)
    {
        var path = Path.Combine(supervisor.RunDir, FenceFile.Name);
        if (names.Count == 0 && running.Count == 0)
        {
            File.Delete(path); // the keeper exits
            return;
        }
        new FenceFile
        {
            OrchdPid = Environment.ProcessId, OrchdStartTime = Orchestrator.Linux.ProcessStat.StartTime(Environment.ProcessId) ?? 0,
            ContactAt = contact, FenceAfterSeconds = fenceAfter.TotalSeconds, StateDir = supervisor.StateDir, CgroupParent = supervisor.CgroupParent, Replicas = running, Names = names,
        }.Write(path);
        EnsureKeeper();
    }

    /// <summary>The text a fence's stop marker starts with (the keeper's too).</summary>
    public const string FencedPrefix = "fenced:";

    private void EnsureKeeper()
    {
        if (options.FenceKeeperPath is null)
        {
            return;
        }
        _keeper ??= new FenceKeeper(options.FenceKeeperPath, supervisor.RunDir, identity.NodeId, supervisor.CgroupParent);
        if (_keeper.Ensure() is { } problem)
        {
            LogKeeperProblem(logger, problem);
        }
    }

    [LoggerMessage(EventId = 4013, Level = LogLevel.Warning, Message = "fleet: {Problem}")]
    private static partial void LogKeeperProblem(ILogger logger, string problem);

    [LoggerMessage(EventId = 4011, Level = LogLevel.Warning, Message = "fleet: fenced {Name}: {Why}")]
    private static partial void LogFenced(ILogger logger, string name, string why);

    [LoggerMessage(EventId = 4012, Level = LogLevel.Information, Message = "fleet: {Name} starts again: contact with the fleet is back and it is still assigned here")]
    private static partial void LogUnfenced(ILogger logger, string name);
}

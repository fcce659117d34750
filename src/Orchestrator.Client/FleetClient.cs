using System.Text.Json;
using NATS.Client.Core;
using Orchestrator.Api;

namespace Orchestrator.Client;

/// <summary>The operator's side of the protocol: what orchctl (and tests) ask the fleet.</summary>
public sealed partial class FleetClient(INatsConnection connection)
{
    private NATS.Client.KeyValueStore.NatsKVContext KV => new(new NATS.Client.JetStream.NatsJSContext((NatsConnection)connection));

    /// <summary>What the scheduler assigns each node now (node → its replicas), from the assignments bucket.</summary>
    public async Task<Dictionary<string, HashSet<string>>> GetAssignedAsync(CancellationToken cancellationToken = default)
    {
        var bucket = await FleetStore.OpenAsync(KV, Buckets.Assignments, 1, cancellationToken).ConfigureAwait(false);
        var result = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var (node, entry) in await FleetState.ReadAllAsync(bucket, cancellationToken).ConfigureAwait(false))
        {
            try
            {
                result[node] = NodeAssignments.Parse(entry.Value).Replicas.Select(r => r.Replica).ToHashSet(StringComparer.Ordinal);
            }
            catch (JsonException)
            {
            }
        }
        return result;
    }

    /// <summary>Every node that ever joined, with its state from the age of its last heartbeat.</summary>
    public async Task<IReadOnlyList<NodeEntry>> GetNodesAsync(FleetOptions? options = null, CancellationToken cancellationToken = default)
    {
        var nodes = await FleetStore.OpenAsync(KV, Buckets.Nodes, 1, cancellationToken).ConfigureAwait(false);
        var leaderBucket = await FleetStore.OpenAsync(KV, Buckets.Leader, 1, cancellationToken).ConfigureAwait(false);
        var leader = await leaderBucket.TryGetEntryAsync<byte[]>("scheduler", cancellationToken: cancellationToken).ConfigureAwait(false);
        var leaderName = leader.Success && leader.Value.Value is { Length: > 0 } v ? JsonSerializer.Deserialize(v, FleetJsonContext.Default.String) : null;
        var settings = await FleetStore.OpenAsync(KV, Buckets.NodeSettings, 1, cancellationToken).ConfigureAwait(false);
        return await FleetState.ReadNodesAsync(nodes, options ?? new FleetOptions(), cancellationToken, leaderName, settings).ConfigureAwait(false);
    }

    /// <summary>
    /// The bucket's name each time a key in one of <paramref name="buckets"/> changes (put, delete,
    /// purge), from now on, until cancelled: what `orchctl get -w` reads the fleet again on. The
    /// watches carry no values (metadata only). Ends when every watch has ended (the connection
    /// closed); a bucket that cannot be watched is left out.
    /// </summary>
    public async IAsyncEnumerable<string> ChangesAsync(IReadOnlyList<string> buckets, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var changes = System.Threading.Channels.Channel.CreateUnbounded<string>();
        var watches = new List<Task>();
        foreach (var name in buckets)
        {
            var store = await FleetStore.OpenAsync(KV, name, name == Buckets.Deployments ? Buckets.DeploymentHistory : 1, cancellationToken).ConfigureAwait(false);
            watches.Add(Task.Run(async () =>
            {
                try
                {
                    await foreach (var _ in store.WatchAsync<byte[]>(">", opts: new NATS.Client.KeyValueStore.NatsKVWatchOpts { UpdatesOnly = true, MetaOnly = true }, cancellationToken: cancellationToken).ConfigureAwait(false))
                    {
                        changes.Writer.TryWrite(name);
                    }
                }
                catch (Exception e) when (e is OperationCanceledException or NatsException)
                {
                }
            }, CancellationToken.None));
        }
        _ = Task.WhenAll(watches).ContinueWith(_ => changes.Writer.TryComplete(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        await foreach (var name in changes.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
        {
            yield return name;
        }
    }

    /// <summary>cordon: no new replicas on the node; drain: its replicas move off too; neither: back to normal.</summary>
    public async Task SetNodeAsync(string node, bool cordoned, bool draining, CancellationToken cancellationToken = default)
    {
        var nodes = await GetNodesAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        if (nodes.All(n => n.Info.Node != node))
        {
            throw new NodeRequestException(ErrorKind.NotFound, $"no node '{node}' has joined the fleet; `orchctl get nodes` lists the nodes");
        }
        var settings = await FleetStore.OpenAsync(KV, Buckets.NodeSettings, 1, cancellationToken).ConfigureAwait(false);
        var current = nodes.First(n => n.Info.Node == node);
        if (current.Revoked)
        {
            // A revoked node's setting is the identity service's: it stays cordoned and lost.
            throw new NodeRequestException(ErrorKind.Conflict, $"node '{node}' is revoked; it gets nothing until it is deleted (orchctl delete node {node}) and enrolled again with a new token");
        }
        await settings.PutAsync(node, JsonSerializer.SerializeToUtf8Bytes(new NodeSettings { Cordoned = cordoned || draining, Draining = draining }, FleetJsonContext.Default.NodeSettings), cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Stores deployments in the fleet's KV (a new revision each); the scheduler places their
    /// replicas. With a signing seed each is signed first; one that arrives signed (orchctl sign)
    /// is checked against its own key, so a damaged signature is refused here and not by every node.
    /// </summary>
    public async Task<IReadOnlyList<(string Name, ulong Revision)>> ApplyAsync(IEnumerable<Orchestrator.Api.Workloads.Deployment> deployments, string? signingSeed = null, CancellationToken cancellationToken = default)
    {
        var list = deployments.ToList();
        foreach (var deployment in list)
        {
            await PinSecretsAsync(deployment, signing: signingSeed is not null, cancellationToken: cancellationToken).ConfigureAwait(false);
            if (signingSeed is not null)
            {
                try
                {
                    ManifestSigning.Sign(deployment, signingSeed);
                }
                catch (ManifestSignatureException e)
                {
                    throw new NodeRequestException(e.Message, e);
                }
            }
            else if (deployment.Signature is { } signature
                && ManifestSigning.Verify(deployment.Name, deployment.Selector, deployment.Template, signature, [signature.Key]) is { } why)
            {
                throw new NodeRequestException(why);
            }
        }
        var bucket = await FleetStore.OpenAsync(KV, Buckets.Deployments, Buckets.DeploymentHistory, cancellationToken).ConfigureAwait(false);
        var statuses = await FleetStore.OpenAsync(KV, Buckets.DeploymentStatus, 1, cancellationToken).ConfigureAwait(false);
        var result = new List<(string, ulong)>();
        foreach (var deployment in list)
        {
            // Compare-and-set on what was read: the replica count can come from the fleet's
            // (ReplicaOwnership: the autoscaler's count, kept in the status), and another write in
            // between must not be lost or undone.
            for (var attempt = 1; ; attempt++)
            {
                var (entry, stored) = await RunningAsync(bucket, statuses, deployment.Name, cancellationToken).ConfigureAwait(false);
                Orchestrator.Api.Workloads.ReplicaOwnership.Apply(deployment, stored);
                deployment.Revision = null;
                deployment.Generation = NextGeneration(stored);
                Stamp(deployment);
                var value = JsonSerializer.SerializeToUtf8Bytes(deployment, Orchestrator.Api.Workloads.WorkloadJsonContext.Default.Deployment);
                var written = entry.Success
                    ? await bucket.TryUpdateAsync(deployment.Name, value, entry.Value.Revision, cancellationToken: cancellationToken).ConfigureAwait(false)
                    : await bucket.TryCreateAsync(deployment.Name, value, cancellationToken: cancellationToken).ConfigureAwait(false);
                if (written.Success)
                {
                    break;
                }
                if (attempt == 5)
                {
                    throw new NodeRequestException(ErrorKind.Conflict, $"deployment '{deployment.Name}' kept changing while it was applied (the autoscaler or another apply); run the command again");
                }
            }
            result.Add((deployment.Name, deployment.Generation.Value));
        }
        return result;
    }

    /// <summary>The deployment a read of its key holds; null when there is none (or none this version reads).</summary>
    private static Orchestrator.Api.Workloads.Deployment? Stored(NATS.Client.Core.NatsResult<NATS.Client.KeyValueStore.NatsKVEntry<byte[]>> entry)
    {
        if (!entry.Success || entry.Value.Value is not { Length: > 0 } value)
        {
            return null;
        }
        try
        {
            return JsonSerializer.Deserialize(value, Orchestrator.Api.Workloads.WorkloadJsonContext.Default.Deployment);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>
    /// The generation after the stored one: 1 for a new deployment (or one deleted before), the
    /// stored one + 1, or 2 for one stored before generations (it was at least revision 1).
    /// </summary>
    /// <summary>
    /// Who writes through this client, stamped into every revision it writes (ChangedBy; the
    /// events stream and `rollout history` show it): orchctl sets it from its credentials
    /// (<see cref="NatsSettings.Actor"/>), asked only when a deployment is written (reading the
    /// creds file is no cost of a `get`). Null: "unknown".
    /// </summary>
    public Func<string>? Actor { get; set; }

    private void Stamp(Orchestrator.Api.Workloads.Deployment deployment)
    {
        deployment.ChangedBy = Actor?.Invoke() ?? "unknown";
        deployment.ChangedAt = DateTimeOffset.UtcNow;
    }

    public static ulong NextGeneration(Orchestrator.Api.Workloads.Deployment? stored) => stored is null ? 1 : (stored.Generation ?? 1) + 1;

    /// <summary>
    /// Every deployment as the fleet runs it (the stored revision with the scheduler's decisions
    /// about it: an automatic rollback, the autoscaled count) and its status.
    /// </summary>
    public async Task<IReadOnlyList<DeploymentView>> GetDeploymentsAsync(CancellationToken cancellationToken = default)
    {
        var bucket = await FleetStore.OpenAsync(KV, Buckets.Deployments, Buckets.DeploymentHistory, cancellationToken).ConfigureAwait(false);
        var statusBucket = await FleetStore.OpenAsync(KV, Buckets.DeploymentStatus, 1, cancellationToken).ConfigureAwait(false);
        var result = new List<DeploymentView>();
        foreach (var deployment in await FleetState.ReadDeploymentsAsync(bucket, cancellationToken).ConfigureAwait(false))
        {
            var status = await StatusAsync(statusBucket, deployment.Name, cancellationToken).ConfigureAwait(false);
            result.Add(new DeploymentView { Deployment = SchedulerDecisions.Apply(deployment, status), Status = status });
        }
        return result;
    }

    private static async Task<DeploymentStatus?> StatusAsync(NATS.Client.KeyValueStore.INatsKVStore statuses, string name, CancellationToken cancellationToken)
    {
        var entry = await statuses.TryGetEntryAsync<byte[]>(name, cancellationToken: cancellationToken).ConfigureAwait(false);
        try
        {
            return entry.Success && entry.Value.Value is { Length: > 0 } value ? JsonSerializer.Deserialize(value, FleetJsonContext.Default.DeploymentStatus) : null;
        }
        catch (JsonException)
        {
            return null; // not this version's status: no decisions to carry
        }
    }

    /// <summary>
    /// A deployment's stored entry and the deployment as the fleet runs it (with the scheduler's
    /// decisions): what an operator's change starts from, so that the change keeps a rollback or
    /// an autoscaled count instead of undoing it.
    /// </summary>
    private async Task<(NATS.Client.KeyValueStore.INatsKVStore Bucket, ulong Revision, Orchestrator.Api.Workloads.Deployment Deployment)> ReadRunningAsync(string name, CancellationToken cancellationToken)
    {
        var bucket = await FleetStore.OpenAsync(KV, Buckets.Deployments, Buckets.DeploymentHistory, cancellationToken).ConfigureAwait(false);
        var statuses = await FleetStore.OpenAsync(KV, Buckets.DeploymentStatus, 1, cancellationToken).ConfigureAwait(false);
        var (entry, running) = await RunningAsync(bucket, statuses, name, cancellationToken).ConfigureAwait(false);
        return (bucket, entry.Value.Revision, running ?? throw new NodeRequestException(ErrorKind.NotFound, $"no deployment '{name}' in the fleet; `orchctl get deployments` lists them"));
    }

    /// <summary>The stored entry of a deployment (for compare-and-set) and the deployment as the fleet runs it, or null when there is none.</summary>
    private static async Task<(NATS.Client.Core.NatsResult<NATS.Client.KeyValueStore.NatsKVEntry<byte[]>> Entry, Orchestrator.Api.Workloads.Deployment? Running)> RunningAsync(
        NATS.Client.KeyValueStore.INatsKVStore deployments, NATS.Client.KeyValueStore.INatsKVStore statuses, string name, CancellationToken cancellationToken)
    {
        var entry = await deployments.TryGetEntryAsync<byte[]>(name, cancellationToken: cancellationToken).ConfigureAwait(false);
        if (Stored(entry) is not { } stored)
        {
            return (entry, null);
        }
        stored.Revision = entry.Value.Revision;
        return (entry, SchedulerDecisions.Apply(stored, await StatusAsync(statuses, name, cancellationToken).ConfigureAwait(false)));
    }

    /// <summary>Sets a deployment's replica count (a new revision); returns the deployment as written, with its revision.</summary>
    public async Task<Orchestrator.Api.Workloads.Deployment> ScaleAsync(string name, int replicas, CancellationToken cancellationToken = default)
    {
        var (bucket, revision, deployment) = await ReadRunningAsync(name, cancellationToken).ConfigureAwait(false);
        if (deployment.IsGlobal())
        {
            throw new NodeRequestException(ErrorKind.Invalid, $"deployment '{name}' is global: it runs one copy on every node that matches its selector, so it has no count to scale; label nodes (orchctl node label) or change its selector to change where it runs");
        }
        deployment.Replicas = replicas;
        deployment.Revision = null;
        deployment.Generation = (deployment.Generation ?? 1) + 1;
        Stamp(deployment);
        // Compare-and-set: a concurrent change is not silently overwritten.
        var updated = await bucket.TryUpdateAsync(name, JsonSerializer.SerializeToUtf8Bytes(deployment, Orchestrator.Api.Workloads.WorkloadJsonContext.Default.Deployment), revision, cancellationToken: cancellationToken).ConfigureAwait(false);
        return updated.Success ? deployment : throw new NodeRequestException(ErrorKind.Conflict, $"deployment '{name}' changed while scaling it; run the command again");
    }

    /// <summary>The kept revisions of a deployment, oldest first.</summary>
    public async Task<IReadOnlyList<(ulong Revision, DateTimeOffset At, Orchestrator.Api.Workloads.Deployment? Deployment)>> HistoryAsync(string name, CancellationToken cancellationToken = default)
    {
        var bucket = await FleetStore.OpenAsync(KV, Buckets.Deployments, Buckets.DeploymentHistory, cancellationToken).ConfigureAwait(false);
        var result = new List<(ulong, DateTimeOffset, Orchestrator.Api.Workloads.Deployment?)>();
        try
        {
            await foreach (var entry in bucket.HistoryAsync<byte[]>(name, cancellationToken: cancellationToken).ConfigureAwait(false))
            {
                var deployment = entry.Operation == NATS.Client.KeyValueStore.NatsKVOperation.Put && entry.Value is { Length: > 0 } v
                    ? JsonSerializer.Deserialize(v, Orchestrator.Api.Workloads.WorkloadJsonContext.Default.Deployment) : null;
                if (deployment is not null)
                {
                    deployment.Revision = entry.Revision;
                }
                result.Add((entry.Revision, entry.Created, deployment));
            }
        }
        catch (NATS.Client.KeyValueStore.NatsKVKeyNotFoundException e)
        {
            throw new NodeRequestException(ErrorKind.NotFound, $"no deployment '{name}' in the fleet; `orchctl get deployments` lists them", e);
        }
        return result;
    }

    /// <summary>Puts an earlier revision's template back (the previous one by default) as a new revision.</summary>
    public async Task<ulong> UndoAsync(string name, ulong? toRevision = null, string? signingSeed = null, CancellationToken cancellationToken = default)
    {
        var history = await HistoryAsync(name, cancellationToken).ConfigureAwait(false);
        var current = history.LastOrDefault(h => h.Deployment is not null);
        // What runs: after an automatic rollback, the earlier template, and undo goes back from
        // there (to the revision rolled back from, as when the rollback was a revision of its own).
        var running = current.Deployment is null ? null : (await ReadRunningAsync(name, cancellationToken).ConfigureAwait(false)).Deployment;
        var runningHash = running?.Template.TemplateHash();
        var rolledBack = running is not null && runningHash != current.Deployment!.Template.TemplateHash();
        // --to-revision takes the deployment's own revision numbers (what history shows), or a
        // bucket revision for values written before there were any.
        var target = toRevision is { } r
            ? history.FirstOrDefault(h => h.Deployment is not null && h.Deployment.ShownRevision() == r)
            : history.LastOrDefault(h => h.Deployment is not null && (h.Revision < current.Revision || (rolledBack && h.Revision == current.Revision))
                && h.Deployment.Template.TemplateHash() != runningHash);
        if (running is not null)
        {
            current.Deployment = running;
        }
        if (target.Deployment is null)
        {
            var kept = history.Where(h => h.Deployment is not null).Select(h => h.Deployment!.ShownRevision()).ToList();
            throw new NodeRequestException(toRevision is not null
                ? $"deployment '{name}' has no revision {toRevision} kept; `orchctl rollout history {name}` lists them"
                : kept.Count > 1
                    // kubectl's rule: undo goes back to the previous template; scale and pause make revisions too.
                    ? $"deployment '{name}' has no earlier template to go back to: its kept revisions ({kept[0]}-{kept[^1]}) all run this one (they changed replicas or rollout settings, which undo leaves as they are); `orchctl rollout history {name}` shows what each changed"
                    : $"deployment '{name}' has no earlier template to go back to: revision {(kept.Count == 1 ? kept[0] : 0)} is its first");
        }
        if (current.Deployment?.Rollout is { Paused: true })
        {
            // kubectl's rule too: the template would be written and never rolled out.
            throw new NodeRequestException(ErrorKind.Conflict, $"deployment '{name}' is paused; `orchctl rollout resume {name}` first, then undo");
        }
        // Only the template goes back: replicas and how to roll out stay as they are now.
        target.Deployment.Replicas = current.Deployment?.Replicas ?? target.Deployment.Replicas;
        target.Deployment.Rollout = current.Deployment?.Rollout ?? target.Deployment.Rollout;
        return (await ApplyAsync([target.Deployment], signingSeed, cancellationToken).ConfigureAwait(false))[0].Revision;
    }

    /// <summary>Pauses or resumes a deployment's rollout (compare-and-set); returns the deployment's new revision.</summary>
    public async Task<ulong> SetPausedAsync(string name, bool paused, CancellationToken cancellationToken = default)
    {
        var (bucket, revision, deployment) = await ReadRunningAsync(name, cancellationToken).ConfigureAwait(false);
        (deployment.Rollout ??= new Orchestrator.Api.Workloads.RolloutSpec()).Paused = paused;
        deployment.Revision = null;
        deployment.Generation = (deployment.Generation ?? 1) + 1;
        Stamp(deployment);
        var updated = await bucket.TryUpdateAsync(name, JsonSerializer.SerializeToUtf8Bytes(deployment, Orchestrator.Api.Workloads.WorkloadJsonContext.Default.Deployment), revision, cancellationToken: cancellationToken).ConfigureAwait(false);
        return updated.Success ? deployment.Generation.Value : throw new NodeRequestException(ErrorKind.Conflict, $"deployment '{name}' changed meanwhile; run the command again");
    }

    /// <summary>The fleet's events since a time, oldest first; with <paramref name="watch"/>, then every new one until cancelled.</summary>
    public async IAsyncEnumerable<NodeEvent> EventsAsync(DateTimeOffset since, bool watch,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var js = new NATS.Client.JetStream.NatsJSContext((NatsConnection)connection);
        await FleetStore.EnsureEventStreamAsync(js, cancellationToken).ConfigureAwait(false);
        var stream = await js.GetStreamAsync(NodeEvent.Stream, cancellationToken: cancellationToken).ConfigureAwait(false);
        var last = stream.Info.State.LastSeq;
        if (!watch && (last == 0 || stream.Info.State.Messages == 0))
        {
            yield break;
        }
        var consumer = await js.CreateOrderedConsumerAsync(NodeEvent.Stream, new NATS.Client.JetStream.NatsJSOrderedConsumerOpts
        {
            DeliverPolicy = NATS.Client.JetStream.Models.ConsumerConfigDeliverPolicy.ByStartTime,
            OptStartTime = since,
        }, cancellationToken).ConfigureAwait(false);
        using var caughtUp = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        if (!watch)
        {
            caughtUp.CancelAfter(TimeSpan.FromSeconds(10)); // nothing newer than `last` to wait for
        }
        var enumerator = consumer.ConsumeAsync<byte[]>(cancellationToken: caughtUp.Token).GetAsyncEnumerator(caughtUp.Token);
        await using (enumerator.ConfigureAwait(false))
        {
            while (true)
            {
                try
                {
                    if (!await enumerator.MoveNextAsync().ConfigureAwait(false))
                    {
                        yield break;
                    }
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    yield break;
                }
                var msg = enumerator.Current;
                var value = msg.Data is { Length: > 0 } data ? JsonSerializer.Deserialize(data, FleetJsonContext.Default.NodeEvent) : null;
                if (value is not null)
                {
                    yield return value;
                }
                if (!watch && msg.Metadata?.Sequence.Stream >= last)
                {
                    yield break;
                }
            }
        }
    }

    /// <summary>
    /// Forgets a node: its heartbeat, its cordon/drain settings and its endpoints (kubectl delete node). The
    /// scheduler then places its replicas elsewhere, as for a lost node. A ready node is refused
    /// unless <paramref name="force"/>: its next heartbeat would bring it back.
    /// </summary>
    public async Task DeleteNodeAsync(string node, bool force, CancellationToken cancellationToken = default)
    {
        var entry = (await GetNodesAsync(cancellationToken: cancellationToken).ConfigureAwait(false)).FirstOrDefault(n => n.Info.Node == node)
            ?? throw new NodeRequestException(ErrorKind.NotFound, $"no node '{node}' has joined the fleet; `orchctl get nodes` lists the nodes");
        if (entry.State == NodeCondition.Ready && !force)
        {
            throw new NodeRequestException(ErrorKind.Conflict,
                $"node '{node}' is ready (heartbeat {entry.HeartbeatAgeSeconds:0}s ago): its next heartbeat would bring it back; stop orchd on it first "
                + $"(`orchctl drain {node}` moves its replicas off meanwhile), or --force");
        }
        var nodes = await FleetStore.OpenAsync(KV, Buckets.Nodes, 1, cancellationToken).ConfigureAwait(false);
        await nodes.DeleteAsync(node, cancellationToken: cancellationToken).ConfigureAwait(false);
        var settings = await FleetStore.OpenAsync(KV, Buckets.NodeSettings, 1, cancellationToken).ConfigureAwait(false);
        await settings.DeleteAsync(node, cancellationToken: cancellationToken).ConfigureAwait(false);
        // Its endpoints: other nodes stop trying its replicas by name (a node that comes back writes them again).
        var endpoints = await FleetStore.OpenAsync(KV, Buckets.Endpoints, 1, cancellationToken).ConfigureAwait(false);
        await endpoints.DeleteAsync(node, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    public async Task DeleteDeploymentAsync(string name, CancellationToken cancellationToken = default)
    {
        var bucket = await FleetStore.OpenAsync(KV, Buckets.Deployments, Buckets.DeploymentHistory, cancellationToken).ConfigureAwait(false);
        var entry = await bucket.TryGetEntryAsync<byte[]>(name, cancellationToken: cancellationToken).ConfigureAwait(false);
        if (!entry.Success || entry.Value.Value is not { Length: > 0 })
        {
            throw new NodeRequestException(ErrorKind.NotFound, $"no deployment '{name}' in the fleet; `orchctl get deployments` lists them");
        }
        await bucket.DeleteAsync(name, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Asks every node to describe itself and collects the answers until none has arrived for
    /// <paramref name="quiet"/> (or <paramref name="window"/> has passed). Sorted by node name.
    /// </summary>
    public async Task<IReadOnlyList<NodeInfo>> DiscoverNodesAsync(TimeSpan window, TimeSpan quiet, CancellationToken cancellationToken = default)
    {
        var nodes = new List<NodeInfo>();
        var opts = new NatsSubOpts { Timeout = window, IdleTimeout = quiet, StartUpTimeout = window };
        await foreach (var msg in connection.RequestManyAsync<byte[], byte[]>(Subjects.FleetInfo, [], replyOpts: opts, cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            if (msg.Data is { Length: > 0 } data && TryParse(data, out var info))
            {
                nodes.Add(info);
            }
        }
        return nodes.OrderBy(n => n.Node, StringComparer.Ordinal).ToArray();
    }

    /// <summary>One node's description; null when no node of that name answers within the timeout.</summary>
    public async Task<NodeInfo?> GetNodeInfoAsync(string node, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        try
        {
            var reply = await connection.RequestAsync<byte[], byte[]>(Subjects.NodeInfo(node), [],
                replyOpts: new NatsSubOpts { Timeout = timeout }, cancellationToken: cancellationToken).ConfigureAwait(false);
            return reply.Data is { } data && TryParse(data, out var info) ? info : null;
        }
        catch (NatsNoRespondersException)
        {
            return null;
        }
        catch (NatsNoReplyException)
        {
            return null;
        }
    }

    private static bool TryParse(byte[] data, out NodeInfo info)
    {
        try
        {
            info = JsonSerializer.Deserialize(data, FleetJsonContext.Default.NodeInfo)!;
            return info is not null;
        }
        catch (JsonException)
        {
            info = null!;
            return false;
        }
    }
}

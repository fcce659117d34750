namespace Orchestrator.Api;

/// <summary>
/// The fleet's state in JetStream key-value buckets (docs/protocol.md). NATS is the database:
/// every node and client reads and watches the same buckets.
/// </summary>
public static class Buckets
{
    /// <summary>key = node name; value = its latest <see cref="NodeInfo"/> (a heartbeat).</summary>
    public const string Nodes = "orch-nodes";

    /// <summary>key = deployment name; value = the <c>Deployment</c> JSON; history keeps revisions.</summary>
    public const string Deployments = "orch-deployments";

    /// <summary>key = node name; value = <see cref="NodeAssignments"/>: every replica (signed template) that node must run.</summary>
    public const string Assignments = "orch-assignments";

    /// <summary>key <c>scheduler</c> = the node that schedules now (a lease renewed by compare-and-set).</summary>
    public const string Leader = "orch-leader";

    /// <summary>key = node name; value = <see cref="NodeSettings"/> (cordon, drain), set by operators.</summary>
    public const string NodeSettings = "orch-node-settings";

    /// <summary>
    /// key = node name; value = <see cref="NodeEndpoints"/>: the ready replicas of fleet
    /// deployments on that node, written by the node when the list changes (not every heartbeat),
    /// watched by every node to name the deployments that run elsewhere.
    /// </summary>
    public const string Endpoints = "orch-endpoints";

    public const int DeploymentHistory = 10;

    /// <summary>key = deployment name; value = <see cref="DeploymentStatus"/>: what the scheduler last did about it.</summary>
    public const string DeploymentStatus = "orch-deployment-status";

    /// <summary>
    /// key NAME = <see cref="SecretInfo"/> (the current version); key NAME.VERSION.NODE = a
    /// <see cref="SealedSecret"/> sealed to that node's own key. Nodes may read only their own.
    /// </summary>
    public const string Secrets = "orch-secrets";

    /// <summary>key NAME = <see cref="SecretInfo"/>; key NAME.VERSION = the config's <see cref="SealedSecret"/> (in clear, signed).</summary>
    public const string Configs = "orch-configs";

    /// <summary>key fleet, label.B64URL(k=v), node.NAME = <see cref="VariableScope"/>: operators' environment variables by scope (orchctl env).</summary>
    public const string Variables = "orch-variables";

    /// <summary>The bucket of a kind of secret.</summary>
    public static string Of(Workloads.SecretKind kind) => kind == Workloads.SecretKind.Secret ? Secrets : Configs;
}

/// <summary>What operators say about a node: cordoned (no new replicas), draining (replicas move off too).</summary>
public sealed record NodeSettings
{
    public int SchemaVersion { get; init; } = 1;
    public bool Cordoned { get; init; }
    public bool Draining { get; init; }
    /// <summary>
    /// The node's credentials were revoked (orchctl node revoke): it cannot reach the servers, the
    /// scheduler takes it for lost at once, and it is never given replicas again under this name
    /// until an operator deletes it (orchctl delete node) and it enrols again. Not written when
    /// false: a node that was never revoked keeps the bytes of before.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingDefault)]
    public bool Revoked { get; init; }
}

/// <summary>A node as `get nodes` shows it: its last heartbeat, how old it is, and what that means.</summary>
public sealed record NodeEntry
{
    public required NodeInfo Info { get; init; }
    /// <summary>ready (heartbeat within the grace), unreachable, or lost.</summary>
    public required NodeCondition State { get; init; }
    public double HeartbeatAgeSeconds { get; init; }
    public bool Leader { get; init; }
    public bool Cordoned { get; init; }
    public bool Draining { get; init; }
    /// <summary>The node's credentials were revoked (lost at once; see <see cref="NodeSettings.Revoked"/>).</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingDefault)]
    public bool Revoked { get; init; }

    /// <summary>True when the node's labels have every label of the deployment's selector.</summary>
    public bool MatchesSelector(Workloads.Deployment deployment)
        => (deployment.Selector ?? []).All(kv => Info.Labels.TryGetValue(kv.Key, out var v) && v == kv.Value);

    /// <summary>
    /// True when the node may be given new replicas of the deployment, room and anti-affinity
    /// aside: ready, neither cordoned nor draining, its labels matching the selector. The
    /// scheduler's filter, and what orchctl counts before it warns that a scale cannot be placed.
    /// </summary>
    public bool Accepts(Workloads.Deployment deployment)
        => State == NodeCondition.Ready && !Cordoned && !Draining && MatchesSelector(deployment);
}

/// <summary>What the scheduler last did about a deployment (bucket orch-deployment-status).</summary>
public sealed record DeploymentStatus
{
    public int SchemaVersion { get; init; } = 1;
    public required string Name { get; init; }
    public int Desired { get; init; }
    public int Placed { get; init; }
    /// <summary>replica → node.</summary>
    public IReadOnlyDictionary<string, string> Replicas { get; init; } = new Dictionary<string, string>();
    /// <summary>One sentence per replica that has no node, with the reason.</summary>
    public IReadOnlyList<string> Unschedulable { get; init; } = [];
    public string Scheduler { get; init; } = "";
    public DateTimeOffset At { get; init; }
    /// <summary>The deployment revision these numbers are about.</summary>
    public ulong Revision { get; init; }
    /// <summary>Replicas assigned the current template, and of those the ones running it and ready.</summary>
    public int Updated { get; init; }
    public int UpdatedReady { get; init; }
    public RolloutPhase Phase { get; init; }
    /// <summary>When a replica last became ready on the current template (the deadline counts from here).</summary>
    public DateTimeOffset LastProgressAt { get; init; }
    /// <summary>The wave being rolled out: canary (only its replicas get the new template), rest, or null when complete.</summary>
    public string? Wave { get; init; }
    /// <summary>Surge replicas placed beyond the desired count while the rollout runs.</summary>
    public int Surge { get; init; }
    /// <summary>Since when every canary replica has run the new template ready (the hold counts from here).</summary>
    public DateTimeOffset? CanaryReadySince { get; init; }
    /// <summary>The canary held: the rest of the replicas may be updated.</summary>
    public bool CanaryPassed { get; init; }
    /// <summary>
    /// Waves (rollout.waves) that have held ready for their hold: replicas of the waves up to this
    /// one may be updated. The hold of the next counts from <see cref="WaveReadySince"/>.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingDefault)]
    public int WavesPassed { get; init; }
    public DateTimeOffset? WaveReadySince { get; init; }
    /// <summary>Per wave of rollout.waves (the last one being what no wave took): where it stands; null without waves.</summary>
    public IReadOnlyList<WaveProgress>? Waves { get; init; }
    /// <summary>
    /// Replicas assigned the template on nodes that are online and not running it ready (starting,
    /// crashing, failing a probe): up to rollout.maxFailed of them neither hold a wave back nor roll back.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingDefault)]
    public int NotReady { get; init; }
    /// <summary>Replicas on nodes that are offline (unreachable or lost): they take what their wave runs when they come back.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingDefault)]
    public int Pending { get; init; }
    /// <summary>Why the rollout of this revision was rolled back, in a sentence; null once the revision it went back to is complete (then see <see cref="LastRollback"/>).</summary>
    public string? RolledBack { get; init; }
    /// <summary>The deployment's last rollback, kept for describe and history: why, and when.</summary>
    public string? LastRollback { get; init; }
    public DateTimeOffset? LastRollbackAt { get; init; }
    /// <summary>A hash of the template this status is about (<c>Workload.TemplateHash</c>).</summary>
    public string? Template { get; init; }
    /// <summary>
    /// Templates (hashes, newest first, at most 10) the fleet has run complete: every replica
    /// placed, updated and ready. A rollback only ever goes back to one of these, and a template
    /// in this list is never rolled back (a node lost later is not the template's fault).
    /// </summary>
    public IReadOnlyList<string> ReadyTemplates { get; init; } = [];
    /// <summary>Templates (hashes, newest first, at most 10) the fleet rolled back from: never a rollback's target.</summary>
    public IReadOnlyList<string> RejectedTemplates { get; init; } = [];
    /// <summary>The autoscaler's last change and its reason.</summary>
    public DateTimeOffset? LastScaledAt { get; init; }
    public string? LastScale { get; init; }
    /// <summary>
    /// The autoscaler's replica count for <see cref="Revision"/>, or null: the scheduler's decision,
    /// kept here and not written into the deployment (a scheduler cannot write the deployments
    /// bucket, docs/nats-security.md). A new revision of the deployment ends it.
    /// </summary>
    public int? AutoscaledReplicas { get; init; }
    /// <summary>
    /// The earlier template the scheduler rolled <see cref="Revision"/> back to, or null: what the
    /// fleet runs instead of the deployment's own template until the operator writes a new revision.
    /// </summary>
    public DeploymentRollback? RolledBackTo { get; init; }
}

/// <summary>One wave of a rollout as `rollout status` shows it.</summary>
public sealed record WaveProgress
{
    /// <summary>"1%", "site=lab", "3 replicas", or "rest" (what no wave took).</summary>
    public required string Name { get; init; }
    /// <summary>Replicas in the wave.</summary>
    public int Replicas { get; init; }
    /// <summary>Assigned the template being rolled out.</summary>
    public int Updated { get; init; }
    /// <summary>Running it, ready.</summary>
    public int Ready { get; init; }
    /// <summary>Updated, on an online node, not running it ready.</summary>
    public int NotReady { get; init; }
    /// <summary>On an offline node: updated or not, waiting for it to come back.</summary>
    public int Pending { get; init; }
    /// <summary>open (being updated), held (ready, counting its hold), passed, or waiting (an earlier wave has not passed).</summary>
    public required string State { get; init; }
}

/// <summary>An earlier revision's signed part (template, selector, signature) that a rollback runs again.</summary>
public sealed record DeploymentRollback
{
    /// <summary>The earlier revision (its bucket revision and its shown one).</summary>
    public ulong Revision { get; init; }
    public ulong? Generation { get; init; }
    public Dictionary<string, string>? Selector { get; init; }
    public required Orchestrator.Api.Workloads.Workload Template { get; init; }
    public Orchestrator.Api.Workloads.ManifestSignature? Signature { get; init; }
}

/// <summary>A deployment as `get deployments` shows it.</summary>
public sealed record DeploymentView
{
    public required Orchestrator.Api.Workloads.Deployment Deployment { get; init; }
    public DeploymentStatus? Status { get; init; }

    /// <summary>The status, when it is about the deployment's stored revision (not an earlier one the scheduler last saw).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public DeploymentStatus? CurrentStatus => Status is { } s && s.Revision >= (Deployment.Revision ?? 0) ? s : null;

    /// <summary>The earlier revision the scheduler rolled this revision back to (what runs now), or null.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public DeploymentRollback? RolledBackTo => SchedulerDecisions.IsAbout(Status, Deployment) ? Status!.RolledBackTo : null;
}

/// <summary>The ready replicas of fleet deployments on one node: where a deployment's name leads from other nodes.</summary>
public sealed record NodeEndpoints
{
    public int SchemaVersion { get; init; } = 1;
    public string Node { get; init; } = "";
    /// <summary>Sorted by deployment, then container, so an unchanged list is the same bytes.</summary>
    public IReadOnlyList<Endpoint> Endpoints { get; init; } = [];
}

/// <summary>A ready replica (<paramref name="Container"/>) of <paramref name="Deployment"/>.</summary>
public sealed record Endpoint(string Deployment, string Container);

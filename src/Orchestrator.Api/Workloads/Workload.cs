using System.Text.Json;
using System.Text.Json.Serialization;

namespace Orchestrator.Api.Workloads;

/// <summary>
/// One thing a node runs: a container from an image, with its command, resources, restart
/// policy, probes, ports, volumes and network (docs/manifest.md). The fleet's deployments
/// place replicas of a workload; a node sees each replica as a workload of its own.
/// </summary>
public sealed class Workload
{
    /// <summary>
    /// What identifies a deployment's template across revisions: a hash of it as stored (a scale
    /// or a re-apply of the same template keeps it; the signature is not part of it). The
    /// scheduler's rollout, `rollout undo` and `rollout history` compare templates by it.
    /// </summary>
    public string TemplateHash()
        => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(
            System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(this, WorkloadJsonContext.Default.Workload)))[..16];

    /// <summary>A deep copy (through its JSON, so it can never miss a field the model gains).</summary>
    public Workload Copy()
        => JsonSerializer.Deserialize(JsonSerializer.SerializeToUtf8Bytes(this, WorkloadJsonContext.Default.Workload), WorkloadJsonContext.Default.Workload)!;

    /// <summary>Letters, digits, '-' and '_'; unique on the node. It names the container.</summary>
    public string Name { get; set; } = "";
    public string Image { get; set; } = "";
    /// <summary>Replaces the image's entrypoint.</summary>
    public List<string>? Command { get; set; }
    /// <summary>Replaces the image's cmd.</summary>
    public List<string>? Args { get; set; }
    public Dictionary<string, string>? Env { get; set; }
    public string? WorkingDir { get; set; }
    /// <summary>uid[:gid] inside the container; the image's user when absent.</summary>
    public string? User { get; set; }
    public string? Hostname { get; set; }
    public Resources? Resources { get; set; }
    public RestartPolicy? Restart { get; set; }
    public Probes? Probes { get; set; }
    public List<PortMapping>? Ports { get; set; }
    public List<Volume>? Volumes { get; set; }
    /// <summary>host, none or bridge (null: bridge).</summary>
    public NetworkMode? Network { get; set; }
    public Dictionary<string, string>? Labels { get; set; }
    /// <summary>Which backend runs it: native (default) or containerd.</summary>
    public WorkloadRuntime? Runtime { get; set; }
    /// <summary>Seconds between SIGTERM and SIGKILL on stop.</summary>
    public int? StopGracePeriodSeconds { get; set; }
    /// <summary>default (the node's seccomp profile: kernel-wide and namespace-escaping calls refused) or unconfined.</summary>
    public string? Seccomp { get; set; }
    /// <summary>
    /// The first process runs on a terminal of its own (Kubernetes' <c>tty</c>, compose's
    /// <c>tty</c>): its output is one stream, logged as written; <c>orchctl attach -t</c> reaches it.
    /// </summary>
    public bool? Tty { get; set; }
    /// <summary>
    /// The first process's stdin stays open for <c>orchctl attach -i</c> (Kubernetes' <c>stdin</c>,
    /// compose's <c>stdin_open</c>): reads wait for input instead of ending at once.
    /// </summary>
    public bool? Stdin { get; set; }
    /// <summary>
    /// Every capability, no seccomp filter, no masked /proc paths, /sys writable and every device of
    /// the node (docker's --privileged). Only on a node whose policy.privileged allows it.
    /// </summary>
    public bool? Privileged { get; set; }
    /// <summary>Capabilities added to the default set (NET_ADMIN or CAP_NET_ADMIN); each must be in the node's policy.capabilities.</summary>
    public List<string>? CapAdd { get; set; }
    /// <summary>Capabilities taken from the default set; ALL takes every one.</summary>
    public List<string>? CapDrop { get; set; }
    /// <summary>The root file system read-only (volumes and tmpfs mounts stay writable).</summary>
    public bool? ReadOnlyRootfs { get; set; }
    /// <summary>Memory-backed file systems mounted in the container (never written to the node's disk).</summary>
    public List<TmpfsMount>? Tmpfs { get; set; }
    /// <summary>
    /// Supplementary groups of the first process: numbers, or names the image's /etc/group gives a
    /// number (dialout, video: what a serial port or a camera asks for), as docker's --group-add.
    /// </summary>
    [JsonConverter(typeof(GroupListConverter))]
    public List<string>? Groups { get; set; }
    /// <summary>
    /// Device nodes of the node given to the container: a path or a glob (/dev/ttyUSB*), each match
    /// as its own node; one plugged in while the container runs is added to it. Each must be in the
    /// node's policy.devices.
    /// </summary>
    public List<DeviceMapping>? Devices { get; set; }
    /// <summary>Device cgroup rules ("c 188:* rwm"): access to devices by number, for nodes made later; needs policy.device_cgroup_rules.</summary>
    public List<string>? DeviceCgroupRules { get; set; }
    /// <summary>Kernel settings of the container's own namespaces: net.* (not with network: host), kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*.</summary>
    public Dictionary<string, string>? Sysctls { get; set; }
    /// <summary>Resource limits of the first process by name (nofile, nproc, core, memlock, stack, …), each soft and hard.</summary>
    public Dictionary<string, Ulimit>? Ulimits { get; set; }
    /// <summary>The size of /dev/shm (64Mi by default).</summary>
    public string? ShmSize { get; set; }
    /// <summary>A small init (tini) as PID 1 that forwards signals and reaps zombies, running the command as its child.</summary>
    public bool? Init { get; set; }
    /// <summary>The signal a stop sends first (SIGTERM by default): a name such as SIGINT or SIGQUIT, or a number.</summary>
    public string? StopSignal { get; set; }
    /// <summary>
    /// Run to completion instead of forever: once (again when the spec changes), or on a schedule the
    /// node keeps itself (so it runs while the node is offline), each run retried on failure and
    /// held to a deadline, the last runs kept with their exit codes and logs.
    /// </summary>
    public JobSpec? Job { get; set; }
    /// <summary>
    /// Fleet secrets (orchctl secret create) the container gets: each sealed to this node's own key,
    /// opened only into memory (a file on a tmpfs, or a variable), never written to the node's disk in clear.
    /// </summary>
    public List<SecretMount>? Secrets { get; set; }
    /// <summary>Fleet configs (orchctl configmap create): files (or variables) that are not secret, signed as deployments are.</summary>
    public List<SecretMount>? Configs { get; set; }
    /// <summary>
    /// An app: the containers that run together as one unit (placed, rolled out and rolled back
    /// together), each named (its service name), on the app's private network where each reaches
    /// the others by name. A workload with containers has no image of its own (docs/manifest.md, "Apps").
    /// </summary>
    public List<Workload>? Containers { get; set; }
    /// <summary>An app's containers that run to completion, one after the other, before any of <see cref="Containers"/> starts.</summary>
    public List<Workload>? InitContainers { get; set; }
    /// <summary>In an app: the other containers that must be started, ready or completed before this one starts (compose's depends_on).</summary>
    public List<Dependency>? DependsOn { get; set; }
}

/// <summary>One of an app container's <see cref="Workload.DependsOn"/>: another container of the app, and what it must be.</summary>
public sealed class Dependency
{
    public string Name { get; set; } = "";
    /// <summary>started (the default), ready (its readiness probe passes) or completed (it exited with code 0).</summary>
    public DependencyCondition? Condition { get; set; }
}

/// <summary>A workload that runs to completion: when, how often it is retried, how long it may take, how many runs are kept.</summary>
public sealed class JobSpec
{
    /// <summary>Cron's five fields ("0 3 * * *"), a macro (@daily) or @every DURATION; none: one run.</summary>
    public string? Schedule { get; set; }
    /// <summary>The time zone the schedule is read in (Europe/Berlin, UTC); the node's own by default.</summary>
    public string? TimeZone { get; set; }
    /// <summary>Restarts of a failed run (with the restart backoff) before the run counts as failed; 6 by default (Kubernetes' backoffLimit).</summary>
    public int? Retries { get; set; }
    /// <summary>How long a run may take, its retries included; past it, it is stopped and counts as failed. None by default.</summary>
    public int? DeadlineSeconds { get; set; }
    /// <summary>Finished runs kept (exit code, times, log window); 5 by default.</summary>
    public int? History { get; set; }

    public const int DefaultRetries = 6, DefaultHistory = 5;
}

/// <summary>A tmpfs mount: where, how big at most, and its mode.</summary>
public sealed class TmpfsMount
{
    public string Target { get; set; } = "";
    /// <summary>Bytes, with a suffix (64Mi); the kernel's default (half the RAM) when absent.</summary>
    public string? Size { get; set; }
    /// <summary>Octal permissions of its root (1777 by default).</summary>
    public string? Mode { get; set; }
}

/// <summary>A device of the node in the container: which (a path or a glob), where, and what access.</summary>
public sealed class DeviceMapping
{
    /// <summary>The device node on the node, or a glob of them (/dev/ttyUSB*, /dev/serial/by-id/*); symlinks are followed to the node.</summary>
    public string HostPath { get; set; } = "";
    /// <summary>Where it appears in the container: the host path by default; for a glob, a directory each match goes into by its name.</summary>
    public string? ContainerPath { get; set; }
    /// <summary>r, w and m (mknod) in any combination; rwm by default.</summary>
    public string? Permissions { get; set; }
}

/// <summary>
/// A list of groups as numbers or names; a number is written as a JSON number, so a list of ids
/// reads and writes the same bytes as when the field held only numbers.
/// </summary>
public sealed class GroupListConverter : JsonConverter<List<string>>
{
    public override List<string>? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.Null)
        {
            return null;
        }
        if (reader.TokenType != JsonTokenType.StartArray)
        {
            throw new JsonException("expected a list of group ids or names");
        }
        var groups = new List<string>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            groups.Add(reader.TokenType switch
            {
                JsonTokenType.String => reader.GetString()!,
                JsonTokenType.Number => System.Text.Encoding.UTF8.GetString(reader.ValueSpan),
                _ => throw new JsonException("expected a group id or name"),
            });
        }
        return groups;
    }

    public override void Write(Utf8JsonWriter writer, List<string> value, JsonSerializerOptions options)
    {
        writer.WriteStartArray();
        foreach (var group in value)
        {
            if (group.Length is > 0 and < 11 && group.All(char.IsAsciiDigit) && (group == "0" || group[0] != '0') && long.TryParse(group, System.Globalization.CultureInfo.InvariantCulture, out var id))
            {
                writer.WriteNumberValue(id);
            }
            else
            {
                writer.WriteStringValue(group);
            }
        }
        writer.WriteEndArray();
    }
}

/// <summary>A resource limit: the soft one the process starts with and the hard one it may raise it to.</summary>
public sealed class Ulimit
{
    public long Soft { get; set; }
    public long Hard { get; set; }
}

public sealed class Resources
{
    /// <summary>CPUs, fractional ("0.5" or "500m").</summary>
    public string? Cpu { get; set; }
    /// <summary>Bytes, with an optional suffix: 64Mi, 1Gi, 500M.</summary>
    public string? Memory { get; set; }
    public long? Pids { get; set; }
}

public sealed class RestartPolicy
{
    /// <summary>always (default), on-failure or never.</summary>
    public RestartPolicyKind Policy { get; set; } = RestartPolicyKind.Always;
    /// <summary>on-failure only: give up after this many restarts in a row (0: no limit).</summary>
    public int MaxRetries { get; set; }
    /// <summary>The first restart delay; doubled after each failure up to <see cref="MaxBackoff"/>.</summary>
    public string? Backoff { get; set; }
    public string? MaxBackoff { get; set; }
    /// <summary>A run this long counts as stable: the delay and the retry count start over.</summary>
    public string? ResetAfter { get; set; }
}

public sealed class Probes
{
    /// <summary>Holds off liveness and readiness until it has passed once.</summary>
    public Probe? Startup { get; set; }
    /// <summary>Restarts the container when it fails <see cref="Probe.FailureThreshold"/> times in a row.</summary>
    public Probe? Liveness { get; set; }
    /// <summary>Reported upward: the fleet counts a replica as available only while it is ready.</summary>
    public Probe? Readiness { get; set; }
}

public sealed class Probe
{
    public ExecAction? Exec { get; set; }
    public HttpGetAction? HttpGet { get; set; }
    public TcpSocketAction? TcpSocket { get; set; }
    public double InitialDelaySeconds { get; set; }
    public double PeriodSeconds { get; set; } = 10;
    public double TimeoutSeconds { get; set; } = 1;
    public int FailureThreshold { get; set; } = 3;
    public int SuccessThreshold { get; set; } = 1;
}

public sealed class ExecAction
{
    public List<string> Command { get; set; } = [];
}

public sealed class HttpGetAction
{
    public string Path { get; set; } = "/";
    public int Port { get; set; }
    /// <summary>Defaults to the container's address (127.0.0.1 for host networking).</summary>
    public string? Host { get; set; }
}

public sealed class TcpSocketAction
{
    public int Port { get; set; }
    public string? Host { get; set; }
}

public sealed class PortMapping
{
    public int ContainerPort { get; set; }
    /// <summary>The host port; the container port when absent.</summary>
    public int? HostPort { get; set; }
    /// <summary>tcp (default) or udp.</summary>
    public string Protocol { get; set; } = "tcp";
    /// <summary>The host address to publish on (default: all).</summary>
    public string? HostIp { get; set; }
}

public sealed class Volume
{
    /// <summary>A named volume: a directory under the state dir, kept when the container goes.</summary>
    public string? Name { get; set; }
    /// <summary>A bind mount of this host path.</summary>
    public string? HostPath { get; set; }
    public string Target { get; set; } = "";
    public bool ReadOnly { get; set; }
}

/// <summary>
/// A fleet deployment: <see cref="Replicas"/> copies of <see cref="Template"/>, placed by the
/// fleet's scheduler on nodes whose labels match <see cref="Selector"/>. Replica i runs on its
/// node as the workload <c>&lt;name&gt;-&lt;i&gt;</c>.
/// </summary>
public sealed class Deployment
{
    public string Name { get; set; } = "";
    /// <summary>
    /// replicated (null: <see cref="Replicas"/> copies placed by the scheduler) or global: one copy
    /// on every node whose labels match <see cref="Selector"/>, with no count. A node that joins or
    /// gains the labels gets its copy at the next pass; one that leaves the selector, drains or is
    /// removed loses it; a copy on an unreachable or lost node stays there (it is not moved).
    /// </summary>
    public DeploymentMode? Mode { get; set; }

    /// <summary>True for <see cref="DeploymentMode.Global"/>.</summary>
    public bool IsGlobal() => Mode == DeploymentMode.Global;
    /// <summary>
    /// How many replicas. With <see cref="Autoscale"/> the autoscaler owns the count: an apply whose
    /// file leaves it out keeps the fleet's count (<see cref="ReplicaOwnership"/>).
    /// </summary>
    public int Replicas { get; set; } = 1;
    /// <summary>
    /// True when the manifest this came from has no <c>replicas:</c> (so <see cref="Replicas"/> is the
    /// default, not the operator's choice); set by the loader. A field, not a property: never on the
    /// wire (the fleet stores a count) and not a manifest key.
    /// </summary>
    public bool ReplicasOmitted() => _replicasOmitted;

    /// <summary>Records whether the manifest left <c>replicas</c> out (the manifest loader does).</summary>
    public void MarkReplicasOmitted(bool omitted) => _replicasOmitted = omitted;

    private bool _replicasOmitted;
    /// <summary>Node labels a node must have (all of them) to get a replica.</summary>
    public Dictionary<string, string>? Selector { get; set; }
    /// <summary>The workload each replica runs (its name is set per replica).</summary>
    public Workload Template { get; set; } = new();
    /// <summary>spread (default: fewest replicas first) or binpack (fullest node that still fits).</summary>
    public string? Strategy { get; set; }
    /// <summary>A node label (e.g. zone) whose values replicas are spread over first.</summary>
    public string? SpreadBy { get; set; }
    /// <summary>At most one replica per node; a replica with no node of its own is unschedulable.</summary>
    public bool AntiAffinity { get; set; }
    /// <summary>
    /// At most one copy over availability: a node that has not renewed its presence with the
    /// fleet for its fence_after (NATS unreachable, or orchd down) stops its replicas of this
    /// deployment, since the fleet runs them elsewhere. False (the edge default): they keep running.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingDefault)]
    public bool Fence { get; set; }
    /// <summary>How a changed template reaches the replicas.</summary>
    public RolloutSpec? Rollout { get; set; }
    /// <summary>Replicas follow the replicas' CPU use between min and max.</summary>
    public AutoscaleSpec? Autoscale { get; set; }
    /// <summary>Set by the fleet on read: the value's revision in the KV bucket (the bucket's sequence, shared by every deployment).</summary>
    public ulong? Revision { get; set; }
    /// <summary>
    /// Set by the fleet on every write: this deployment's own revision number (1, 2, 3, … for this
    /// deployment alone: each apply, scale, pause or undo adds one; the scheduler's rollbacks and autoscaled counts are kept in the status, docs/protocol.md). What
    /// orchctl shows as REVISION and what `rollout undo --to-revision` takes.
    /// </summary>
    public ulong? Generation { get; set; }

    /// <summary>
    /// Set by the writer (orchctl, FleetClient) on every write: who wrote this revision, as its NATS
    /// credentials name it ("alice (UABC…)": the JWT's name and key, an nkey, a user name). The
    /// server does not vouch for it; the signature's key, when there is one, is what nodes check.
    /// </summary>
    public string? ChangedBy { get; set; }
    /// <summary>Set by the writer on every write: when this revision was written.</summary>
    public DateTimeOffset? ChangedAt { get; set; }

    /// <summary>The revision to show: <see cref="Generation"/>, or the bucket's revision for a value written before there was one.</summary>
    public ulong ShownRevision() => Generation ?? Revision ?? 0;
    /// <summary>
    /// The operator's ed25519 signature over name, serial, selector and template (orchctl sign).
    /// Nodes with trusted keys run only what one of them signed.
    /// </summary>
    public ManifestSignature? Signature { get; set; }
}

/// <summary>An operator's signature on a deployment (see docs/protocol.md, "Signed deployments").</summary>
public sealed class ManifestSignature
{
    /// <summary>The signer's public user nkey (U…).</summary>
    public string Key { get; set; } = "";
    /// <summary>Increases with every signing (milliseconds since the epoch): a node refuses one older than it has run.</summary>
    public long Serial { get; set; }
    /// <summary>The ed25519 signature, base64.</summary>
    public string Sig { get; set; } = "";
}

/// <summary>
/// A rolling update: at most <see cref="MaxUnavailable"/> replicas are on the new template and
/// not yet ready at any time; a replica that is not ready within
/// <see cref="ProgressDeadlineSeconds"/> rolls the deployment back to its previous template.
/// </summary>
public sealed class RolloutSpec
{
    public int MaxUnavailable { get; set; } = 1;
    /// <summary>Extra replicas on the new template while a rollout runs (added first, removed at the end).</summary>
    public int MaxSurge { get; set; }
    /// <summary>A first wave updated alone; the rest waits until it has been ready for <see cref="WaveSpec.HoldSeconds"/>.</summary>
    public WaveSpec? Canary { get; set; }
    /// <summary>
    /// Waves updated one after the other, each held ready for its holdSeconds before the next
    /// opens; what no wave takes is a last wave of its own. Percentages are cumulative (10 after 1
    /// adds 9% more). Not with <see cref="Canary"/> (which is one wave).
    /// </summary>
    public List<WaveSpec>? Waves { get; set; }
    /// <summary>
    /// Replicas that may stay updated but not ready without failing the rollout (a few dead devices
    /// among thousands): they neither hold a wave back nor roll the deployment back.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public int MaxFailed { get; set; }
    /// <summary>maxUnavailable as a percentage of the replicas (rounded up); the larger of the two applies.</summary>
    public int? MaxUnavailablePercent { get; set; }
    public int ProgressDeadlineSeconds { get; set; } = 120;
    /// <summary>Stop updating replicas (what is updated stays); resume by setting it false.</summary>
    public bool Paused { get; set; }
    /// <summary>Roll back by itself when the deadline passes (default); false: stop and report.</summary>
    public bool AutoRollback { get; set; } = true;
}

/// <summary>
/// A wave of a rollout (the canary is a first wave): the replicas on nodes with these labels, or
/// this many replicas, or this percentage of them (rounded up, at least one). Only the waves opened
/// so far get a new template; the next opens once every replica of this one (on a node that is
/// online) has run it ready for holdSeconds. A wave that does not get ready within the progress
/// deadline rolls the rollout back, and no later wave ever runs the new template.
/// </summary>
public sealed class WaveSpec
{
    /// <summary>"1%", "site=lab", "3 replicas": the wave as rollout status names it.</summary>
    public string Describe() => this switch
    {
        { Selector: { Count: > 0 } selector } => string.Join(",", selector.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={kv.Value}")),
        { Replicas: { } n } => n.ToString(System.Globalization.CultureInfo.InvariantCulture) + (n == 1 ? " replica" : " replicas"),
        { Percent: { } p } => p.ToString(System.Globalization.CultureInfo.InvariantCulture) + "%",
        _ => "?",
    };

    public Dictionary<string, string>? Selector { get; set; }
    public int? Replicas { get; set; }
    public int? Percent { get; set; }
    public int HoldSeconds { get; set; } = 30;
}

/// <summary>
/// The autoscaler: replicas = ceil(running replicas × their average CPU% / targetCpuPercent),
/// clamped to [min, max], changed at most once per cooldown (100% is one CPU). Only replicas that
/// run (running and ready, with a CPU figure) make the average; an unplaceable or pending one does
/// not count. It owns <see cref="Deployment.Replicas"/>: see <see cref="ReplicaOwnership"/>.
/// </summary>
public sealed class AutoscaleSpec
{
    public int Min { get; set; } = 1;
    public int Max { get; set; } = 10;
    public double TargetCpuPercent { get; set; } = 70;
    public int CooldownSeconds { get; set; } = 60;
    /// <summary>Scale on a number published on a NATS subject instead of CPU.</summary>
    public MetricSpec? Metric { get; set; }
}

/// <summary>
/// A custom metric: the latest number published on <see cref="Subject"/> (under orch.metrics.)
/// divided by <see cref="TargetPerReplica"/>, rounded up, is the replica count (e.g. a queue's depth
/// with 10 messages per replica). A value older than <see cref="MaxAgeSeconds"/> is not acted on.
/// </summary>
public sealed class MetricSpec
{
    public string Subject { get; set; } = "";
    public double TargetPerReplica { get; set; }
    public int MaxAgeSeconds { get; set; } = 60;
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    WriteIndented = true)]
[JsonSerializable(typeof(Workload))]
[JsonSerializable(typeof(Deployment))]
[JsonSerializable(typeof(List<Workload>))]
public sealed partial class WorkloadJsonContext : JsonSerializerContext;

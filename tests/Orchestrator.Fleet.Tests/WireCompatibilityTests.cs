using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Fleet.Tests;

/// <summary>
/// The wire stays readable both ways between versions: the golden files under golden/wire were
/// written by the wire types of the version before the contract moved to its own project
/// (commit "golden wire files"), and must stay exactly what today's types read and write. An
/// orchctl of this version reads an older node's replies, and an older node (which ignores
/// unknown fields) reads this version's requests: same field names, same values.
/// Regenerate only on purpose: ORCH_WRITE_GOLDEN=1.
/// </summary>
public sealed class WireCompatibilityTests
{
    private static readonly DateTimeOffset At = new(2026, 12, 5, 20, 0, 0, TimeSpan.Zero);

    private static Workload SampleWorkload() => new()
    {
        Name = "web-0",
        Image = "127.0.0.1:5000/edge/web:1.2",
        Command = ["/bin/httpd"],
        Args = ["-f", "-p", "8080"],
        Env = new() { ["MODE"] = "edge" },
        WorkingDir = "/srv",
        User = "1000:1000",
        Hostname = "web",
        Resources = new Resources { Cpu = "500m", Memory = "64Mi", Pids = 100 },
        Restart = new RestartPolicy { Policy = RestartPolicyKind.OnFailure, MaxRetries = 3, Backoff = "1s", MaxBackoff = "30s", ResetAfter = "5m" },
        Probes = new Probes
        {
            Readiness = new Probe { HttpGet = new HttpGetAction { Path = "/healthz", Port = 8080 }, PeriodSeconds = 2 },
            Liveness = new Probe { Exec = new ExecAction { Command = ["true"] } },
            Startup = new Probe { TcpSocket = new TcpSocketAction { Port = 8080 }, FailureThreshold = 30 },
        },
        Ports = [new PortMapping { ContainerPort = 8080, HostPort = 18080 }],
        Volumes = [new Volume { Name = "data", Target = "/data" }, new Volume { HostPath = "/etc/ssl", Target = "/etc/ssl", ReadOnly = true }],
        Network = NetworkMode.Bridge,
        Labels = new() { ["app"] = "web" },
        Runtime = WorkloadRuntime.Native,
        StopGracePeriodSeconds = 5,
        Seccomp = "default",
    };

    private static ContainerStatus SampleContainer() => new()
    {
        Name = "web-0",
        Image = "127.0.0.1:5000/edge/web:1.2",
        State = ContainerState.Running,
        Pid = 4242,
        StartedAt = At,
        Restarts = 2,
        Ready = true,
        LastExit = new ExitRecord { Code = 137, OomKilled = true, At = At.AddMinutes(-1), Reason = "oom-killed" },
        Message = "restarted after an OOM kill",
        Source = "fleet",
        SpecHash = "3f2a",
        Labels = new() { ["orch.deployment"] = "web" },
        Spec = SampleWorkload(),
    };

    private static NodeStatus SampleNodeStatus() => new()
    {
        CpuMilliCapacity = 2000, MemoryCapacityBytes = 4L << 30, CpuMilliAllocatable = 1800, MemoryAllocatableBytes = 3L << 30,
        CpuMilliRequested = 500, MemoryRequestedBytes = 64L << 20, MemoryUsedBytes = 30L << 20, Containers = 2, Running = 1, Ready = 1, Driver = "native (runc-compatible, cgroup v1)",
    };

    private static ImageSummary SampleImage() => new()
    {
        Name = "127.0.0.1:5000/edge/web:1.2",
        ManifestDigest = "sha256:" + new string('a', 64),
        Platform = "linux/amd64",
        Size = 1234567,
        Created = At,
        UsedBy = ["web-0"],
        Store = "containerd",
        Layers = [new() { MediaType = "application/vnd.oci.image.layer.v1.tar+gzip", Digest = "sha256:" + new string('b', 64), Size = 1000, Annotations = new() { ["k"] = "v" }, Platform = new() { Os = "linux", Architecture = "arm", Variant = "v7" } }],
    };

    private static Deployment SampleDeployment() => new()
    {
        Name = "web",
        Replicas = 3,
        Selector = new() { ["zone"] = "a" },
        Template = SampleWorkload(),
        Strategy = "spread",
        SpreadBy = "zone",
        AntiAffinity = true,
        Fence = true,
        Rollout = new RolloutSpec { MaxUnavailable = 1, MaxSurge = 1, Canary = new WaveSpec { Selector = new() { ["canary"] = "yes" }, Replicas = 1, Percent = 10, HoldSeconds = 20 }, ProgressDeadlineSeconds = 60, Paused = false, AutoRollback = true },
        Autoscale = new AutoscaleSpec { Min = 1, Max = 5, TargetCpuPercent = 60, CooldownSeconds = 30, Metric = new MetricSpec { Subject = "orch.metrics.queue", TargetPerReplica = 10, MaxAgeSeconds = 30 } },
        Revision = 17,
        Generation = 4,
        Signature = new ManifestSignature { Key = "UABC", Serial = 1700000000000, Sig = "c2ln" },
    };

    private static DeploymentStatus SampleDeploymentStatus() => new()
    {
        Name = "web", Desired = 3, Placed = 2, Replicas = new Dictionary<string, string> { ["web-0"] = "gw-01" }, Unschedulable = ["web-2: no node has zone=a"],
        Scheduler = "gw-01", At = At, Revision = 17, Updated = 2, UpdatedReady = 1, Phase = RolloutPhase.Progressing, LastProgressAt = At, Wave = "canary", Surge = 1,
        CanaryReadySince = At, CanaryPassed = false, RolledBack = null, LastRollback = "web-1 not ready", LastRollbackAt = At, Template = "abcd",
        ReadyTemplates = ["abcd"], RejectedTemplates = ["dcba"], LastScaledAt = At, LastScale = "cpu 90% > 60%",
    };

    private static NodeInfo SampleNodeInfo() => new()
    {
        Node = "gw-01", NodeId = "5f1d", Version = "0.1.0+abc", Arch = "x64", Kernel = "6.1.0", Runtime = "native",
        Labels = new Dictionary<string, string> { ["zone"] = "a" }, StartedAt = At, UptimeSeconds = 12.5, Status = SampleNodeStatus(),
        Containers = [new ContainerBrief { Name = "web-0", State = ContainerState.Running, Ready = true, SpecHash = "3f2a", Message = "ok", CpuPercent = 12.5 }],
        Warnings = ["NATS has no authentication"],
    };

    /// <summary>Every message type on the wire, one sample each, named as its golden file.</summary>
    public static TheoryData<string> Names => new(Samples.Keys);

    private static readonly Dictionary<string, (object Value, JsonTypeInfo Type)> Samples = new(StringComparer.Ordinal)
    {
        ["node-info"] = (SampleNodeInfo(), FleetJsonContext.Default.NodeInfo),
        ["error-reply"] = (new ErrorReply { Error = "no container 'web-9' on node 'gw-01'; ps lists them" }, FleetJsonContext.Default.ErrorReply),
        ["ok-reply"] = (new OkReply(), FleetJsonContext.Default.OkReply),
        ["run-request"] = (SampleWorkload(), FleetJsonContext.Default.Workload),
        ["name-request"] = (new NameRequest { Name = "web-0" }, FleetJsonContext.Default.NameRequest),
        ["logs-request"] = (new LogsRequest { Name = "web-0", Tail = 10, Since = At, Follow = true, AliveSubject = "_INBOX.alive" }, FleetJsonContext.Default.LogsRequest),
        ["logs-reply"] = (new LogsReply { Lines = [new LogLine(At, "stdout", "hello", false), new LogLine(At, "stderr", "cut", true)], More = true }, FleetJsonContext.Default.LogsReply),
        ["exec-request"] = (new ExecRequest { Name = "web-0", Command = ["cat", "/etc/hosts"], TimeoutSeconds = 10, Stream = true, AliveSubject = "_INBOX.alive" }, FleetJsonContext.Default.ExecRequest),
        ["exec-reply"] = (new ExecReply { ExitCode = 3, Stdout = "out", Stderr = "err", TimedOut = true }, FleetJsonContext.Default.ExecReply),
        ["exec-stream-reply"] = (new ExecStreamReply { Output = [new ExecOutputChunk { Stream = "stderr", Data = [0xe2, 0x82] }], More = false, ExitCode = 137, TimedOut = true }, FleetJsonContext.Default.ExecStreamReply),
        ["stats-request"] = (new StatsRequest { Name = "web-0" }, FleetJsonContext.Default.StatsRequest),
        ["stats-reply"] = (new StatsReply { Containers = [new ContainerStats { Name = "web-0", CpuPercent = 1.5, CpuNanoseconds = 123456789, MemoryBytes = 1 << 20, MemoryLimitBytes = 64 << 20, Pids = 3, OomKills = 1, Restarts = 2, Ready = true }] }, FleetJsonContext.Default.StatsReply),
        ["container-status"] = (SampleContainer(), FleetJsonContext.Default.ContainerStatus),
        ["container-list-reply"] = (new ContainerListReply { Containers = [SampleContainer()] }, FleetJsonContext.Default.ContainerListReply),
        ["node-status"] = (SampleNodeStatus(), FleetJsonContext.Default.NodeStatus),
        ["pull-request"] = (new PullRequest { Reference = "127.0.0.1:5000/edge/web:1.2", Progress = true, AliveSubject = "_INBOX.alive" }, FleetJsonContext.Default.PullRequest),
        ["pull-stream-reply"] = (new PullStreamReply { LayersDone = 1, LayersTotal = 2, BytesDone = 100, BytesTotal = 200, More = false, Image = SampleImage() }, FleetJsonContext.Default.PullStreamReply),
        ["image-summary"] = (SampleImage(), FleetJsonContext.Default.ImageSummary),
        ["image-list-reply"] = (new ImageListReply { Images = [SampleImage()] }, FleetJsonContext.Default.ImageListReply),
        ["image-gc-result"] = (new ImageGcResult { FreedBytes = 4096, PrunedLayers = 2 }, FleetJsonContext.Default.ImageGcResult),
        ["node-settings"] = (new NodeSettings { Cordoned = true, Draining = true }, FleetJsonContext.Default.NodeSettings),
        ["node-endpoints"] = (new NodeEndpoints { Node = "gw-01", Endpoints = [new Endpoint("db", "db-0"), new Endpoint("web", "web-2")] }, FleetJsonContext.Default.NodeEndpoints),
        ["node-event"] = (new NodeEvent { At = At, Node = "gw-01", Kind = "container.exited", Subject = "web-0", Message = "exited 1" }, FleetJsonContext.Default.NodeEvent),
        ["node-entries"] = (new List<NodeEntry> { new() { Info = SampleNodeInfo(), State = NodeCondition.Ready, HeartbeatAgeSeconds = 1.5, Leader = true, Cordoned = true, Draining = false } }, FleetJsonContext.Default.ListNodeEntry),
        ["deployment-status"] = (SampleDeploymentStatus(), FleetJsonContext.Default.DeploymentStatus),
        ["deployment-views"] = (new List<DeploymentView> { new() { Deployment = SampleDeployment(), Status = SampleDeploymentStatus() } }, FleetJsonContext.Default.ListDeploymentView),
        ["deployment"] = (SampleDeployment(), WorkloadJsonContext.Default.Deployment),
        ["node-assignments"] = (new NodeAssignments { Node = "gw-01", Replicas = [Assignment.For(SampleDeployment(), "web-0")] }, FleetJsonContext.Default.NodeAssignments),
    };

    private static string GoldenPath(string name) => Path.Combine(Repo.Root, "tests", "Orchestrator.Fleet.Tests", "golden", "wire", name + ".json");

    [Theory]
    [MemberData(nameof(Names))]
    public void Todays_types_write_the_golden_bytes(string name)
    {
        var (value, type) = Samples[name];
        var json = JsonSerializer.Serialize(value, type);
        if (Environment.GetEnvironmentVariable("ORCH_WRITE_GOLDEN") == "1")
        {
            File.WriteAllText(GoldenPath(name), json + "\n");
        }
        Assert.Equal(File.ReadAllText(GoldenPath(name)).TrimEnd('\n'), json);
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Todays_types_read_the_golden_bytes_back_unchanged(string name)
    {
        var (_, type) = Samples[name];
        var golden = File.ReadAllText(GoldenPath(name)).TrimEnd('\n');
        var read = JsonSerializer.Deserialize(golden, type);
        Assert.Equal(golden, JsonSerializer.Serialize(read, type));
    }
}

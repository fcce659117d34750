using Microsoft.Extensions.Logging;

namespace Orchestrator.Daemon.Configuration;

internal enum SettingShape
{
    /// <summary>One value. A flag given twice: the last wins.</summary>
    Scalar,
    /// <summary>Several values: a YAML sequence, a repeated flag, a comma-separated variable. The last source replaces.</summary>
    List,
    /// <summary>key=value pairs: a YAML mapping, a repeated flag, a comma-separated variable. Sources merge, later keys win.</summary>
    Map,
}

/// <summary>
/// One setting, in all three of its spellings. The table below is the single source for the
/// loader, `orchd --help`, `--check-config` and the README (a test keeps them in step).
/// </summary>
internal sealed record Setting(
    string Key,
    string Flag,
    string Env,
    string ValueName,
    SettingShape Shape,
    string Default,
    string Help,
    Action<ConfigBuilder, string> Apply,
    Func<OrchdConfig, string> Show,
    bool Secret = false,
    Action<ConfigBuilder>? Reset = null)
{
    public string Describe(OrchdConfig config) => Secret ? (Show(config).Length > 0 ? "(set)" : "") : Show(config);
}

internal static class ConfigSchema
{
    public static readonly IReadOnlyList<Setting> All =
    [
        new("node_name", "--node-name", "ORCHD_NODE_NAME", "NAME", SettingShape.Scalar, "the hostname",
            "name of this node in the fleet: 1-63 letters, digits, '-' or '_'",
            (b, v) => { b.NodeName = ConfigValues.NodeName(v); b.NodeNameSet = true; }, c => c.NodeName),
        new("state_dir", "--state-dir", "ORCHD_STATE_DIR", "DIR", SettingShape.Scalar, "/var/lib/orchestrator",
            "persistent state: node id, images, container state",
            (b, v) => b.StateDir = ConfigValues.AbsolutePath(v), c => c.StateDir),
        new("run_dir", "--run-dir", "ORCHD_RUN_DIR", "DIR", SettingShape.Scalar, "/run/orchestrator",
            "volatile state: sockets, runtime state of running containers",
            (b, v) => b.RunDir = ConfigValues.AbsolutePath(v), c => c.RunDir),
        new("nats.urls", "--nats-url", "ORCHD_NATS_URL", "URL", SettingShape.List, "nats://127.0.0.1:4222",
            "NATS server(s) to join the fleet through; repeat the flag or separate with commas",
            (b, v) => b.NatsUrls.Add(ConfigValues.NatsUrl(v)), c => string.Join(",", c.NatsUrls),
            Reset: b => b.NatsUrls.Clear()),
        new("nats.creds_file", "--nats-creds", "ORCHD_NATS_CREDS", "FILE", SettingShape.Scalar, "none",
            "NATS credentials file (JWT + nkey seed)",
            (b, v) => b.NatsCredsFile = ConfigValues.ExistingFile(v), c => c.NatsCredsFile ?? ""),
        new("nats.user", "--nats-user", "ORCHD_NATS_USER", "USER", SettingShape.Scalar, "none",
            "NATS user name (with nats.password)",
            (b, v) => b.NatsUser = v, c => c.NatsUser ?? ""),
        new("nats.password", "--nats-password", "ORCHD_NATS_PASSWORD", "PASSWORD", SettingShape.Scalar, "none",
            "NATS password; prefer the variable or the file over the flag, which `ps` shows",
            (b, v) => b.NatsPassword = v, c => c.NatsPassword ?? "", Secret: true),
        new("nats.token", "--nats-token", "ORCHD_NATS_TOKEN", "TOKEN", SettingShape.Scalar, "none",
            "NATS authentication token",
            (b, v) => b.NatsToken = v, c => c.NatsToken ?? "", Secret: true),
        new("nats.enroll_token", "--nats-enroll-token", "ORCHD_NATS_ENROLL_TOKEN", "TOKEN", SettingShape.Scalar, "none",
            "a one-time enrolment token (orchctl node token create): on its first start orchd enrols with it, then connects with the credentials it got (docs/nats-security.md, \"Enrolment\")",
            (b, v) => b.NatsEnrollToken = ConfigValues.EnrolmentToken(v), c => c.NatsEnrollToken ?? "", Secret: true),
        new("nats.nkey_seed_file", "--nats-nkey", "ORCHD_NATS_NKEY", "FILE", SettingShape.Scalar, "none",
            "file holding this node's nkey user seed (SU…), for servers configured with nkey users (docs/nats-security.md)",
            (b, v) => b.NatsNKeySeedFile = ConfigValues.NKeySeedFile(v), c => c.NatsNKeySeedFile ?? ""),
        new("nats.tls_ca", "--nats-tls-ca", "ORCHD_NATS_TLS_CA", "FILE", SettingShape.Scalar, "none",
            "PEM file of the CA that signed the NATS server's certificate; TLS becomes required (as with tls:// urls)",
            (b, v) => b.NatsTlsCa = ConfigValues.PemCertificates(v), c => c.NatsTlsCa ?? ""),
        new("nats.tls_cert", "--nats-tls-cert", "ORCHD_NATS_TLS_CERT", "FILE", SettingShape.Scalar, "none",
            "client certificate (PEM) for servers that verify clients; with nats.tls_key",
            (b, v) => b.NatsTlsCert = ConfigValues.PemCertificates(v), c => c.NatsTlsCert ?? ""),
        new("nats.tls_key", "--nats-tls-key", "ORCHD_NATS_TLS_KEY", "FILE", SettingShape.Scalar, "none",
            "the client certificate's private key (PEM); with nats.tls_cert",
            (b, v) => b.NatsTlsKey = ConfigValues.ExistingFile(v), c => c.NatsTlsKey ?? ""),
        new("labels", "--label", "ORCHD_LABELS", "KEY=VALUE", SettingShape.Map, "none",
            "node labels for placement; repeat the flag, or separate pairs with commas",
            (b, v) => { var (k, val) = ConfigValues.Label(v); b.Labels[k] = val; },
            c => string.Join(",", c.Labels.Select(kv => $"{kv.Key}={kv.Value}"))),
        new("runtime", "--runtime", "ORCHD_RUNTIME", "BACKEND", SettingShape.Scalar, "auto",
            "container backend: native (orchd's own runtime), containerd, or auto",
            (b, v) => b.Runtime = ConfigValues.Runtime(v), c => c.Runtime.ToString().ToLowerInvariant()),
        new("containerd_socket", "--containerd-socket", "ORCHD_CONTAINERD_SOCKET", "PATH", SettingShape.Scalar, "/run/containerd/containerd.sock",
            "containerd's socket, for the containerd backend",
            (b, v) => b.ContainerdSocket = ConfigValues.AbsolutePath(v), c => c.ContainerdSocket),
        new("containerd_images", "--containerd-images", "ORCHD_CONTAINERD_IMAGES", "STORE", SettingShape.Scalar, "containerd",
            "where containerd's containers get images and rootfs: containerd (its image store and snapshotter) or orchd (orchd's store)",
            (b, v) => b.ContainerdImages = ConfigValues.OneOf(v, "containerd_images", "containerd", "orchd"), c => c.ContainerdImages),
        new("containerd_snapshotter", "--containerd-snapshotter", "ORCHD_CONTAINERD_SNAPSHOTTER", "NAME", SettingShape.Scalar, "overlayfs",
            "containerd's snapshotter for those rootfs (overlayfs, native, …)",
            (b, v) => b.ContainerdSnapshotter = ConfigValues.OneOf(v, "containerd_snapshotter", "overlayfs", "native", "btrfs", "zfs", "devmapper", "fuse-overlayfs", "stargz"),
            c => c.ContainerdSnapshotter),
        new("log_level", "--log-level", "ORCHD_LOG_LEVEL", "LEVEL", SettingShape.Scalar, "info",
            "trace, debug, info, warn or error",
            (b, v) => b.LogLevel = ConfigValues.Level(v), c => ShowLevel(c.LogLevel)),
        new("log_format", "--log-format", "ORCHD_LOG_FORMAT", "FORMAT", SettingShape.Scalar, "auto",
            "text, journal (syslog priority prefixes for journald), or auto (journal under systemd)",
            (b, v) => b.LogFormat = ConfigValues.Format(v), c => c.LogFormat.ToString().ToLowerInvariant()),
        new("shutdown_timeout", "--shutdown-timeout", "ORCHD_SHUTDOWN_TIMEOUT", "DURATION", SettingShape.Scalar, "20s",
            "how long a stop may take; keep it below the unit's TimeoutStopSec",
            (b, v) => b.ShutdownTimeout = ConfigValues.Duration(v), c => ConfigValues.Format(c.ShutdownTimeout)),
        new("manifest_dir", "--manifest-dir", "ORCHD_MANIFEST_DIR", "DIR", SettingShape.Scalar, "/etc/orchestrator/manifests",
            "workload manifests this node runs on its own, with or without NATS; 'none' to turn off",
            (b, v) => b.ManifestDir = v == "none" ? null : ConfigValues.AbsolutePath(v), c => c.ManifestDir ?? "none"),
        new("network.bridge", "--bridge", "ORCHD_BRIDGE", "NAME", SettingShape.Scalar, "orch0",
            "the Linux bridge for network: bridge containers; 'none' turns bridge networking off",
            (b, v) => b.Bridge = v == "none" ? null : ConfigValues.InterfaceName(v), c => c.Bridge ?? "none"),
        new("network.cidr", "--bridge-cidr", "ORCHD_BRIDGE_CIDR", "CIDR", SettingShape.Scalar, "10.88.0.0/24",
            "the bridge's IPv4 network; the first address is the gateway, containers get the rest",
            (b, v) => b.BridgeCidr = ConfigValues.Cidr(v), c => c.BridgeCidr),
        new("network.services", "--services-cidr", "ORCHD_SERVICES_CIDR", "CIDR", SettingShape.Scalar, "10.89.0.0/16",
            "addresses that deployment names take when their replicas run on other nodes (the node carries the TCP over NATS); 'none': names reach this node's replicas only",
            (b, v) => b.ServicesCidr = v == "none" ? null : ConfigValues.Cidr(v), c => c.ServicesCidr ?? "none"),
        new("fleet.heartbeat", "--heartbeat", "ORCHD_HEARTBEAT", "DURATION", SettingShape.Scalar, "5s",
            "how often this node writes its heartbeat (state, capacity, usage) to the fleet",
            (b, v) => b.Heartbeat = ConfigValues.Duration(v), c => ConfigValues.Format(c.Heartbeat)),
        new("fleet.unreachable_after", "--unreachable-after", "ORCHD_UNREACHABLE_AFTER", "DURATION", SettingShape.Scalar, "15s",
            "a node silent this long is unreachable (its replicas stay put)",
            (b, v) => b.UnreachableAfter = ConfigValues.Duration(v), c => ConfigValues.Format(c.UnreachableAfter)),
        new("fleet.lost_after", "--lost-after", "ORCHD_LOST_AFTER", "DURATION", SettingShape.Scalar, "60s",
            "a node silent this long is lost: the scheduler moves its replicas elsewhere",
            (b, v) => b.LostAfter = ConfigValues.Duration(v), c => ConfigValues.Format(c.LostAfter)),
        new("fleet.leader_lease", "--leader-lease", "ORCHD_LEADER_LEASE", "DURATION", SettingShape.Scalar, "15s",
            "the scheduler lease: renewed every fifth of it; another node takes over after a whole lease without renewal",
            (b, v) => b.LeaderLease = ConfigValues.Duration(v), c => ConfigValues.Format(c.LeaderLease)),
        new("fleet.fence_after", "--fence-after", "ORCHD_FENCE_AFTER", "DURATION", SettingShape.Scalar, "lost_after",
            "this node stops its replicas of fence: true deployments after this long without renewing its presence (NATS unreachable, or orchd down)",
            (b, v) => b.FenceAfter = v == "lost_after" ? null : ConfigValues.Duration(v), c => c.FenceAfter is { } f ? ConfigValues.Format(f) : "lost_after"),
        new("fleet.trusted_keys", "--trusted-key", "ORCHD_TRUSTED_KEYS", "KEY", SettingShape.List, "none",
            "public nkeys (U…) whose signatures this node accepts on deployments; when set, unsigned, forged and replayed ones are refused",
            (b, v) => b.TrustedKeys.Add(ConfigValues.PublicNKey(v)), c => string.Join(",", c.TrustedKeys),
            Reset: b => b.TrustedKeys.Clear()),
        new("fleet.scheduler", "--scheduler", "ORCHD_SCHEDULER", "BOOL", SettingShape.Scalar, "true",
            "whether this node may take the scheduler lease (its NATS user then needs the scheduler's permissions)",
            (b, v) => b.Scheduler = ConfigValues.Bool(v), c => c.Scheduler ? "true" : "false"),
        new("registry.insecure", "--registry-insecure", "ORCHD_REGISTRY_INSECURE", "HOST", SettingShape.List, "none",
            "registries (host:port) orchd pulls from over plain HTTP; loopback always is",
            (b, v) => b.RegistryInsecure.Add(ConfigValues.RegistryHost(v)), c => string.Join(",", c.RegistryInsecure),
            Reset: b => b.RegistryInsecure.Clear()),
        new("registry.auth_file", "--registry-auth-file", "ORCHD_REGISTRY_AUTH_FILE", "FILE", SettingShape.Scalar, "none",
            "credentials for the registries orchd pulls from, as docker's config.json has them ({\"auths\": {\"HOST\": {\"auth\": \"base64(user:password)\"}}})",
            (b, v) => b.RegistryAuthFile = ConfigValues.ExistingFile(v), c => c.RegistryAuthFile ?? ""),
        new("policy.host_paths", "--allow-host-path", "ORCHD_POLICY_HOST_PATHS", "DIR", SettingShape.List, "none",
            "host directories (and what is under them, symlinks resolved) a workload's hostPath volume may bind; none: hostPath is refused",
            (b, v) => b.PolicyHostPaths.Add(ConfigValues.AbsolutePath(v)), c => string.Join(",", c.PolicyHostPaths),
            Reset: b => b.PolicyHostPaths.Clear()),
        new("policy.host_network", "--allow-host-network", "ORCHD_POLICY_HOST_NETWORK", "BOOL", SettingShape.Scalar, "false",
            "whether a workload may ask for network: host (the node's own network stack)",
            (b, v) => b.PolicyHostNetwork = ConfigValues.Bool(v), c => c.PolicyHostNetwork ? "true" : "false"),
        new("policy.unconfined_seccomp", "--allow-unconfined-seccomp", "ORCHD_POLICY_UNCONFINED_SECCOMP", "BOOL", SettingShape.Scalar, "false",
            "whether a workload may ask for seccomp: unconfined (no system call filter)",
            (b, v) => b.PolicyUnconfinedSeccomp = ConfigValues.Bool(v), c => c.PolicyUnconfinedSeccomp ? "true" : "false"),
        new("policy.privileged", "--allow-privileged", "ORCHD_POLICY_PRIVILEGED", "BOOL", SettingShape.Scalar, "false",
            "whether a workload may ask for privileged: true (every capability and device of the node, no seccomp: root on the node)",
            (b, v) => b.PolicyPrivileged = ConfigValues.Bool(v), c => c.PolicyPrivileged ? "true" : "false"),
        new("policy.capabilities", "--allow-capability", "ORCHD_POLICY_CAPABILITIES", "CAP", SettingShape.List, "none",
            "capabilities (NET_ADMIN, SYS_RAWIO, …) a workload may add to the default set with capAdd; none: capAdd beyond the default set is refused",
            (b, v) => b.PolicyCapabilities.Add(ConfigValues.Capability(v)), c => string.Join(",", c.PolicyCapabilities),
            Reset: b => b.PolicyCapabilities.Clear()),
        new("policy.devices", "--allow-device", "ORCHD_POLICY_DEVICES", "GLOB", SettingShape.List, "none",
            "device nodes (paths or globs: /dev/ttyUSB*, /dev/serial/by-id/*; * for any) a workload may map with devices:, and receive when one is plugged in; none: devices are refused",
            (b, v) => b.PolicyDevices.Add(ConfigValues.DeviceGlob(v)), c => string.Join(",", c.PolicyDevices),
            Reset: b => b.PolicyDevices.Clear()),
        new("policy.device_cgroup_rules", "--allow-device-cgroup-rules", "ORCHD_POLICY_DEVICE_CGROUP_RULES", "BOOL", SettingShape.Scalar, "false",
            "whether a workload may ask for deviceCgroupRules (access to devices by major:minor number)",
            (b, v) => b.PolicyDeviceCgroupRules = ConfigValues.Bool(v), c => c.PolicyDeviceCgroupRules ? "true" : "false"),
        new("policy.forward_host_ports", "--allow-forward-host-ports", "ORCHD_POLICY_FORWARD_HOST_PORTS", "BOOL", SettingShape.Scalar, "false",
            "whether orchctl port-forward may reach any port on the node itself (127.0.0.1 there); false: only the host ports this node's containers publish (a container's own ports always)",
            (b, v) => b.PolicyForwardHostPorts = ConfigValues.Bool(v), c => c.PolicyForwardHostPorts ? "true" : "false"),
        new("images.disk_budget", "--image-disk-budget", "ORCHD_IMAGE_DISK_BUDGET", "BYTES", SettingShape.Scalar, "none",
            "the disk the node's images may take, blobs and unpacked layers together (Ki, Mi, Gi suffixes); a pull or unpack past it is refused with a clear error. none: only the file system's free space less a 5% reserve (at least 64 Mi) limits them",
            (b, v) => b.ImageDiskBudget = v == "none" ? null : ConfigValues.Bytes(v), c => c.ImageDiskBudget?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none"),
        new("logs.max_size", "--log-max-size", "ORCHD_LOG_MAX_SIZE", "BYTES", SettingShape.Scalar, "10Mi",
            "a container's log file is rotated at this size (Ki, Mi, Gi suffixes)",
            (b, v) => b.LogMaxBytes = ConfigValues.Bytes(v), c => c.LogMaxBytes.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        new("logs.max_files", "--log-max-files", "ORCHD_LOG_MAX_FILES", "N", SettingShape.Scalar, "3",
            "how many log files a container keeps, the current one included",
            (b, v) => b.LogMaxFiles = ConfigValues.Count(v, 1, 100), c => c.LogMaxFiles.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        new("metrics.listen", "--metrics-listen", "ORCHD_METRICS_LISTEN", "ADDRESS", SettingShape.Scalar, "none",
            "serve Prometheus metrics over HTTP at /metrics: a port (on 127.0.0.1), ADDRESS:PORT, or none",
            (b, v) => b.MetricsListen = Metrics.ListenAddress.Parse(v), c => c.MetricsListen ?? "none"),
        new("metrics.nats", "--metrics-nats", "ORCHD_METRICS_NATS", "BOOL", SettingShape.Scalar, "false",
            "also answer orch.node.<node>.metrics.prometheus on NATS with the same text, for fleet-wide scraping",
            (b, v) => b.MetricsNats = ConfigValues.Bool(v), c => c.MetricsNats ? "true" : "false"),
    ];

    /// <summary>Keys that hold a nested mapping of settings in the file.</summary>
    public static readonly IReadOnlySet<string> Sections = new HashSet<string>(StringComparer.Ordinal) { "nats", "logs", "network", "fleet", "metrics", "registry", "policy", "images" };

    public static Setting? ByKey(string key) => All.FirstOrDefault(s => s.Key == key);

    public static Setting? ByFlag(string flag) => All.FirstOrDefault(s => s.Flag == flag);

    private static string ShowLevel(LogLevel level) => level switch
    {
        LogLevel.Trace => "trace",
        LogLevel.Debug => "debug",
        LogLevel.Warning => "warn",
        LogLevel.Error => "error",
        _ => "info",
    };

    /// <summary>The closest known name, for "did you mean" hints; null when nothing is close.</summary>
    public static string? Suggest(string unknown, IEnumerable<string> known)
        => EditDistance.Closest(unknown, known, Math.Max(2, unknown.Length / 3));
}

/// <summary>The mutable side of <see cref="OrchdConfig"/>, filled source by source.</summary>
internal sealed class ConfigBuilder
{
    // The defaults live once, in OrchdConfig's initialisers.
    private static readonly OrchdConfig s_defaults = new() { NodeName = ConfigValues.DefaultNodeName() };

    public string? ConfigFile { get; set; }
    public string NodeName { get; set; } = s_defaults.NodeName;
    /// <summary>True when a source gave node_name (not the host's name by default).</summary>
    public bool NodeNameSet { get; set; }
    public string StateDir { get; set; } = s_defaults.StateDir;
    public string RunDir { get; set; } = s_defaults.RunDir;
    public List<string> NatsUrls { get; set; } = [.. s_defaults.NatsUrls];
    public string? NatsCredsFile { get; set; }
    public string? NatsUser { get; set; }
    public string? NatsPassword { get; set; }
    public string? NatsToken { get; set; }
    public string? NatsEnrollToken { get; set; }
    public string? NatsNKeySeedFile { get; set; }
    public string? NatsTlsCa { get; set; }
    public string? NatsTlsCert { get; set; }
    public string? NatsTlsKey { get; set; }
    public SortedDictionary<string, string> Labels { get; } = new(StringComparer.Ordinal);
    public RuntimeBackend Runtime { get; set; } = s_defaults.Runtime;
    public string ContainerdSocket { get; set; } = s_defaults.ContainerdSocket;
    public string ContainerdImages { get; set; } = s_defaults.ContainerdImages;
    public string ContainerdSnapshotter { get; set; } = s_defaults.ContainerdSnapshotter;
    public LogLevel LogLevel { get; set; } = s_defaults.LogLevel;
    public LogFormat LogFormat { get; set; } = s_defaults.LogFormat;
    public TimeSpan ShutdownTimeout { get; set; } = s_defaults.ShutdownTimeout;
    public string? ManifestDir { get; set; } = s_defaults.ManifestDir;
    public string? Bridge { get; set; } = s_defaults.Bridge;
    public TimeSpan Heartbeat { get; set; } = s_defaults.Heartbeat;
    public TimeSpan UnreachableAfter { get; set; } = s_defaults.UnreachableAfter;
    public TimeSpan LostAfter { get; set; } = s_defaults.LostAfter;
    public TimeSpan LeaderLease { get; set; } = s_defaults.LeaderLease;
    public TimeSpan? FenceAfter { get; set; } = s_defaults.FenceAfter;
    public List<string> TrustedKeys { get; } = [];
    public List<string> RegistryInsecure { get; } = [];
    public List<string> PolicyHostPaths { get; } = [];
    public bool PolicyHostNetwork { get; set; }
    public bool PolicyPrivileged { get; set; }
    public List<string> PolicyCapabilities { get; } = [];
    public List<string> PolicyDevices { get; } = [];
    public bool PolicyDeviceCgroupRules { get; set; }
    public bool PolicyForwardHostPorts { get; set; }
    public bool PolicyUnconfinedSeccomp { get; set; }
    public string? RegistryAuthFile { get; set; }
    public bool Scheduler { get; set; } = s_defaults.Scheduler;
    public string BridgeCidr { get; set; } = s_defaults.BridgeCidr;
    public string? ServicesCidr { get; set; } = s_defaults.ServicesCidr;
    public long? ImageDiskBudget { get; set; } = s_defaults.ImageDiskBudget;
    public long LogMaxBytes { get; set; } = s_defaults.LogMaxBytes;
    public int LogMaxFiles { get; set; } = s_defaults.LogMaxFiles;
    public string? MetricsListen { get; set; } = s_defaults.MetricsListen;
    public bool MetricsNats { get; set; } = s_defaults.MetricsNats;

    public OrchdConfig Build() => NatsUrls.Count == 0
        ? throw new ConfigException("nats.urls: no NATS url is left after all sources; give at least one, like nats://127.0.0.1:4222")
        : UnreachableAfter >= LostAfter
        ? throw new ConfigException($"fleet.unreachable_after ({ConfigValues.Format(UnreachableAfter)}) must be shorter than fleet.lost_after ({ConfigValues.Format(LostAfter)}); a node is unreachable before it is lost")
        : LeaderLease < TimeSpan.FromSeconds(1)
        ? throw new ConfigException($"fleet.leader_lease ({ConfigValues.Format(LeaderLease)}) must be at least 1s; the default is 15s")
        : ConfigValues.NatsCredentials(NatsCredsFile, NatsNKeySeedFile, NatsTlsCert, NatsTlsKey) is { } conflict
        ? throw new ConfigException(conflict)
        : ServicesCidr is { } services && ConfigValues.Overlap(services, BridgeCidr)
        ? throw new ConfigException($"network.services ({services}) overlaps network.cidr ({BridgeCidr}): the containers' own addresses would be taken for services; give them ranges apart (the defaults are 10.89.0.0/16 and 10.88.0.0/24)")
        : new()
    {
        ConfigFile = ConfigFile,
        NodeName = NodeName,
        StateDir = StateDir,
        RunDir = RunDir,
        NatsUrls = NatsUrls.ToArray(),
        NatsCredsFile = NatsCredsFile,
        NatsUser = NatsUser,
        NatsPassword = NatsPassword,
        NatsToken = NatsToken,
        NatsEnrollToken = NatsEnrollToken,
        NatsNKeySeedFile = NatsNKeySeedFile,
        NatsTlsCa = NatsTlsCa,
        NatsTlsCert = NatsTlsCert,
        NatsTlsKey = NatsTlsKey,
        Labels = new SortedDictionary<string, string>(Labels, StringComparer.Ordinal),
        Runtime = Runtime,
        ContainerdSocket = ContainerdSocket,
        ContainerdImages = ContainerdImages,
        ContainerdSnapshotter = ContainerdSnapshotter,
        LogLevel = LogLevel,
        LogFormat = LogFormat,
        ShutdownTimeout = ShutdownTimeout,
        ManifestDir = ManifestDir,
        Bridge = Bridge,
        Heartbeat = Heartbeat,
        UnreachableAfter = UnreachableAfter,
        LostAfter = LostAfter,
        LeaderLease = LeaderLease,
        FenceAfter = FenceAfter,
        TrustedKeys = TrustedKeys.Distinct(StringComparer.Ordinal).ToArray(),
        RegistryInsecure = RegistryInsecure.Distinct(StringComparer.Ordinal).ToArray(),
        RegistryAuthFile = RegistryAuthFile,
        PolicyHostPaths = PolicyHostPaths.Distinct(StringComparer.Ordinal).ToArray(),
        PolicyHostNetwork = PolicyHostNetwork,
        PolicyPrivileged = PolicyPrivileged,
        PolicyCapabilities = PolicyCapabilities.Distinct(StringComparer.Ordinal).ToArray(),
        PolicyDevices = PolicyDevices.Distinct(StringComparer.Ordinal).ToArray(),
        PolicyDeviceCgroupRules = PolicyDeviceCgroupRules,
        PolicyForwardHostPorts = PolicyForwardHostPorts,
        PolicyUnconfinedSeccomp = PolicyUnconfinedSeccomp,
        Scheduler = Scheduler,
        BridgeCidr = BridgeCidr,
        ServicesCidr = ServicesCidr,
        ImageDiskBudget = ImageDiskBudget,
        LogMaxBytes = LogMaxBytes,
        LogMaxFiles = LogMaxFiles,
        MetricsListen = MetricsListen,
        MetricsNats = MetricsNats,
    };
}

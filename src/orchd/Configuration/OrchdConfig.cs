using Microsoft.Extensions.Logging;
using Orchestrator.Fleet.Agent;

namespace Orchestrator.Daemon.Configuration;

public enum RuntimeBackend
{
    /// <summary>The native runtime when this kernel supports it, containerd otherwise.</summary>
    Auto,
    Native,
    Containerd,
}

public enum LogFormat
{
    /// <summary>Journal format when stderr goes to the journal (JOURNAL_STREAM is set), text otherwise.</summary>
    Auto,
    Text,
    Journal,
}

/// <summary>orchd's effective configuration: defaults, then the file, then ORCHD_* variables, then flags.</summary>
public sealed record OrchdConfig
{
    public const string DefaultConfigFile = "/etc/orchestrator/orchd.yaml";

    /// <summary>The file that was read, or null when none was (the default path did not exist).</summary>
    public string? ConfigFile { get; init; }
    public required string NodeName { get; init; }
    public string StateDir { get; init; } = "/var/lib/orchestrator";
    public string RunDir { get; init; } = "/run/orchestrator";
    public IReadOnlyList<string> NatsUrls { get; init; } = ["nats://127.0.0.1:4222"];
    public string? NatsCredsFile { get; init; }
    public string? NatsUser { get; init; }
    public string? NatsPassword { get; init; }
    public string? NatsToken { get; init; }
    /// <summary>A one-time enrolment token used on the first start (no enrolment in the state dir yet).</summary>
    public string? NatsEnrollToken { get; init; }
    public string? NatsNKeySeedFile { get; init; }
    public string? NatsTlsCa { get; init; }
    public string? NatsTlsCert { get; init; }
    public string? NatsTlsKey { get; init; }
    public IReadOnlyDictionary<string, string> Labels { get; init; } = new SortedDictionary<string, string>(StringComparer.Ordinal);
    public RuntimeBackend Runtime { get; init; } = RuntimeBackend.Auto;
    public string ContainerdSocket { get; init; } = "/run/containerd/containerd.sock";
    /// <summary>containerd: containerd's containers run from its image store and snapshotter; orchd: from orchd's store.</summary>
    public string ContainerdImages { get; init; } = "containerd";
    public string ContainerdSnapshotter { get; init; } = "overlayfs";
    public LogLevel LogLevel { get; init; } = LogLevel.Information;
    public LogFormat LogFormat { get; init; } = LogFormat.Auto;
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(20);
    public string? ManifestDir { get; init; } = "/etc/orchestrator/manifests";
    public string? Bridge { get; init; } = "orch0";
    public TimeSpan Heartbeat { get; init; } = TimeSpan.FromSeconds(5);
    public TimeSpan UnreachableAfter { get; init; } = TimeSpan.FromSeconds(15);
    public TimeSpan LostAfter { get; init; } = TimeSpan.FromMinutes(1);
    public TimeSpan LeaderLease { get; init; } = TimeSpan.FromSeconds(15);
    /// <summary>Null: the same as <see cref="LostAfter"/>.</summary>
    public TimeSpan? FenceAfter { get; init; }
    public IReadOnlyList<string> TrustedKeys { get; init; } = [];
    /// <summary>Registries pulled from over plain HTTP (loopback always is).</summary>
    public IReadOnlyList<string> RegistryInsecure { get; init; } = [];
    /// <summary>A docker-style config.json with credentials per registry, or null.</summary>
    public string? RegistryAuthFile { get; init; }
    /// <summary>The node's policy: host directories hostPath volumes may bind (none by default).</summary>
    public IReadOnlyList<string> PolicyHostPaths { get; init; } = [];
    public bool PolicyHostNetwork { get; init; }
    public bool PolicyPrivileged { get; init; }
    public IReadOnlyList<string> PolicyCapabilities { get; init; } = [];
    /// <summary>policy.devices: device paths and globs workloads may map.</summary>
    public IReadOnlyList<string> PolicyDevices { get; init; } = [];
    public bool PolicyDeviceCgroupRules { get; init; }
    /// <summary>policy.forward_host_ports: port-forward may reach any of the node's own ports, not only those its containers publish.</summary>
    public bool PolicyForwardHostPorts { get; init; }
    public bool PolicyUnconfinedSeccomp { get; init; }
    public bool Scheduler { get; init; } = true;
    public string BridgeCidr { get; init; } = "10.88.0.0/24";
    /// <summary>network.services: the range deployment names take for replicas on other nodes; null: off.</summary>
    public string? ServicesCidr { get; init; } = "10.89.0.0/16";
    /// <summary>images.disk_budget: bytes the node's image blobs and unpacked layers may take; null: only the free-space rule.</summary>
    public long? ImageDiskBudget { get; init; }

    public long LogMaxBytes { get; init; } = 10 << 20;
    public int LogMaxFiles { get; init; } = 3;
    /// <summary>Where the Prometheus listener listens (an IP endpoint), or null: off.</summary>
    public string? MetricsListen { get; init; }
    public bool MetricsNats { get; init; }

    /// <summary>How to reach NATS, for the daemon's agent and for one-shot commands alike.</summary>
    public NatsSettings ToNatsSettings() => new()
    {
        Urls = NatsUrls,
        CredsFile = NatsCredsFile,
        User = NatsUser,
        Password = NatsPassword,
        Token = NatsToken,
        NKeySeedFile = NatsNKeySeedFile,
        TlsCa = NatsTlsCa,
        TlsCert = NatsTlsCert,
        TlsKey = NatsTlsKey,
        // A node's replies come to _INBOX_<node>.…: its NATS user may read those and no one else's.
        InboxPrefix = "_INBOX_" + NodeName,
    };
}

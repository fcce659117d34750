using Orchestrator.Api;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Orchestrator.Runtime.Spec;

// The OCI runtime spec (config.json), version 1.x. A property not declared here is ignored, as
// config.md#extensibility requires ("runtimes MUST ignore unknown properties"). Properties of the
// spec this runtime cannot honour are declared (as JsonElement when only their presence matters)
// so that the validator refuses them instead of ignoring them ("valid values").

public sealed class RuntimeSpec
{
    public string OciVersion { get; set; } = "";
    public ProcessSpec? Process { get; set; }
    public RootSpec? Root { get; set; }
    public string? Hostname { get; set; }
    public string? Domainname { get; set; }
    public List<MountSpec> Mounts { get; set; } = [];
    public LinuxSpec? Linux { get; set; }
    public HooksSpec? Hooks { get; set; }
    public Dictionary<string, string>? Annotations { get; set; }
}

public sealed class ProcessSpec
{
    public bool Terminal { get; set; }
    public ConsoleSize? ConsoleSize { get; set; }
    public UserSpec User { get; set; } = new();
    public List<string> Args { get; set; } = [];
    public List<string>? Env { get; set; }
    public string Cwd { get; set; } = "/";
    public CapabilitiesSpec? Capabilities { get; set; }
    public List<RlimitSpec>? Rlimits { get; set; }
    public bool NoNewPrivileges { get; set; }
    public string? ApparmorProfile { get; set; }
    public int? OomScoreAdj { get; set; }
    public string? SelinuxLabel { get; set; }

    /// <summary>Not supported (refused when set): process.ioPriority, process.scheduler, process.execCPUAffinity.</summary>
    public JsonElement? IoPriority { get; set; }
    public JsonElement? Scheduler { get; set; }
    public JsonElement? ExecCPUAffinity { get; set; }
}

public sealed class ConsoleSize
{
    public uint Height { get; set; }
    public uint Width { get; set; }
}

public sealed class UserSpec
{
    public uint Uid { get; set; }
    public uint Gid { get; set; }
    public uint? Umask { get; set; }
    public List<uint>? AdditionalGids { get; set; }
}

public sealed class CapabilitiesSpec
{
    public List<string>? Bounding { get; set; }
    public List<string>? Effective { get; set; }
    public List<string>? Inheritable { get; set; }
    public List<string>? Permitted { get; set; }
    public List<string>? Ambient { get; set; }
}

public sealed class RlimitSpec
{
    public string Type { get; set; } = "";
    public ulong Hard { get; set; }
    public ulong Soft { get; set; }
}

public sealed class RootSpec
{
    public string Path { get; set; } = "";
    public bool Readonly { get; set; }
}

public sealed class MountSpec
{
    public string Destination { get; set; } = "";
    public string? Type { get; set; }
    public string? Source { get; set; }
    public List<string>? Options { get; set; }
}

public sealed class LinuxSpec
{
    public List<NamespaceSpec>? Namespaces { get; set; }
    public List<IdMapping>? UidMappings { get; set; }
    public List<IdMapping>? GidMappings { get; set; }
    public List<DeviceSpec>? Devices { get; set; }
    public string? CgroupsPath { get; set; }
    public ResourcesSpec? Resources { get; set; }
    public Dictionary<string, string>? Sysctl { get; set; }
    public SeccompSpec? Seccomp { get; set; }
    public string? RootfsPropagation { get; set; }
    public List<string>? MaskedPaths { get; set; }
    public List<string>? ReadonlyPaths { get; set; }
    public string? MountLabel { get; set; }

    /// <summary>Not supported (refused when set): intelRdt, personality, timeOffsets, memoryPolicy.</summary>
    public JsonElement? IntelRdt { get; set; }
    public JsonElement? Personality { get; set; }
    public JsonElement? TimeOffsets { get; set; }
    public JsonElement? MemoryPolicy { get; set; }
}

public sealed class NamespaceSpec
{
    public string Type { get; set; } = "";
    public string? Path { get; set; }
}

public sealed class IdMapping
{
    [JsonPropertyName("containerID")]
    public uint ContainerId { get; set; }

    [JsonPropertyName("hostID")]
    public uint HostId { get; set; }

    public uint Size { get; set; }
}

public sealed class DeviceSpec
{
    public string Path { get; set; } = "";
    public string Type { get; set; } = "";
    public long Major { get; set; }
    public long Minor { get; set; }
    public uint? FileMode { get; set; }
    public uint? Uid { get; set; }
    public uint? Gid { get; set; }
}

public sealed class ResourcesSpec
{
    public List<DeviceRuleSpec>? Devices { get; set; }
    public MemorySpec? Memory { get; set; }
    public CpuSpec? Cpu { get; set; }
    public PidsSpec? Pids { get; set; }
    public BlockIOSpec? BlockIO { get; set; }
    public List<HugepageLimitSpec>? HugepageLimits { get; set; }
    public NetworkSpec? Network { get; set; }

    /// <summary>Not supported (refused when set): rdma, and unified (cgroup v2 key/values).</summary>
    public JsonElement? Rdma { get; set; }
    public Dictionary<string, string>? Unified { get; set; }
}

public sealed class BlockIOSpec
{
    public ushort? Weight { get; set; }
    public ushort? LeafWeight { get; set; }
    public List<WeightDeviceSpec>? WeightDevice { get; set; }
    public List<ThrottleDeviceSpec>? ThrottleReadBpsDevice { get; set; }
    public List<ThrottleDeviceSpec>? ThrottleWriteBpsDevice { get; set; }
    [JsonPropertyName("throttleReadIOPSDevice")]
    public List<ThrottleDeviceSpec>? ThrottleReadIopsDevice { get; set; }
    [JsonPropertyName("throttleWriteIOPSDevice")]
    public List<ThrottleDeviceSpec>? ThrottleWriteIopsDevice { get; set; }
}

public sealed class WeightDeviceSpec
{
    public long Major { get; set; }
    public long Minor { get; set; }
    public ushort? Weight { get; set; }
    public ushort? LeafWeight { get; set; }
}

public sealed class ThrottleDeviceSpec
{
    public long Major { get; set; }
    public long Minor { get; set; }
    public ulong Rate { get; set; }
}

public sealed class HugepageLimitSpec
{
    public string PageSize { get; set; } = "";
    public ulong Limit { get; set; }
}

public sealed class NetworkSpec
{
    [JsonPropertyName("classID")]
    public uint? ClassId { get; set; }
    public List<NetworkPrioritySpec>? Priorities { get; set; }
}

public sealed class NetworkPrioritySpec
{
    public string Name { get; set; } = "";
    public uint Priority { get; set; }
}

public sealed class DeviceRuleSpec
{
    public bool Allow { get; set; }
    public string? Type { get; set; }
    public long? Major { get; set; }
    public long? Minor { get; set; }
    public string? Access { get; set; }
}

public sealed class MemorySpec
{
    public long? Limit { get; set; }
    public long? Reservation { get; set; }
    public long? Swap { get; set; }
    public long? Kernel { get; set; }
    public long? KernelTCP { get; set; }
    public ulong? Swappiness { get; set; }
    public bool? DisableOOMKiller { get; set; }
    public bool? UseHierarchy { get; set; }
    public bool? CheckBeforeUpdate { get; set; }
}

public sealed class CpuSpec
{
    public ulong? Shares { get; set; }
    public long? Quota { get; set; }
    public ulong? Period { get; set; }
    public long? RealtimeRuntime { get; set; }
    public ulong? RealtimePeriod { get; set; }
    public string? Cpus { get; set; }
    public string? Mems { get; set; }
    public long? Idle { get; set; }
}

public sealed class PidsSpec
{
    public long Limit { get; set; }
}

public sealed class SeccompSpec
{
    public string DefaultAction { get; set; } = "";
    public uint? DefaultErrnoRet { get; set; }
    public List<string>? Architectures { get; set; }
    public List<string>? Flags { get; set; }
    public string? ListenerPath { get; set; }
    public List<SeccompSyscallSpec>? Syscalls { get; set; }
}

public sealed class SeccompSyscallSpec
{
    public List<string> Names { get; set; } = [];
    public string Action { get; set; } = "";
    public uint? ErrnoRet { get; set; }
    public List<SeccompArgSpec>? Args { get; set; }
}

public sealed class SeccompArgSpec
{
    public uint Index { get; set; }
    public ulong Value { get; set; }
    public ulong ValueTwo { get; set; }
    public string Op { get; set; } = "";
}

public sealed class HooksSpec
{
    public List<HookSpec>? Prestart { get; set; }
    public List<HookSpec>? CreateRuntime { get; set; }
    public List<HookSpec>? CreateContainer { get; set; }
    public List<HookSpec>? StartContainer { get; set; }
    public List<HookSpec>? Poststart { get; set; }
    public List<HookSpec>? Poststop { get; set; }
}

public sealed class HookSpec
{
    public string Path { get; set; } = "";
    public List<string>? Args { get; set; }
    public List<string>? Env { get; set; }
    public int? Timeout { get; set; }
}

/// <summary>The state of a container as `state` prints it (OCI runtime spec, "State").</summary>
public sealed class ContainerStateSpec
{
    public string OciVersion { get; set; } = "1.2.0";
    public string Id { get; set; } = "";
    public string Status { get; set; } = "";
    public int Pid { get; set; }
    public string Bundle { get; set; } = "";
    public Dictionary<string, string>? Annotations { get; set; }

    /// <summary>Not in the OCI state: the exit status, when this runtime reaped the process (run, in-process use).</summary>
    public int? ExitStatus { get; set; }
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Skip,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    WriteIndented = true,
    AllowTrailingCommas = false,
    ReadCommentHandling = JsonCommentHandling.Disallow)]
[JsonSerializable(typeof(RuntimeSpec))]
[JsonSerializable(typeof(ContainerStateSpec))]
[JsonSerializable(typeof(ProcessSpec))]
public sealed partial class SpecJsonContext : JsonSerializerContext;

/// <summary>config.json cannot be used; the message names the field and the fix.</summary>
public sealed class SpecException : OrchestratorException
{
    public SpecException() : base(ErrorKind.Invalid, "spec error") { }
    public SpecException(string message) : base(ErrorKind.Invalid, message) { }
    public SpecException(string message, Exception inner) : base(ErrorKind.Invalid, message, inner) { }
}

public static class SpecReader
{
    /// <summary>Reads and validates a bundle's config.json.</summary>
    public static RuntimeSpec Read(string bundle)
    {
        var path = Path.Combine(bundle, "config.json");
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SpecException($"cannot read '{path}': {e.Message}; give --bundle a directory holding config.json", e);
        }
        return Parse(bytes, path);
    }

    public static RuntimeSpec Parse(ReadOnlySpan<byte> json, string path)
    {
        RuntimeSpec? spec;
        try
        {
            spec = JsonSerializer.Deserialize(json, SpecJsonContext.Default.RuntimeSpec);
        }
        catch (JsonException e)
        {
            var where = e.Path is { Length: > 1 } p ? p.TrimStart('$', '.') : "the document";
            var reason = $"is malformed ({FirstSentence(e.Message)})";
            throw new SpecException($"{path}: {where} {reason}", e);
        }
        if (spec is null)
        {
            throw new SpecException($"{path}: the document is empty; it must be a JSON object");
        }
        SpecValidator.Validate(spec, path);
        return spec;
    }

    private static string FirstSentence(string message)
    {
        var dot = message.IndexOf(". ", StringComparison.Ordinal);
        return (dot > 0 ? message[..dot] : message).TrimEnd('.');
    }
}

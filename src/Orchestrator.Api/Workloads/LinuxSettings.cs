using System.Globalization;

namespace Orchestrator.Api.Workloads;

/// <summary>
/// The names a workload's Linux settings use (capabilities, resource limits, signals, namespaced
/// sysctls) and their checks: one table for the validator, the node's spec and the compose importer.
/// </summary>
public static partial class LinuxSettings
{
    /// <summary>Every capability Linux 6.x knows, by its CAP_ name.</summary>
    public static IReadOnlyList<string> Capabilities { get; } =
    [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
        "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
        "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
        "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
        "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
        "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    ];

    /// <summary>"NET_ADMIN", "cap_net_admin" → "CAP_NET_ADMIN"; "ALL" stays; null for a name Linux does not have.</summary>
    public static string? Capability(string name)
    {
        var upper = name.Trim().ToUpperInvariant();
        if (upper == "ALL")
        {
            return "ALL";
        }
        var full = upper.StartsWith("CAP_", StringComparison.Ordinal) ? upper : "CAP_" + upper;
        return Capabilities.Contains(full, StringComparer.Ordinal) ? full : null;
    }

    /// <summary>Resource limits by the names docker and compose use, to setrlimit's.</summary>
    public static IReadOnlyDictionary<string, string> Rlimits { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["core"] = "RLIMIT_CORE", ["cpu"] = "RLIMIT_CPU", ["data"] = "RLIMIT_DATA", ["fsize"] = "RLIMIT_FSIZE", ["locks"] = "RLIMIT_LOCKS",
        ["memlock"] = "RLIMIT_MEMLOCK", ["msgqueue"] = "RLIMIT_MSGQUEUE", ["nice"] = "RLIMIT_NICE", ["nofile"] = "RLIMIT_NOFILE",
        ["nproc"] = "RLIMIT_NPROC", ["rss"] = "RLIMIT_RSS", ["rtprio"] = "RLIMIT_RTPRIO", ["rttime"] = "RLIMIT_RTTIME",
        ["sigpending"] = "RLIMIT_SIGPENDING", ["stack"] = "RLIMIT_STACK", ["as"] = "RLIMIT_AS",
    };

    private static readonly Dictionary<string, int> s_signals = new(StringComparer.Ordinal)
    {
        ["SIGHUP"] = 1, ["SIGINT"] = 2, ["SIGQUIT"] = 3, ["SIGILL"] = 4, ["SIGTRAP"] = 5, ["SIGABRT"] = 6, ["SIGBUS"] = 7, ["SIGFPE"] = 8,
        ["SIGKILL"] = 9, ["SIGUSR1"] = 10, ["SIGSEGV"] = 11, ["SIGUSR2"] = 12, ["SIGPIPE"] = 13, ["SIGALRM"] = 14, ["SIGTERM"] = 15,
        ["SIGSTKFLT"] = 16, ["SIGCHLD"] = 17, ["SIGCONT"] = 18, ["SIGSTOP"] = 19, ["SIGTSTP"] = 20, ["SIGTTIN"] = 21, ["SIGTTOU"] = 22,
        ["SIGURG"] = 23, ["SIGXCPU"] = 24, ["SIGXFSZ"] = 25, ["SIGVTALRM"] = 26, ["SIGPROF"] = 27, ["SIGWINCH"] = 28, ["SIGIO"] = 29,
        ["SIGPWR"] = 30, ["SIGSYS"] = 31,
    };

    /// <summary>"SIGINT", "INT", "2", "SIGRTMIN+3" → its number on Linux; null when it is not a signal.</summary>
    public static int? Signal(string? name)
    {
        if (string.IsNullOrWhiteSpace(name))
        {
            return null;
        }
        var upper = name.Trim().ToUpperInvariant();
        if (int.TryParse(upper, NumberStyles.None, CultureInfo.InvariantCulture, out var number))
        {
            return number is >= 1 and <= 64 ? number : null;
        }
        var full = upper.StartsWith("SIG", StringComparison.Ordinal) ? upper : "SIG" + upper;
        if (s_signals.TryGetValue(full, out var known))
        {
            return known;
        }
        if (full.StartsWith("SIGRTMIN", StringComparison.Ordinal))
        {
            var offset = full.Length == 8 ? 0 : full[8] == '+' && int.TryParse(full.AsSpan(9), NumberStyles.None, CultureInfo.InvariantCulture, out var o) ? o : -1;
            return offset is >= 0 and <= 30 ? 34 + offset : null;
        }
        return null;
    }

    /// <summary>
    /// True for a sysctl that belongs to the container's own namespaces (docker's and Kubernetes'
    /// safe set, widened to their namespaced set): net.* (its network namespace), the IPC ones.
    /// </summary>
    public static bool IsNamespacedSysctl(string name)
        => name.StartsWith("net.", StringComparison.Ordinal) || name.StartsWith("fs.mqueue.", StringComparison.Ordinal)
            || name is "kernel.shmmax" or "kernel.shmall" or "kernel.shmmni" or "kernel.shm_rmid_forced" or "kernel.msgmax" or "kernel.msgmnb" or "kernel.msgmni" or "kernel.sem";

    /// <summary>Every problem with the Linux settings of <paramref name="w"/>, as the validator reports them.</summary>
    internal static void Validate(Workload w, List<string> errors)
    {
        foreach (var (field, list) in new[] { ("capAdd", w.CapAdd), ("capDrop", w.CapDrop) })
        {
            for (var i = 0; i < (list?.Count ?? 0); i++)
            {
                if (list![i] is not { } name || Capability(name) is null)
                {
                    errors.Add($"{field}[{i}]: '{list[i]}' is not a Linux capability; use a name such as NET_ADMIN or SYS_TIME (or ALL)");
                }
            }
        }
        if (w.CapAdd?.Any(c => c is not null && Capability(c) == "ALL") == true)
        {
            errors.Add("capAdd: ALL is every capability: ask for privileged: true instead (or name the ones needed)");
        }
        var targets = new HashSet<string>((w.Volumes ?? []).Select(v => v.Target?.TrimEnd('/') ?? ""), StringComparer.Ordinal);
        for (var i = 0; i < (w.Tmpfs?.Count ?? 0); i++)
        {
            var t = w.Tmpfs![i];
            if (t.Target is null || !t.Target.StartsWith('/') || t.Target.Split('/').Contains("..") || t.Target.TrimEnd('/').Length == 0)
            {
                errors.Add($"tmpfs[{i}].target: expected an absolute path inside the container other than /, without '..', got '{t.Target}'");
            }
            else if (!targets.Add(t.Target.TrimEnd('/')))
            {
                errors.Add($"tmpfs[{i}].target: '{t.Target}' is already mounted (a volume or another tmpfs)");
            }
            if (t.Size is not null && (!Quantities.TryParseBytes(t.Size, out var size) || size <= 0))
            {
                errors.Add($"tmpfs[{i}].size: '{t.Size}' is not a size; use bytes or a suffix (64Mi)");
            }
            if (t.Mode is not null && (t.Mode.Length is 0 or > 4 || !t.Mode.All(c => c is >= '0' and <= '7')))
            {
                errors.Add($"tmpfs[{i}].mode: '{t.Mode}' is not octal permissions; use e.g. 1777 or 755");
            }
        }
        for (var i = 0; i < (w.Groups?.Count ?? 0); i++)
        {
            if (GroupProblem(w.Groups![i]) is { } problem)
            {
                errors.Add($"groups[{i}]: {problem}");
            }
        }
        var devicePaths = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < (w.Devices?.Count ?? 0); i++)
        {
            var d = w.Devices![i];
            if (d is null)
            {
                errors.Add($"devices[{i}]: expected a mapping with hostPath");
                continue;
            }
            if (DeviceGlob.Problem(d.HostPath) is { } problem)
            {
                errors.Add($"devices[{i}].hostPath: {problem}, got '{d.HostPath}'");
            }
            if (d.ContainerPath is not null && (DeviceGlob.Problem(d.ContainerPath) is not null || DeviceGlob.IsGlob(d.ContainerPath)))
            {
                errors.Add($"devices[{i}].containerPath: expected a clean absolute path inside the container without glob characters (a glob's matches go into it as a directory), got '{d.ContainerPath}'");
            }
            else if (d.ContainerPath is { } target && IsUnder(target, "/proc", "/sys", "/dev/pts", "/dev/shm", "/dev/mqueue"))
            {
                errors.Add($"devices[{i}].containerPath: '{target}' is under a file system the container gets of its own (/proc, /sys, /dev/pts, /dev/shm, /dev/mqueue); put the device elsewhere, under /dev for example");
            }
            else if (!DeviceGlob.IsGlob(d.HostPath) && !devicePaths.Add(d.ContainerPath ?? d.HostPath))
            {
                errors.Add($"devices[{i}]: '{d.ContainerPath ?? d.HostPath}' is already a device of this workload in the container; give one of them another containerPath");
            }
            if (d.Permissions is { } access && !IsAccess(access))
            {
                errors.Add($"devices[{i}].permissions: expected r, w and m in any combination (rwm: read, write, mknod), got '{access}'");
            }
        }
        for (var i = 0; i < (w.DeviceCgroupRules?.Count ?? 0); i++)
        {
            if (DeviceRule(w.DeviceCgroupRules![i]) is null)
            {
                errors.Add($"deviceCgroupRules[{i}]: expected 'TYPE MAJOR:MINOR ACCESS' as docker's --device-cgroup-rule (c 188:* rwm; type a, b or c; * for any number), got '{w.DeviceCgroupRules[i]}'");
            }
        }
        foreach (var (name, value) in w.Sysctls ?? [])
        {
            if (!IsNamespacedSysctl(name))
            {
                errors.Add($"sysctls.{name}: not a setting of the container's own namespaces (net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*); a node-wide one is the node's to set");
            }
            else if (name.StartsWith("net.", StringComparison.Ordinal) && w.Network == NetworkMode.Host)
            {
                errors.Add($"sysctls.{name}: with network: host it would change the node's own network stack; drop it or use network: bridge");
            }
            if (value is null || value.Contains('\n', StringComparison.Ordinal))
            {
                errors.Add($"sysctls.{name}: expected a value on one line");
            }
        }
        foreach (var (name, limit) in w.Ulimits ?? [])
        {
            if (!Rlimits.ContainsKey(name))
            {
                errors.Add($"ulimits.{name}: not a resource limit; use one of {string.Join(", ", Rlimits.Keys)}");
            }
            else if (limit is null || limit.Soft < 0 || limit.Hard < 0 || limit.Soft > limit.Hard)
            {
                errors.Add($"ulimits.{name}: expected soft ≤ hard, both ≥ 0, got soft {limit?.Soft}, hard {limit?.Hard}");
            }
        }
        if (w.ShmSize is not null && (!Quantities.TryParseBytes(w.ShmSize, out var shm) || shm <= 0))
        {
            errors.Add($"shmSize: '{w.ShmSize}' is not a size; use bytes or a suffix (64Mi)");
        }
        if (w.StopSignal is not null && Signal(w.StopSignal) is null)
        {
            errors.Add($"stopSignal: '{w.StopSignal}' is not a signal; use a name such as SIGINT, SIGQUIT, SIGUSR1, or a number");
        }
    }

    /// <summary>Why the text is not a group id (0-4294967294) or group name, or null.</summary>
    public static string? GroupProblem(string? group)
    {
        if (string.IsNullOrEmpty(group))
        {
            return "expected a group id or name, got nothing";
        }
        if (group.All(char.IsAsciiDigit))
        {
            return long.TryParse(group, NumberStyles.None, CultureInfo.InvariantCulture, out var id) && id <= uint.MaxValue - 1
                ? null : $"expected a group id from 0 to 4294967294, got {group}";
        }
        return GroupNameRegex().IsMatch(group) ? null : $"'{group}' is neither a group id nor a group name (letters, digits, '_' and '-', starting with a letter or '_', at most 32)";
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$")]
    private static partial System.Text.RegularExpressions.Regex GroupNameRegex();

    /// <summary>Whether the text is r, w and m in any combination, each at most once.</summary>
    public static bool IsAccess(string access)
        => access.Length is > 0 and <= 3 && access.All(c => c is 'r' or 'w' or 'm') && access.Distinct().Count() == access.Length;

    /// <summary>A device cgroup rule ("c 188:* rwm", "a *:* rwm") as (type, major, minor, access), -1 for '*'; null when it is not one.</summary>
    public static (string Type, long Major, long Minor, string Access)? DeviceRule(string? rule)
    {
        var match = rule is null ? null : DeviceRuleRegex().Match(rule);
        if (match is not { Success: true } || !IsAccess(match.Groups[4].Value))
        {
            return null;
        }
        static long Number(string text) => text == "*" ? -1 : long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n <= uint.MaxValue ? n : -2;
        var (major, minor) = (Number(match.Groups[2].Value), Number(match.Groups[3].Value));
        return major == -2 || minor == -2 ? null : (match.Groups[1].Value, major, minor, match.Groups[4].Value);
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"^([abc]) (\d{1,10}|\*):(\d{1,10}|\*) ([rwm]{1,3})$")]
    private static partial System.Text.RegularExpressions.Regex DeviceRuleRegex();

    private static bool IsUnder(string path, params string[] roots)
        => roots.Any(r => path == r || path.StartsWith(r + "/", StringComparison.Ordinal));
}

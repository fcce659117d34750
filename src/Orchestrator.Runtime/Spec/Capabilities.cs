namespace Orchestrator.Runtime.Spec;

/// <summary>Capability and rlimit names as the spec writes them, and their numbers (linux/capability.h, sys/resource.h).</summary>
public static class Capabilities
{
    private static readonly string[] s_names =
    [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
        "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
        "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
        "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
        "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
        "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    ];

    public static int? Number(string name)
    {
        var i = Array.IndexOf(s_names, name);
        return i >= 0 ? i : null;
    }

    public static string Name(int number) => number >= 0 && number < s_names.Length ? s_names[number] : $"cap_{number}";

    /// <summary>The set as a bit mask; null or empty gives 0.</summary>
    public static ulong Mask(IEnumerable<string>? names)
        => (names ?? []).Aggregate(0UL, (mask, name) => mask | (1UL << Number(name)!.Value));

    private static readonly string[] s_rlimits =
    [
        "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS",
        "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS",
        "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
    ];

    public static int? Rlimit(string name)
    {
        var i = Array.IndexOf(s_rlimits, name);
        return i >= 0 ? i : null;
    }
}

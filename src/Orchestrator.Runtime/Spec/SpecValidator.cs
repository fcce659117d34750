namespace Orchestrator.Runtime.Spec;

/// <summary>
/// Checks a parsed spec for what this runtime can honour. A field it cannot honour yet is an
/// error that says so, never silently dropped: a container must not run with less isolation
/// than its spec asked for.
/// </summary>
internal static partial class SpecValidator
{
    private static readonly System.Text.RegularExpressions.Regex s_semver = SemVer();
    private static readonly System.Text.RegularExpressions.Regex s_pageSize = PageSize();

    [System.Text.RegularExpressions.GeneratedRegex(@"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")]
    private static partial System.Text.RegularExpressions.Regex SemVer();

    [System.Text.RegularExpressions.GeneratedRegex(@"^[0-9]+[KMG]B$")]
    private static partial System.Text.RegularExpressions.Regex PageSize();

    /// <summary>Whether the host's kernel has AppArmor on (the file runc reads too).</summary>
    public static bool AppArmorEnabled()
    {
        try
        {
            return File.ReadAllText("/sys/module/apparmor/parameters/enabled").Trim() == "Y";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    public static readonly IReadOnlySet<string> NamespaceTypes = new HashSet<string>(StringComparer.Ordinal)
        { "pid", "network", "mount", "ipc", "uts", "cgroup", "user", "time" };

    public static void Validate(RuntimeSpec spec, string path)
    {
        void Fail(string field, string problem) => throw new SpecException($"{path}: {field}: {problem}");
        void NotYet(string field) => Fail(field, "is not supported by this runtime yet; remove it or use --runtime containerd");

        // config.md#specification-version: SemVer v2.0.0; this runtime implements the 1.x series.
        if (!s_semver.IsMatch(spec.OciVersion))
        {
            Fail("ociVersion", $"'{spec.OciVersion}' is not a SemVer version (like 1.0.2)");
        }
        if (!spec.OciVersion.StartsWith("1.", StringComparison.Ordinal))
        {
            Fail("ociVersion", $"'{spec.OciVersion}' is not a 1.x version of the OCI runtime spec");
        }
        if (spec.Root is null || spec.Root.Path.Length == 0)
        {
            Fail("root.path", "is required: the container's root filesystem, relative to the bundle or absolute");
        }
        var process = spec.Process;
        if (process is null)
        {
            Fail("process", "is required");
            return;
        }
        if (process.Args.Count == 0 || process.Args[0].Length == 0)
        {
            Fail("process.args", "must name the program to run");
        }
        if (!process.Cwd.StartsWith('/'))
        {
            Fail("process.cwd", $"'{process.Cwd}' must be an absolute path inside the container");
        }
        if (process.ApparmorProfile is { Length: > 0 } && !AppArmorEnabled())
        {
            // As runc: a profile on a host without AppArmor is an error, not a silent no-op.
            Fail("process.apparmorProfile", $"'{process.ApparmorProfile}' cannot be applied: AppArmor is not enabled on this host (/sys/module/apparmor/parameters/enabled); remove the profile");
        }
        foreach (var (field, value) in new[] { ("process.ioPriority", process.IoPriority), ("process.scheduler", process.Scheduler), ("process.execCPUAffinity", process.ExecCPUAffinity) })
        {
            if (value is { ValueKind: not System.Text.Json.JsonValueKind.Null })
            {
                NotYet(field);
            }
        }
        if (process.SelinuxLabel is { Length: > 0 })
        {
            NotYet("process.selinuxLabel");
        }
        var rlimitTypes = new HashSet<string>(StringComparer.Ordinal);
        foreach (var rlimit in process.Rlimits ?? [])
        {
            if (!rlimitTypes.Add(rlimit.Type))
            {
                Fail("process.rlimits", $"{rlimit.Type} is listed twice");
            }
            if (Capabilities.Rlimit(rlimit.Type) is null)
            {
                Fail("process.rlimits", $"'{rlimit.Type}' is not an rlimit; use names like RLIMIT_NOFILE");
            }
            if (rlimit.Soft > rlimit.Hard)
            {
                Fail("process.rlimits", $"{rlimit.Type} soft limit {rlimit.Soft} is above its hard limit {rlimit.Hard}");
            }
        }
        if (process.Capabilities is { } caps)
        {
            foreach (var name in new[] { caps.Bounding, caps.Effective, caps.Permitted, caps.Inheritable, caps.Ambient }.Where(l => l is not null).SelectMany(l => l!))
            {
                if (Capabilities.Number(name) is null)
                {
                    Fail("process.capabilities", $"'{name}' is not a capability; use names like CAP_NET_BIND_SERVICE");
                }
            }
        }
        foreach (var mount in spec.Mounts)
        {
            if (mount.Destination.Length == 0)
            {
                Fail("mounts", "a mount has no destination; give the path inside the container");
            }
            if (!mount.Destination.StartsWith('/'))
            {
                // config.md#mounts (1.1+): a relative destination is deprecated and MUST be
                // interpreted as relative to "/".
                mount.Destination = "/" + mount.Destination;
            }
            foreach (var option in mount.Options ?? [])
            {
                if (!MountOptions.IsKnown(option))
                {
                    Fail("mounts", $"option '{option}' of {mount.Destination} is not a mount option this runtime knows");
                }
            }
        }
        if (spec.Hooks is { } hooks)
        {
            foreach (var hook in new[] { hooks.Prestart, hooks.CreateRuntime, hooks.CreateContainer, hooks.StartContainer, hooks.Poststart, hooks.Poststop }.Where(h => h is not null).SelectMany(h => h!))
            {
                if (!hook.Path.StartsWith('/'))
                {
                    Fail("hooks", $"path '{hook.Path}' must be absolute");
                }
                if (hook.Timeout is <= 0)
                {
                    Fail("hooks", $"timeout {hook.Timeout} of '{hook.Path}' must be greater than zero");
                }
            }
        }
        if (spec.Linux is not { } linux)
        {
            Fail("linux", "is required on Linux");
            return;
        }
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var ns in linux.Namespaces ?? [])
        {
            if (!NamespaceTypes.Contains(ns.Type))
            {
                Fail("linux.namespaces", $"'{ns.Type}' is not a namespace type; use pid, network, mount, ipc, uts, cgroup, user or time");
            }
            if (!seen.Add(ns.Type))
            {
                Fail("linux.namespaces", $"'{ns.Type}' is listed twice");
            }
            if (ns.Type is "time")
            {
                NotYet($"linux.namespaces ({ns.Type})");
            }
        }
        var newUserNs = (linux.Namespaces ?? []).Any(n => n.Type == "user" && string.IsNullOrEmpty(n.Path));
        if (newUserNs && (linux.UidMappings is not { Count: > 0 } || linux.GidMappings is not { Count: > 0 }))
        {
            Fail("linux.uidMappings", "a new user namespace needs uidMappings and gidMappings; add them (e.g. containerID 0, hostID 100000, size 65536)");
        }
        if (!newUserNs && (linux.UidMappings is { Count: > 0 } || linux.GidMappings is { Count: > 0 }))
        {
            Fail("linux.uidMappings", "mappings are only meaningful with a new user namespace; add {\"type\": \"user\"} to linux.namespaces or remove them");
        }
        foreach (var map in (linux.UidMappings ?? []).Concat(linux.GidMappings ?? []))
        {
            if (map.Size == 0)
            {
                Fail("linux.uidMappings/gidMappings", $"a mapping of size 0 (containerID {map.ContainerId}) maps nothing; give it a size");
            }
        }
        if (linux.Seccomp is { } seccomp)
        {
            // Compiling checks actions, operators, architectures and flags; numbers come later, per machine.
            try
            {
                Security.SeccompCompiler.Compile(seccomp, _ => 0, 0);
            }
            catch (SpecException e)
            {
                throw new SpecException($"{path}: {e.Message}", e);
            }
        }
        if (linux.MountLabel is { Length: > 0 })
        {
            NotYet("linux.mountLabel");
        }
        if (linux.RootfsPropagation is { Length: > 0 } propagation && propagation is not ("private" or "rprivate" or "slave" or "rslave" or "shared" or "rshared" or "unbindable" or "runbindable"))
        {
            Fail("linux.rootfsPropagation", $"'{propagation}' is not a propagation; use shared, slave, private or unbindable (or their r- forms)");
        }
        var namespaces = linux.Namespaces ?? [];
        var hasMountNs = namespaces.Any(n => n.Type == "mount");
        if (!hasMountNs)
        {
            // As runc: without a mount namespace of its own, masking or remounting would change the host.
            if (linux.MaskedPaths is { Count: > 0 } || linux.ReadonlyPaths is { Count: > 0 })
            {
                Fail("linux.maskedPaths/readonlyPaths", "need a mount namespace of the container's own (masking would change the host's mounts); add {\"type\": \"mount\"} to linux.namespaces or empty them");
            }
            if (spec.Root!.Readonly)
            {
                Fail("root.readonly", "needs a mount namespace of the container's own (the remount would make the host's mount read-only); add {\"type\": \"mount\"} to linux.namespaces");
            }
        }
        if (spec.Hostname is { Length: > 0 } && !namespaces.Any(n => n.Type == "uts" && string.IsNullOrEmpty(n.Path)))
        {
            Fail("hostname", "can only be set in a new UTS namespace (it would rename the host); add {\"type\": \"uts\"} to linux.namespaces or remove it");
        }
        if (spec.Domainname is { Length: > 0 } && !namespaces.Any(n => n.Type == "uts" && string.IsNullOrEmpty(n.Path)))
        {
            Fail("domainname", "can only be set in a new UTS namespace; add {\"type\": \"uts\"} to linux.namespaces or remove it");
        }
        foreach (var (field, value) in new[] { ("linux.intelRdt", linux.IntelRdt), ("linux.personality", linux.Personality), ("linux.timeOffsets", linux.TimeOffsets), ("linux.memoryPolicy", linux.MemoryPolicy), ("linux.resources.rdma", linux.Resources?.Rdma) })
        {
            if (value is { ValueKind: not System.Text.Json.JsonValueKind.Null })
            {
                NotYet(field);
            }
        }
        if (linux.Resources?.Unified is { Count: > 0 })
        {
            NotYet("linux.resources.unified");
        }
        foreach (var limit in linux.Resources?.HugepageLimits ?? [])
        {
            if (!s_pageSize.IsMatch(limit.PageSize))
            {
                Fail("linux.resources.hugepageLimits", $"pageSize '{limit.PageSize}' is not a page size like 2MB or 1GB");
            }
        }
        foreach (var device in linux.Resources?.BlockIO?.WeightDevice ?? [])
        {
            if (device.Weight is null && device.LeafWeight is null)
            {
                Fail("linux.resources.blockIO.weightDevice", $"{device.Major}:{device.Minor} needs a weight or a leafWeight");
            }
        }
        foreach (var device in linux.Devices ?? [])
        {
            if (!device.Path.StartsWith("/dev/", StringComparison.Ordinal) || device.Path.Contains("..", StringComparison.Ordinal))
            {
                Fail("linux.devices", $"'{device.Path}' must be a path under /dev");
            }
        }
        foreach (var key in linux.Sysctl?.Keys ?? Enumerable.Empty<string>())
        {
            if (key.Contains('/', StringComparison.Ordinal) || key.Contains("..", StringComparison.Ordinal) || key.Length == 0)
            {
                Fail("linux.sysctl", $"'{key}' is not a sysctl name; write it like net.ipv4.ip_forward");
            }
        }
    }
}

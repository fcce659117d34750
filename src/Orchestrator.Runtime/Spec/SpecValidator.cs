namespace Orchestrator.Runtime.Spec;

/// <summary>
/// Checks a parsed spec for what this runtime can honour. A field it cannot honour yet is an
/// error that says so, never silently dropped: a container must not run with less isolation
/// than its spec asked for.
/// </summary>
internal static class SpecValidator
{
    public static readonly IReadOnlySet<string> NamespaceTypes = new HashSet<string>(StringComparer.Ordinal)
        { "pid", "network", "mount", "ipc", "uts", "cgroup", "user", "time" };

    public static void Validate(RuntimeSpec spec, string path)
    {
        void Fail(string field, string problem) => throw new SpecException($"{path}: {field}: {problem}");
        void NotYet(string field) => Fail(field, "is not supported by this runtime yet; remove it or use --runtime containerd");

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
        if (process.ApparmorProfile is { Length: > 0 })
        {
            NotYet("process.apparmorProfile");
        }
        if (process.SelinuxLabel is { Length: > 0 })
        {
            NotYet("process.selinuxLabel");
        }
        foreach (var rlimit in process.Rlimits ?? [])
        {
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
            if (!mount.Destination.StartsWith('/'))
            {
                Fail("mounts", $"destination '{mount.Destination}' must be an absolute path inside the container");
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
        if (linux.RootfsPropagation is { Length: > 0 } propagation && propagation is not ("private" or "rprivate" or "slave" or "rslave"))
        {
            Fail("linux.rootfsPropagation", $"'{propagation}' is not supported; use private, rprivate, slave or rslave");
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

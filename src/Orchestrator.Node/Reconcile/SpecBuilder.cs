using System.Globalization;
using Orchestrator.Images.Oci;
using Orchestrator.Api.Workloads;
using Orchestrator.Runtime.Spec;

namespace Orchestrator.Node.Reconcile;

/// <summary>Where a container's files are on this node.</summary>
public sealed record ContainerPaths(string Bundle, string Rootfs, string VolumesDir, string CgroupPath);

/// <summary>
/// Turns a workload and its image's defaults into an OCI runtime spec, the way Docker and
/// Kubernetes users expect: command replaces the entrypoint and args the cmd, the workload's env
/// overrides the image's, Docker's default capability set, a writable root, and the generated
/// /etc/hosts, /etc/hostname and /etc/resolv.conf.
/// </summary>
public static class SpecBuilder
{
    /// <summary>Docker's default capabilities: enough for ordinary services, nothing that reaches the host.</summary>
    public static readonly IReadOnlyList<string> DefaultCapabilities =
    [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
    ];

    /// <param name="devices">The devices the workload's devices: name now (<see cref="HostDevices.Map"/>, which the supervisor keeps for hot-plug); null: mapped here under a policy that allows none.</param>
    /// <param name="secrets">The workload's secrets and configs, opened into files on a memory file system and variables (<see cref="Secrets.ResolvedSecrets"/>).</param>
    public static RuntimeSpec Build(Workload workload, ImageConfigFile image, ContainerPaths paths, IReadOnlyList<MappedDevice>? devices = null, Secrets.ResolvedSecrets? secrets = null)
    {
        var run = image.Config ?? new ImageRunConfig();
        var entrypoint = workload.Command ?? run.Entrypoint ?? [];
        // As Kubernetes: a command of your own drops the image's cmd unless args are given.
        var cmd = workload.Args ?? (workload.Command is null ? run.Cmd : null) ?? [];
        var args = entrypoint.Concat(cmd).ToList();
        if (args.Count == 0)
        {
            throw new SpecException($"workload '{workload.Name}': neither it nor image '{workload.Image}' names a program to run; give command:");
        }

        var env = new List<string>();
        var keys = new Dictionary<string, int>(StringComparer.Ordinal);
        void SetEnv(string key, string value)
        {
            if (keys.TryGetValue(key, out var at))
            {
                env[at] = $"{key}={value}";
            }
            else
            {
                keys[key] = env.Count;
                env.Add($"{key}={value}");
            }
        }
        SetEnv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        foreach (var entry in run.Env ?? [])
        {
            var eq = entry.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0)
            {
                SetEnv(entry[..eq], entry[(eq + 1)..]);
            }
        }
        var hostname = workload.Hostname ?? workload.Name;
        SetEnv("HOSTNAME", hostname);
        if (workload.Tty == true && !env.Any(e => e.StartsWith("TERM=", StringComparison.Ordinal)))
        {
            SetEnv("TERM", "xterm"); // as docker sets it for a container with a terminal
        }
        foreach (var (key, value) in workload.Env ?? [])
        {
            SetEnv(key, value);
        }
        foreach (var (key, value) in secrets?.Env ?? [])
        {
            SetEnv(key, value);
        }

        var (uid, gid) = User(workload.User ?? run.User, workload);
        var privileged = workload.Privileged == true;
        if (workload.Init == true)
        {
            // tini as PID 1 (podman mounts its init at /dev/init too: /dev is the container's own
            // tmpfs, so even a read-only root needs no mount point made in it).
            if (!File.Exists(InitBinary))
            {
                throw new SpecException($"workload '{workload.Name}': init: true needs {InitBinary} on this node (apt install tini), or take init out");
            }
            args = [InitDestination, "--", .. args];
        }
        var spec = DefaultSpec.Create(args);
        var process = spec.Process!;
        process.Env = env;
        process.Terminal = workload.Tty == true;
        process.ConsoleSize = workload.Tty == true ? new ConsoleSize { Height = 24, Width = 80 } : null;
        process.Cwd = workload.WorkingDir ?? (run.WorkingDir is { Length: > 0 } wd ? wd : "/");
        process.User = new UserSpec
        {
            Uid = uid, Gid = gid,
            AdditionalGids = workload.Groups is { Count: > 0 } groups ? [.. groups.Select(g => GroupId(g, workload, paths.Rootfs))] : null,
        };
        var capabilities = Capabilities(workload);
        process.Capabilities = new CapabilitiesSpec
        {
            Bounding = [.. capabilities],
            Effective = [.. capabilities],
            Permitted = [.. capabilities],
        };
        var files = Math.Min(65536UL, HardFileLimit());
        process.Rlimits = [new RlimitSpec { Type = "RLIMIT_NOFILE", Hard = files, Soft = files }];
        foreach (var (name, limit) in workload.Ulimits ?? [])
        {
            var type = LinuxSettings.Rlimits[name];
            process.Rlimits.RemoveAll(r => r.Type == type);
            process.Rlimits.Add(new RlimitSpec { Type = type, Soft = (ulong)limit.Soft, Hard = (ulong)limit.Hard });
        }
        spec.Root = new RootSpec { Path = paths.Rootfs, Readonly = workload.ReadOnlyRootfs == true };
        spec.Hostname = hostname;
        var linux = spec.Linux!;
        linux.CgroupsPath = paths.CgroupPath;
        linux.Namespaces = [new() { Type = "pid" }, new() { Type = "ipc" }, new() { Type = "uts" }, new() { Type = "mount" }, new() { Type = "cgroup" }];
        if (workload.Network is not NetworkMode.Host)
        {
            linux.Namespaces.Add(new NamespaceSpec { Type = "network" });
        }

        if (workload.Seccomp is not "unconfined" && !privileged)
        {
            linux.Seccomp = DefaultSeccomp();
        }
        if (workload.Sysctls is { Count: > 0 } sysctls)
        {
            linux.Sysctl = new Dictionary<string, string>(sysctls, StringComparer.Ordinal);
        }
        var resources = linux.Resources ??= new ResourcesSpec();
        if (workload.Resources?.Memory is { } memory && Quantities.TryParseBytes(memory, out var bytes))
        {
            resources.Memory = new MemorySpec { Limit = bytes };
        }
        if (workload.Resources?.Cpu is { } cpu && Quantities.TryParseMilliCpu(cpu, out var milli))
        {
            resources.Cpu = new CpuSpec { Period = 100_000, Quota = milli * 100, Shares = (ulong)Math.Max(2, milli * 1024 / 1000) };
        }
        if (workload.Resources?.Pids is { } pids)
        {
            resources.Pids = new PidsSpec { Limit = pids };
        }

        var mounts = spec.Mounts!;
        if (workload.ShmSize is { } shmSize && Quantities.TryParseBytes(shmSize, out var shmBytes))
        {
            var shm = mounts.Single(m => m.Destination == "/dev/shm");
            shm.Options = [.. shm.Options!.Where(o => !o.StartsWith("size=", StringComparison.Ordinal)), $"size={shmBytes}"];
        }
        foreach (var device in devices ?? (workload.Devices is { Count: > 0 } ? HostDevices.Map(workload, new NodePolicy()) : []))
        {
            (linux.Devices ??= []).Add(device.Node);
            (resources.Devices ??= []).Add(new DeviceRuleSpec { Allow = true, Type = device.Node.Type, Major = device.Node.Major, Minor = device.Node.Minor, Access = device.Access });
        }
        foreach (var rule in workload.DeviceCgroupRules ?? [])
        {
            if (LinuxSettings.DeviceRule(rule) is var (type, major, minor, access))
            {
                (resources.Devices ??= []).Add(new DeviceRuleSpec { Allow = true, Type = type, Major = major < 0 ? null : major, Minor = minor < 0 ? null : minor, Access = access });
            }
        }
        if (privileged)
        {
            // docker's --privileged: a node of every device of the node in the container's own /dev,
            // any device in the cgroup, /sys writable, nothing of /proc masked or read-only.
            linux.Devices = HostDevices.Scan();
            var sys = mounts.Single(m => m.Destination == "/sys");
            sys.Options = [.. sys.Options!.Where(o => o != "ro"), "rw"];
            resources.Devices = [new DeviceRuleSpec { Allow = true, Access = "rwm" }];
            linux.MaskedPaths = null;
            linux.ReadonlyPaths = null;
            process.NoNewPrivileges = false;
        }
        if (workload.Init == true)
        {
            mounts.Add(new MountSpec { Destination = InitDestination, Type = "bind", Source = InitBinary, Options = ["bind", "ro", "nosuid", "nodev"] });
        }
        Directory.CreateDirectory(paths.Bundle);
        foreach (var (name, content) in EtcFiles(workload, hostname))
        {
            var file = Path.Combine(paths.Bundle, name);
            File.WriteAllText(file, content);
            mounts.Add(new MountSpec { Destination = "/etc/" + name, Type = "bind", Source = file, Options = ["rbind", "rprivate"] });
        }
        // Shallow targets first, as Docker orders them: a volume at /app/node_modules is mounted over
        // a bind at /app, whatever order the manifest lists them in.
        foreach (var volume in (workload.Volumes ?? []).OrderBy(v => v.Target.Trim('/').Split('/').Length))
        {
            var source = volume.HostPath ?? VolumeSeed.Ensure(paths.VolumesDir, volume.Name!, paths.Rootfs, volume.Target);
            if (volume.HostPath is not null && !Path.Exists(source))
            {
                throw new SpecException($"workload '{workload.Name}': volume host path '{source}' does not exist on this node; create it or fix volumes[].hostPath");
            }
            mounts.Add(new MountSpec { Destination = volume.Target, Type = "bind", Source = source, Options = ["rbind", "rprivate", volume.ReadOnly ? "ro" : "rw"] });
        }
        foreach (var tmpfs in workload.Tmpfs ?? [])
        {
            var options = new List<string> { "nosuid", "nodev", "mode=" + (tmpfs.Mode ?? "1777") };
            if (tmpfs.Size is { } size && Quantities.TryParseBytes(size, out var sizeBytes))
            {
                options.Add(string.Create(CultureInfo.InvariantCulture, $"size={sizeBytes}"));
            }
            mounts.Add(new MountSpec { Destination = tmpfs.Target, Type = "tmpfs", Source = "tmpfs", Options = options });
        }
        foreach (var (source, target) in secrets?.Files ?? [])
        {
            mounts.Add(new MountSpec { Destination = target, Type = "bind", Source = source, Options = ["bind", "rprivate", "ro", "nosuid", "nodev", "noexec"] });
        }
        spec.Annotations = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["org.orchestrator.workload"] = workload.Name,
            ["org.orchestrator.image"] = workload.Image,
        };
        return spec;
    }

    /// <summary>
    /// A supplementary group as a gid: a number as it is, a name by the image's /etc/group (read
    /// inside its root: a symlink there cannot point at the node's own), as docker's --group-add.
    /// </summary>
    private static uint GroupId(string group, Workload workload, string rootfs)
    {
        if (uint.TryParse(group, NumberStyles.None, CultureInfo.InvariantCulture, out var id))
        {
            return id;
        }
        foreach (var line in ImageFile(rootfs, "etc/group").Split('\n'))
        {
            var fields = line.Split(':');
            if (fields.Length >= 3 && fields[0] == group && uint.TryParse(fields[2], NumberStyles.None, CultureInfo.InvariantCulture, out var gid))
            {
                return gid;
            }
        }
        throw new SpecException($"workload '{workload.Name}': group '{group}' is not in image '{workload.Image}''s /etc/group; give its number (groups: [20]) or use an image that has it");
    }

    /// <summary>A small file of the image's root (at most 256 KiB), resolved inside it; empty when it has none.</summary>
    private static string ImageFile(string rootfs, string path)
    {
        var root = Linux.Libc.open(rootfs, 0x200000 /* O_PATH */ | 0x10000 /* O_DIRECTORY */ | 0x80000 /* O_CLOEXEC */, 0);
        if (root < 0)
        {
            return "";
        }
        try
        {
            var fd = Linux.Libc.openat2(root, path, 0x80000 /* O_RDONLY|O_CLOEXEC */, 0, Linux.Libc.RESOLVE_IN_ROOT | Linux.Libc.RESOLVE_NO_MAGICLINKS);
            if (fd < 0)
            {
                return "";
            }
            using var handle = new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
            using var stream = new FileStream(handle, FileAccess.Read);
            var buffer = new byte[256 << 10];
            var total = 0;
            int read;
            while (total < buffer.Length && (read = stream.Read(buffer, total, buffer.Length - total)) > 0)
            {
                total += read;
            }
            return System.Text.Encoding.UTF8.GetString(buffer, 0, total);
        }
        catch (IOException)
        {
            return "";
        }
        finally
        {
            Linux.Libc.close(root);
        }
    }

    /// <summary>The static tini a workload with init: true runs as PID 1 (Debian's tini package), and where it is mounted.</summary>
    public const string InitBinary = "/usr/bin/tini-static";
    public const string InitDestination = "/dev/init";

    /// <summary>Docker's default set, less capDrop (ALL: all of it), plus capAdd; every capability when privileged.</summary>
    public static IReadOnlyList<string> Capabilities(Workload workload)
    {
        if (workload.Privileged == true)
        {
            return HostDevices.OwnCapabilities(); // every one orchd holds (docker's rule too)
        }
        var set = new List<string>(DefaultCapabilities);
        foreach (var drop in (workload.CapDrop ?? []).Select(LinuxSettings.Capability).OfType<string>())
        {
            if (drop == "ALL")
            {
                set.Clear();
            }
            else
            {
                set.Remove(drop);
            }
        }
        foreach (var add in (workload.CapAdd ?? []).Select(LinuxSettings.Capability).OfType<string>())
        {
            if (add != "ALL" && !set.Contains(add, StringComparer.Ordinal))
            {
                set.Add(add);
            }
        }
        return set;
    }

    /// <summary>
    /// Security by default: the system calls Docker's default profile refuses to a container
    /// without extra capabilities (kernel modules, keyrings, reboot, clock, mounts, namespaces,
    /// BPF, perf, other processes' memory…) fail with EPERM; everything else is allowed. Names
    /// a given architecture lacks are skipped by the compiler.
    /// </summary>
    public static SeccompSpec DefaultSeccomp() => new()
    {
        DefaultAction = "SCMP_ACT_ALLOW",
        Architectures = ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        Syscalls =
        [
            new SeccompSyscallSpec
            {
                Action = "SCMP_ACT_ERRNO",
                ErrnoRet = 1,
                Names =
                [
                    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module", "finit_module",
                    "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms", "get_mempolicy", "init_module", "ioperm", "iopl",
                    "kcmp", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mbind", "mount", "mount_setattr",
                    "move_mount", "move_pages", "name_to_handle_at", "nfsservctl", "open_by_handle_at", "open_tree",
                    "perf_event_open", "pivot_root", "process_vm_readv", "process_vm_writev", "query_module", "quotactl",
                    "reboot", "request_key", "set_mempolicy", "setns", "settimeofday", "stime", "swapoff", "swapon", "syslog",
                    "sysfs", "_sysctl", "umount", "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vm86", "vm86old",
                    // io_uring's submissions run outside the filter (docker refuses them since 25.0).
                    "io_uring_setup", "io_uring_enter", "io_uring_register",
                ],
            },
            // clone3 takes its flags in a struct the filter cannot read: ENOSYS, so that libc
            // falls back to clone, whose flags it can (docker does the same).
            new SeccompSyscallSpec { Action = "SCMP_ACT_ERRNO", ErrnoRet = 38, Names = ["clone3"] },
            // clone with any new namespace: with CLONE_NEWUSER the child holds every capability
            // in namespaces of its own (a new network namespace is the usual nf_tables escalation).
            // One rule per flag: a rule's conditions all must hold, and any flag set is enough.
            .. NamespaceCloneFlags.Select(flag => new SeccompSyscallSpec
            {
                Action = "SCMP_ACT_ERRNO",
                ErrnoRet = 1,
                Names = ["clone"],
                Args = [new SeccompArgSpec { Index = 0, Value = flag, ValueTwo = flag, Op = "SCMP_CMP_MASKED_EQ" }],
            }),
        ],
    };

    /// <summary>CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET.</summary>
    private static readonly ulong[] NamespaceCloneFlags = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000];

    /// <summary>orchd's own hard limit on open files: a container cannot be given more without CAP_SYS_RESOURCE.</summary>
    private static ulong HardFileLimit()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/limits"))
            {
                if (line.StartsWith("Max open files", StringComparison.Ordinal))
                {
                    var fields = line["Max open files".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    return ulong.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out var hard) ? hard : 65536;
                }
            }
        }
        catch (IOException)
        {
        }
        return 1024;
    }

    private static (uint Uid, uint Gid) User(string? user, Workload workload)
    {
        if (string.IsNullOrEmpty(user))
        {
            return (0, 0);
        }
        var parts = user.Split(':');
        if (parts.Length <= 2 && uint.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var uid))
        {
            var gid = uid;
            if (parts.Length == 2 && !uint.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out gid))
            {
                throw new SpecException($"workload '{workload.Name}': user '{user}' has a group that is not a number; give uid:gid");
            }
            return (uid, gid);
        }
        throw new SpecException($"workload '{workload.Name}': user '{user}' (from the image) is a name; give user: as uid or uid:gid");
    }

    private static IEnumerable<(string Name, string Content)> EtcFiles(Workload workload, string hostname)
    {
        yield return ("hostname", hostname + "\n");
        yield return ("hosts", Hosts(hostname, null, []));
        if (workload.Network is not NetworkMode.None)
        {
            yield return ("resolv.conf", ResolvConf(workload.Network is NetworkMode.Host));
        }
    }

    /// <summary>/etc/hosts: localhost, the container itself, and its neighbours on the bridge by name.</summary>
    public static string Hosts(string hostname, string? ownAddress, IEnumerable<(string Name, string Address)> neighbours)
    {
        var text = new System.Text.StringBuilder("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        text.Append(CultureInfo.InvariantCulture, $"{ownAddress ?? "127.0.1.1"}\t{hostname}\n");
        foreach (var (name, address) in neighbours.OrderBy(n => n.Name, StringComparer.Ordinal))
        {
            text.Append(CultureInfo.InvariantCulture, $"{address}\t{name}\n");
        }
        return text.ToString();
    }

    /// <summary>The host's resolv.conf, minus loopback resolvers a container on a bridge cannot reach.</summary>
    private static string ResolvConf(bool hostNetwork)
    {
        string resolv;
        try
        {
            resolv = File.ReadAllText("/etc/resolv.conf");
        }
        catch (IOException)
        {
            return "";
        }
        if (hostNetwork)
        {
            return resolv;
        }
        var lines = resolv.Split('\n').Where(l => !(l.TrimStart().StartsWith("nameserver", StringComparison.Ordinal)
            && (l.Contains(" 127.", StringComparison.Ordinal) || l.Contains(" ::1", StringComparison.Ordinal))));
        return string.Join('\n', lines);
    }
}

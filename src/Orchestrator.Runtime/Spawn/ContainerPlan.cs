using Orchestrator.Runtime.Cgroups;
using Orchestrator.Runtime.Rootfs;
using Orchestrator.Runtime.Spec;
using static Orchestrator.Linux.Libc;

namespace Orchestrator.Runtime.Spawn;

/// <summary>One step of the child's mount phase, in order.</summary>
internal sealed record MountStep(int Op, string? Source, string Target, string? FsType, ulong Flags, string? Data, ulong Propagation, ulong RemountFlags);

/// <summary>
/// Everything the child does, decided in managed code before the clone: the spec turned into
/// flat, resolved steps (host paths resolved safely inside the rootfs, the program found on
/// the container's PATH). The C shim only executes it.
/// </summary>
internal sealed class ContainerPlan
{
    public const int CLONE_NEWNS = 0x00020000, CLONE_NEWCGROUP = 0x02000000, CLONE_NEWUTS = 0x04000000,
        CLONE_NEWIPC = 0x08000000, CLONE_NEWUSER = 0x10000000, CLONE_NEWPID = 0x20000000, CLONE_NEWNET = 0x40000000;

    private static readonly string[] s_defaultDevices = ["null", "zero", "full", "random", "urandom", "tty"];

    /// <summary>The rootfs to pivot into; null for exec, which joins a running container's mount namespace.</summary>
    public required string? Rootfs { get; init; }

    /// <summary>--no-pivot: move the rootfs onto / and chroot instead of pivot_root.</summary>
    public bool NoPivot { get; set; }

    /// <summary>exec into another pid namespace, or a container joining one by path: the child forks once more after joining.</summary>
    public bool ForkAfterJoin { get; init; }

    /// <summary>No mount namespace in the spec: the container inherits the runtime's (config-linux.md#namespaces).</summary>
    public bool SharesRuntimeMountNamespace { get; init; }
    public int CloneFlags { get; init; }
    public List<(string Path, int Type)> Joins { get; } = [];
    public List<MountStep> Mounts { get; } = [];
    public required RuntimeSpec Spec { get; init; }
    public required string ExecPath { get; init; }

    public static int NamespaceFlag(string type) => type switch
    {
        "pid" => CLONE_NEWPID,
        "network" => CLONE_NEWNET,
        "mount" => CLONE_NEWNS,
        "ipc" => CLONE_NEWIPC,
        "uts" => CLONE_NEWUTS,
        "cgroup" => CLONE_NEWCGROUP,
        "user" => CLONE_NEWUSER,
        _ => 0,
    };

    /// <summary>The spec's name of a CLONE_NEW* flag.</summary>
    public static string NamespaceName(int flag) => flag switch
    {
        CLONE_NEWPID => "pid",
        CLONE_NEWNET => "network",
        CLONE_NEWNS => "mount",
        CLONE_NEWIPC => "ipc",
        CLONE_NEWUTS => "uts",
        CLONE_NEWCGROUP => "cgroup",
        CLONE_NEWUSER => "user",
        _ => $"0x{flag:x}",
    };

    /// <summary>The /proc/PID/ns file of a CLONE_NEW* flag.</summary>
    public static string NamespaceFile(int flag) => flag switch
    {
        CLONE_NEWNET => "net",
        CLONE_NEWNS => "mnt",
        _ => NamespaceName(flag),
    };

    /// <summary>
    /// A new process inside a running container: join each of its namespaces that differs from
    /// ours (the user namespace first, the mount namespace last), no rootfs work of our own.
    /// </summary>
    public static ContainerPlan ForExec(int containerPid, string hostRootfs, RuntimeSpec spec)
    {
        var joins = new List<(string, int)>();
        var forkAfterJoin = false;
        foreach (var (name, flag) in new[] { ("user", CLONE_NEWUSER), ("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS), ("net", CLONE_NEWNET), ("pid", CLONE_NEWPID), ("cgroup", CLONE_NEWCGROUP), ("mnt", CLONE_NEWNS) })
        {
            var theirs = $"/proc/{containerPid}/ns/{name}";
            var ours = $"/proc/self/ns/{name}";
            if (File.Exists(theirs) && new FileInfo(theirs).LinkTarget != new FileInfo(ours).LinkTarget)
            {
                joins.Add((theirs, flag));
                forkAfterJoin |= name == "pid";
            }
        }
        var process = spec.Process!;
        // The program is looked for in the container's own view of its root (its mount namespace,
        // through /proc/PID/root): a program on a volume or another bind mount is found too, where
        // the image's rootfs directory on the host does not have it.
        var containerRoot = $"/proc/{containerPid.ToString(System.Globalization.CultureInfo.InvariantCulture)}/root";
        var plan = new ContainerPlan
        {
            Rootfs = null,
            Spec = spec,
            ExecPath = FindProgram(Directory.Exists(containerRoot + "/") ? containerRoot : hostRootfs, process.Args[0], process.Cwd, process.Env ?? []),
            ForkAfterJoin = forkAfterJoin,
        };
        plan.Joins.AddRange(joins);
        return plan;
    }

    public static ContainerPlan Build(RuntimeSpec spec, string bundle, ICgroup cgroup, string? cgroupMountRoot = null)
    {
        cgroupMountRoot ??= CgroupFactory.DefaultRoot;
        var linux = spec.Linux!;
        var rootfs = Path.GetFullPath(Path.Combine(bundle, spec.Root!.Path));
        if (!Directory.Exists(rootfs))
        {
            throw new SpecException($"root.path: '{rootfs}' is not a directory; unpack the image there or fix root.path");
        }
        var namespaces = linux.Namespaces ?? [];

        var flags = 0;
        var joins = new List<(string, int)>();
        foreach (var ns in namespaces)
        {
            if (ns.Path is { Length: > 0 } nsPath)
            {
                joins.Add((nsPath, NamespaceFlag(ns.Type)));
            }
            else
            {
                flags |= NamespaceFlag(ns.Type);
            }
        }

        var process = spec.Process!;
        var env = process.Env ?? [];
        var plan = new ContainerPlan
        {
            Rootfs = rootfs,
            CloneFlags = flags,
            Spec = spec,
            // A program the spec mounts in (an init bound at /dev/init, as podman's --init and
            // orchd's init: true do) is not in the rootfs before the mounts: the exec finds it.
            ExecPath = process.Args[0].StartsWith('/') && spec.Mounts.Any(m => m.Type == "bind" && IsUnder(process.Args[0], m.Destination) && m.Destination != "/")
                ? process.Args[0]
                : FindProgram(rootfs, process.Args[0], process.Cwd, env),
            // setns(CLONE_NEWPID) moves only the children of the caller: fork once more.
            ForkAfterJoin = namespaces.Any(n => n.Type == "pid" && n.Path is { Length: > 0 }),
            SharesRuntimeMountNamespace = !namespaces.Any(n => n.Type == "mount"),
        };
        plan.Joins.AddRange(joins);

        var madeByUs = new List<string>(); // container paths of filesystems this plan mounts fresh
        foreach (var mount in spec.Mounts)
        {
            plan.AddMount(mount, bundle, madeByUs, cgroup, cgroupMountRoot);
        }

        foreach (var device in linux.Devices ?? [])
        {
            plan.AddDevice(device, madeByUs);
        }

        // The working directory exists before the process needs it, as runc does.
        var cwd = SecureJoin.Resolve(rootfs, process.Cwd);
        if (!madeByUs.Any(m => IsUnder(process.Cwd, m)))
        {
            Directory.CreateDirectory(cwd);
        }
        return plan;
    }

    private void AddMount(MountSpec mount, string bundle, List<string> madeByUs, ICgroup cgroup, string cgroupMountRoot)
    {
        var (flags, propagation, data) = MountOptions.Parse(mount.Options);
        var isBind = mount.Type == "bind" || (flags & MS_BIND) != 0;
        string? source = mount.Source;
        if (isBind)
        {
            if (source is null)
            {
                throw new SpecException($"mounts: the bind mount at {mount.Destination} has no source");
            }
            source = Path.GetFullPath(Path.Combine(bundle, source));
            if (!Path.Exists(source))
            {
                throw new SpecException($"mounts: bind source '{source}' for {mount.Destination} does not exist; create it or fix the source");
            }
        }
        var isFile = isBind && File.Exists(source);
        var target = PrepareTarget(mount.Destination, madeByUs, isFile);
        if (isBind && !isFile)
        {
            _binds.Add((mount.Destination, source!, target));
        }

        if (mount.Type == "cgroup")
        {
            AddCgroupMount(target, flags, cgroup, cgroupMountRoot);
            madeByUs.Add(mount.Destination);
            return;
        }
        if (isBind)
        {
            var remount = flags & ~(MS_BIND | MS_REC);
            Mounts.Add(new MountStep(0, source, target, null, flags & (MS_BIND | MS_REC), null, propagation, remount));
            return;
        }
        // tmpcopyup (podman's --read-only /run, /tmp, /var/tmp): the child copies what the image
        // has there into the fresh tmpfs (op 6); the option means nothing to other types, as in runc.
        var copyUp = mount.Type == "tmpfs" && mount.Options?.Contains(MountOptions.TmpCopyUp) == true;
        Mounts.Add(new MountStep(copyUp ? 6 : 0, source ?? mount.Type, target, mount.Type, flags, data, propagation, 0));
        madeByUs.Add(mount.Destination);
        if (mount.Destination == "/dev" && mount.Type == "tmpfs")
        {
            AddDefaultDevices();
        }
    }

    /// <summary>
    /// The host path to mount on. Inside a filesystem this plan mounts fresh (a /dev tmpfs) the
    /// child makes the mount point itself; elsewhere it is resolved inside the rootfs (never
    /// following a symlink out of it) and created now.
    /// </summary>
    private string PrepareTarget(string destination, List<string> madeByUs, bool isFile, bool makeTarget = true)
    {
        var parent = madeByUs.Where(m => IsUnder(destination, m) && m != destination).OrderByDescending(m => m.Length).FirstOrDefault();
        var bind = _binds.Where(b => IsUnder(destination, b.Destination) && b.Destination != destination).OrderByDescending(b => b.Destination.Length).FirstOrDefault();
        if (bind.Source is not null && (parent is null || bind.Destination.Length > parent.Length))
        {
            return UnderBind(destination, bind, isFile, makeTarget);
        }
        if (parent is not null)
        {
            var relative = destination[parent.Length..].Trim('/').Split('/');
            var path = Rootfs + parent.TrimEnd('/');
            for (var i = 0; i < relative.Length; i++)
            {
                path += "/" + relative[i];
                var last = i == relative.Length - 1;
                if (last && !makeTarget)
                {
                    break;
                }
                Mounts.Add(new MountStep(last && isFile ? 2 : 1, null, path, null, 0, null, 0, 0));
            }
            return path;
        }
        var resolved = SecureJoin.Resolve(Rootfs!, destination);
        MakeMountPoint(resolved, isFile, makeTarget);
        return resolved;
    }

    /// <summary>A mount point at a resolved host path: an empty file for a file, a directory otherwise; only its directory without <paramref name="makeTarget"/>.</summary>
    private static void MakeMountPoint(string resolved, bool isFile, bool makeTarget)
    {
        if (!makeTarget || isFile)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(resolved)!);
            if (makeTarget && !File.Exists(resolved))
            {
                File.WriteAllBytes(resolved, []);
            }
        }
        else
        {
            Directory.CreateDirectory(resolved);
        }
    }

    /// <summary>Bind mounts planned so far (not of a file): what a later mount under one of them is made in.</summary>
    private readonly List<(string Destination, string Source, string Target)> _binds = [];

    /// <summary>
    /// The mount point of a mount under an earlier bind mount's destination (an anonymous volume at
    /// /app/node_modules over a bind of the source at /app): it lies in the bind's source, where it is
    /// made now (as runc and Docker make it), resolved with the source as its root. A symlink on the
    /// way is refused, not followed: once the bind is mounted, the child would mount through it, and
    /// a source a container writes (a volume) could point it anywhere on the host.
    /// </summary>
    private static string UnderBind(string destination, (string Destination, string Source, string Target) bind, bool isFile, bool makeTarget)
    {
        var relative = destination[bind.Destination.TrimEnd('/').Length..].Trim('/');
        var literal = Path.Combine(bind.Source, relative);
        var real = SecureJoin.Resolve(bind.Source, relative);
        if (Path.TrimEndingDirectorySeparator(real) != Path.TrimEndingDirectorySeparator(Path.GetFullPath(literal)))
        {
            throw new SpecException($"mounts: {destination} is under the bind mount at {bind.Destination}, whose source {bind.Source} has a symlink on the way to {relative}; a mount is not made through a link in a bind's source: remove the link or mount elsewhere");
        }
        MakeMountPoint(real, isFile, makeTarget);
        return bind.Target.TrimEnd('/') + "/" + relative;
    }

    /// <summary>linux.devices: a node made with mknod in the container's /dev (owner and mode as the spec says).</summary>
    private void AddDevice(DeviceSpec device, List<string> madeByUs)
    {
        if ((CloneFlags & CLONE_NEWUSER) != 0)
        {
            throw new SpecException($"linux.devices: {device.Path}: device nodes cannot be made inside a user namespace yet; bind-mount the host's device instead (a bind mount in mounts)");
        }
        const uint S_IFCHR = 0x2000, S_IFBLK = 0x6000, S_IFIFO = 0x1000;
        var type = device.Type switch
        {
            "c" or "u" => S_IFCHR,
            "b" => S_IFBLK,
            "p" => S_IFIFO,
            _ => throw new SpecException($"linux.devices: {device.Path}: type '{device.Type}' is not c, u, b or p"),
        };
        var target = PrepareTarget(device.Path, madeByUs, isFile: false, makeTarget: false);
        var dev = Orchestrator.Linux.Libc.makedev((ulong)device.Major, (ulong)device.Minor);
        Mounts.Add(new MountStep(4, null, target, null, type | ((device.FileMode ?? 0x1B6) & 0xFFF), null, dev, 0));
        Mounts.Add(new MountStep(5, null, target, null, device.Uid ?? 0, null, device.Gid ?? 0, 0));
    }

    private void AddDefaultDevices()
    {
        // Bind the host's harmless character devices into the fresh /dev, as runc does when it
        // cannot mknod (and as a user namespace would require anyway).
        foreach (var device in s_defaultDevices)
        {
            var target = $"{Rootfs}/dev/{device}";
            Mounts.Add(new MountStep(2, null, target, null, 0, null, 0, 0));
            Mounts.Add(new MountStep(0, $"/dev/{device}", target, null, MS_BIND, null, 0, 0));
        }
        foreach (var (link, to) in new[] { ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx") })
        {
            Mounts.Add(new MountStep(3, to, $"{Rootfs}/dev/{link}", null, 0, null, 0, 0));
        }
    }

    /// <summary>
    /// type "cgroup": on v2 the cgroup2 filesystem (the cgroup namespace scopes it); on v1 a
    /// tmpfs holding a bind of this container's directory of each controller, as runc does.
    /// </summary>
    private void AddCgroupMount(string target, ulong flags, ICgroup cgroup, string cgroupMountRoot)
    {
        var readOnly = (flags & MS_RDONLY) != 0;
        var baseFlags = flags & ~MS_RDONLY;
        if (File.Exists(Path.Combine(cgroupMountRoot, "cgroup.controllers")))
        {
            Mounts.Add(new MountStep(0, "cgroup2", target, "cgroup2", flags, null, 0, 0));
            return;
        }
        Mounts.Add(new MountStep(0, "tmpfs", target, "tmpfs", baseFlags, "mode=755", 0, 0));
        foreach (var entry in new DirectoryInfo(cgroupMountRoot).EnumerateFileSystemInfos().OrderBy(e => e.Name, StringComparer.Ordinal))
        {
            var inside = $"{target}/{entry.Name}";
            if (entry.LinkTarget is { } linkTarget)
            {
                Mounts.Add(new MountStep(3, linkTarget, inside, null, 0, null, 0, 0));
                continue;
            }
            var hostDir = Path.Join(entry.FullName, cgroup.Path);
            if (!Directory.Exists(hostDir))
            {
                continue; // a hierarchy this container has no cgroup in (unified, named ones)
            }
            Mounts.Add(new MountStep(1, null, inside, null, 0, null, 0, 0));
            Mounts.Add(new MountStep(0, hostDir, inside, null, MS_BIND, null, 0, readOnly ? MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC : 0));
        }
        if (readOnly)
        {
            Mounts.Add(new MountStep(0, null, target, null, MS_REMOUNT | MS_RDONLY | baseFlags, null, 0, 0));
        }
    }

    private static bool IsUnder(string path, string dir)
        => dir == "/" || path == dir || path.StartsWith(dir.TrimEnd('/') + "/", StringComparison.Ordinal);

    /// <summary>Finds the program on the container's PATH (from its env), resolving inside the rootfs.</summary>
    internal static string FindProgram(string rootfs, string program, string cwd, IReadOnlyList<string> env)
    {
        if (program.Contains('/', StringComparison.Ordinal))
        {
            var containerPath = program.StartsWith('/') ? program : Path.Join(cwd, program);
            var host = SecureJoin.Resolve(rootfs, containerPath);
            if (!File.Exists(host))
            {
                throw new SpecException($"process.args[0]: '{program}' does not exist in the rootfs ({rootfs}); fix the command or the image");
            }
            return containerPath;
        }
        var pathVar = env.FirstOrDefault(e => e.StartsWith("PATH=", StringComparison.Ordinal))?[5..]
            ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        foreach (var dir in pathVar.Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Join(dir, program);
            var host = SecureJoin.Resolve(rootfs, candidate);
            if (File.Exists(host) && (File.GetUnixFileMode(host) & (UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) != 0)
            {
                return candidate;
            }
        }
        throw new SpecException($"process.args[0]: '{program}' was not found on the container's PATH ({pathVar}); fix the command or the image");
    }
}

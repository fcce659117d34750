using Orchestrator.Api;
using System.Runtime.InteropServices;
using Orchestrator.Linux;
using Orchestrator.Runtime.Cgroups;
using Orchestrator.Runtime.Spec;
using static Orchestrator.Linux.Libc;

namespace Orchestrator.Runtime.Spawn;

/// <summary>
/// The fds a new process gets as its stdin, stdout and stderr (-1: inherit the caller's). The
/// caller keeps ownership and closes them after the spawn.
/// </summary>
public readonly record struct ContainerIo(int Stdin, int Stdout, int Stderr)
{
    public static ContainerIo Inherit => new(-1, -1, -1);
}

/// <summary>The container's first process, as the parent holds it.</summary>
public sealed class SpawnedProcess(int pid, int pidfd) : IDisposable
{
    public int Pid { get; } = pid;

    /// <summary>True when clone3(CLONE_INTO_CGROUP) started it in its cgroup (v2).</summary>
    public bool BornInCgroup { get; internal set; }

    /// <summary>The pty master when the process has a terminal; the caller passes it on or relays it.</summary>
    public Microsoft.Win32.SafeHandles.SafeFileHandle? ConsoleMaster { get; internal set; }

    /// <summary>A pidfd: waits and signals go to this process even if its pid is reused.</summary>
    public int PidFd { get; private set; } = pidfd;

    /// <summary>Waits for exit; returns the exit code, or 128 + signal as shells report it.</summary>
    public unsafe int WaitForExit()
    {
        var info = stackalloc byte[128];
        while (waitid(P_PIDFD, PidFd, info, WEXITED) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno != Errno.EINTR)
            {
                throw new LinuxException("waitid", $"pid {Pid}", errno);
            }
        }
        var code = *(int*)(info + 8);
        var status = *(int*)(info + 24);
        return code == CLD_EXITED ? status : 128 + status;
    }

    public void Dispose()
    {
        ConsoleMaster?.Dispose();
        if (PidFd >= 0)
        {
            close(PidFd);
            PidFd = -1;
        }
    }
}

/// <summary>A failure inside the child before the user's program ran: the step and errno.</summary>
public sealed class SpawnException : OrchestratorException
{
    public SpawnException(SpawnStage stage, int errno, string detail)
        : base(ErrnoKind.Of(errno), $"container setup failed at {StageText(stage)}{detail}: {Errno.Describe(errno)}")
    {
        Stage = stage;
        ErrorNumber = errno;
    }

    public SpawnException() : base(ErrorKind.Internal, "container setup failed") { }
    public SpawnException(string message) : base(ErrorKind.Internal, message) { }
    public SpawnException(string message, Exception inner) : base(ErrorKind.Internal, message, inner) { }

    public SpawnStage Stage { get; }
    public int ErrorNumber { get; }

    private static string StageText(SpawnStage stage) => stage switch
    {
        SpawnStage.Exec => "exec of the container's program",
        SpawnStage.PivotRoot => "pivot_root into the rootfs",
        SpawnStage.Mount => "a mount",
        SpawnStage.Cwd => "chdir to process.cwd",
        SpawnStage.Capabilities => "setting capabilities",
        SpawnStage.Rlimit => "setting rlimits",
        SpawnStage.Sysctl => "writing a sysctl",
        _ => stage.ToString().ToLowerInvariant(),
    };
}

/// <summary>Turns a <see cref="ContainerPlan"/> into a process through the C shim.</summary>
internal static unsafe class Spawner
{
    // One spawn at a time per process: a child inherits every fd open at clone time until it
    // execs, so concurrent spawns would hold each other's pipes open.
    private static readonly Lock s_gate = new();

    /// <param name="execFifo">For create: an exec fifo the child blocks on before exec; null for run.</param>
    /// <param name="keepFds">Extra fds to pass (must already sit at 3, 4, …), as --preserve-fds.</param>
    /// <param name="beforeStart">Runs with the child's pid once its namespaces exist and before it sets up its root (createRuntime hooks).</param>
    /// <param name="hookState">The state JSON (given the pid) that createContainer/startContainer hooks read.</param>
    /// <param name="io">The process's stdio; inherited from the caller when not given.</param>
    public static SpawnedProcess Spawn(ContainerPlan plan, ICgroup cgroup, string? execFifo, int keepFds = 0, Action<int>? beforeStart = null, Func<int, string>? hookState = null, ContainerIo? io = null)
    {
        NativeSpawn.CheckAbi();
        lock (s_gate)
        {
            return SpawnLocked(plan, cgroup, execFifo, keepFds, beforeStart, hookState, io ?? ContainerIo.Inherit);
        }
    }

    /// <summary>
    /// A fault point for the crash tests: ORCHD_FAILPOINT=spawn-before-go kills the process (SIGKILL)
    /// between the child's clone and the "go" it waits for, as a kill -9 of orchd mid-spawn does.
    /// </summary>
    private static readonly bool s_killBeforeGo = Environment.GetEnvironmentVariable("ORCHD_FAILPOINT") == "spawn-before-go";

    private static SpawnedProcess SpawnLocked(ContainerPlan plan, ICgroup cgroup, string? execFifo, int keepFds, Action<int>? beforeStart, Func<int, string>? hookState, ContainerIo io)
    {
        var spec = plan.Spec;
        var process = spec.Process!;
        var linux = spec.Linux!;
        using var arena = new NativeArena();
        var fdsToClose = new List<int>();
        var sync = stackalloc int[2];
        var report = stackalloc int[2];
        if (pipe2(sync, O_CLOEXEC) != 0 || pipe2(report, O_CLOEXEC) != 0)
        {
            throw LinuxException.FromLastError("pipe2");
        }
        fdsToClose.AddRange([sync[0], sync[1], report[0], report[1]]);
        try
        {
            var p = arena.Alloc<NativePlan>(1);
            // The cgroup namespace is entered by the child after the parent has moved it into its
            // cgroup (the namespace's root is fixed at creation), not at clone time.
            p->CloneFlags = plan.CloneFlags & ~ContainerPlan.CLONE_NEWCGROUP;
            p->UnshareCgroupns = (plan.CloneFlags & ContainerPlan.CLONE_NEWCGROUP) != 0 ? 1 : 0;
            p->BecomeRoot = (plan.CloneFlags & ContainerPlan.CLONE_NEWUSER) != 0 ? 1 : 0;
            p->ForkAfterJoin = plan.ForkAfterJoin ? 1 : 0;
            p->NoPivot = plan.NoPivot ? 1 : 0;
            p->ConsoleFd = -1;
            var createHooks = plan.Rootfs is null ? [] : spec.Hooks?.CreateContainer ?? [];
            var startHooks = plan.Rootfs is null ? [] : spec.Hooks?.StartContainer ?? [];
            p->NCreateHooks = createHooks.Count;
            p->CreateHooks = Hooks(arena, createHooks);
            p->NStartHooks = startHooks.Count;
            p->StartHooks = Hooks(arena, startHooks);
            p->CgroupFd = -1;
            if (cgroup.UnifiedDirectory is { } unified && plan.Rootfs is not null)
            {
                var dirFd = open(unified, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
                if (dirFd < 0)
                {
                    throw LinuxException.FromLastError("open", unified);
                }
                fdsToClose.Add(dirFd);
                p->CgroupFd = dirFd;
            }
            var console = stackalloc int[2];
            if (process.Terminal)
            {
                if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, console) != 0)
                {
                    throw LinuxException.FromLastError("socketpair");
                }
                fdsToClose.AddRange([console[0], console[1]]);
                p->Terminal = 1;
                p->ConsoleFd = console[1];
                p->ConsoleRows = (ushort)(process.ConsoleSize?.Height ?? 0);
                p->ConsoleCols = (ushort)(process.ConsoleSize?.Width ?? 0);
            }
            // Mounts run while the parent pays for the cgroup move, unless a mount needs the
            // cgroup namespace (cgroup2).
            // (exec waits first too: its fork must happen inside the cgroup.)
            // (A joined pid namespace forks after setns: the fork must come after the cgroup move.)
            p->SyncLate = plan.Rootfs is null || plan.ForkAfterJoin || beforeStart is not null || plan.Mounts.Any(m => m.FsType == "cgroup2") || (plan.CloneFlags & ContainerPlan.CLONE_NEWUSER) != 0 ? 0 : 1;
            p->NJoin = plan.Joins.Count;
            p->JoinFds = arena.Alloc<int>(plan.Joins.Count);
            p->JoinTypes = arena.Alloc<int>(plan.Joins.Count);
            for (var i = 0; i < plan.Joins.Count; i++)
            {
                var fd = open(plan.Joins[i].Path, O_RDONLY | O_CLOEXEC, 0);
                if (fd < 0)
                {
                    throw new SpecException($"linux.namespaces: cannot open namespace '{plan.Joins[i].Path}': {Errno.Describe(Marshal.GetLastPInvokeError())}; is that process still running?");
                }
                fdsToClose.Add(fd);
                // config-linux.md#namespaces: a path that is not a namespace of that type is an error.
                var actual = NativeSpawn.Ioctl(fd, NativeSpawn.NS_GET_NSTYPE);
                if (actual != plan.Joins[i].Type)
                {
                    throw new SpecException($"linux.namespaces: '{plan.Joins[i].Path}' is not a {ContainerPlan.NamespaceName(plan.Joins[i].Type)} namespace{(actual > 0 ? $" (it is a {ContainerPlan.NamespaceName(actual)} namespace)" : "")}; give the path of one, like /proc/PID/ns/{ContainerPlan.NamespaceFile(plan.Joins[i].Type)}");
                }
                p->JoinFds[i] = fd;
                p->JoinTypes[i] = plan.Joins[i].Type;
            }
            p->Rootfs = arena.String(plan.Rootfs);
            p->ReadonlyRoot = spec.Root?.Readonly == true ? 1 : 0;
            // Set up under a private (or, for slave and shared, a slave) root; the exact
            // rootfsPropagation goes on the new root after pivot_root, as runc does.
            p->RootPropagation = (nuint)(linux.RootfsPropagation is "slave" or "rslave" or "shared" or "rshared" ? MS_SLAVE | MS_REC : MS_PRIVATE | MS_REC);
            p->RootPropagationFinal = (nuint)(linux.RootfsPropagation is { Length: > 0 } propagation ? MountOptions.Parse([propagation]).Propagation : 0);
            p->NoMountNs = plan.Rootfs is not null && plan.SharesRuntimeMountNamespace ? 1 : 0;
            p->ApparmorProfile = arena.String(process.ApparmorProfile is { Length: > 0 } profile ? profile : null);
            p->NMounts = plan.Mounts.Count;
            p->Mounts = arena.Alloc<NativeMount>(plan.Mounts.Count);
            for (var i = 0; i < plan.Mounts.Count; i++)
            {
                var m = plan.Mounts[i];
                p->Mounts[i] = new NativeMount
                {
                    Op = m.Op,
                    Source = arena.String(m.Source),
                    Target = arena.String(m.Target),
                    FsType = arena.String(m.FsType),
                    Flags = (nuint)m.Flags,
                    Data = arena.String(m.Data),
                    Propagation = (nuint)m.Propagation,
                    RemountFlags = (int)m.RemountFlags,
                };
            }
            var masked = linux.MaskedPaths ?? [];
            p->NMasked = masked.Count;
            p->Masked = arena.Strings(masked);
            var readonlyPaths = plan.Rootfs is null ? [] : linux.ReadonlyPaths ?? [];
            p->NReadonly = readonlyPaths.Count;
            p->ReadonlyPaths = arena.Strings(readonlyPaths);
            p->Hostname = (plan.CloneFlags & ContainerPlan.CLONE_NEWUTS) != 0 ? arena.String(spec.Hostname) : null;
            p->Domainname = (plan.CloneFlags & ContainerPlan.CLONE_NEWUTS) != 0 ? arena.String(spec.Domainname) : null;
            if (plan.Rootfs is null)
            {
                p->NMasked = 0; // exec: the container's mounts, masks and sysctls are already in place
            }
            var sysctl = plan.Rootfs is null ? [] : (linux.Sysctl ?? []).ToList();
            p->NSysctl = sysctl.Count;
            p->SysctlPaths = arena.Strings(sysctl.Select(kv => "/proc/sys/" + kv.Key.Replace('.', '/')).ToList());
            p->SysctlValues = arena.Strings(sysctl.Select(kv => kv.Value).ToList());
            var rlimits = process.Rlimits ?? [];
            p->NRlimits = rlimits.Count;
            p->Rlimits = arena.Alloc<NativeRlimit>(rlimits.Count);
            for (var i = 0; i < rlimits.Count; i++)
            {
                p->Rlimits[i] = new NativeRlimit { Resource = Capabilities.Rlimit(rlimits[i].Type)!.Value, Soft = rlimits[i].Soft, Hard = rlimits[i].Hard };
            }
            p->SetOomScore = process.OomScoreAdj is null ? 0 : 1;
            p->OomScoreAdj = process.OomScoreAdj ?? 0;
            p->Uid = process.User.Uid;
            p->Gid = process.User.Gid;
            var groups = process.User.AdditionalGids ?? [];
            p->NGroups = groups.Count;
            p->Groups = arena.Alloc<uint>(groups.Count);
            for (var i = 0; i < groups.Count; i++)
            {
                p->Groups[i] = groups[i];
            }
            var caps = process.Capabilities;
            p->CapBounding = Capabilities.Mask(caps?.Bounding);
            p->CapEffective = Capabilities.Mask(caps?.Effective);
            p->CapPermitted = Capabilities.Mask(caps?.Permitted);
            p->CapInheritable = Capabilities.Mask(caps?.Inheritable);
            p->CapAmbient = Capabilities.Mask(caps?.Ambient);
            p->NoNewPrivs = process.NoNewPrivileges ? 1 : 0;
            p->Seccomp = null;
            if (linux.Seccomp is { } seccomp)
            {
                var program = Security.SeccompCompiler.Compile(seccomp, NativeSpawn.SyscallNumber, NativeSpawn.AuditArch());
                var filter = arena.Alloc<Security.BpfInstruction>(program.Length);
                program.CopyTo(new Span<Security.BpfInstruction>(filter, program.Length));
                var fprog = arena.Alloc<NativeSockFprog>(1);
                fprog->Len = (ushort)program.Length;
                fprog->Filter = filter;
                p->Seccomp = fprog;
            }
            p->UmaskValue = process.User.Umask is { } umask ? (int)umask : -1;
            p->Cwd = arena.String(process.Cwd);
            p->Path = arena.String(plan.ExecPath);
            p->Argv = arena.Strings(process.Args);
            p->Envp = arena.Strings(process.Env ?? []);
            p->StdinFd = io.Stdin;
            p->StdoutFd = io.Stdout;
            p->StderrFd = io.Stderr;
            p->KeepFds = keepFds;
            p->SyncFd = sync[0];
            p->SyncWriteFd = sync[1];
            p->ReportFd = report[1];
            p->ExecFifoFd = -1;
            if (execFifo is not null)
            {
                // Read-write: never blocks, and the child inherits it instead of opening a path
                // its own identity may not reach (a user namespace, no CAP_DAC_OVERRIDE).
                var fifo = open(execFifo, O_RDWR | O_CLOEXEC, 0);
                if (fifo < 0)
                {
                    throw LinuxException.FromLastError("open", execFifo);
                }
                fdsToClose.Add(fifo);
                p->ExecFifoFd = fifo;
            }

            int pidfd, inCgroup;
            var pid = NativeSpawn.Spawn(p, &pidfd, &inCgroup);
            if (pid < 0)
            {
                throw new LinuxException("clone", "the container's first process", Marshal.GetLastPInvokeError());
            }
            var child = new SpawnedProcess(pid, pidfd);
            // The parent's copies of the child's ends: closed, so that EOF means "exec happened".
            close(sync[0]);
            close(report[1]);
            fdsToClose.Remove(sync[0]);
            fdsToClose.Remove(report[1]);
            if (process.Terminal)
            {
                close(console[1]); // so that a child dying before it sends the master reads as EOF
                fdsToClose.Remove(console[1]);
            }
            try
            {
                // Into the cgroup before the child runs a single instruction of its own setup
                // (on v2 it was born there).
                if (inCgroup == 0)
                {
                    cgroup.Attach(pid);
                }
                child.BornInCgroup = inCgroup != 0;
                if ((plan.CloneFlags & ContainerPlan.CLONE_NEWUSER) != 0)
                {
                    // The child cannot map itself: the parent, in the parent namespace, writes
                    // the maps before the child does anything that needs its ids.
                    WriteIdMap($"/proc/{pid}/uid_map", linux.UidMappings!);
                    WriteIdMap($"/proc/{pid}/gid_map", linux.GidMappings!);
                }
                beforeStart?.Invoke(pid);
                if (s_killBeforeGo)
                {
                    _ = kill(Environment.ProcessId, 9);
                }
                byte go = 1;
                if (write(sync[1], &go, 1) != 1)
                {
                    throw SyncFailed(report[0], plan);
                }
                if (p->NCreateHooks + p->NStartHooks > 0)
                {
                    // The hooks' state: a 4-byte length (native order), then the JSON.
                    var state = System.Text.Encoding.UTF8.GetBytes(hookState?.Invoke(pid) ?? "{}");
                    if (state.Length > 16384)
                    {
                        throw new SpecException("hooks: the container's state is over 16 KiB (annotations?); trim it");
                    }
                    var json = new byte[4 + state.Length];
                    BitConverter.TryWriteBytes(json.AsSpan(0, 4), (uint)state.Length);
                    state.CopyTo(json, 4);
                    fixed (byte* bytes = json)
                    {
                        for (var written = 0; written < json.Length;)
                        {
                            var n = write(sync[1], bytes + written, (nuint)(json.Length - written));
                            if (n <= 0)
                            {
                                throw SyncFailed(report[0], plan);
                            }
                            written += (int)n;
                        }
                    }
                }
                close(sync[1]);
                fdsToClose.Remove(sync[1]);
                var grandchild = WaitForReport(report[0], plan);
                Microsoft.Win32.SafeHandles.SafeFileHandle? master = null;
                if (process.Terminal)
                {
                    var fd = NativeSpawn.RecvFd(console[0]);
                    if (fd < 0)
                    {
                        throw new LinuxException("recvmsg", "the container's pty master", Marshal.GetLastPInvokeError());
                    }
                    master = new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
                }
                if (grandchild > 0)
                {
                    // exec into a pid namespace: the child forked the process as our own child
                    // (CLONE_PARENT) and exits. Being ours, it stays a zombie until we reap it, so
                    // its pid cannot have been reaped and reused before the pidfd is open.
                    var fd = NativeSpawn.PidfdOpen(grandchild);
                    if (fd < 0)
                    {
                        throw new LinuxException("pidfd_open", $"pid {grandchild}", Marshal.GetLastPInvokeError());
                    }
                    var spawned = new SpawnedProcess(grandchild, fd) { ConsoleMaster = master };
                    child.WaitForExit();
                    child.Dispose();
                    return spawned;
                }
                child.ConsoleMaster = master;
                return child;
            }
            catch
            {
                kill(pid, 9);
                if (child.PidFd >= 0)
                {
                    child.WaitForExit();
                }
                child.Dispose();
                throw;
            }
        }
        finally
        {
            foreach (var fd in fdsToClose)
            {
                close(fd);
            }
        }
    }

    /// <summary>
    /// The child went away before taking the go byte: it failed in its mount phase (which runs
    /// before the sync when nothing there needs the cgroup). Its report says why; only without
    /// one is the broken pipe itself the error.
    /// </summary>
    private static Exception SyncFailed(int reportFd, ContainerPlan plan)
    {
        var errno = Marshal.GetLastPInvokeError();
        try
        {
            WaitForReport(reportFd, plan);
        }
        catch (SpawnException e)
        {
            return e;
        }
        return new LinuxException("write", "sync pipe", errno);
    }

    private static void WriteIdMap(string path, List<IdMapping> mappings)
    {
        var text = string.Concat(mappings.Select(m => $"{m.ContainerId} {m.HostId} {m.Size}\n"));
        try
        {
            File.WriteAllText(path, text);
        }
        catch (IOException e)
        {
            throw new SpecException($"linux.uidMappings/gidMappings: the kernel refused '{text.Trim().Replace('\n', ';')}' for {path}: {e.Message}; check that the ranges do not overlap", e);
        }
    }

    /// <summary>EOF: the program was exec'd. READY: set up and waiting on the exec fifo. Else the failure.</summary>
    private static NativeHook* Hooks(NativeArena arena, List<HookSpec> hooks)
    {
        var native = arena.Alloc<NativeHook>(hooks.Count);
        for (var i = 0; i < hooks.Count; i++)
        {
            native[i].Path = arena.String(hooks[i].Path);
            native[i].Argv = arena.Strings(hooks[i].Args is { Count: > 0 } args ? args : [hooks[i].Path]);
            native[i].Envp = arena.Strings(hooks[i].Env ?? []);
        }
        return native;
    }

    /// <returns>The grandchild's pid when the child forked after joining a pid namespace, else 0.</returns>
    private static int WaitForReport(int fd, ContainerPlan plan)
    {
        var record = stackalloc int[2];
        var grandchild = 0;
        while (true)
        {
            nint n;
            do
            {
                n = read(fd, record, 8);
            }
            while (n < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR);
            if (n == 0)
            {
                return grandchild;
            }
            if (n != 8)
            {
                throw new SpawnException($"container setup: short report from the child ({n} bytes)");
            }
            var reported = (SpawnStage)record[0];
            if (reported == SpawnStage.ChildPid)
            {
                grandchild = record[1];
                continue;
            }
            if (reported == SpawnStage.WarnAmbient)
            {
                Console.Error.WriteLine($"warning: process.capabilities.ambient: {Capabilities.Name(record[1])} was not raised: an ambient capability must also be in the permitted and inheritable sets (runc and crun skip it too)");
                continue;
            }
            if (reported == SpawnStage.Ready)
            {
                return grandchild;
            }
            break;
        }
        var stage = (SpawnStage)record[0];
        {
        var detail = stage switch
        {
            SpawnStage.Exec => $" ('{plan.ExecPath}')",
            SpawnStage.Cwd => $" ('{plan.Spec.Process!.Cwd}')",
            SpawnStage.RootfsBind when (plan.CloneFlags & ContainerPlan.CLONE_NEWUSER) != 0 && record[1] == Errno.EACCES =>
                $" ('{plan.Rootfs}': the container's root is an unprivileged host uid in a user namespace; every directory above the rootfs must be searchable by it, e.g. chmod 755)",
            SpawnStage.RootfsBind => $" ('{plan.Rootfs}')",
            SpawnStage.Hook => " (a createContainer or startContainer hook failed or could not run)",
            SpawnStage.Device when record[1] == Errno.EEXIST => " (linux.devices: a file already at a device's path is not that device)",
            SpawnStage.Apparmor => $" (process.apparmorProfile '{plan.Spec.Process!.ApparmorProfile}')",
            _ => "",
        };
        throw new SpawnException(stage, record[1], detail);
        }
    }
}

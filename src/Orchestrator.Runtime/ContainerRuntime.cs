using System.Globalization;
using System.Text.Json;
using Orchestrator.Linux;
using Orchestrator.Runtime.Cgroups;
using Orchestrator.Runtime.Spawn;
using Orchestrator.Runtime.Spec;
using Orchestrator.Runtime.State;
using static Orchestrator.Linux.Libc;

namespace Orchestrator.Runtime;

/// <summary>The OCI lifecycle (create, start, state, kill, delete) and run, over a state root.</summary>
public sealed class ContainerRuntime(string root)
{
    public StateStore Store { get; } = new(root);

    public static bool IsValidId(string id)
        => id.Length is > 0 and <= 128 && id.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.') && id[0] != '.';

    /// <summary>Sets the container up to the point of exec and leaves it waiting for <see cref="Start"/>.</summary>
    /// <remarks>
    /// A spec with <c>process.terminal</c> needs <paramref name="consoleSocket"/> (the master goes
    /// there, as containerd expects) or <paramref name="takeConsole"/> (the caller gets it and owns it).
    /// </remarks>
    public ContainerRecord Create(string id, string bundle, string? pidFile = null, int preserveFds = 0, bool noPivot = false, string? consoleSocket = null, ContainerIo? io = null,
        Action<Microsoft.Win32.SafeHandles.SafeFileHandle>? takeConsole = null)
        => CreateCore(id, bundle, pidFile, preserveFds, waitForStart: true, noPivot, consoleSocket, out _, io: io, takeConsole: takeConsole);

    public void Start(string id)
    {
        var record = Store.Load(id);
        var status = Status(record);
        if (status != "created")
        {
            throw new InvalidOperationException($"container '{id}' is {status}, not created; only a created container can be started");
        }
        ReleaseExecFifo(id);
        RunPoststart(id, record);
    }

    /// <summary>
    /// The child blocks reading the exec fifo (it inherited it read-write from create): one byte
    /// releases it. Then wait until its copy closes (close-on-exec: the program is executing, or
    /// the child died), so that poststart hooks run after the program started (config.md#poststart).
    /// </summary>
    private unsafe void ReleaseExecFifo(string id)
    {
        var fifo = Store.ExecFifo(id);
        var fd = Libc.open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC, 0);
        if (fd < 0)
        {
            var errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            File.Delete(fifo);
            throw errno == 6 /* ENXIO: no reader */
                ? new InvalidOperationException($"container '{id}' is not waiting to start any more (its process exited after create); delete it and create it again")
                : new LinuxException("open", fifo, errno);
        }
        try
        {
            byte go = 1;
            if (write(fd, &go, 1) != 1)
            {
                throw LinuxException.FromLastError("write", fifo);
            }
            File.Delete(fifo);
            // POLLERR on a fifo's write end: no reader is left.
            var pfd = new pollfd { fd = fd, events = 0 };
            var deadline = Environment.TickCount64 + 60_000;
            while (Environment.TickCount64 < deadline && poll(&pfd, 1, (int)Math.Max(1, deadline - Environment.TickCount64)) <= 0 && (pfd.revents & (POLLERR | POLLHUP)) == 0)
            {
            }
        }
        finally
        {
            close(fd);
        }
    }

    /// <summary>poststart failures are warnings: the container is already running (the spec says so).</summary>
    private void RunPoststart(string id, ContainerRecord record)
    {
        var hooks = TryReadHooks(record)?.Poststart;
        if (hooks is { Count: > 0 })
        {
            Hooks.Run("poststart", hooks, State(id), warnOnly: true);
        }
    }

    private HooksSpec? TryReadHooks(ContainerRecord record) => TryReadSpec(record)?.Hooks;

    /// <summary>
    /// The spec as it was at create (a copy in the state dir): runtime.md#create, "any updates to
    /// config.json after this operation MUST NOT have an effect on the container". Falls back to
    /// the bundle for containers created before the copy existed.
    /// </summary>
    private RuntimeSpec? TryReadSpec(ContainerRecord record)
    {
        try
        {
            var copy = SpecCopy(record.Id);
            return File.Exists(copy) ? SpecReader.Parse(File.ReadAllBytes(copy), copy) : SpecReader.Read(record.Bundle);
        }
        catch (Exception e) when (e is SpecException or IOException)
        {
            return null; // the bundle changed or went away since create: nothing to run
        }
    }

    private string SpecCopy(string id) => Path.Combine(Store.Dir(id), "config.json");

    /// <summary>
    /// A container without a mount namespace of its own mounted into the runtime's (as runc):
    /// those mounts are undone when it goes, not left on the host.
    /// </summary>
    private static void UnmountSharedNamespaceMounts(RuntimeSpec? spec, string rootfs)
    {
        if (spec?.Linux is not { } linux || (linux.Namespaces ?? []).Any(n => n.Type == "mount"))
        {
            return;
        }
        // One unmount per entry, last first (stacked entries at one destination are several
        // entries); never the root itself, which may be the caller's own mount (an overlay).
        for (var i = spec.Mounts.Count - 1; i >= 0; i--)
        {
            if (spec.Mounts[i].Destination.Trim('/').Length == 0)
            {
                continue;
            }
            string target;
            try
            {
                target = Rootfs.SecureJoin.Resolve(rootfs, spec.Mounts[i].Destination);
            }
            catch (Exception e) when (e is SpecException or IOException)
            {
                continue;
            }
            umount2(target, MNT_DETACH);
        }
    }

    /// <summary>create + start + wait + delete in one go; returns the program's exit status.</summary>
    /// <param name="keep">Leave the stopped container in place (state then reports its exit status) instead of deleting it.</param>
    public int Run(string id, string bundle, string? pidFile = null, int preserveFds = 0, bool detach = false, bool noPivot = false, string? consoleSocket = null, bool keep = false)
    {
        var created = CreateCore(id, bundle, pidFile, preserveFds, waitForStart: false, noPivot, consoleSocket, out var child, detach);
        RunPoststart(id, created);
        using (child)
        {
            if (detach)
            {
                return 0;
            }
            using var relay = child!.ConsoleMaster is { } master ? ConsoleRelay.Start(master) : null;
            var status = child!.WaitForExit();
            relay?.Finish();
            var record = Store.Load(id);
            record.ExitStatus = status;
            Store.Save(record);
            if (!keep)
            {
                Delete(id, force: true);
            }
            return status;
        }
    }

    /// <summary>
    /// create + start in one step for a supervisor: the container runs with the given stdio and
    /// the caller owns the returned process (its pidfd) to wait on. Nothing waits here.
    /// </summary>
    public SpawnedProcess Launch(string id, string bundle, ContainerIo io, Action<Microsoft.Win32.SafeHandles.SafeFileHandle>? takeConsole = null)
    {
        CreateCore(id, bundle, pidFile: null, preserveFds: 0, waitForStart: false, noPivot: false, consoleSocket: null, out var child, detach: true, io, takeConsole);
        return child!;
    }

    private ContainerRecord CreateCore(string id, string bundle, string? pidFile, int preserveFds, bool waitForStart, bool noPivot, string? consoleSocket, out SpawnedProcess? child, bool detach = false, ContainerIo? io = null,
        Action<Microsoft.Win32.SafeHandles.SafeFileHandle>? takeConsole = null)
    {
        if (!IsValidId(id))
        {
            throw new ArgumentException($"'{id}' is not a valid container id; use letters, digits, '-', '_' and '.'");
        }
        if (Store.Exists(id))
        {
            throw new InvalidOperationException($"container '{id}' already exists; delete it first or pick another id");
        }
        bundle = Path.GetFullPath(bundle);
        var spec = SpecReader.Read(bundle);
        if (spec.Process!.Terminal && consoleSocket is null && takeConsole is null && (waitForStart || detach))
        {
            throw new SpecException("process.terminal: a detached container's terminal goes to --console-socket; pass one (as containerd does) or run in the foreground");
        }
        var cgroupPath = spec.Linux!.CgroupsPath is { Length: > 0 } cp ? cp : $"/orchestrator/{id}";
        if (cgroupPath.Contains(':', StringComparison.Ordinal))
        {
            throw new SpecException($"linux.cgroupsPath: '{cgroupPath}' is a systemd slice path; this runtime manages cgroupfs paths (drop --systemd-cgroup)");
        }
        var cgroup = CgroupFactory.Open(cgroupPath);
        Directory.CreateDirectory(Store.Dir(id));
        var rootfs = Path.GetFullPath(Path.Combine(bundle, spec.Root!.Path));
        var record = new ContainerRecord
        {
            Id = id,
            Bundle = bundle,
            Rootfs = Path.GetFullPath(Path.Combine(bundle, spec.Root!.Path)),
            CgroupPath = cgroup.Path,
            Created = DateTimeOffset.UtcNow,
            Annotations = spec.Annotations,
        };
        try
        {
            File.Copy(Path.Combine(bundle, "config.json"), SpecCopy(id));
            // Device nodes the spec asks for are allowed in the devices cgroup, as runc does;
            // not fifos ('p'): the devices controller knows only a, b and c (runc skips them too).
            var resources = spec.Linux.Resources ?? new ResourcesSpec();
            // A device the spec's own rules already name keeps the access they give (a read-only serial port stays so).
            foreach (var device in (spec.Linux.Devices ?? []).Where(d => d.Type != "p"))
            {
                var type = device.Type == "u" ? "c" : device.Type;
                if (resources.Devices?.Any(r => r.Type == type && r.Major == device.Major && r.Minor == device.Minor) == true)
                {
                    continue;
                }
                (resources.Devices ??= []).Add(new DeviceRuleSpec { Allow = true, Type = device.Type == "u" ? "c" : device.Type, Major = device.Major, Minor = device.Minor, Access = "rwm" });
            }
            cgroup.Create(resources);
            record.OomKillsAtCreate = cgroup.Stats().OomKills;
            foreach (var warning in cgroup.Warnings)
            {
                Console.Error.WriteLine($"warning: {warning}");
            }
            var plan = ContainerPlan.Build(spec, bundle, cgroup);
            plan.NoPivot = noPivot;
            if (plan.ForkAfterJoin && !waitForStart && NativeSpawn.SetSubreaper() != 0)
            {
                // A joined pid namespace makes the process our grandchild: it must come back to us to be waited on.
                throw LinuxException.FromLastError("prctl(PR_SET_CHILD_SUBREAPER)");
            }
            var creationHooks = (spec.Hooks?.Prestart ?? []).Concat(spec.Hooks?.CreateRuntime ?? []).ToList();
            Action<int>? beforeStart = creationHooks.Count == 0 ? null : pid =>
                Hooks.Run("createRuntime", creationHooks, new ContainerStateSpec { Id = id, Status = "creating", Pid = pid, Bundle = bundle, Annotations = spec.Annotations });
            string? fifo = null;
            if (waitForStart)
            {
                fifo = Store.ExecFifo(id);
                if (mkfifo(fifo, 0x180) != 0)
                {
                    throw LinuxException.FromLastError("mkfifo", fifo);
                }
            }
            child = Spawner.Spawn(plan, cgroup, fifo, preserveFds, beforeStart, pid =>
                JsonSerializer.Serialize(new ContainerStateSpec { Id = id, Status = "creating", Pid = pid, Bundle = bundle, Annotations = spec.Annotations }, SpecJsonContext.Default.ContainerStateSpec), io);
            if (child.ConsoleMaster is { } master && consoleSocket is not null)
            {
                ConsoleRelay.SendToSocket(master, consoleSocket);
                master.Dispose();
                child.ConsoleMaster = null;
            }
            if (child.ConsoleMaster is { } own && takeConsole is not null)
            {
                child.ConsoleMaster = null;
                takeConsole(own);
            }
            record.Pid = child.Pid;
            record.BornInCgroup = child.BornInCgroup;
            record.PidStartTime = Orchestrator.Linux.ProcessStat.StartTime(child.Pid) ?? 0;
            Store.Save(record);
            if (pidFile is not null)
            {
                var temp = pidFile + ".tmp";
                File.WriteAllText(temp, child.Pid.ToString(CultureInfo.InvariantCulture));
                File.Move(temp, pidFile, overwrite: true);
            }
            if (waitForStart)
            {
                child.Dispose();
                child = null;
            }
            return record;
        }
        catch
        {
            try
            {
                cgroup.Remove();
            }
            catch (CgroupException)
            {
            }
            UnmountSharedNamespaceMounts(spec, rootfs);
            if (Directory.Exists(Store.Dir(id)))
            {
                Store.Remove(id);
            }
            // runtime.md#lifecycle: a failed creation continues the lifecycle at the container's
            // destruction, which ends with the poststop hooks (warnings only).
            if (spec.Hooks?.Poststop is { Count: > 0 } poststop)
            {
                Hooks.Run("poststop", poststop, new ContainerStateSpec { Id = id, Status = "stopped", Bundle = bundle, Annotations = spec.Annotations }, warnOnly: true);
            }
            throw;
        }
    }

    /// <summary>
    /// Runs a new process in a running container: its namespaces, its cgroup, the given process
    /// settings. Returns the process's exit status, or 0 at once with <paramref name="detach"/>.
    /// </summary>
    public int Exec(string id, ProcessSpec process, bool detach, string? pidFile, string? consoleSocket = null)
    {
        if (process.Terminal && consoleSocket is null && detach)
        {
            throw new SpecException("process.terminal: a detached exec's terminal goes to --console-socket; pass one or run in the foreground");
        }
        var (record, plan) = ExecPlan(id, process);
        // In a pid namespace the shim forks once more after joining it; that fork is our own
        // child (CLONE_PARENT). Being a subreaper as well catches anything it leaves behind.
        if (!detach && NativeSpawn.SetSubreaper() != 0)
        {
            throw LinuxException.FromLastError("prctl(PR_SET_CHILD_SUBREAPER)");
        }
        using var child = Spawner.Spawn(plan, CgroupFactory.Open(record.CgroupPath), execFifo: null);
        if (pidFile is not null)
        {
            File.WriteAllText(pidFile, child.Pid.ToString(CultureInfo.InvariantCulture));
        }
        if (child.ConsoleMaster is { } master && consoleSocket is not null)
        {
            ConsoleRelay.SendToSocket(master, consoleSocket);
            master.Dispose();
            child.ConsoleMaster = null;
        }
        if (detach)
        {
            return 0;
        }
        using var relay = child.ConsoleMaster is { } pty ? ConsoleRelay.Start(pty) : null;
        var exitStatus = child.WaitForExit();
        relay?.Finish();
        return exitStatus;
    }

    /// <summary>
    /// Starts a process in a running container with the given stdio and hands it back (the
    /// caller waits on it, with its own timeout). The calling process becomes a child
    /// subreaper: in a pid namespace the process is a grandchild and must come back to us.
    /// </summary>
    public SpawnedProcess LaunchExec(string id, ProcessSpec process, ContainerIo io)
    {
        var (record, plan) = ExecPlan(id, process);
        if (NativeSpawn.SetSubreaper() != 0)
        {
            throw LinuxException.FromLastError("prctl(PR_SET_CHILD_SUBREAPER)");
        }
        return Spawner.Spawn(plan, CgroupFactory.Open(record.CgroupPath), execFifo: null, io: io);
    }

    /// <summary>The plan of a new process in running container <paramref name="id"/>: its namespaces, root and spec.</summary>
    private (ContainerRecord Record, ContainerPlan Plan) ExecPlan(string id, ProcessSpec process)
    {
        var record = Store.Load(id);
        var status = Status(record);
        if (status != "running")
        {
            throw new InvalidOperationException($"container '{id}' is {status}; exec needs a running container");
        }
        var spec = TryReadSpec(record) ?? SpecReader.Read(record.Bundle);
        spec.Process = process;
        return (record, ContainerPlan.ForExec(record.Pid, record.Rootfs, spec));
    }

    /// <summary>created (waiting on the exec fifo), running, paused, or stopped.</summary>
    public string Status(ContainerRecord record)
    {
        if (record.Pid <= 0 || !IsOurProcess(record))
        {
            return "stopped";
        }
        if (File.Exists(Store.ExecFifo(record.Id)))
        {
            return "created";
        }
        var root = CgroupFactory.DefaultRoot;
        var frozen = CgroupFactory.Read(Path.Join(root, "freezer", record.CgroupPath, "freezer.state")) == "FROZEN"
            || CgroupFactory.Read(Path.Join(root, record.CgroupPath, "cgroup.freeze")) == "1";
        return frozen ? "paused" : "running";
    }

    public ContainerStateSpec State(string id)
    {
        var record = Store.Load(id);
        var status = Status(record);
        return new ContainerStateSpec
        {
            Id = id,
            Status = status,
            Pid = status == "stopped" ? 0 : record.Pid,
            Bundle = record.Bundle,
            Annotations = record.Annotations,
            ExitStatus = status == "stopped" ? record.ExitStatus : null,
        };
    }

    public string StateJson(string id) => JsonSerializer.Serialize(State(id), SpecJsonContext.Default.ContainerStateSpec);

    public IReadOnlyList<ContainerListEntry> List() => Store.Ids().Select(id =>
    {
        var r = Store.Load(id);
        var status = Status(r);
        return new ContainerListEntry { Id = id, Pid = status == "stopped" ? 0 : r.Pid, Status = status, Bundle = r.Bundle, Rootfs = r.Rootfs, Created = r.Created, Annotations = r.Annotations };
    }).ToArray();

    public void Kill(string id, int signal, bool all)
    {
        var record = Store.Load(id);
        if (Status(record) == "stopped")
        {
            throw new InvalidOperationException($"container '{id}' is not running");
        }
        if (all)
        {
            foreach (var pid in CgroupFactory.Open(record.CgroupPath).Pids())
            {
                kill(pid, signal);
            }
            return;
        }
        if (kill(record.Pid, signal) != 0)
        {
            throw LinuxException.FromLastError("kill", $"container '{id}' (pid {record.Pid})");
        }
    }

    /// <summary>Removes a stopped container; with force, kills whatever still runs in its cgroup first.</summary>
    public void Delete(string id, bool force)
    {
        var record = Store.Load(id);
        var cgroup = CgroupFactory.Open(record.CgroupPath);
        if (Status(record) != "stopped")
        {
            if (!force)
            {
                throw new InvalidOperationException($"container '{id}' is {Status(record)}; stop it first or delete with --force");
            }
            try
            {
                cgroup.Thaw();
            }
            catch (CgroupException)
            {
            }
            for (var attempt = 0; attempt < 200; attempt++)
            {
                var pids = cgroup.Pids();
                if (pids.Count == 0 && !IsOurProcess(record))
                {
                    break;
                }
                foreach (var pid in pids)
                {
                    kill(pid, 9);
                }
                kill(record.Pid, 9);
                Thread.Sleep(5);
            }
        }
        cgroup.Remove();
        var spec = TryReadSpec(record);
        UnmountSharedNamespaceMounts(spec, record.Rootfs);
        var hooks = spec?.Hooks?.Poststop;
        var state = new ContainerStateSpec { Id = id, Status = "stopped", Pid = 0, Bundle = record.Bundle, Annotations = record.Annotations };
        Store.Remove(id);
        if (hooks is { Count: > 0 })
        {
            Hooks.Run("poststop", hooks, state, warnOnly: true);
        }
    }

    /// <summary>Alive (not a zombie) and the same process as at creation, not a later one with its pid.</summary>
    public static bool IsOurProcess(ContainerRecord record)
        => Orchestrator.Linux.ProcessStat.IsSame(record.Pid, record.PidStartTime);

}

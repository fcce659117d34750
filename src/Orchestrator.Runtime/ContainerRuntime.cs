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
    public ContainerRecord Create(string id, string bundle, string? pidFile = null, int preserveFds = 0, bool noPivot = false, string? consoleSocket = null, ContainerIo? io = null)
        => CreateCore(id, bundle, pidFile, preserveFds, waitForStart: true, noPivot, consoleSocket, out _, io: io);

    public void Start(string id)
    {
        var record = Store.Load(id);
        var status = Status(record);
        if (status != "created")
        {
            throw new InvalidOperationException($"container '{id}' is {status}, not created; only a created container can be started");
        }
        // Opening the fifo for reading releases the child, which is blocked opening it for writing.
        var fifo = Store.ExecFifo(id);
        using (var stream = new FileStream(fifo, FileMode.Open, FileAccess.Read))
        {
            stream.ReadByte();
        }
        File.Delete(fifo);
        RunPoststart(id, record);
    }

    /// <summary>poststart failures are warnings: the container is already running (the spec says so).</summary>
    private void RunPoststart(string id, ContainerRecord record)
    {
        var hooks = TryReadHooks(record)?.Poststart;
        if (hooks is { Count: > 0 })
        {
            try
            {
                Hooks.Run("poststart", hooks, State(id));
            }
            catch (InvalidOperationException e)
            {
                Console.Error.WriteLine($"warning: {e.Message}");
            }
        }
    }

    private static HooksSpec? TryReadHooks(ContainerRecord record)
    {
        try
        {
            return SpecReader.Read(record.Bundle).Hooks;
        }
        catch (SpecException)
        {
            return null; // the bundle changed or went away since create: nothing to run
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
    public SpawnedProcess Launch(string id, string bundle, ContainerIo io)
    {
        CreateCore(id, bundle, pidFile: null, preserveFds: 0, waitForStart: false, noPivot: false, consoleSocket: null, out var child, detach: true, io);
        return child!;
    }

    private ContainerRecord CreateCore(string id, string bundle, string? pidFile, int preserveFds, bool waitForStart, bool noPivot, string? consoleSocket, out SpawnedProcess? child, bool detach = false, ContainerIo? io = null)
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
        if (spec.Process!.Terminal && consoleSocket is null && (waitForStart || detach))
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
            // Device nodes the spec asks for are allowed in the devices cgroup, as runc does.
            var resources = spec.Linux.Resources ?? new ResourcesSpec();
            foreach (var device in spec.Linux.Devices ?? [])
            {
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
            var creationHooks = (spec.Hooks?.Prestart ?? []).Concat(spec.Hooks?.CreateRuntime ?? []).ToList();
            Action<int>? beforeStart = creationHooks.Count == 0 ? null : pid =>
                Hooks.Run("createRuntime", creationHooks, new ContainerStateSpec { Id = id, Status = "creating", Pid = pid, Bundle = bundle, Annotations = spec.Annotations });
            string? fifo = null;
            if (waitForStart)
            {
                fifo = Store.ExecFifo(id);
                // 0622, as runc's: the child opens it for writing after it has become the
                // process's user, which need not be root nor have CAP_DAC_OVERRIDE (--user
                // 65534:65534), or is root of a user namespace that does not map ours.
                // Explicitly, whatever the umask.
                if (mkfifo(fifo, 0x192) != 0)
                {
                    throw LinuxException.FromLastError("mkfifo", fifo);
                }
                File.SetUnixFileMode(fifo, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupWrite | UnixFileMode.OtherWrite);
            }
            child = Spawner.Spawn(plan, cgroup, fifo, preserveFds, beforeStart, pid =>
                JsonSerializer.Serialize(new ContainerStateSpec { Id = id, Status = "creating", Pid = pid, Bundle = bundle, Annotations = spec.Annotations }, SpecJsonContext.Default.ContainerStateSpec), io);
            if (child.ConsoleMaster is { } master && consoleSocket is not null)
            {
                ConsoleRelay.SendToSocket(master, consoleSocket);
                master.Dispose();
                child.ConsoleMaster = null;
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
            if (Directory.Exists(Store.Dir(id)))
            {
                Store.Remove(id);
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
        var spec = SpecReader.Read(record.Bundle);
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
        var hooks = TryReadHooks(record)?.Poststop;
        var state = new ContainerStateSpec { Id = id, Status = "stopped", Pid = 0, Bundle = record.Bundle, Annotations = record.Annotations };
        Store.Remove(id);
        if (hooks is { Count: > 0 })
        {
            try
            {
                Hooks.Run("poststop", hooks, state);
            }
            catch (InvalidOperationException e)
            {
                Console.Error.WriteLine($"warning: {e.Message}");
            }
        }
    }

    /// <summary>Alive (not a zombie) and the same process as at creation, not a later one with its pid.</summary>
    public static bool IsOurProcess(ContainerRecord record)
        => Orchestrator.Linux.ProcessStat.IsSame(record.Pid, record.PidStartTime);

}

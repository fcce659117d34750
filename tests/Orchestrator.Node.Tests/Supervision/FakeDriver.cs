using Orchestrator.Api.Workloads;
using Orchestrator.Images.Oci;
using Orchestrator.Images.Registry;
using Orchestrator.Images.Store;
using Orchestrator.Node.Drivers;
using Orchestrator.Node.Images;
using Orchestrator.Runtime.Cgroups;

namespace Orchestrator.Node.Tests.Supervision;

/// <summary>
/// A driver with no processes: a started container "runs" until the test ends it (<see cref="Exit"/>),
/// a signal ends it as a real one would (unless told to ignore SIGTERM), and it outlives the
/// supervisor that started it, as real containers outlive orchd. Exits are reported from another
/// thread, as the real exit watcher does. The test sets what starts and probes do.
/// </summary>
internal sealed class FakeDriver(TimeProvider clock) : ITaskDriver
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, FakeTask> _tasks = new(StringComparer.Ordinal);
    private readonly List<string> _starts = [];
    private readonly List<(string Id, int Signal)> _signals = [];
    private readonly Dictionary<string, int> _execs = new(StringComparer.Ordinal);
    private int _nextPid = 1000;

    public string Name => "fake";
    public WorkloadRuntime Backend => WorkloadRuntime.Native;

    public FakeImageSource Images { get; } = new();

    /// <summary>An exception for <see cref="Start"/> to throw (by container and attempt, from 1), or null to start.</summary>
    public Func<string, int, Exception?>? StartFails { get; set; }

    /// <summary>An exec's exit code (by container, the command's first word, and that command's exec number from 1): 0 passes.</summary>
    public Func<string, string, int, int> ExecExitCode { get; set; } = (_, _, _) => 0;

    /// <summary>The CPU time a running container has used by now.</summary>
    public Func<string, long> CpuNanoseconds { get; set; } = _ => 0;

    /// <summary>Runs right after <see cref="Recover"/> handed out a handle (a container that dies during recovery).</summary>
    public Action<string>? AfterRecover { get; set; }

    /// <summary>Containers that ignore SIGTERM (only SIGKILL ends them).</summary>
    public HashSet<string> IgnoreSigterm { get; } = new(StringComparer.Ordinal);

    public TaskHandle Start(TaskConfig config)
    {
        lock (_lock)
        {
            var attempt = _starts.Count(s => s == config.Id) + 1;
            _starts.Add(config.Id);
            if (StartFails?.Invoke(config.Id, attempt) is { } failure)
            {
                throw failure;
            }
            if (_tasks.TryGetValue(config.Id, out var old) && old.Alive)
            {
                throw new InvalidOperationException($"fake driver: container {config.Id} is already running (pid {old.Handle.Pid})");
            }
            var pid = ++_nextPid;
            var handle = new TaskHandle(config.Id, pid, (ulong)pid * 31, IsChild: true);
            _tasks[config.Id] = new FakeTask(handle);
            return handle;
        }
    }

    public TaskHandle? Recover(string id)
    {
        TaskHandle? handle;
        lock (_lock)
        {
            handle = _tasks.TryGetValue(id, out var task) && task.Alive ? task.Handle : null;
        }
        if (handle is not null)
        {
            AfterRecover?.Invoke(id);
        }
        return handle;
    }

    public void Watch(TaskHandle handle, Action<TaskHandle, TaskExit> exited)
    {
        TaskExit? already = null;
        lock (_lock)
        {
            if (_tasks.TryGetValue(handle.Id, out var task) && task.Handle == handle && task.Alive)
            {
                task.Watcher = exited;
            }
            else
            {
                // Watching a process that has already ended reports its end at once (a pidfd does so).
                already = _tasks.TryGetValue(handle.Id, out var ended) && ended.Handle == handle && ended.Exit is { } exit
                    ? exit : new TaskExit(null, false, clock.GetUtcNow());
            }
        }
        if (already is { } report)
        {
            _ = Task.Run(() => exited(handle, report));
        }
    }

    public void Signal(string id, int signal, bool all)
    {
        lock (_lock)
        {
            _signals.Add((id, signal));
        }
        if (signal == 9 || (signal == 15 && !IgnoreSigterm.Contains(id)))
        {
            Exit(id, 128 + signal);
        }
    }

    public void Destroy(string id)
    {
        Exit(id, 137);
        lock (_lock)
        {
            _tasks.Remove(id);
        }
    }

    public Task<InteractiveProcess> ExecInteractiveAsync(string id, IReadOnlyList<string> command, InteractiveOptions options, CancellationToken cancellationToken)
        => throw new NotSupportedException("the fake driver runs no processes");

    public Task<ExecExit> ExecStreamAsync(string id, IReadOnlyList<string> command, ExecOutputSink output, TimeSpan timeout, CancellationToken cancellationToken)
    {
        int count;
        var key = id + " " + command[0];
        lock (_lock)
        {
            count = _execs[key] = _execs.GetValueOrDefault(key) + 1;
        }
        return Task.FromResult(new ExecExit(ExecExitCode(id, command[0], count), false));
    }

    public CgroupStats? Stats(string id) => IsRunning(id) ? new CgroupStats(1 << 20, 0, CpuNanoseconds(id), 1, 0) : null;

    public IReadOnlyList<string> List()
    {
        lock (_lock)
        {
            return [.. _tasks.Keys];
        }
    }

    public IImageSource? ImagesFor(WorkloadRuntime? runtime) => Images;

    // ---------------------------------------------------------------- what the test does and sees

    /// <summary>The container's process ends with <paramref name="code"/>; its watcher hears of it from another thread.</summary>
    public void Exit(string id, int? code)
    {
        Action<TaskHandle, TaskExit>? watcher;
        TaskHandle handle;
        TaskExit exit;
        lock (_lock)
        {
            if (!_tasks.TryGetValue(id, out var task) || !task.Alive)
            {
                return;
            }
            task.Alive = false;
            exit = task.Exit = new TaskExit(code, false, clock.GetUtcNow());
            watcher = task.Watcher;
            task.Watcher = null;
            handle = task.Handle;
        }
        if (watcher is not null)
        {
            _ = Task.Run(() => watcher(handle, exit));
        }
    }

    /// <summary>The container is gone without a trace and without a word (a reboot while orchd was away).</summary>
    public void Vanish(string id)
    {
        lock (_lock)
        {
            _tasks.Remove(id);
        }
    }

    /// <summary>A container the runtime knows and no record names (a leftover of a crash).</summary>
    public void Leave(string id)
    {
        lock (_lock)
        {
            var pid = ++_nextPid;
            _tasks[id] = new FakeTask(new TaskHandle(id, pid, (ulong)pid * 31, IsChild: false));
        }
    }

    public bool IsRunning(string id)
    {
        lock (_lock)
        {
            return _tasks.TryGetValue(id, out var task) && task.Alive;
        }
    }

    public int? PidOf(string id)
    {
        lock (_lock)
        {
            return _tasks.TryGetValue(id, out var task) && task.Alive ? task.Handle.Pid : null;
        }
    }

    public int Starts(string id)
    {
        lock (_lock)
        {
            return _starts.Count(s => s == id);
        }
    }

    /// <summary>How often <paramref name="program"/> was exec'd in the container (probes).</summary>
    public int Execs(string id, string program)
    {
        lock (_lock)
        {
            return _execs.GetValueOrDefault(id + " " + program);
        }
    }

    public List<int> SignalsTo(string id)
    {
        lock (_lock)
        {
            return _signals.Where(s => s.Id == id).Select(s => s.Signal).ToList();
        }
    }

    private sealed class FakeTask(TaskHandle handle)
    {
        public TaskHandle Handle { get; } = handle;
        public bool Alive { get; set; } = true;
        public TaskExit? Exit { get; set; }
        public Action<TaskHandle, TaskExit>? Watcher { get; set; }
    }
}

/// <summary>An image source that has every image (with a command) and mounts nothing: a rootfs is an empty directory.</summary>
internal sealed class FakeImageSource : IImageSource
{
    private readonly Lock _lock = new();
    private readonly List<string> _removed = [];

    public string Store => "fake";

    /// <summary>Images the source does not have (a pull of them fails).</summary>
    public HashSet<string> Missing { get; } = new(StringComparer.Ordinal);

    public List<string> RemovedRootfs
    {
        get
        {
            lock (_lock)
            {
                return [.. _removed];
            }
        }
    }

    public Task<SourceImage> EnsureAsync(string reference, ImageStore? orchdStore, IImagePuller? fallback, CancellationToken cancellationToken = default)
        => Missing.Contains(reference)
            ? throw new ImageException(ErrorKind.NotFound, $"image '{reference}' is not in the fake source")
            : Task.FromResult(Image(reference));

    public Task<string> MountRootfsAsync(string container, SourceImage image, string target, CancellationToken cancellationToken = default)
    {
        Directory.CreateDirectory(target);
        return Task.FromResult(target);
    }

    public Task RemoveRootfsAsync(string container, string target, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            _removed.Add(container);
        }
        return Task.CompletedTask;
    }

    public Task<IReadOnlyList<SourceImage>> ListAsync(CancellationToken cancellationToken = default) => Task.FromResult<IReadOnlyList<SourceImage>>([]);

    public Task<SourceImage?> TryOpenAsync(string name, CancellationToken cancellationToken = default) => Task.FromResult<SourceImage?>(null);

    public Task<SourceImage> PullAsync(string reference, IProgress<PullProgress>? progress = null, CancellationToken cancellationToken = default)
        => EnsureAsync(reference, null, null, cancellationToken);

    public Task<bool> RemoveAsync(string name, CancellationToken cancellationToken = default) => Task.FromResult(false);

    private static SourceImage Image(string name)
        => new(name, "sha256:" + new string('0', 64), new ImageConfigFile { Os = "linux", Architecture = "amd64", Config = new ImageRunConfig { Cmd = ["/bin/app"] } }, "top");
}

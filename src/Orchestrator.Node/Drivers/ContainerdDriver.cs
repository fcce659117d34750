using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using Orchestrator.Api.Workloads;
using Orchestrator.Containerd;
using Orchestrator.Containerd.Api.Types;
using Orchestrator.Linux;
using Orchestrator.Runtime.Cgroups;
using Orchestrator.Runtime.Spec;
using static Orchestrator.Linux.Libc;

namespace Orchestrator.Node.Drivers;

/// <summary>
/// Runs containers through containerd (runc under containerd's runc v2 shim), for hosts where
/// orchd's own runtime cannot run. Everything above the driver stays the same:
/// <list type="bullet">
/// <item>The container is created from orchd's own bundle: the OCI spec whose root is a rootfs
/// orchd mounted: by default an active snapshot on the image in containerd's own image store
/// (<see cref="ContainerdImages"/>: pulled through containerd's content service, unpacked by its
/// snapshotter), or, with containerd_images: orchd, a rootfs from orchd's image store.</item>
/// <item>stdout and stderr go to the same FIFOs orchd's log pump reads: the shim opens them by
/// path (and holds a read end itself, as orchd's native runtime does), so logs survive an orchd
/// restart the same way.</item>
/// <item>The shim, not orchd, is the task's parent: containers outlive orchd, and containerd
/// keeps each exit status until the task is deleted, so even a recovered container's exit has
/// a code.</item>
/// </list>
/// </summary>
public sealed class ContainerdDriver : ITaskDriver, IDisposable
{
    private const string PidStartLabel = "org.orchestrator.pid-start-time";
    private readonly ContainerdClient _client;
    private readonly string _execDir;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<string, string> _cgroups = new(StringComparer.Ordinal);

    private readonly IReadOnlyDictionary<string, string> _namespaceLabels;
    private volatile bool _namespaceMade;

    /// <param name="runDir">Where exec FIFOs are made (volatile, orchd's run dir).</param>
    /// <param name="namespaceLabels">Labels of orchd's containerd namespace, made with its first container.</param>
    /// <param name="images">containerd's images and snapshots for the rootfs, or null for orchd's image store.</param>
    public ContainerdDriver(ContainerdClient client, string runDir, IReadOnlyDictionary<string, string>? namespaceLabels = null, ContainerdImages? images = null)
    {
        _client = client;
        Images = images;
        _execDir = Path.Combine(runDir, "containerd-exec");
        _namespaceLabels = namespaceLabels ?? new Dictionary<string, string>();
    }

    public string Name => WireNames.Of(Backend);

    public WorkloadRuntime Backend => WorkloadRuntime.Containerd;

    public ContainerdClient Client => _client;

    /// <summary>containerd's images and snapshots, when containers run from them (containerd_images: containerd).</summary>
    public ContainerdImages? Images { get; }

    public Orchestrator.Node.Images.IImageSource? ImagesFor(WorkloadRuntime? runtime) => Images;

    public TaskHandle Start(TaskConfig config)
    {
        var id = config.Id;
        if (!_namespaceMade)
        {
            _client.EnsureNamespaceAsync(_namespaceLabels).GetAwaiter().GetResult();
            _namespaceMade = true;
        }
        // A container left from an earlier run (exited, or orchd died between create and start) would refuse the id.
        Destroy(id);
        var spec = File.ReadAllBytes(Path.Combine(config.Bundle, "config.json"));
        var labels = new Dictionary<string, string>(StringComparer.Ordinal) { ["org.orchestrator.bundle"] = config.Bundle };
        _client.CreateContainer(id, spec, labels);
        try
        {
            RememberCgroup(id, spec);
            // A terminal: the shim makes it and copies it into tty.fifo (stderr is part of it).
            var pid = config.Tty
                ? (int)_client.CreateTask(id, FifoPath(config.TerminalOutput), "", config.Stdin >= 0 ? FifoPath(config.Stdin) : "", terminal: true)
                : (int)_client.CreateTask(id, FifoPath(config.Stdout), FifoPath(config.Stderr), config.Stdin >= 0 ? FifoPath(config.Stdin) : "");
            if ((config.Stdin >= 0 || config.Tty) && config.FifoDir is not null)
            {
                // The shim reads stdin.fifo; at its last writer's close it would close the container's
                // stdin (and a terminal with it): a holder keeps a writer across orchd restarts, and
                // keeps what the terminal wrote last until orchd has read it.
                Orchestrator.Runtime.Spawn.StdioHolder.Start(Environment.ProcessPath ?? "orchd", config.FifoDir, -1, pid);
            }
            // Read while the process waits to be started (it cannot have exited yet), and kept on the
            // container: a later orchd can then tell this process's exit from a recycled pid's.
            var started = Orchestrator.Linux.ProcessStat.StartTime(pid) ?? 0;
            _client.LabelContainer(id, new Dictionary<string, string> { [PidStartLabel] = started.ToString(CultureInfo.InvariantCulture) });
            config.BeforeStart?.Invoke(pid);
            _client.StartTask(id);
            return new TaskHandle(id, pid, started, IsChild: false);
        }
        catch
        {
            try
            {
                Destroy(id);
            }
            catch (ContainerdException)
            {
                // containerd went away meanwhile: the start's own error is the one to tell; the next start cleans up.
            }
            throw;
        }
    }

    public void ResizeTerminal(string id, string fifoDir, ushort rows, ushort cols)
    {
        try
        {
            _client.ResizePty(id, "", cols, rows);
        }
        catch (ContainerdException e)
        {
            throw new InvalidOperationException($"container '{id}' has no terminal to resize (it runs without tty: true): {e.Message}", e);
        }
    }

    /// <summary>The FIFO behind a descriptor orchd opened: the shim opens the same FIFO by its path.</summary>
    private static string FifoPath(int fd)
    {
        var path = new FileInfo($"/proc/self/fd/{fd.ToString(CultureInfo.InvariantCulture)}").LinkTarget;
        if (path is null || !path.StartsWith('/') || path.EndsWith(" (deleted)", StringComparison.Ordinal))
        {
            throw new IOException($"the containerd driver needs the container's output to go to a named FIFO, and fd {fd} is '{path}'");
        }
        return path;
    }

    /// <summary>
    /// The task as a previous orchd left it. A running one is checked against /proc (pid and start
    /// time). One that exited meanwhile is returned too, with the pid and start time recorded at
    /// its start: containerd still holds its exit status, so its <see cref="Watch"/> reports the
    /// real code at once (the native runtime can only say "unknown" there).
    /// </summary>
    public TaskHandle? Recover(string id)
    {
        var task = _client.GetTask(id);
        if (task is null || task.Pid == 0)
        {
            return null;
        }
        var pid = (int)task.Pid;
        if (task.Status is Status.Running or Status.Paused or Status.Pausing)
        {
            return Orchestrator.Linux.ProcessStat.StartTime(pid) is { } start ? new TaskHandle(id, pid, start, IsChild: false) : null;
        }
        if (task.Status is Status.Stopped
            && _client.GetContainer(id)?.Labels.GetValueOrDefault(PidStartLabel) is { } label
            && ulong.TryParse(label, NumberStyles.None, CultureInfo.InvariantCulture, out var recorded) && recorded != 0)
        {
            return new TaskHandle(id, pid, recorded, IsChild: false);
        }
        return null;
    }

    public void Watch(TaskHandle handle, Action<TaskHandle, TaskExit> exited)
        => _ = Task.Run(async () =>
        {
            var delay = TimeSpan.FromMilliseconds(250);
            while (!_stopping.IsCancellationRequested)
            {
                try
                {
                    var (status, at) = await _client.WaitAsync(handle.Id, cancellationToken: _stopping.Token).ConfigureAwait(false);
                    Report(new TaskExit(status, OomKilled(handle.Id), at));
                    return;
                }
                catch (ContainerdException e) when (e.IsNotFound)
                {
                    Report(new TaskExit(null, false, DateTimeOffset.UtcNow)); // deleted under us: no code to tell
                    return;
                }
                catch (ContainerdException) when (!_stopping.IsCancellationRequested)
                {
                    // containerd restarting (the shim, and the task, live on): wait for it again.
                    await Task.Delay(delay, CancellationToken.None).ConfigureAwait(false);
                    delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(5).Ticks));
                }
                catch (ContainerdException)
                {
                    return; // orchd is stopping: the task keeps running and the next orchd watches it
                }
            }

            void Report(TaskExit exit)
            {
                try
                {
                    exited(handle, exit);
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    Console.Error.WriteLine($"orchd: exit handler for '{handle.Id}' failed: {e.Message}");
                }
            }
        }, CancellationToken.None);

    public void Signal(string id, int signal, bool all) => _client.Kill(id, signal, all);

    public void Destroy(string id)
    {
        if (_client.GetTask(id) is { } task)
        {
            if (task.Status is Status.Paused or Status.Pausing)
            {
                Ignore(() => _client.Resume(id)); // a frozen process cannot die of its SIGKILL
            }
            if (task.Status is not Status.Stopped)
            {
                Ignore(() => _client.Kill(id, 9, all: true));
                Ignore(() => _client.WaitAsync(id, cancellationToken: new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token).GetAwaiter().GetResult());
            }
            _client.DeleteTask(id);
        }
        _client.DeleteContainer(id);
        _cgroups.TryRemove(id, out _);

        static void Ignore(Action action)
        {
            try
            {
                action();
            }
            catch (ContainerdException e) when (!e.IsUnavailable)
            {
            }
        }
    }

    public async Task<ExecExit> ExecStreamAsync(string id, IReadOnlyList<string> command, ExecOutputSink output, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var process = ProcessSpec(id);
        process.Args = [.. command];
        process.Terminal = false;
        var json = JsonSerializer.SerializeToUtf8Bytes(process, SpecJsonContext.Default.ProcessSpec);

        var execId = "exec-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(6));
        var dir = Directory.CreateDirectory(Path.Combine(_execDir, execId)).FullName;
        var stdout = Path.Combine(dir, "stdout");
        var stderr = Path.Combine(dir, "stderr");
        // Read ends first (non-blocking: no writer yet); EOF comes when the shim has copied the last byte.
        var outRead = OpenFifo(stdout);
        var errRead = OpenFifo(stderr);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        Task? pump = null;
        var deleted = false;
        try
        {
            _client.Exec(id, execId, json, stdout, stderr);
            pump = ExecOutput.PumpAsync(outRead, errRead, output, () => Volatile.Read(ref deleted), stop.Token);
            var wait = _client.WaitAsync(id, execId, stop.Token);
            _client.StartTask(id, execId);
            // The sink failing (its reader went away) ends the wait as a cancellation would.
            var deadline = Task.Delay(timeout, stop.Token);
            var first = await Task.WhenAny(wait, deadline, pump).ConfigureAwait(false);
            if (first == pump)
            {
                await pump.ConfigureAwait(false); // throws when the sink failed; else both outputs were closed early
                first = await Task.WhenAny(wait, deadline).ConfigureAwait(false);
            }
            cancellationToken.ThrowIfCancellationRequested();
            var exited = first == wait;
            if (!exited)
            {
                _client.Kill(id, 9, all: false, execId);
            }
            var (code, _) = await wait.ConfigureAwait(false);
            _client.DeleteProcess(id, execId);
            Volatile.Write(ref deleted, true);
            await pump.ConfigureAwait(false);
            return new ExecExit(exited ? code : 137, !exited);
        }
        finally
        {
            if (!Volatile.Read(ref deleted))
            {
                try
                {
                    _client.Kill(id, 9, all: false, execId);
                    _client.DeleteProcess(id, execId);
                }
                catch (ContainerdException)
                {
                }
            }
            if (pump is null)
            {
                close(outRead);
                close(errRead);
            }
            else
            {
                await stop.CancelAsync().ConfigureAwait(false);
                try
                {
                    await pump.ConfigureAwait(false); // closes both
                }
                catch (Exception e) when (e is OperationCanceledException || cancellationToken.IsCancellationRequested)
                {
                }
            }
            TryDelete(dir);
        }
    }

    public Task<InteractiveProcess> ExecInteractiveAsync(string id, IReadOnlyList<string> command, InteractiveOptions options, CancellationToken cancellationToken)
    {
        var process = ProcessSpec(id);
        process.Args = [.. command];
        process.Terminal = options.Tty;
        ushort rows = options.Rows is > 0 ? options.Rows : (ushort)24, cols = options.Cols is > 0 ? options.Cols : (ushort)80;
        process.ConsoleSize = options.Tty ? new ConsoleSize { Height = rows, Width = cols } : null;
        var json = JsonSerializer.SerializeToUtf8Bytes(process, SpecJsonContext.Default.ProcessSpec);

        var execId = "exec-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(6));
        var dir = Directory.CreateDirectory(Path.Combine(_execDir, execId)).FullName;
        var stdout = Path.Combine(dir, "stdout");
        var stderr = options.Tty ? "" : Path.Combine(dir, "stderr");
        var stdin = options.Stdin ? Path.Combine(dir, "stdin") : "";
        int outRead = -1, errRead = -1, inWrite = -1;
        var created = false;
        try
        {
            outRead = OpenFifo(stdout);
            errRead = options.Tty ? -1 : OpenFifo(stderr);
            if (options.Stdin)
            {
                // Read and write, so the open does not wait for the shim; closing it is the shim's end-of-file.
                if (mkfifo(stdin, 0x180) != 0)
                {
                    throw LinuxException.FromLastError("mkfifo", stdin);
                }
                inWrite = open(stdin, O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
                if (inWrite < 0)
                {
                    throw LinuxException.FromLastError("open", stdin);
                }
            }
            _client.Exec(id, execId, json, stdout, stderr, stdin, options.Tty);
            created = true;
            var wait = _client.WaitAsync(id, execId, _stopping.Token);
            _client.StartTask(id, execId);
            return Task.FromResult<InteractiveProcess>(new ContainerdInteractive(this, id, execId, dir, wait, options, inWrite, outRead, errRead));
        }
        catch
        {
            foreach (var fd in (int[])[outRead, errRead, inWrite])
            {
                if (fd >= 0)
                {
                    close(fd);
                }
            }
            if (created)
            {
                try
                {
                    _client.Kill(id, 9, all: false, execId);
                    _client.DeleteProcess(id, execId);
                }
                catch (ContainerdException)
                {
                }
            }
            TryDelete(dir);
            throw;
        }
    }

    private static void TryDelete(string dir)
    {
        try
        {
            Directory.Delete(dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>An interactive exec through containerd: the shim's FIFOs (and, on a terminal, the pty it made and resizes).</summary>
    private sealed class ContainerdInteractive : InteractiveProcess
    {
        private readonly ContainerdDriver _driver;
        private readonly string _id, _execId, _dir;
        private readonly Task<int> _exited;

        public ContainerdInteractive(ContainerdDriver driver, string id, string execId, string dir, Task<(int Status, DateTimeOffset At)> wait, InteractiveOptions options, int input, int output, int errors)
        {
            (_driver, _id, _execId, _dir) = (driver, id, execId, dir);
            Tty = options.Tty;
            Input = input;
            Output = output;
            Errors = errors;
            _exited = ExitOf(wait);
        }

        private static async Task<int> ExitOf(Task<(int Status, DateTimeOffset At)> wait) => (await wait.ConfigureAwait(false)).Status;

        public override Task<int> Exited => _exited;

        public override void Resize(ushort rows, ushort cols)
        {
            if (Tty && rows > 0 && cols > 0 && !_exited.IsCompleted)
            {
                Ignore(() => _driver._client.ResizePty(_id, _execId, cols, rows));
            }
        }

        public override void Kill()
        {
            if (!_exited.IsCompleted)
            {
                Ignore(() => _driver._client.Kill(_id, 9, all: false, _execId));
            }
        }

        public override void CloseInput()
        {
            base.CloseInput();
            if (!Tty && !_exited.IsCompleted)
            {
                Ignore(() => _driver._client.CloseStdin(_id, _execId));
            }
        }

        public override async ValueTask DisposeAsync()
        {
            Kill();
            try
            {
                await _exited.WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
            }
            catch (Exception e) when (e is ContainerdException or TimeoutException or OperationCanceledException)
            {
            }
            Ignore(() => _driver._client.DeleteProcess(_id, _execId));
            await base.DisposeAsync().ConfigureAwait(false);
            TryDelete(_dir);
        }

        private static void Ignore(Action action)
        {
            try
            {
                action();
            }
            catch (ContainerdException)
            {
            }
        }
    }

    private static int OpenFifo(string path)
    {
        if (mkfifo(path, 0x180) != 0)
        {
            throw LinuxException.FromLastError("mkfifo", path);
        }
        var fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);
        return fd >= 0 ? fd : throw LinuxException.FromLastError("open", path);
    }

    /// <summary>The container's own process spec (env, user, cwd, capabilities): an exec runs as the container does.</summary>
    private ProcessSpec ProcessSpec(string id)
    {
        var container = _client.GetContainer(id) ?? throw new InvalidOperationException($"container '{id}' is not in containerd (namespace {_client.Namespace}); it is not running");
        var spec = JsonSerializer.Deserialize(container.Spec.Value.Span, SpecJsonContext.Default.RuntimeSpec);
        return spec?.Process ?? throw new InvalidOperationException($"container '{id}' has no process in its containerd spec");
    }

    private void RememberCgroup(string id, byte[] specJson)
    {
        if (JsonSerializer.Deserialize(specJson, SpecJsonContext.Default.RuntimeSpec)?.Linux?.CgroupsPath is { Length: > 0 } path)
        {
            _cgroups[id] = path;
        }
    }

    /// <summary>The cgroup runc made from the spec's cgroupsPath (cgroupfs driver): read directly, as for native containers.</summary>
    private string? CgroupPath(string id)
    {
        if (_cgroups.TryGetValue(id, out var path))
        {
            return path;
        }
        if (_client.GetContainer(id) is { } container)
        {
            RememberCgroup(id, container.Spec.Value.ToByteArray());
        }
        return _cgroups.GetValueOrDefault(id);
    }

    private bool OomKilled(string id) => Stats(id)?.OomKills > 0;

    /// <summary>
    /// From the container's cgroup when orchd sees it (cheap, local); otherwise (orchd in a
    /// container of its own, or a cgroup tree it cannot read) from containerd's Metrics, which the
    /// shim reads in the task's own cgroup.
    /// </summary>
    public CgroupStats? Stats(string id)
    {
        try
        {
            if (CgroupPath(id) is { } path && CgroupVisible(path))
            {
                return CgroupFactory.Open(path).Stats();
            }
        }
        catch (Exception e) when (e is IOException or CgroupException or UnauthorizedAccessException)
        {
        }
        try
        {
            return _client.TaskMetrics(id) is { } m ? new CgroupStats(m.MemoryBytes, m.MemoryPeakBytes, m.CpuNanoseconds, m.Pids, m.OomKills) : null;
        }
        catch (ContainerdException)
        {
            return null;
        }
    }

    private static bool CgroupVisible(string path)
    {
        var root = CgroupFactory.DefaultRoot;
        var relative = path.TrimStart('/');
        return File.Exists(Path.Combine(root, "cgroup.controllers"))
            ? Directory.Exists(Path.Combine(root, relative))
            : Directory.Exists(Path.Combine(root, "memory", relative));
    }

    public IReadOnlyList<string> List() => [.. _client.ListContainers().Select(c => c.Id)];


    public void Dispose()
    {
        _stopping.Cancel();
        _stopping.Dispose();
        Images?.Dispose();
    }
}

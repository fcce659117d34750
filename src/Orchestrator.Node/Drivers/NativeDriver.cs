using System.Text;
using Orchestrator.Api.Workloads;
using Orchestrator.Linux;
using Orchestrator.Runtime;
using Orchestrator.Runtime.Cgroups;
using Orchestrator.Runtime.Spawn;
using Orchestrator.Runtime.Spec;
using Orchestrator.Runtime.State;
using static Orchestrator.Linux.Libc;

namespace Orchestrator.Node.Drivers;

/// <summary>Runs containers with orchd's own OCI runtime, in-process (no runc, no shim per container).</summary>
public sealed class NativeDriver(string runtimeRoot, ExitWatcher watcher) : ITaskDriver
{
    private readonly ContainerRuntime _runtime = new(runtimeRoot);

    public string Name => WireNames.Of(Backend);

    public WorkloadRuntime Backend => WorkloadRuntime.Native;

    public ContainerRuntime Runtime => _runtime;

    public unsafe TaskHandle Start(TaskConfig config)
    {
        var devNull = open("/dev/null", O_RDONLY | O_CLOEXEC, 0);
        Microsoft.Win32.SafeHandles.SafeFileHandle? master = null;
        try
        {
            // A stale record (the container died while orchd was down) would refuse the id.
            Destroy(config.Id);
            // On a terminal the runtime makes its side the process's stdio; the master is ours to hand over.
            var io = config.Tty ? ContainerIo.Inherit : new ContainerIo(config.Stdin >= 0 ? config.Stdin : devNull, config.Stdout, config.Stderr);
            Action<Microsoft.Win32.SafeHandles.SafeFileHandle>? takeConsole = config.Tty ? m => master = m : null;
            if (config.BeforeStart is { } prepare)
            {
                // create, set up from outside (its namespaces exist, its program has not run), start.
                var created = _runtime.Create(config.Id, config.Bundle, io: io, takeConsole: takeConsole);
                try
                {
                    prepare(created.Pid);
                    HoldStdio(config, master, created.Pid);
                    _runtime.Start(config.Id);
                }
                catch
                {
                    Destroy(config.Id);
                    throw;
                }
                return new TaskHandle(config.Id, created.Pid, created.PidStartTime, IsChild: true);
            }
            using var child = _runtime.Launch(config.Id, config.Bundle, io, takeConsole);
            var record = _runtime.Store.Load(config.Id);
            try
            {
                HoldStdio(config, master, child.Pid);
            }
            catch
            {
                Destroy(config.Id);
                throw;
            }
            return new TaskHandle(config.Id, child.Pid, record.PidStartTime, IsChild: true);
        }
        finally
        {
            master?.Dispose(); // the holder has its own copy
            close(devNull);
        }
    }

    /// <summary>A container with a terminal: its master goes to a holder that outlives orchd (StdioHolder).</summary>
    private static void HoldStdio(TaskConfig config, Microsoft.Win32.SafeHandles.SafeFileHandle? master, int pid)
    {
        if (!config.Tty)
        {
            return; // stdin alone: the container holds its FIFO read-write itself
        }
        if (master is null || config.FifoDir is null)
        {
            throw new InvalidOperationException($"container '{config.Id}': the runtime made no terminal for tty: true");
        }
        StdioHolder.Start(Environment.ProcessPath ?? "orchd", config.FifoDir, (int)master.DangerousGetHandle(), pid);
    }

    public unsafe void ResizeTerminal(string id, string fifoDir, ushort rows, ushort cols)
    {
        var fd = open(Path.Combine(fifoDir, "resize.fifo"), O_WRONLY | O_NONBLOCK | O_CLOEXEC, 0);
        if (fd < 0)
        {
            throw new InvalidOperationException($"container '{id}' has no terminal to resize (it runs without tty: true, or its holder is gone)");
        }
        try
        {
            var line = Encoding.ASCII.GetBytes($"{rows} {cols}\n");
            fixed (byte* b = line)
            {
                _ = write(fd, b, (nuint)line.Length);
            }
        }
        finally
        {
            close(fd);
        }
    }

    public TaskHandle? Recover(string id)
    {
        if (!_runtime.Store.Exists(id))
        {
            return null;
        }
        var record = _runtime.Store.Load(id);
        return ContainerRuntime.IsOurProcess(record) ? new TaskHandle(id, record.Pid, record.PidStartTime, IsChild: false) : null;
    }

    public void Watch(TaskHandle handle, Action<TaskHandle, TaskExit> exited)
        => watcher.Watch(handle, (h, code) =>
        {
            var oom = false;
            try
            {
                if (_runtime.Store.Exists(h.Id))
                {
                    oom = CgroupFactory.Open(_runtime.Store.Load(h.Id).CgroupPath).Stats().OomKills > 0;
                }
            }
            catch (Exception e) when (e is IOException or CgroupException or UnauthorizedAccessException)
            {
            }
            exited(h, new TaskExit(code, oom, DateTimeOffset.UtcNow));
        });

    public void Signal(string id, int signal, bool all) => _runtime.Kill(id, signal, all);

    public void Destroy(string id)
    {
        if (_runtime.Store.Exists(id))
        {
            _runtime.Delete(id, force: true);
        }
    }

    public async Task<ExecExit> ExecStreamAsync(string id, IReadOnlyList<string> command, ExecOutputSink output, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var (outRead, outWrite) = Pipe();
        var (errRead, errWrite) = Pipe();
        SpawnedProcess process;
        var devNull = open("/dev/null", O_RDONLY | O_CLOEXEC, 0);
        try
        {
            var spec = SpecReader.Read(_runtime.Store.Load(id).Bundle).Process!;
            spec.Args = [.. command];
            spec.Terminal = false;
            process = _runtime.LaunchExec(id, spec, new ContainerIo(devNull, outWrite, errWrite));
        }
        catch
        {
            close(outRead);
            close(errRead);
            throw;
        }
        finally
        {
            close(devNull);
            close(outWrite);
            close(errWrite);
        }
        using (process)
        {
            var exited = false;
            var reaped = false;
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var pump = ExecOutput.PumpAsync(outRead, errRead, output, () => Volatile.Read(ref reaped), stop.Token);
            try
            {
                // The sink failing (its reader went away) ends the wait as a cancellation would.
                var waiting = WaitAsync(process.PidFd, timeout, stop.Token);
                if (await Task.WhenAny(waiting, pump).ConfigureAwait(false) == pump)
                {
                    await pump.ConfigureAwait(false); // throws when the sink failed; else both outputs were closed early
                }
                exited = await waiting.ConfigureAwait(false);
                if (!exited)
                {
                    kill(process.Pid, 9);
                }
                var code = process.WaitForExit();
                Volatile.Write(ref reaped, true);
                await pump.ConfigureAwait(false);
                return new ExecExit(exited ? code : 137, !exited);
            }
            finally
            {
                if (!Volatile.Read(ref reaped))
                {
                    kill(process.Pid, 9); // cancelled: no process of ours is left running or unreaped
                    process.WaitForExit();
                }
                await stop.CancelAsync().ConfigureAwait(false);
                try
                {
                    await pump.ConfigureAwait(false); // closes both pipes
                }
                catch (Exception e) when (e is OperationCanceledException || cancellationToken.IsCancellationRequested)
                {
                }
            }
        }
    }

    public Task<InteractiveProcess> ExecInteractiveAsync(string id, IReadOnlyList<string> command, InteractiveOptions options, CancellationToken cancellationToken)
    {
        var spec = SpecReader.Read(_runtime.Store.Load(id).Bundle).Process!;
        spec.Args = [.. command];
        spec.Terminal = options.Tty;
        spec.ConsoleSize = options.Tty ? new ConsoleSize { Height = options.Rows is > 0 ? options.Rows : (ushort)24, Width = options.Cols is > 0 ? options.Cols : (ushort)80 } : null;
        var devNull = open("/dev/null", O_RDWR | O_CLOEXEC, 0);
        var (inRead, inWrite) = options.Stdin && !options.Tty ? Pipe() : (-1, -1);
        var (outRead, outWrite) = options.Tty ? (-1, -1) : Pipe();
        var (errRead, errWrite) = options.Tty ? (-1, -1) : Pipe();
        SpawnedProcess process;
        try
        {
            // On a terminal the runtime makes its side the process's stdio (stdio given here would replace it).
            process = _runtime.LaunchExec(id, spec, options.Tty ? ContainerIo.Inherit
                : new ContainerIo(inRead >= 0 ? inRead : devNull, outWrite, errWrite));
        }
        catch
        {
            foreach (var fd in (int[])[inWrite, outRead, errRead])
            {
                if (fd >= 0)
                {
                    close(fd);
                }
            }
            throw;
        }
        finally
        {
            foreach (var fd in (int[])[devNull, inRead, outWrite, errWrite])
            {
                if (fd >= 0)
                {
                    close(fd);
                }
            }
        }
        return Task.FromResult<InteractiveProcess>(new NativeInteractive(process, options, inWrite, outRead, errRead));
    }

    /// <summary>An interactive exec of the native runtime: a process of ours (reaped through its pidfd), on pipes or on the terminal the runtime made.</summary>
    private sealed class NativeInteractive : InteractiveProcess
    {
        private readonly SpawnedProcess _process;
        private readonly int _master = -1;
        private readonly TaskCompletionSource<int> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _reaped;

        public NativeInteractive(SpawnedProcess process, InteractiveOptions options, int input, int output, int errors)
        {
            _process = process;
            Tty = options.Tty;
            if (options.Tty)
            {
                // The master, three ways: input, output (the pump closes its copy) and resizes.
                _master = (int)process.ConsoleMaster!.DangerousGetHandle();
                Output = dup(_master);
                Input = options.Stdin ? dup(_master) : -1;
            }
            else
            {
                Input = input;
                Output = output;
                Errors = errors;
            }
            if (Input >= 0)
            {
                fcntl(Input, 4 /* F_SETFL */, O_NONBLOCK);
            }
            // The wait has a thread of its own, as the exec pump does: a thread pool thread held for
            // a whole shell session (two cores: two of them) would starve the rest of orchd.
            new Thread(Reap) { IsBackground = true, Name = "exec -i wait" }.Start();
        }

        public override Task<int> Exited => _exited.Task;

        private void Reap()
        {
            try
            {
                while (!PollOnce(_process.PidFd, 1000))
                {
                }
                var code = _process.WaitForExit();
                Volatile.Write(ref _reaped, 1);
                _exited.TrySetResult(code);
            }
            catch (Exception e)
            {
                _exited.TrySetException(e);
            }
        }

        public override void Resize(ushort rows, ushort cols)
        {
            if (_master >= 0 && rows > 0 && cols > 0)
            {
                SetWindowSize(_master, rows, cols);
            }
        }

        public override void Kill()
        {
            if (Volatile.Read(ref _reaped) == 0)
            {
                kill(_process.Pid, 9); // ours until reaped: the pid cannot have been reused
            }
        }

        public override async ValueTask DisposeAsync()
        {
            Kill();
            try
            {
                await _exited.Task.ConfigureAwait(false);
            }
            catch (LinuxException)
            {
            }
            await base.DisposeAsync().ConfigureAwait(false);
            _process.Dispose(); // the pidfd and the master
        }
    }

    /// <summary>Waits for a pidfd to become readable (the process exited) on the thread pool, in slices so cancellation is prompt.</summary>
    private static async Task<bool> WaitAsync(int pidfd, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var ready = await Task.Run(() => PollOnce(pidfd, 50), cancellationToken).ConfigureAwait(false);
            if (ready)
            {
                return true;
            }
            if (DateTime.UtcNow >= deadline)
            {
                return false;
            }
        }
    }

    private static unsafe bool PollOnce(int fd, int milliseconds)
    {
        var p = new pollfd { fd = fd, events = POLLIN };
        return poll(&p, 1, milliseconds) > 0;
    }

    private static unsafe (int Read, int Write) Pipe()
    {
        var fds = stackalloc int[2];
        if (pipe2(fds, O_CLOEXEC) != 0)
        {
            throw LinuxException.FromLastError("pipe2");
        }
        return (fds[0], fds[1]);
    }

    public CgroupStats? Stats(string id)
    {
        try
        {
            return _runtime.Store.Exists(id) ? CgroupFactory.Open(_runtime.Store.Load(id).CgroupPath).Stats() : null;
        }
        catch (Exception e) when (e is IOException or CgroupException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    public IReadOnlyList<string> List() => _runtime.Store.Ids().ToList();
}

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
        try
        {
            // A stale record (the container died while orchd was down) would refuse the id.
            Destroy(config.Id);
            var io = new ContainerIo(devNull, config.Stdout, config.Stderr);
            if (config.BeforeStart is { } prepare)
            {
                // create, set up from outside (its namespaces exist, its program has not run), start.
                var created = _runtime.Create(config.Id, config.Bundle, io: io);
                try
                {
                    prepare(created.Pid);
                    _runtime.Start(config.Id);
                }
                catch
                {
                    Destroy(config.Id);
                    throw;
                }
                return new TaskHandle(config.Id, created.Pid, created.PidStartTime, IsChild: true);
            }
            using var child = _runtime.Launch(config.Id, config.Bundle, io);
            var record = _runtime.Store.Load(config.Id);
            return new TaskHandle(config.Id, child.Pid, record.PidStartTime, IsChild: true);
        }
        finally
        {
            close(devNull);
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

using Orchestrator.Api;
using Orchestrator.Node.Drivers;
using Orchestrator.Node.Logs;
using static Orchestrator.Linux.Libc;

namespace Orchestrator.Node.Reconcile;

/// <summary>
/// <c>attach</c>: a client joins a running container's own first process, as <c>docker attach</c>
/// and <c>kubectl attach</c> do. Its output comes from the log pump's taps (from now on, not the
/// log's past); its input goes into stdin.fifo (a workload with <c>stdin: true</c>), which the
/// container, its StdioHolder or containerd's shim reads; its terminal (<c>tty: true</c>) follows
/// the client's size. Leaving (Quit, a vanished client) detaches: the container runs on.
/// </summary>
public sealed partial class Supervisor
{
    public async Task<InteractiveProcess> AttachAsync(string name, InteractiveOptions options)
    {
        await ViewReadyAsync().ConfigureAwait(false);
        var (container, exited) = await Post(() =>
        {
            var c = Find(name);
            if (c.Handle is null)
            {
                throw new NodeApiException(ErrorKind.Conflict, $"container '{name}' is not running; attach reaches a running container (start it, or read what it wrote with `orchctl logs {name}`)");
            }
            if (options.Stdin && c.Workload.Stdin != true)
            {
                throw new NodeApiException(ErrorKind.Invalid, $"container '{name}' has no stdin to attach to: its workload needs `stdin: true` (attach without -i to follow its output, or `orchctl exec -i {name} -- CMD`)");
            }
            if (options.Tty && c.Workload.Tty != true)
            {
                throw new NodeApiException(ErrorKind.Invalid, $"container '{name}' has no terminal: its workload needs `tty: true` (attach without -t, or `orchctl exec -it {name} -- sh` for a shell)");
            }
            return (c, c.Exited.Task);
        }).ConfigureAwait(false);
        var dir = FifoDir(name);
        var input = -1;
        if (options.Stdin)
        {
            var path = Path.Combine(dir, "stdin.fifo");
            input = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC, 0);
            if (input < 0)
            {
                throw new NodeApiException(ErrorKind.Conflict, $"container '{name}''s stdin cannot be opened ({Linux.LinuxException.FromLastError("open", path).Message}); restart it to make it anew");
            }
        }
        var attached = new AttachedProcess(_logs, name, input, options.Tty, // checked against the workload above
            (rows, cols) => _driver.ResizeTerminal(name, dir, rows, cols),
            ExitCodeAsync(container, exited));
        if (options.Tty && options.Rows > 0 && options.Cols > 0)
        {
            attached.Resize(options.Rows, options.Cols);
        }
        return attached;
    }

    /// <summary>
    /// The code the container's process exited with; -1 when unknown. The exit watcher sets
    /// SeenExit before it completes the run's task (and only then posts the exit to the loop);
    /// an exit the loop itself recorded is read there, after the step that recorded it.
    /// </summary>
    private async Task<int> ExitCodeAsync(SupervisedContainer container, Task exited)
    {
        await exited.ConfigureAwait(false);
        if (container.SeenExit is { } seen)
        {
            return seen.Code ?? -1;
        }
        return await Post(() => container.Record.LastExit?.Code ?? -1).ConfigureAwait(false);
    }

    /// <summary>An attach seen as an interactive process: the container's output taps and stdin; Kill detaches.</summary>
    private sealed class AttachedProcess : InteractiveProcess
    {
        private readonly LogPump _logs;
        private readonly OutputTap _tap;
        private readonly Action<ushort, ushort> _resize;
        private readonly TaskCompletionSource<int> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public unsafe AttachedProcess(LogPump logs, string name, int input, bool tty, Action<ushort, ushort> resize, Task<int> exitCode)
        {
            _logs = logs;
            _resize = resize;
            Tty = tty;
            Input = input;
            var fds = stackalloc int[4];
            if (pipe2(fds, O_CLOEXEC) != 0 || (!tty && pipe2(fds + 2, O_CLOEXEC) != 0))
            {
                throw Linux.LinuxException.FromLastError("pipe2");
            }
            Output = fds[0];
            Errors = tty ? -1 : fds[2];
            // Its end comes with the container's exit (the output pump drains what is left first).
            _tap = logs.AddTap(name, fds[1], tty ? -1 : fds[3]);
            _ = exitCode.ContinueWith(t => _exited.TrySetResult(t.IsCompletedSuccessfully ? t.Result : -1),
                CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }

        public override Task<int> Exited => _exited.Task;

        public override void Resize(ushort rows, ushort cols)
        {
            if (!Tty || rows == 0 || cols == 0)
            {
                return;
            }
            try
            {
                _resize(rows, cols);
            }
            catch (Exception e) when (e is InvalidOperationException or IOException)
            {
                // the container is going away: its exit ends the session
            }
        }

        /// <summary>Detaches: the container runs on.</summary>
        public override void Kill()
        {
            _logs.RemoveTap(_tap);
            _exited.TrySetResult(-1);
        }

        /// <summary>The client's input ended: this client sends no more, and the container's stdin stays open for the next.</summary>
        public override void CloseInput()
        {
            var fd = Input;
            Input = -1;
            if (fd >= 0)
            {
                close(fd);
            }
        }

        public override async ValueTask DisposeAsync()
        {
            Kill();
            await base.DisposeAsync().ConfigureAwait(false);
        }
    }
}

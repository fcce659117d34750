using Orchestrator.Linux;
using static Orchestrator.Linux.Libc;

namespace Orchestrator.Node.Drivers;

/// <summary>
/// Waits for many processes on one thread: each is a pidfd (readable once the process has
/// exited), so a recovered container that is not our child is watched the same way; only a
/// child's exit code can be collected (waitid), the others report none.
/// </summary>
public sealed class ExitWatcher : IDisposable
{
    private readonly Dictionary<int, (TaskHandle Handle, Action<TaskHandle, int?> Exited)> _watched = [];
    private readonly Lock _gate = new();
    private readonly Thread _thread;
    private readonly int _wakeRead, _wakeWrite;
    private volatile bool _stopping;

    public unsafe ExitWatcher()
    {
        var fds = stackalloc int[2];
        if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0)
        {
            throw LinuxException.FromLastError("pipe2");
        }
        (_wakeRead, _wakeWrite) = (fds[0], fds[1]);
        _thread = new Thread(Loop) { IsBackground = true, Name = "orchd exit watcher" };
        _thread.Start();
    }

    /// <summary>Watches the process; <paramref name="exited"/> runs on the watcher thread with the exit code (null if not our child).</summary>
    public void Watch(TaskHandle handle, Action<TaskHandle, int?> exited)
    {
        var pidfd = pidfd_open(handle.Pid);
        if (pidfd < 0)
        {
            // Already gone (and reaped by someone): report at once, without a code.
            ThreadPool.QueueUserWorkItem(_ => exited(handle, null));
            return;
        }
        lock (_gate)
        {
            _watched[pidfd] = (handle, exited);
        }
        Wake();
    }

    private unsafe void Wake()
    {
        byte b = 1;
        write(_wakeWrite, &b, 1);
    }

    private unsafe void Loop()
    {
        var info = stackalloc byte[128];
        var drain = stackalloc byte[64];
        while (!_stopping)
        {
            int[] fds;
            lock (_gate)
            {
                fds = [.. _watched.Keys];
            }
            var polls = new pollfd[fds.Length + 1];
            polls[0] = new pollfd { fd = _wakeRead, events = POLLIN };
            for (var i = 0; i < fds.Length; i++)
            {
                polls[i + 1] = new pollfd { fd = fds[i], events = POLLIN };
            }
            fixed (pollfd* p = polls)
            {
                if (poll(p, (nuint)polls.Length, -1) < 0)
                {
                    continue;
                }
            }
            if ((polls[0].revents & POLLIN) != 0)
            {
                while (read(_wakeRead, drain, 64) > 0)
                {
                }
            }
            for (var i = 0; i < fds.Length; i++)
            {
                if (polls[i + 1].revents == 0)
                {
                    continue;
                }
                var fd = fds[i];
                (TaskHandle Handle, Action<TaskHandle, int?> Exited) entry;
                lock (_gate)
                {
                    if (!_watched.Remove(fd, out entry))
                    {
                        continue;
                    }
                }
                int? code = null;
                new Span<byte>(info, 128).Clear();
                if (waitid(P_PIDFD, fd, info, WEXITED | WNOHANG) == 0 && *(int*)(info + 16) != 0)
                {
                    var how = *(int*)(info + 8);
                    var status = *(int*)(info + 24);
                    code = how == CLD_EXITED ? status : 128 + status;
                }
                close(fd);
                try
                {
                    entry.Exited(entry.Handle, code);
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    Console.Error.WriteLine($"orchd: exit handler for '{entry.Handle.Id}' failed: {e.Message}");
                }
            }
        }
    }

    public void Dispose()
    {
        _stopping = true;
        Wake();
        _thread.Join(TimeSpan.FromSeconds(5));
        lock (_gate)
        {
            foreach (var fd in _watched.Keys)
            {
                close(fd);
            }
            _watched.Clear();
        }
        close(_wakeRead);
        close(_wakeWrite);
    }
}

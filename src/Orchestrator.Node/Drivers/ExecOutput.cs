using System.Text;
using Orchestrator.Linux;
using static Orchestrator.Linux.Libc;

namespace Orchestrator.Node.Drivers;

/// <summary>Which of an exec'd command's outputs a chunk came from.</summary>
public enum ExecOutputKind
{
    Stdout = 1,
    Stderr = 2,
}

/// <summary>
/// Receives an exec'd command's output as it is read: <paramref name="data"/> is only valid during
/// the call (the read buffer is reused). Awaiting applies backpressure: while the sink waits, the
/// pipes are not read and the command blocks on its next write.
/// </summary>
public delegate ValueTask ExecOutputSink(ExecOutputKind stream, ReadOnlyMemory<byte> data, CancellationToken cancellationToken);

/// <summary>How an exec'd command ended: its exit code (137 when killed at the timeout).</summary>
public sealed record ExecExit(int ExitCode, bool TimedOut);

/// <summary>Pumps an exec'd command's output to a sink, for every driver (pipes from the native runtime, FIFOs from containerd's shim).</summary>
internal static class ExecOutput
{
    /// <summary>
    /// After the command exited, a background child that inherited its stdout may hold the pipes
    /// open forever: reading goes on while bytes keep coming, and stops once none came for this long.
    /// </summary>
    private static readonly TimeSpan s_quietAfterExit = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// ... and stops this long after the exit in any case: what the command itself wrote is at most
    /// a pipe's buffer by then, so only a background child that keeps writing is cut off.
    /// </summary>
    private static readonly TimeSpan s_drainAfterExit = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Reads both pipes (non-blocking, polled) and hands each read to <paramref name="sink"/> in
    /// order, until both end, or <paramref name="exited"/> says so and they stay quiet for half a
    /// second (5 s at most), or <paramref name="stop"/>; closes both. Runs on a thread of its own:
    /// the poll blocks, and a thread pool thread held for the whole exec (two cores: two of them)
    /// starved the rest of orchd, the streamed replies included, until the pool grew (half a second).
    /// </summary>
    public static Task PumpAsync(int outFd, int errFd, ExecOutputSink sink, Func<bool> exited, CancellationToken stop)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                Pump(outFd, errFd, sink, exited, stop);
                done.SetResult();
            }
            catch (OperationCanceledException e)
            {
                done.SetCanceled(e.CancellationToken);
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        })
        {
            IsBackground = true,
            Name = "exec output",
        };
        try
        {
            thread.Start();
        }
        catch
        {
            close(outFd);
            close(errFd);
            throw;
        }
        return done.Task;
    }

    private static void Pump(int outFd, int errFd, ExecOutputSink sink, Func<bool> exited, CancellationToken stop)
    {
        int[] fds = [outFd, errFd];
        bool[] open = [outFd >= 0, errFd >= 0];
        var buffer = new byte[16 * 1024];
        var quietSince = DateTime.UtcNow;
        DateTime? exitedAt = null;
        try
        {
            foreach (var fd in fds)
            {
                fcntl(fd, 4 /* F_SETFL */, O_NONBLOCK);
            }
            while ((open[0] || open[1]) && !stop.IsCancellationRequested)
            {
                if (exitedAt is null && exited())
                {
                    exitedAt = DateTime.UtcNow;
                }
                if (DateTime.UtcNow - exitedAt >= s_drainAfterExit)
                {
                    return;
                }
                var ready = Poll(fds, open, 50);
                if (ready == 0)
                {
                    if (exitedAt is not null && DateTime.UtcNow - quietSince >= s_quietAfterExit)
                    {
                        return;
                    }
                    continue;
                }
                for (var i = 0; i < 2; i++)
                {
                    if (!open[i] || (ready & (1 << i)) == 0)
                    {
                        continue;
                    }
                    var n = Read(fds[i], buffer);
                    if (n == 0 || (n < 0 && -n != Errno.EAGAIN))
                    {
                        open[i] = false;
                    }
                    else if (n > 0)
                    {
                        // This thread is the pump's own: waiting on a sink that is not done blocks nothing else.
                        var handed = sink(i == 0 ? ExecOutputKind.Stdout : ExecOutputKind.Stderr, buffer.AsMemory(0, n), stop);
                        if (handed.IsCompleted)
                        {
                            handed.GetAwaiter().GetResult();
                        }
                        else
                        {
                            handed.AsTask().GetAwaiter().GetResult();
                        }
                        quietSince = DateTime.UtcNow;
                    }
                }
            }
        }
        finally
        {
            close(outFd);
            close(errFd);
        }
    }

    /// <summary>A bit per fd with something to read (or a hang-up); 0 when the wait ran out.</summary>
    private static unsafe int Poll(int[] fds, bool[] open, int milliseconds)
    {
        var polls = stackalloc pollfd[2];
        for (var i = 0; i < 2; i++)
        {
            polls[i] = new pollfd { fd = open[i] ? fds[i] : -1, events = POLLIN };
        }
        if (poll(polls, 2, milliseconds) <= 0)
        {
            return 0;
        }
        return (polls[0].revents != 0 ? 1 : 0) | (polls[1].revents != 0 ? 2 : 0);
    }

    /// <summary>Bytes read, 0 at the end, or minus errno.</summary>
    private static unsafe int Read(int fd, byte[] buffer)
    {
        fixed (byte* b = buffer)
        {
            var n = read(fd, b, (nuint)buffer.Length);
            return n >= 0 ? (int)n : -System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
        }
    }
}

/// <summary>The buffered exec (health probes, the one-shot node API request), layered on the driver's streamed one.</summary>
public static class TaskDriverExec
{
    /// <summary>What the buffered exec keeps of each output; the rest is read and dropped so the command never blocks.</summary>
    public const int MaxBufferedOutput = 64 * 1024;

    /// <summary>Runs <paramref name="command"/> in container <paramref name="id"/> and returns its first 64 KiB of stdout and of stderr with its exit code.</summary>
    public static async Task<ExecResult> ExecAsync(this ITaskDriver driver, string id, IReadOnlyList<string> command, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var stdout = new MemoryStream();
        using var stderr = new MemoryStream();
        var exit = await driver.ExecStreamAsync(id, command, (stream, data, _) =>
        {
            var kept = stream == ExecOutputKind.Stdout ? stdout : stderr;
            if (kept.Length < MaxBufferedOutput)
            {
                kept.Write(data.Span[..(int)Math.Min(data.Length, MaxBufferedOutput - kept.Length)]);
            }
            return ValueTask.CompletedTask;
        }, timeout, cancellationToken).ConfigureAwait(false);
        return new ExecResult(exit.ExitCode, Encoding.UTF8.GetString(stdout.GetBuffer(), 0, (int)stdout.Length),
            Encoding.UTF8.GetString(stderr.GetBuffer(), 0, (int)stderr.Length), exit.TimedOut);
    }
}

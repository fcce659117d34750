using Orchestrator.Linux;
using static Orchestrator.Linux.Libc;

namespace Orchestrator.Node.Drivers;

/// <summary>What `exec -i` / `exec -t` asks of a driver: the client's input, a terminal of a size.</summary>
public sealed record InteractiveOptions(bool Stdin, bool Tty, ushort Rows, ushort Cols);

/// <summary>
/// A process started in a running container for an interactive exec: the ends the node API
/// relays (<see cref="Input"/> for the client's keystrokes, <see cref="Output"/> and
/// <see cref="Errors"/> for what it writes; on a terminal both directions are the terminal and
/// <see cref="Errors"/> is -1), its exit, and the terminal's size. Disposing kills it if it still
/// runs, reaps it and closes every end not handed over.
/// </summary>
public abstract class InteractiveProcess : IAsyncDisposable
{
    private int _input = -1;

    /// <summary>Where input goes: a pipe to its stdin, or the terminal; -1 without stdin, or once closed.</summary>
    public int Input
    {
        get => Volatile.Read(ref _input);
        protected set => _input = value;
    }

    /// <summary>Read ends: stdout (or the terminal) and stderr; -1 when there is none. <see cref="PumpOutputAsync"/> takes them.</summary>
    protected int Output { get; set; } = -1;

    protected int Errors { get; set; } = -1;

    /// <summary>
    /// Hands what the process writes to <paramref name="sink"/> as it comes (awaiting it holds the
    /// process back), until its outputs close, or it has exited and they stay quiet, or
    /// <paramref name="stop"/> (ExecOutput.PumpAsync, which closes them). Called once.
    /// </summary>
    public Task PumpOutputAsync(ExecOutputSink sink, CancellationToken stop)
    {
        var (output, errors) = (Output, Errors);
        (Output, Errors) = (-1, -1);
        return ExecOutput.PumpAsync(output, errors, sink, () => Exited.IsCompleted, stop);
    }

    public bool Tty { get; protected init; }

    /// <summary>The exit code, once the process has exited (137 when killed).</summary>
    public abstract Task<int> Exited { get; }

    /// <summary>The terminal's new size (the process gets SIGWINCH); nothing without a terminal.</summary>
    public abstract void Resize(ushort rows, ushort cols);

    /// <summary>Kills the process (the client quit or went away); its exit follows.</summary>
    public abstract void Kill();

    /// <summary>
    /// Writes all of <paramref name="data"/> to the input, waiting while the process does not read
    /// (its pipe or terminal is full) until <paramref name="cancellationToken"/>. False when there
    /// is no input (no -i, or closed) or the process closed its end.
    /// </summary>
    public bool Write(ReadOnlySpan<byte> data, CancellationToken cancellationToken)
    {
        var fd = Input;
        if (fd < 0)
        {
            return false;
        }
        while (data.Length > 0)
        {
            cancellationToken.ThrowIfCancellationRequested();
            nint n;
            unsafe
            {
                fixed (byte* b = data)
                {
                    n = write(fd, b, (nuint)data.Length);
                }
            }
            if (n > 0)
            {
                data = data[(int)n..];
                continue;
            }
            var errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            if (errno == Errno.EINTR)
            {
                continue;
            }
            if (errno != Errno.EAGAIN)
            {
                return false; // EPIPE, EIO: nobody reads any more
            }
            WaitWritable(fd, 100);
        }
        return true;
    }

    /// <summary>
    /// No more input: a pipe is closed (the process reads end-of-file); on a terminal, end-of-file
    /// is typed (^D, which a shell at its prompt takes as exit), as closing stdin does under docker.
    /// </summary>
    public virtual void CloseInput()
    {
        if (Tty)
        {
            Write([4], CancellationToken.None);
            return;
        }
        var fd = Interlocked.Exchange(ref _input, -1);
        if (fd >= 0)
        {
            close(fd);
        }
    }

    public virtual ValueTask DisposeAsync()
    {
        foreach (var fd in (int[])[Interlocked.Exchange(ref _input, -1), Output, Errors])
        {
            if (fd >= 0)
            {
                close(fd);
            }
        }
        (Output, Errors) = (-1, -1);
        GC.SuppressFinalize(this);
        return ValueTask.CompletedTask;
    }

    private static unsafe void WaitWritable(int fd, int milliseconds)
    {
        var p = new pollfd { fd = fd, events = POLLOUT };
        poll(&p, 1, milliseconds);
    }

    /// <summary>Sets a terminal's window size (TIOCSWINSZ on its master: the foreground process group gets SIGWINCH).</summary>
    protected static unsafe void SetWindowSize(int master, ushort rows, ushort cols)
    {
        var size = new winsize { ws_row = rows, ws_col = cols };
        ioctl(master, TIOCSWINSZ, &size);
    }
}

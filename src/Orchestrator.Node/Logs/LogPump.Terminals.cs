using Orchestrator.Linux;
using static Orchestrator.Linux.Libc;

namespace Orchestrator.Node.Logs;

/// <summary>
/// A container's output as it comes, for <c>attach</c>: what it writes is handed to the attached
/// clients' pipes (<see cref="AddTap"/>) as well as to its log. A container on a terminal
/// (<c>tty: true</c>) writes into <c>tty.fifo</c> (through its StdioHolder or containerd's shim):
/// the pump hands each read to the taps at once (a prompt, a keystroke's echo) and then writes
/// it into the container's <c>stdout.fifo</c>, whose lines go to the log as every container's do.
/// A tap never holds the container or its log back: one that falls a pipe's worth (1 MiB)
/// behind misses what does not fit and is told how much (the log keeps it all).
/// </summary>
public sealed partial class LogPump
{
    private readonly List<Terminal> _terminals = [];
    private readonly List<OutputTap> _taps = [];
    private readonly byte[] _terminalBuffer = new byte[64 * 1024];

    /// <summary>
    /// Starts handing container <paramref name="containerId"/>'s output to <paramref name="stdout"/>
    /// and <paramref name="stderr"/> (write ends of pipes, -1 for none; the pump closes them): from
    /// now on, until its output ends or the client closes its end (the pump then closes the pipes,
    /// which the reader sees as end-of-file), or <see cref="RemoveTap"/>.
    /// </summary>
    public OutputTap AddTap(string containerId, int stdout, int stderr)
    {
        foreach (var fd in (int[])[stdout, stderr])
        {
            if (fd >= 0)
            {
                fcntl(fd, 4 /* F_SETFL */, O_NONBLOCK);
                fcntl(fd, F_SETPIPE_SZ, PipeSize);
            }
        }
        var tap = new OutputTap(containerId, stdout, stderr);
        Post(() => _taps.Add(tap));
        return tap;
    }

    public void RemoveTap(OutputTap tap) => Post(() => EndTap(tap));

    /// <summary>tty.fifo and a writer of stdout.fifo, when the container has a terminal: opened before its log's sources, so stdout.fifo never looks writerless.</summary>
    private static Terminal? OpenTerminal(string containerId, string fifoDir)
    {
        var tty = Path.Combine(fifoDir, "tty.fifo");
        if (!File.Exists(tty))
        {
            return null;
        }
        var read = open(tty, O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);
        if (read < 0)
        {
            throw LinuxException.FromLastError("open", tty);
        }
        var stdout = Path.Combine(fifoDir, "stdout.fifo");
        var write = open(stdout, O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
        if (write < 0)
        {
            close(read);
            throw LinuxException.FromLastError("open", stdout);
        }
        return new Terminal(containerId, read, write);
    }

    private bool HasTerminal(string containerId) => _terminals.Any(t => t.ContainerId == containerId);

    /// <summary>
    /// Reads what the terminal has (while the last read fits into stdout.fifo): to the taps, then
    /// towards the log; until it is empty, or at its end. Reads on until the FIFO says "empty"
    /// (EAGAIN) or "end" (0), not only when poll wakes it: a FIFO whose writers were gone before
    /// it was opened (a container that ended while orchd was down) reports no POLLHUP, ever.
    /// </summary>
    private unsafe void PumpTerminal(Terminal terminal)
    {
        for (var rounds = 0; rounds < 16 && terminal.Pending.Length == 0 && _terminals.Contains(terminal); rounds++)
        {
            nint n;
            fixed (byte* b = _terminalBuffer)
            {
                n = read(terminal.Read, b, (nuint)_terminalBuffer.Length);
            }
            if (n > 0)
            {
                var data = _terminalBuffer.AsSpan(0, (int)n);
                Deliver(terminal.ContainerId, "stdout", data);
                terminal.Pending = data.ToArray();
                FlushTerminal(terminal);
            }
            else
            {
                if (n == 0)
                {
                    CloseTerminal(terminal); // every writer gone: the container has exited
                }
                return;
            }
        }
    }

    /// <summary>Moves a terminal's read into stdout.fifo, as far as it takes now.</summary>
    private unsafe void FlushTerminal(Terminal terminal)
    {
        while (terminal.Pending.Length > 0)
        {
            nint w;
            fixed (byte* b = terminal.Pending)
            {
                w = write(terminal.Write, b, (nuint)terminal.Pending.Length);
            }
            if (w <= 0)
            {
                return; // full: the log pump drains it in this same loop
            }
            terminal.Pending = terminal.Pending[(int)w..];
        }
    }

    private void CloseTerminal(Terminal terminal)
    {
        FlushTerminal(terminal);
        _terminals.Remove(terminal);
        close(terminal.Read);
        close(terminal.Write); // stdout.fifo's last writer: its source reads end-of-file once drained
        EndTaps(terminal.ContainerId);
    }

    /// <summary>
    /// Hands a piece of a container's output to its taps, without waiting: a tap whose pipe is full
    /// (its client fell a pipe's worth behind) misses what does not fit, and once it has room again
    /// is told how much it missed, in its stdout, before the output goes on.
    /// </summary>
    private unsafe void Deliver(string containerId, string stream, ReadOnlySpan<byte> data)
    {
        foreach (var tap in _taps.Where(t => t.ContainerId == containerId).ToList())
        {
            var fd = stream == "stderr" ? tap.Stderr : tap.Stdout;
            if (fd < 0)
            {
                continue;
            }
            if (tap.Skipped > 0)
            {
                var notice = System.Text.Encoding.ASCII.GetBytes(
                    $"\r\n[orchd: {tap.Skipped} bytes of output skipped: this client fell more than {PipeSize >> 20} MiB behind]\r\n");
                if (WriteSome(tap.Stdout, notice) != notice.Length)
                {
                    tap.Skipped += data.Length; // still full (a notice that did not fit whole is written again)
                    continue;
                }
                tap.Skipped = 0;
            }
            var written = WriteSome(fd, data);
            if (written < 0 && System.Runtime.InteropServices.Marshal.GetLastPInvokeError() == 32 /* EPIPE: the client closed its end */)
            {
                EndTap(tap);
                continue;
            }
            tap.Skipped += data.Length - Math.Max(0, written);
        }
    }

    private static unsafe int WriteSome(int fd, ReadOnlySpan<byte> data)
    {
        fixed (byte* b = data)
        {
            return (int)write(fd, b, (nuint)data.Length);
        }
    }

    private void EndTaps(string containerId)
    {
        foreach (var tap in _taps.Where(t => t.ContainerId == containerId).ToList())
        {
            EndTap(tap);
        }
    }

    private void EndTap(OutputTap tap)
    {
        if (!_taps.Remove(tap))
        {
            return;
        }
        foreach (var fd in (int[])[tap.Stdout, tap.Stderr])
        {
            if (fd >= 0)
            {
                close(fd);
            }
        }
    }

    private sealed class Terminal(string containerId, int read, int write)
    {
        public string ContainerId { get; } = containerId;
        public int Read { get; } = read;
        public int Write { get; } = write;
        public byte[] Pending { get; set; } = [];
    }
}

/// <summary>An attached client's view of a container's output (<see cref="LogPump.AddTap"/>).</summary>
public sealed class OutputTap(string containerId, int stdout, int stderr)
{
    public string ContainerId { get; } = containerId;
    internal int Stdout { get; } = stdout;
    internal int Stderr { get; } = stderr;
    /// <summary>Bytes this tap missed since it last had room (the pump's thread only).</summary>
    internal long Skipped { get; set; }
}

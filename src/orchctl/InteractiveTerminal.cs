using System.Runtime.InteropServices;
using System.Threading.Channels;

namespace Orchestrator.Ctl;

/// <summary>
/// orchctl's own terminal for a session with a process in a container (exec -i/-t, attach): with
/// a terminal (tty) its size and SIGWINCH resizes; in raw mode (every key, Ctrl-C included, goes to
/// the process; restored however orchctl ends, SIGTERM, SIGHUP, SIGINT and SIGQUIT included); else
/// Ctrl-C and SIGTERM cancel <c>interrupted</c>. The process's output goes to orchctl's stdout and
/// stderr as raw bytes. -t off a terminal is dropped with kubectl's warning.
/// </summary>
internal sealed partial class InteractiveTerminal : IDisposable
{
    private readonly IDisposable? _onInterrupt;
    private readonly PosixSignalRegistration? _onResize;
    private readonly RawMode? _raw;
    private readonly StandardStream _stdout = new(1);
    private readonly StandardStream _stderr = new(2);

    /// <param name="tty">A terminal was asked for (-t).</param>
    /// <param name="raw">With a terminal, put it in raw mode: the keys are read and go to the process.</param>
    /// <param name="interrupted">Cancelled by Ctrl-C or SIGTERM, unless the terminal is raw (then Ctrl-C is a key).</param>
    private InteractiveTerminal(bool tty, bool raw, CancellationTokenSource interrupted)
    {
        if (tty && (Console.IsOutputRedirected || (raw && Console.IsInputRedirected) || OperatingSystem.IsWindows()))
        {
            // kubectl's answer to -t off a terminal: go on without one.
            Output.Warning("unable to use a TTY: orchctl's input or output is not a terminal; running without one");
            tty = false;
        }
        Tty = tty;
        (Rows, Cols) = tty ? WindowSize() : (0, 0);
        IsRaw = tty && raw;
        // On a raw terminal Ctrl-C is a key the process gets; otherwise it ends orchctl's side.
        _onInterrupt = IsRaw ? null : Terminal.OnInterrupt(interrupted);
        if (tty)
        {
            var resizes = Channel.CreateUnbounded<(int Rows, int Cols)>();
            _onResize = PosixSignalRegistration.Create(PosixSignal.SIGWINCH, _ => resizes.Writer.TryWrite(WindowSize()));
            Resizes = resizes.Reader;
        }
        try
        {
            _raw = IsRaw ? RawMode.Enter(0) : null;
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public static InteractiveTerminal Open(bool tty, bool raw, CancellationTokenSource interrupted) => new(tty, raw, interrupted);

    /// <summary>Whether the process gets a terminal (-t, and orchctl's output on one).</summary>
    public bool Tty { get; }

    /// <summary>Whether orchctl's terminal is in raw mode.</summary>
    public bool IsRaw { get; }

    public int Rows { get; }

    public int Cols { get; }

    /// <summary>The window's new sizes (SIGWINCH), with a terminal; else null.</summary>
    public ChannelReader<(int Rows, int Cols)>? Resizes { get; }

    /// <summary>orchctl's stdin, byte for byte as read(2) gives it.</summary>
    public static Stream Input() => new StandardInput();

    /// <summary>The process's output to orchctl's stdout (or stderr: true), raw bytes.</summary>
    public ValueTask WriteAsync(bool isStderr, ReadOnlyMemory<byte> data)
    {
        (isStderr ? _stderr : _stdout).Write(data.Span);
        return ValueTask.CompletedTask;
    }

    public void Dispose()
    {
        _stderr.Dispose();
        _stdout.Dispose();
        _raw?.Dispose();
        _onResize?.Dispose();
        _onInterrupt?.Dispose();
    }

    /// <summary>The terminal's rows and columns (TIOCGWINSZ on stdout, then stdin); 0 × 0 when neither is one.</summary>
    private static unsafe (int Rows, int Cols) WindowSize()
    {
        // struct winsize is four 16-bit numbers everywhere; the request number is not.
        var request = OperatingSystem.IsMacOS() ? 0x40087468UL : 0x5413UL;
        var size = stackalloc ushort[4];
        foreach (var fd in (int[])[1, 0])
        {
            if (ioctl(fd, (nuint)request, size) == 0 && size[0] > 0)
            {
                return (size[0], size[1]);
            }
        }
        return (0, 0);
    }

    /// <summary>
    /// The terminal in raw mode (cfmakeraw: no echo, no line editing, no signals from keys, no output
    /// processing) until disposed. termios differs between Linux and macOS, so it is kept as opaque
    /// bytes: read, made raw by libc, written, and the bytes read first written back at the end.
    /// </summary>
    private sealed unsafe class RawMode : IDisposable
    {
        private readonly int _fd;
        private readonly byte[] _saved = new byte[256];
        private readonly PosixSignalRegistration[] _restoreOn;

        private RawMode(int fd)
        {
            _fd = fd;
            var raw = new byte[256];
            fixed (byte* s = _saved, r = raw)
            {
                if (tcgetattr(fd, s) != 0)
                {
                    throw new IOException($"cannot read the terminal's settings (tcgetattr: errno {Marshal.GetLastPInvokeError()})");
                }
                Buffer.MemoryCopy(s, r, 256, 256);
                cfmakeraw(r);
                tcsetattr(fd, 0 /* TCSANOW */, r);
            }
            // A signal that ends orchctl (from another process: the keys send none now) must not
            // leave the user's terminal raw.
            _restoreOn = [.. new[] { PosixSignal.SIGTERM, PosixSignal.SIGHUP, PosixSignal.SIGINT, PosixSignal.SIGQUIT }.Select(signal => PosixSignalRegistration.Create(signal, _ => Restore()))];
        }

        public static RawMode Enter(int fd) => new(fd);

        private void Restore()
        {
            fixed (byte* s = _saved)
            {
                tcsetattr(_fd, 0, s);
            }
        }

        public void Dispose()
        {
            Restore();
            foreach (var registration in _restoreOn)
            {
                registration.Dispose();
            }
        }
    }

    /// <summary>
    /// orchctl's stdin as read(2) gives it, byte for byte (Console's stream edits lines on a
    /// terminal). Each read has a thread of its own: a read of a terminal cannot be cancelled, and
    /// the session leaves the last one behind when the command ends.
    /// </summary>
    private sealed unsafe class StandardInput : InputStream
    {
        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            while (true)
            {
                nint n;
                fixed (byte* b = buffer)
                {
                    n = read(0, b, (nuint)buffer.Length);
                }
                if (n >= 0)
                {
                    return (int)n;
                }
                var errno = Marshal.GetLastPInvokeError();
                if (errno != 4 /* EINTR */)
                {
                    throw new IOException($"cannot read orchctl's stdin (errno {errno})");
                }
            }
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
            => new(Task.Factory.StartNew(() => Read(buffer.Span), cancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default));
    }

    // orchctl links no Linux bindings (it builds for macOS and Windows too): libc's own, as POSIX names them.
    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    private static unsafe partial nint read(int fd, byte* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static unsafe partial int ioctl(int fd, nuint request, ushort* size);

    [LibraryImport("libc", EntryPoint = "tcgetattr", SetLastError = true)]
    private static unsafe partial int tcgetattr(int fd, byte* termios);

    [LibraryImport("libc", EntryPoint = "tcsetattr", SetLastError = true)]
    private static unsafe partial int tcsetattr(int fd, int when, byte* termios);

    [LibraryImport("libc", EntryPoint = "cfmakeraw")]
    private static unsafe partial void cfmakeraw(byte* termios);
}

/// <summary>A stream that is only read from, once, start to end (orchctl's stdin, and what is made of it).</summary>
internal abstract class InputStream : Stream
{
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Orchestrator.Linux;
using static Orchestrator.Linux.Libc;

namespace Orchestrator.Node.Logs;

/// <summary>Where one container's logs live and how big they may grow.</summary>
public sealed record LogOptions(long MaxFileBytes = 10 << 20, int MaxFiles = 3);

/// <summary>
/// Moves every container's stdout and stderr into its log file, on one thread for the whole
/// node (a thread per container would cost more than the container's logs are worth).
///
/// A container writes into a named FIFO that it holds open read-write: it never gets SIGPIPE
/// and never blocks while orchd keeps up, and when orchd is down (crash, upgrade) its output
/// waits in the pipe (1 MiB) instead of being lost; only a full pipe makes it wait. The new
/// orchd reopens the FIFO by path.
///
/// No line is lost or written twice across an orchd kill: each batch is peeked with tee(2),
/// written to the log, and only then consumed from the pipe. A small cursor file records the
/// batch in flight (log offset, length, hash), so that the next orchd can tell "written but
/// not consumed" (consume it) from "not written" (truncate the torn tail and redo it).
/// </summary>
public sealed partial class LogPump : IDisposable
{
    /// <summary>Lines longer than this are split into partial records (CRI's "P").</summary>
    public const int MaxLine = 16 * 1024;
    private const int PipeSize = 1 << 20;
    private static readonly TimeSpan s_partialFlush = TimeSpan.FromMilliseconds(200);

    private readonly LogOptions _options;
    private readonly Dictionary<string, ContainerLog> _logs = new(StringComparer.Ordinal);
    private readonly List<Source> _sources = [];
    private readonly Queue<Action> _commands = new();
    private readonly Lock _gate = new();
    private readonly Thread _thread;
    private readonly int _wakeRead, _wakeWrite, _scratchRead, _scratchWrite;
    private readonly byte[] _buffer = new byte[PipeSize];

    // Failpoints (as etcd's gofail) for the crash-safety tests: orchd kills itself in the middle
    // of a batch, at the two places a real crash would hurt most.
    private static readonly string? s_failpoint = Environment.GetEnvironmentVariable("ORCHD_FAILPOINT");
    private volatile bool _stopping;

    public LogPump(LogOptions options)
    {
        _options = options;
        (_wakeRead, _wakeWrite) = Pipe(nonBlocking: true);
        (_scratchRead, _scratchWrite) = Pipe(nonBlocking: true);
        fcntl(_scratchWrite, F_SETPIPE_SZ, PipeSize);
        _thread = new Thread(Loop) { IsBackground = true, Name = "orchd log pump" };
        _thread.Start();
    }

    /// <summary>Raised (on the pump thread) when a container's last writer has gone and its output is all written.</summary>
    public event Action<string>? Drained;

    /// <summary>
    /// Raised (on the pump's thread) when a container's log lines could not be written (a full
    /// or read-only disk) and were dropped: the container id and a sentence; at most once a
    /// minute per stream, with the bytes dropped since the last report.
    /// </summary>
    public event Action<string, string>? Dropped;

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, long> _dropped = new(StringComparer.Ordinal);

    /// <summary>Bytes of a container's output dropped because its log could not be written, since orchd started.</summary>
    public long DroppedBytes(string containerId) => _dropped.GetValueOrDefault(containerId);

    /// <summary>Makes the FIFOs a new container writes to. Returns the fds to give it (the caller closes them after the spawn).</summary>
    public static (int Stdout, int Stderr) CreateFifos(string fifoDir)
        => (CreateFifo(fifoDir, "stdout"), CreateFifo(fifoDir, "stderr"));

    /// <summary>Makes FIFO <c>DIR/NAME.fifo</c> anew and opens it read-write (the caller closes the fd after the spawn).</summary>
    public static int CreateFifo(string fifoDir, string name)
    {
        Directory.CreateDirectory(fifoDir);
        var path = Path.Combine(fifoDir, name + ".fifo");
        File.Delete(path);
        if (mkfifo(path, 0x180) != 0)
        {
            throw LinuxException.FromLastError("mkfifo", path);
        }
        // Read-write: opening does not wait for a reader, and the container is its own
        // reader of last resort, so a missing orchd is never a SIGPIPE.
        var fd = open(path, O_RDWR | O_CLOEXEC, 0);
        if (fd < 0)
        {
            throw LinuxException.FromLastError("open", path);
        }
        fcntl(fd, F_SETPIPE_SZ, PipeSize);
        return fd;
    }

    /// <summary>Starts (or, after an orchd restart, resumes) pumping a container's FIFOs into its log.</summary>
    public void Attach(string containerId, string fifoDir, string logDir)
    {
        var terminal = OpenTerminal(containerId, fifoDir);
        var sources = new List<Source>();
        foreach (var stream in new[] { "stdout", "stderr" })
        {
            var path = Path.Combine(fifoDir, stream + ".fifo");
            var fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);
            if (fd < 0)
            {
                var error = LinuxException.FromLastError("open", path);
                foreach (var open in sources.Select(s => s.Fd).Concat(terminal is null ? [] : [terminal.Read, terminal.Write]))
                {
                    close(open);
                }
                throw error;
            }
            sources.Add(new Source(containerId, stream, fd));
        }
        Post(() =>
        {
            if (terminal is not null)
            {
                _terminals.Add(terminal);
                PumpTerminal(terminal); // a holder that is gone already: end of file now, never a POLLHUP
            }
            var log = Open(containerId, logDir);
            foreach (var source in sources)
            {
                source.Log = log;
                source.Cursor = OpenCursor(Path.Combine(logDir, source.Stream + ".cursor"));
                Recover(source);
                _sources.Add(source);
                // A FIFO whose writers were all gone before we opened it never reports POLLHUP:
                // look once now, so its leftovers are written and the source closed.
                Pump(source, eof: false);
            }
        });
    }

    /// <summary>Stops pumping a container (it was removed) and closes its files.</summary>
    public void Detach(string containerId) => Post(() =>
    {
        foreach (var terminal in _terminals.Where(t => t.ContainerId == containerId).ToList())
        {
            CloseTerminal(terminal);
        }
        EndTaps(containerId);
        foreach (var source in _sources.Where(s => s.ContainerId == containerId).ToList())
        {
            Pump(source, eof: true);
            Close(source);
        }
        if (_logs.Remove(containerId, out var log))
        {
            log.Dispose();
        }
    });

    /// <summary>Returns once every command posted before it has run (tests, orderly shutdown).</summary>
    public void Flush()
    {
        using var done = new ManualResetEventSlim();
        Post(() =>
        {
            foreach (var source in _sources.ToList())
            {
                Pump(source, eof: false);
            }
            done.Set();
        });
        done.Wait(TimeSpan.FromSeconds(10));
    }

    private void Post(Action action)
    {
        lock (_gate)
        {
            _commands.Enqueue(action);
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
        var fds = new pollfd[64];
        var drain = stackalloc byte[64];
        while (!_stopping)
        {
            RunCommands();
            var now = DateTime.UtcNow;
            var count = 1 + _sources.Count + _terminals.Count;
            if (fds.Length < count)
            {
                fds = new pollfd[count * 2];
            }
            fds[0] = new pollfd { fd = _wakeRead, events = POLLIN };
            // A terminal's read waiting for room in stdout.fifo: looked at again soon, not read more.
            var timeout = _terminals.Any(t => t.Pending.Length > 0) ? 20 : -1;
            for (var i = 0; i < _terminals.Count; i++)
            {
                var t = _terminals[i];
                fds[1 + _sources.Count + i] = new pollfd { fd = t.Pending.Length > 0 ? -1 : t.Read, events = POLLIN };
            }
            for (var i = 0; i < _sources.Count; i++)
            {
                var s = _sources[i];
                // A source holding only an unfinished line sits out until its flush time, or poll
                // would report the same bytes as readable forever.
                var waiting = s.PartialSince is { } since && now - since < s_partialFlush;
                fds[i + 1] = new pollfd { fd = waiting ? -1 : s.Fd, events = POLLIN };
                if (waiting)
                {
                    var left = (int)Math.Ceiling((s_partialFlush - (now - s.PartialSince!.Value)).TotalMilliseconds);
                    timeout = timeout < 0 ? left : Math.Min(timeout, left);
                }
            }
            int ready;
            fixed (pollfd* p = fds)
            {
                ready = poll(p, (nuint)count, timeout);
            }
            if (ready < 0)
            {
                continue; // EINTR
            }
            if ((fds[0].revents & POLLIN) != 0)
            {
                while (read(_wakeRead, drain, 64) > 0)
                {
                }
            }
            now = DateTime.UtcNow;
            var sourceCount = _sources.Count;
            foreach (var (terminal, i) in _terminals.Select((t, i) => (t, i)).ToList())
            {
                if ((fds[1 + sourceCount + i].revents & (POLLIN | POLLHUP | POLLERR)) != 0)
                {
                    try
                    {
                        PumpTerminal(terminal);
                    }
                    catch (Exception e) when (e is not OutOfMemoryException)
                    {
                        Console.Error.WriteLine($"orchd: log pump: container {terminal.ContainerId} terminal: {e.Message}; its terminal output stops here");
                        CloseTerminal(terminal);
                    }
                }
            }
            foreach (var (source, i) in _sources.Select((s, i) => (s, i)).ToList())
            {
                var revents = fds[i + 1].revents;
                var due = source.PartialSince is { } since && now - since >= s_partialFlush;
                if ((revents & (POLLIN | POLLHUP | POLLERR)) != 0 || due)
                {
                    try
                    {
                        Pump(source, eof: false, flushPartial: due);
                    }
                    catch (Exception e) when (e is not OutOfMemoryException)
                    {
                        Console.Error.WriteLine($"orchd: log pump: container {source.ContainerId} {source.Stream}: {e.Message}; its logs stop here");
                        Close(source);
                    }
                }
            }
            foreach (var terminal in _terminals.Where(t => t.Pending.Length > 0).ToList())
            {
                FlushTerminal(terminal);
                PumpTerminal(terminal); // on from where it stopped: poll may never say so (PumpTerminal)
            }
        }
    }

    private void RunCommands()
    {
        while (true)
        {
            Action? action;
            lock (_gate)
            {
                if (!_commands.TryDequeue(out action))
                {
                    return;
                }
            }
            try
            {
                action();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // A log that cannot be written (a read-only or full disk, a removed directory)
                // costs that container its logs, never orchd.
                Console.Error.WriteLine($"orchd: log pump: {e.Message}");
            }
        }
    }

    /// <summary>One batch or more: peek, write, consume, until the pipe has nothing complete left.</summary>
    private void Pump(Source source, bool eof, bool flushPartial = false)
    {
        if (source.Fd < 0)
        {
            return;
        }
        for (var rounds = 0; rounds < 16; rounds++)
        {
            var peeked = Peek(source.Fd, int.MaxValue);
            if (peeked == 0)
            {
                // Every writer is gone: the container (and anything that inherited its stdio) has exited.
                Close(source);
                if (_sources.All(s => s.ContainerId != source.ContainerId || s.Fd < 0))
                {
                    EndTaps(source.ContainerId);
                    Drained?.Invoke(source.ContainerId);
                }
                return;
            }
            if (peeked < 0)
            {
                return; // empty, writers still there
            }
            var data = _buffer.AsSpan(0, peeked);
            var (framed, consumed) = Frame(source.Stream, data, eof || flushPartial, (int)Math.Clamp(_options.MaxFileBytes / 4, 1024, 256 * 1024));
            if (consumed == 0)
            {
                source.PartialSince ??= DateTime.UtcNow;
                return;
            }
            source.PartialSince = null;
            Commit(source, framed, data[..consumed]);
            if (consumed == peeked)
            {
                flushPartial = false;
            }
        }
    }

    /// <summary>
    /// Copies what the FIFO holds into the buffer without consuming it: the byte count, 0 at
    /// end of file (every writer gone and nothing left), -1 when empty with writers still there.
    /// </summary>
    private unsafe int Peek(int fd, int max)
    {
        var n = tee(fd, _scratchWrite, (nuint)Math.Min(max, PipeSize), SPLICE_F_NONBLOCK);
        if (n <= 0)
        {
            return n == 0 ? 0 : -1;
        }
        var total = 0;
        fixed (byte* b = _buffer)
        {
            while (total < n)
            {
                var r = read(_scratchRead, b + total, (nuint)(n - total));
                if (r <= 0)
                {
                    break;
                }
                total += (int)r;
            }
        }
        return total;
    }

    /// <summary>
    /// CRI log lines ("2024-01-01T00:00:00.000000000Z stdout F text"): one per complete line,
    /// "P" pieces for lines over <see cref="MaxLine"/>, and an unfinished last line only when
    /// <paramref name="flushPartial"/> (the writer went quiet or away).
    /// </summary>
    /// <param name="maxBatch">Stop once this much is framed: a batch never overshoots the rotation size by much.</param>
    internal static (byte[] Framed, int Consumed) Frame(string stream, ReadOnlySpan<byte> data, bool flushPartial, int maxBatch = int.MaxValue)
    {
        var prefix = Encoding.ASCII.GetBytes(DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'00Z'", CultureInfo.InvariantCulture) + " " + stream + " ");
        using var output = new MemoryStream();
        var consumed = 0;
        while (consumed < data.Length && output.Length < maxBatch)
        {
            var rest = data[consumed..];
            var newline = rest.IndexOf((byte)'\n');
            if (newline >= 0 && newline <= MaxLine)
            {
                output.Write(prefix);
                output.Write("F "u8);
                output.Write(rest[..newline]);
                output.WriteByte((byte)'\n');
                consumed += newline + 1;
            }
            else if (rest.Length >= MaxLine)
            {
                output.Write(prefix);
                output.Write("P "u8);
                output.Write(rest[..MaxLine]);
                output.WriteByte((byte)'\n');
                consumed += MaxLine;
            }
            else if (flushPartial)
            {
                output.Write(prefix);
                output.Write("P "u8);
                output.Write(rest);
                output.WriteByte((byte)'\n');
                consumed += rest.Length;
            }
            else
            {
                break;
            }
        }
        return (output.ToArray(), consumed);
    }

    private unsafe void Commit(Source source, byte[] framed, ReadOnlySpan<byte> raw)
    {
        var log = source.Log!;
        if (log.Length + framed.Length > _options.MaxFileBytes && log.Length > 0)
        {
            log.Rotate(_options.MaxFiles);
        }
        // 1. What is about to happen, so that a successor can finish it.
        WriteCursor(source.Cursor, pending: true, log.Length, framed.Length, raw.Length, Fnv1a(raw));
        // 2. The log, in one write.
        if (s_failpoint == "log-torn-write")
        {
            // Torn inside a line: half of a batch of same-length lines can end on a newline.
            var torn = framed.Length / 2;
            if (framed[torn - 1] == (byte)'\n')
            {
                torn--;
            }
            log.Append(framed[..torn]);
            kill(Environment.ProcessId, 9);
        }
        try
        {
            log.Append(framed);
        }
        catch (IOException e)
        {
            // A full (or read-only) disk: the lines are dropped, counted and reported, and the
            // pipe is drained all the same, so the container never blocks on its stdout.
            DropBatch(source, raw.Length, e.Message);
            return;
        }
        if (s_failpoint == "log-written-not-consumed")
        {
            kill(Environment.ProcessId, 9);
        }
        if (_taps.Count > 0 && !HasTerminal(source.ContainerId))
        {
            Deliver(source.ContainerId, source.Stream, raw); // a terminal's went to the taps as it was read
        }
        // 3. Only now out of the pipe.
        Consume(source.Fd, raw.Length);
        // 4. Done.
        WriteCursor(source.Cursor, pending: false, log.Length, 0, 0, 0);
    }

    private void DropBatch(Source source, int rawLength, string why)
    {
        try
        {
            source.Log!.Truncate(source.Log.Length); // a torn tail, if the write got halfway
        }
        catch (IOException)
        {
        }
        Consume(source.Fd, rawLength);
        try
        {
            WriteCursor(source.Cursor, pending: false, source.Log!.Length, 0, 0, 0);
        }
        catch (IOException)
        {
        }
        _dropped.AddOrUpdate(source.ContainerId, rawLength, (_, total) => total + rawLength);
        source.DroppedSinceReport += rawLength;
        var now = DateTime.UtcNow;
        if (now - source.LastDropReport >= TimeSpan.FromMinutes(1))
        {
            Dropped?.Invoke(source.ContainerId, $"{source.DroppedSinceReport} bytes of {source.Stream} dropped: the log cannot be written ({why}); free space under the state directory");
            source.LastDropReport = now;
            source.DroppedSinceReport = 0;
        }
    }

    private unsafe void Consume(int fd, int count)
    {
        fixed (byte* b = _buffer)
        {
            while (count > 0)
            {
                var n = read(fd, b, (nuint)Math.Min(count, _buffer.Length));
                if (n <= 0)
                {
                    if (n < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR)
                    {
                        continue;
                    }
                    return;
                }
                count -= (int)n;
            }
        }
    }

    /// <summary>Finishes the batch a killed orchd left in flight (see the class comment).</summary>
    private void Recover(Source source)
    {
        var (pending, offset, framedLength, rawLength, hash) = ReadCursor(source.Cursor);
        if (!pending)
        {
            return;
        }
        var log = source.Log!;
        if (log.Length < offset + framedLength)
        {
            // The write did not (fully) happen, so neither did the consume: drop the torn tail,
            // the bytes are still in the pipe and go out again.
            log.Truncate(Math.Min(log.Length, offset));
        }
        else
        {
            var peeked = Peek(source.Fd, rawLength);
            if (peeked == rawLength && Fnv1a(_buffer.AsSpan(0, peeked)) == hash)
            {
                Consume(source.Fd, rawLength); // written, not consumed
            }
        }
        WriteCursor(source.Cursor, pending: false, log.Length, 0, 0, 0);
    }

    /// <summary>FNV-1a: tells a batch's bytes from others; not a defence against anyone.</summary>
    private static ulong Fnv1a(ReadOnlySpan<byte> data)
    {
        var hash = 14695981039346656037UL;
        foreach (var b in data)
        {
            hash = (hash ^ b) * 1099511628211UL;
        }
        return hash;
    }

    private ContainerLog Open(string containerId, string logDir)
    {
        if (!_logs.TryGetValue(containerId, out var log))
        {
            log = new ContainerLog(logDir);
            _logs[containerId] = log;
        }
        return log;
    }

    private static int OpenCursor(string path)
    {
        var fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0x180);
        if (fd < 0)
        {
            throw LinuxException.FromLastError("open", path);
        }
        return fd;
    }

    private static unsafe void WriteCursor(int fd, bool pending, long offset, int framed, int raw, ulong hash)
    {
        Span<byte> record = stackalloc byte[32];
        BinaryPrimitives.WriteInt32LittleEndian(record, pending ? 1 : 0);
        BinaryPrimitives.WriteInt32LittleEndian(record[4..], framed);
        BinaryPrimitives.WriteInt64LittleEndian(record[8..], offset);
        BinaryPrimitives.WriteInt32LittleEndian(record[16..], raw);
        BinaryPrimitives.WriteUInt64LittleEndian(record[20..], hash);
        BinaryPrimitives.WriteInt32LittleEndian(record[28..], 0x4c4f4743); // "CGOL": a record, not zeros
        fixed (byte* b = record)
        {
            pwrite(fd, b, 32, 0);
        }
    }

    private static unsafe (bool Pending, long Offset, int Framed, int Raw, ulong Hash) ReadCursor(int fd)
    {
        Span<byte> record = stackalloc byte[32];
        fixed (byte* b = record)
        {
            if (pread(fd, b, 32, 0) != 32 || BinaryPrimitives.ReadInt32LittleEndian(record[28..]) != 0x4c4f4743)
            {
                return default;
            }
        }
        return (BinaryPrimitives.ReadInt32LittleEndian(record) == 1, BinaryPrimitives.ReadInt64LittleEndian(record[8..]),
            BinaryPrimitives.ReadInt32LittleEndian(record[4..]), BinaryPrimitives.ReadInt32LittleEndian(record[16..]),
            BinaryPrimitives.ReadUInt64LittleEndian(record[20..]));
    }

    private void Close(Source source)
    {
        _sources.Remove(source);
        if (source.Fd >= 0)
        {
            close(source.Fd);
            source.Fd = -1;
        }
        if (source.Cursor >= 0)
        {
            close(source.Cursor);
            source.Cursor = -1;
        }
        source.PartialSince = null;
    }

    private static unsafe (int Read, int Write) Pipe(bool nonBlocking)
    {
        var fds = stackalloc int[2];
        if (pipe2(fds, O_CLOEXEC | (nonBlocking ? O_NONBLOCK : 0)) != 0)
        {
            throw LinuxException.FromLastError("pipe2");
        }
        return (fds[0], fds[1]);
    }

    public void Dispose()
    {
        Flush();
        _stopping = true;
        Wake();
        _thread.Join(TimeSpan.FromSeconds(5));
        foreach (var source in _sources.ToList()) // Close removes it from the list
        {
            Close(source);
        }
        foreach (var terminal in _terminals.ToList())
        {
            CloseTerminal(terminal);
        }
        foreach (var log in _logs.Values)
        {
            log.Dispose();
        }
        foreach (var fd in new[] { _wakeRead, _wakeWrite, _scratchRead, _scratchWrite })
        {
            close(fd);
        }
    }

    private sealed class Source(string containerId, string stream, int fd)
    {
        public string ContainerId { get; } = containerId;
        public string Stream { get; } = stream;
        public int Fd { get; set; } = fd;
        public int Cursor { get; set; } = -1;
        public ContainerLog? Log { get; set; }
        public DateTime? PartialSince { get; set; }
        /// <summary>When the last "logs dropped" report for this stream went out (one a minute at most).</summary>
        public DateTime LastDropReport { get; set; } = DateTime.MinValue;
        public long DroppedSinceReport { get; set; }

    }
}

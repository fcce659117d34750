using Orchestrator.Linux;
using static Orchestrator.Linux.Libc;

namespace Orchestrator.Node.Logs;

/// <summary>
/// A container's log files: container.log, and container.log.1 … .N-1 after rotation (the
/// highest number is the oldest). Only the log pump writes; readers open the files themselves.
/// </summary>
internal sealed class ContainerLog : IDisposable
{
    public const string FileName = "container.log";
    private readonly string _dir;
    private int _fd = -1;

    public ContainerLog(string dir)
    {
        _dir = dir;
        Directory.CreateDirectory(dir);
        OpenCurrent();
    }

    public long Length { get; private set; }

    private string Current => Path.Combine(_dir, FileName);

    private void OpenCurrent()
    {
        _fd = open(Current, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0x1a0);
        if (_fd < 0)
        {
            throw LinuxException.FromLastError("open", Current);
        }
        Length = new FileInfo(Current).Length;
        // A line cut short by a crash (of the host: orchd's own batches are handled by the
        // cursor) is cut off, so that every line in the file is whole.
        if (Length > 0 && LastByte() != '\n')
        {
            var keep = LastNewline();
            Truncate(keep);
        }
    }

    private byte LastByte()
    {
        using var stream = File.OpenRead(Current);
        stream.Seek(-1, SeekOrigin.End);
        return (byte)stream.ReadByte();
    }

    private long LastNewline()
    {
        using var stream = File.OpenRead(Current);
        var buffer = new byte[64 * 1024];
        var end = stream.Length;
        while (end > 0)
        {
            var start = Math.Max(0, end - buffer.Length);
            stream.Seek(start, SeekOrigin.Begin);
            var n = stream.Read(buffer, 0, (int)(end - start));
            var at = buffer.AsSpan(0, n).LastIndexOf((byte)'\n');
            if (at >= 0)
            {
                return start + at + 1;
            }
            end = start;
        }
        return 0;
    }

    public unsafe void Append(byte[] data)
    {
        fixed (byte* b = data)
        {
            var written = 0;
            while (written < data.Length)
            {
                var n = write(_fd, b + written, (nuint)(data.Length - written));
                if (n <= 0)
                {
                    // A full disk: the caller drops (and counts, and reports) the batch rather
                    // than block the container; what got halfway is cut off by Truncate(Length).
                    throw n < 0 ? LinuxException.FromLastError("write", Current) : new IOException($"write '{Current}': nothing written");
                }
                written += (int)n;
            }
        }
        Length += data.Length;
    }

    public void Truncate(long length)
    {
        ftruncate(_fd, length);
        Length = length;
    }

    public void Rotate(int maxFiles)
    {
        close(_fd);
        for (var i = maxFiles - 1; i >= 1; i--)
        {
            var from = i == 1 ? Current : $"{Current}.{i - 1}";
            var to = $"{Current}.{i}";
            if (File.Exists(from))
            {
                File.Move(from, to, overwrite: true);
            }
        }
        if (maxFiles <= 1)
        {
            File.Delete(Current);
        }
        OpenCurrent();
    }

    /// <summary>The files oldest first: what `logs` reads.</summary>
    public static IEnumerable<string> Files(string dir)
    {
        var path = Path.Combine(dir, FileName);
        var rotated = Directory.Exists(dir)
            ? Directory.EnumerateFiles(dir, FileName + ".*")
                .Where(f => f.Length > path.Length + 1 && f.StartsWith(path + ".", StringComparison.Ordinal))
                .Select(f => (File: f, N: int.TryParse(f[(path.Length + 1)..], out var n) ? n : -1))
                .Where(x => x.N > 0).OrderByDescending(x => x.N).Select(x => x.File).ToList()
            : [];
        return File.Exists(path) ? rotated.Append(path) : rotated;
    }

    public void Dispose()
    {
        if (_fd >= 0)
        {
            close(_fd);
            _fd = -1;
        }
    }
}

using System.Buffers;
using System.Globalization;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Text;

namespace Orchestrator.Node.Logs;

/// <summary>Reads a container's logs back: the last N lines, since a time, and following new ones.</summary>
public static class LogReader
{
    /// <summary>The last <paramref name="tail"/> lines (all when null) at or after <paramref name="since"/> and before <paramref name="until"/>.</summary>
    public static async Task<IReadOnlyList<LogLine>> ReadAsync(string logDir, int? tail, DateTimeOffset? since, DateTimeOffset? until = null, CancellationToken cancellationToken = default)
    {
        var lines = new List<LogLine>();
        foreach (var file in ContainerLog.Files(logDir))
        {
            var stream = OpenShared(file);
            if (stream is null)
            {
                continue;
            }
            await using var _ = stream.ConfigureAwait(false);
            await foreach (var line in LinesAsync(PipeReader.Create(stream), null, cancellationToken).ConfigureAwait(false))
            {
                if ((since is null || line.Time >= since) && (until is null || line.Time < until))
                {
                    lines.Add(line);
                }
                if (tail is { } n && lines.Count > 2 * n + 1024)
                {
                    lines.RemoveRange(0, lines.Count - n); // bounded memory on big logs
                }
            }
        }
        return tail is { } t && lines.Count > t ? lines.GetRange(lines.Count - t, t) : lines;
    }

    /// <summary>
    /// The last <paramref name="tail"/> lines (at or after <paramref name="since"/>), then every new
    /// line as it is written, across rotations, until cancelled. The history and the new lines
    /// meet at an exact byte offset of the current file: none is skipped or sent twice.
    /// </summary>
    public static async IAsyncEnumerable<LogLine> FollowAsync(string logDir, int? tail, DateTimeOffset? since, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var path = Path.Combine(logDir, ContainerLog.FileName);
        FileStream? first;
        while ((first = OpenShared(path)) is null)
        {
            try
            {
                await Task.Delay(100, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                yield break;
            }
        }
        var history = new List<LogLine>();
        void Keep(LogLine line)
        {
            if (since is null || line.Time >= since)
            {
                history.Add(line);
            }
            if (tail is { } n && history.Count > 2 * n + 1024)
            {
                history.RemoveRange(0, history.Count - n);
            }
        }
        var current = FileIdentity.Of(first);
        foreach (var file in ContainerLog.Files(logDir).Where(f => f != path))
        {
            var rotated = OpenShared(file);
            if (rotated is null)
            {
                continue;
            }
            if (FileIdentity.Of(rotated) == current)
            {
                rotated.Dispose(); // the current file, rotated since it was opened: read below
                continue;
            }
            await using var _ = rotated.ConfigureAwait(false);
            await foreach (var line in LinesAsync(PipeReader.Create(rotated), null, cancellationToken).ConfigureAwait(false))
            {
                Keep(line);
            }
        }
        var consumed = new ByteCount();
        await foreach (var line in LinesAsync(PipeReader.Create(first, new StreamPipeReaderOptions(leaveOpen: true)), consumed, cancellationToken).ConfigureAwait(false))
        {
            Keep(line);
        }
        foreach (var line in tail is { } t && history.Count > t ? history.GetRange(history.Count - t, t) : history)
        {
            yield return line;
        }
        first.Seek(consumed.Value, SeekOrigin.Begin); // a line still being written is read again, whole

        // The file read last stays open until the next is chosen: while it is open its inode
        // cannot be reused by a new file, so it is found by identity wherever rotation put it.
        FileStream? finished = null;
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                var stream = first ?? (finished is null ? OpenShared(path) : OpenNextAfter(logDir, finished));
                first = null;
                if (stream is null)
                {
                    try
                    {
                        await Task.Delay(100, cancellationToken).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        yield break;
                    }
                    continue;
                }
                finished?.Dispose();
                finished = stream;
                // After a rotation the next file is read from its start: the pump rotates only
                // between whole batches, so nothing is skipped or read twice.
                var reader = PipeReader.Create(new TailingStream(stream, path, cancellationToken), new StreamPipeReaderOptions(leaveOpen: true));
                IAsyncEnumerator<LogLine> lines = LinesAsync(reader, null, cancellationToken).GetAsyncEnumerator(cancellationToken);
                await using (lines.ConfigureAwait(false))
                {
                    while (true)
                    {
                        try
                        {
                            if (!await lines.MoveNextAsync().ConfigureAwait(false))
                            {
                                break;
                            }
                        }
                        catch (OperationCanceledException)
                        {
                            yield break;
                        }
                        yield return lines.Current;
                    }
                }
            }
        }
        finally
        {
            first?.Dispose(); // cancelled before the loop took it
            finished?.Dispose();
        }
    }

    private sealed class ByteCount
    {
        public long Value { get; set; }
    }

    private static async IAsyncEnumerable<LogLine> LinesAsync(PipeReader reader, ByteCount? consumed, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                var buffer = result.Buffer;
                while (TryReadLine(ref buffer, out var line))
                {
                    if (consumed is not null)
                    {
                        consumed.Value += line.Length + 1;
                    }
                    if (Parse(line) is { } parsed)
                    {
                        yield return parsed;
                    }
                }
                reader.AdvanceTo(buffer.Start, buffer.End);
                if (result.IsCompleted)
                {
                    break;
                }
            }
        }
        finally
        {
            await reader.CompleteAsync().ConfigureAwait(false);
        }
    }

    private static bool TryReadLine(ref ReadOnlySequence<byte> buffer, out ReadOnlySequence<byte> line)
    {
        var position = buffer.PositionOf((byte)'\n');
        if (position is null)
        {
            line = default;
            return false;
        }
        line = buffer.Slice(0, position.Value);
        buffer = buffer.Slice(buffer.GetPosition(1, position.Value));
        return true;
    }

    /// <summary>"TIME STREAM F|P TEXT"; null for a line that is not one of ours.</summary>
    internal static LogLine? Parse(ReadOnlySequence<byte> line)
    {
        var text = Encoding.UTF8.GetString(line);
        var first = text.IndexOf(' ', StringComparison.Ordinal);
        var second = first < 0 ? -1 : text.IndexOf(' ', first + 1);
        if (second < 0 || second + 2 > text.Length
            || !DateTimeOffset.TryParse(text.AsSpan(0, first), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var time))
        {
            return null;
        }
        var tag = text[second + 1];
        var body = second + 3 <= text.Length ? text[(second + 3)..] : "";
        return new LogLine(time, text[(first + 1)..second], body, tag == 'P');
    }

    /// <summary>
    /// The file written after <paramref name="finished"/> (null: none yet). Rotation shifts the
    /// files one place (container.log → .1 → .2 …), so that is the one after it, oldest first;
    /// the oldest there is when it is gone (files older than the follower's place dropped
    /// meanwhile: what was in them is lost to the retention, as with any rotated log).
    /// </summary>
    private static FileStream? OpenNextAfter(string logDir, FileStream finished)
    {
        var read = FileIdentity.Of(finished);
        var files = new List<FileStream>();
        try
        {
            foreach (var file in ContainerLog.Files(logDir))
            {
                if (OpenShared(file) is { } stream)
                {
                    files.Add(stream);
                }
            }
            var at = files.FindIndex(f => FileIdentity.Of(f) == read);
            var next = at + 1 < files.Count ? files[at + 1] : null; // at -1: the oldest
            files.Remove(next!);
            return next;
        }
        finally
        {
            foreach (var other in files)
            {
                other.Dispose();
            }
        }
    }

    /// <summary>A file by device and inode: what stays the same across the renames of a rotation.</summary>
    private readonly record struct FileIdentity(ulong Device, ulong Inode)
    {
        public static unsafe FileIdentity Of(FileStream stream)
        {
            Tmds.Linux.stat st;
            var fd = (int)stream.SafeFileHandle.DangerousGetHandle();
            if (Tmds.Linux.LibC.fstat(fd, &st) != 0)
            {
                throw Orchestrator.Linux.LinuxException.FromLastError("fstat", stream.Name);
            }
            return new FileIdentity((ulong)st.st_dev, (ulong)st.st_ino);
        }
    }

    private static FileStream? OpenShared(string path)
    {
        try
        {
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 64 * 1024, useAsync: false);
        }
        catch (FileNotFoundException)
        {
            return null;
        }
        catch (DirectoryNotFoundException)
        {
            return null;
        }
    }

    /// <summary>
    /// A log file read as a stream that, at its end, waits for more instead of ending; it ends
    /// when the file has been rotated away from <paramref name="path"/> (its /proc/self/fd link
    /// no longer names it) and everything in it has been read, or when stopped.
    /// </summary>
    private sealed class TailingStream(FileStream inner, string path, CancellationToken stop) : Stream
    {
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => inner.Position; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();
        private bool Rotated()
        {
            try
            {
                var target = new FileInfo($"/proc/self/fd/{inner.SafeFileHandle.DangerousGetHandle()}").LinkTarget;
                return target != path;
            }
            catch (IOException)
            {
                return true;
            }
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(stop, cancellationToken);
            while (true)
            {
                var n = await inner.ReadAsync(buffer, linked.Token).ConfigureAwait(false);
                if (n > 0)
                {
                    return n;
                }
                if (Rotated())
                {
                    // One more read: the last batch may have landed between the two checks.
                    return await inner.ReadAsync(buffer, linked.Token).ConfigureAwait(false);
                }
                try
                {
                    await Task.Delay(50, linked.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return 0;
                }
            }
        }
    }
}

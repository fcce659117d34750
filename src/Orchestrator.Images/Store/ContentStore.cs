using Orchestrator.Api;
using System.Security.Cryptography;

namespace Orchestrator.Images.Store;

/// <summary>A blob was not what its digest said; nothing of it was kept.</summary>
public sealed class DigestMismatchException(string expected, string actual, long size)
    : OrchestratorException(ErrorKind.Invalid, $"blob {expected} arrived as {actual} ({size} bytes); it was discarded: the source is corrupt or tampered with")
{
    public string Expected { get; } = expected;
    public string Actual { get; } = actual;
}

/// <summary>Storing a blob would take the store past its disk budget; nothing was kept.</summary>
public sealed class DiskBudgetExceededException(string what, long needed, long used, long budget)
    : OrchestratorException(ErrorKind.Unavailable, $"{what} needs {needed} bytes but the image store holds {used} of its {budget}-byte budget; run gc, remove images or raise the budget (images.disk_budget)")
{
    public long Needed { get; } = needed;
}

/// <summary>
/// Blobs addressed by their sha256 digest under one directory. Every byte is hashed on the
/// way in; a blob is renamed into place only once its digest and size are right, so a crash
/// or a bad source never leaves a partial or wrong blob behind. Writes stay within a byte
/// budget (edge disks are small).
/// </summary>
public sealed class ContentStore
{
    private readonly string _blobs;
    private readonly string _ingest;
    private readonly Lock _budgetGate = new();
    private long _reserved;
    private long _blobBytes; // kept as blobs come and go: a write must not rescan the store per chunk

    public ContentStore(string root, long budgetBytes = long.MaxValue)
    {
        Root = root;
        BudgetBytes = budgetBytes;
        _blobs = Path.Combine(root, "blobs", "sha256");
        _ingest = Path.Combine(root, "ingest");
        Directory.CreateDirectory(_blobs);
        Directory.CreateDirectory(_ingest);
        // Leftovers of an interrupted write are never valid content.
        foreach (var stale in Directory.EnumerateFiles(_ingest))
        {
            File.Delete(stale);
        }
        _blobBytes = Directory.EnumerateFiles(_blobs).Sum(f => new FileInfo(f).Length);
    }

    public string Root { get; }
    public long BudgetBytes { get; }

    /// <summary>Bytes held by blobs (and by writes in progress).</summary>
    public long UsedBytes
    {
        get
        {
            lock (_budgetGate)
            {
                return _blobBytes + _reserved;
            }
        }
    }


    public static bool IsValidDigest(string digest)
        => digest.StartsWith("sha256:", StringComparison.Ordinal) && digest.Length == 71 && digest[7..].All(char.IsAsciiHexDigitLower);

    private static string Hex(string digest)
        => IsValidDigest(digest) ? digest[7..] : throw new ArgumentException($"'{digest}' is not a sha256 digest (sha256: and 64 lower-case hex digits)");

    public string PathOf(string digest) => Path.Combine(_blobs, Hex(digest));

    public bool Contains(string digest) => File.Exists(PathOf(digest));

    public Stream Open(string digest)
    {
        var path = PathOf(digest);
        return File.Exists(path) ? File.OpenRead(path) : throw new FileNotFoundException($"blob {digest} is not in the store at {Root}", path);
    }

    public IEnumerable<string> Digests() => Directory.EnumerateFiles(_blobs).Select(f => "sha256:" + Path.GetFileName(f));

    /// <summary>
    /// Stores the stream's bytes as the blob <paramref name="digest"/>, verifying digest and
    /// (when given) size. Present already: the stream is not read. Returns the bytes stored.
    /// </summary>
    public async Task<long> WriteAsync(Stream data, string digest, long? size = null, CancellationToken cancellationToken = default)
    {
        var final = PathOf(digest);
        if (File.Exists(final))
        {
            return 0;
        }
        var reservation = size ?? 0;
        Reserve(digest, reservation);
        var temp = Path.Combine(_ingest, $"{Hex(digest)}.{Guid.NewGuid():N}");
        long written = 0;
        try
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var output = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 81920, FileOptions.Asynchronous);
            await using (output.ConfigureAwait(false))
            {
                var buffer = new byte[81920];
                int n;
                while ((n = await data.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
                {
                    written += n;
                    if (size is { } expected && written > expected)
                    {
                        throw new DigestMismatchException(digest, "a longer blob", written);
                    }
                    if (written > reservation)
                    {
                        // Size unknown up front: grow the reservation as bytes arrive.
                        Reserve(digest, written - reservation);
                        reservation = written;
                    }
                    hash.AppendData(buffer, 0, n);
                    await output.WriteAsync(buffer.AsMemory(0, n), cancellationToken).ConfigureAwait(false);
                }
                await output.FlushAsync(cancellationToken).ConfigureAwait(false);
                output.Flush(flushToDisk: true);
            }
            var actual = "sha256:" + Convert.ToHexStringLower(hash.GetHashAndReset());
            if (actual != digest || (size is { } want && want != written))
            {
                throw new DigestMismatchException(digest, actual, written);
            }
            Commit(temp, final, written);
            return written;
        }
        finally
        {
            Release(reservation);
            if (File.Exists(temp))
            {
                File.Delete(temp);
            }
        }
    }

    /// <summary>
    /// Like <see cref="WriteAsync(Stream, string, long?, CancellationToken)"/>, but a transfer
    /// that breaks keeps what arrived (ingest/&lt;hex&gt;.partial): the next call asks
    /// <paramref name="open"/> for the rest from that offset (an HTTP Range request), hashing
    /// the kept bytes first. <paramref name="open"/> returns the stream and the offset it starts
    /// at (0 when the source ignored the range: the partial is then dropped).
    /// </summary>
    public async Task<long> WriteResumableAsync(Func<long, CancellationToken, Task<(Stream Data, long Offset)>> open, string digest, long size, CancellationToken cancellationToken = default)
    {
        var final = PathOf(digest);
        if (File.Exists(final))
        {
            return 0;
        }
        Reserve(digest, size);
        var partial = Path.Combine(_ingest, Hex(digest) + ".partial");
        var keepPartial = false;
        try
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var have = File.Exists(partial) ? new FileInfo(partial).Length : 0;
            if (have > size)
            {
                File.Delete(partial);
                have = 0;
            }
            var (data, offset) = await open(have, cancellationToken).ConfigureAwait(false);
            await using (data.ConfigureAwait(false))
            {
                if (offset != have)
                {
                    File.Delete(partial); // the source sent it all again: start over
                    have = 0;
                }
                var output = new FileStream(partial, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 81920, FileOptions.Asynchronous);
                await using (output.ConfigureAwait(false))
                {
                    var buffer = new byte[81920];
                    int n;
                    // The kept bytes are hashed again: nothing on disk is trusted without it.
                    long hashed = 0;
                    while (hashed < have && (n = await output.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, have - hashed)), cancellationToken).ConfigureAwait(false)) > 0)
                    {
                        hash.AppendData(buffer, 0, n);
                        hashed += n;
                    }
                    output.SetLength(have);
                    output.Position = have;
                    var written = have;
                    keepPartial = true; // from here, a broken transfer leaves a resumable partial
                    while ((n = await data.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
                    {
                        written += n;
                        if (written > size)
                        {
                            keepPartial = false;
                            throw new DigestMismatchException(digest, "a longer blob", written);
                        }
                        hash.AppendData(buffer, 0, n);
                        await output.WriteAsync(buffer.AsMemory(0, n), cancellationToken).ConfigureAwait(false);
                    }
                    await output.FlushAsync(cancellationToken).ConfigureAwait(false);
                    output.Flush(flushToDisk: true);
                    keepPartial = false;
                    var actual = "sha256:" + Convert.ToHexStringLower(hash.GetHashAndReset());
                    if (actual != digest || written != size)
                    {
                        throw new DigestMismatchException(digest, actual, written);
                    }
                }
            }
            Commit(partial, final, size);
            return size;
        }
        finally
        {
            Release(size);
            if (!keepPartial && File.Exists(partial))
            {
                File.Delete(partial);
            }
        }
    }

    public Task<long> WriteAsync(byte[] data, string digest, CancellationToken cancellationToken = default)
        => WriteAsync(new MemoryStream(data), digest, data.Length, cancellationToken);

    /// <summary>sha256 of the bytes, as a digest.</summary>
    public static string DigestOf(ReadOnlySpan<byte> data) => "sha256:" + Convert.ToHexStringLower(SHA256.HashData(data));

    private void Reserve(string what, long bytes)
    {
        lock (_budgetGate)
        {
            var used = _blobBytes + _reserved;
            if (used + bytes > BudgetBytes)
            {
                throw new DiskBudgetExceededException($"blob {what}", bytes, used, BudgetBytes);
            }
            _reserved += bytes;
        }
    }

    private void Release(long bytes)
    {
        lock (_budgetGate)
        {
            _reserved -= bytes;
        }
    }

    /// <summary>Renames a verified blob into place and counts it (once, even if it raced in twice).</summary>
    private void Commit(string from, string final, long size)
    {
        lock (_budgetGate)
        {
            var existed = File.Exists(final);
            File.Move(from, final, overwrite: true);
            if (!existed)
            {
                _blobBytes += size;
            }
        }
    }

    public void Delete(string digest)
    {
        var path = PathOf(digest);
        lock (_budgetGate)
        {
            var info = new FileInfo(path);
            if (info.Exists)
            {
                _blobBytes -= info.Length;
                info.Delete();
            }
        }
    }

    /// <summary>Removes every blob not in <paramref name="keep"/>; returns the digests removed.</summary>
    public IReadOnlyList<string> Sweep(IReadOnlySet<string> keep)
    {
        var removed = new List<string>();
        foreach (var digest in Digests().ToList())
        {
            if (!keep.Contains(digest))
            {
                Delete(digest);
                removed.Add(digest);
            }
        }
        return removed;
    }
}

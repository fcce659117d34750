namespace Orchestrator.Ctl;

/// <summary>
/// attach's --detach-keys, as docker reads them: comma-separated keys, each one character
/// (<c>a</c>) or <c>ctrl-</c> and a letter or one of <c>@ [ \ ] ^ _</c> (<c>ctrl-p</c>), or
/// <c>DEL</c>; the default <c>ctrl-p,ctrl-q</c>; empty turns detaching off.
/// </summary>
internal static class DetachKeys
{
    public const string Default = "ctrl-p,ctrl-q";

    private const string Fix = "use comma-separated keys, each a character (a) or ctrl-LETTER (ctrl-p), ctrl-@, ctrl-[, ctrl-\\, ctrl-], ctrl-^, ctrl-_ or DEL: --detach-keys=ctrl-p,ctrl-q (--detach-keys= turns detaching off)";

    /// <summary>The bytes the keys send, in order; empty: detaching is off.</summary>
    public static byte[] Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (spec.Length == 0)
        {
            return [];
        }
        var bytes = new List<byte>();
        foreach (var key in spec.Split(','))
        {
            bytes.Add(Key(key) ?? throw new UsageException(key.Length == 0
                ? $"--detach-keys '{spec}' has an empty key; {Fix}"
                : $"--detach-keys '{spec}': '{key}' is not a key; {Fix}"));
        }
        return [.. bytes];
    }

    private static byte? Key(string key)
    {
        if (key.Length == 1)
        {
            // One character: what the key sends. Printable ASCII (a control character is typed as ctrl-X).
            return key[0] is >= ' ' and <= '~' ? (byte)key[0] : null;
        }
        if (key == "DEL")
        {
            return 0x7F;
        }
        if (key.Length == 6 && key.StartsWith("ctrl-", StringComparison.OrdinalIgnoreCase))
        {
            // ctrl-@ is 0, ctrl-a 1 … ctrl-z 26, ctrl-[ 27 … ctrl-_ 31: the character's code with bit 6 cleared.
            var c = char.ToUpperInvariant(key[5]);
            return c is >= '@' and <= '_' ? (byte)(c - '@') : null;
        }
        return null;
    }
}

/// <summary>
/// Finds the detach keys in the input as it is read, however the reads split it: bytes that
/// cannot begin the sequence pass at once, the bytes of a partial sequence are held until it
/// completes (detach: they, and anything after them, are not sent) or turns out not to be it
/// (they pass, in order).
/// </summary>
internal sealed class DetachScanner(byte[] keys)
{
    private readonly List<byte> _held = [];

    /// <summary>Whether the sequence has been read (what follows it is dropped).</summary>
    public bool Detached { get; private set; }

    /// <summary>The bytes of <paramref name="input"/> (and of a partial sequence held before it) that go to the process.</summary>
    public byte[] Scan(ReadOnlySpan<byte> input)
    {
        if (keys.Length == 0)
        {
            return input.ToArray();
        }
        var pass = new List<byte>(input.Length + _held.Count);
        foreach (var b in input)
        {
            if (Detached)
            {
                break;
            }
            _held.Add(b);
            // Keep the longest end of what is held that may still begin the sequence; the rest passes.
            while (_held.Count > 0 && !StartsSequence(_held))
            {
                pass.Add(_held[0]);
                _held.RemoveAt(0);
            }
            if (_held.Count == keys.Length)
            {
                Detached = true;
                _held.Clear();
            }
        }
        return [.. pass];
    }

    /// <summary>At the end of the input: a partial sequence that never completed, which goes on as typed.</summary>
    public byte[] Flush()
    {
        var held = _held.ToArray();
        _held.Clear();
        return held;
    }

    private bool StartsSequence(List<byte> held)
    {
        for (var i = 0; i < held.Count; i++)
        {
            if (held[i] != keys[i])
            {
                return false;
            }
        }
        return true;
    }
}

/// <summary>
/// An input with the detach keys taken out (<see cref="DetachScanner"/>): what precedes them is
/// read as usual; the read after that calls <c>detach</c> and is cancelled.
/// </summary>
internal sealed class DetachingInput(Stream inner, byte[] keys, Action detach) : InputStream
{
    private readonly DetachScanner _scanner = new(keys);
    private readonly byte[] _chunk = new byte[16 * 1024];
    private byte[] _pending = [];
    private int _pendingAt;
    private bool _ended;

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (_pendingAt == _pending.Length)
        {
            if (_scanner.Detached)
            {
                detach();
                throw new OperationCanceledException("the detach keys were read");
            }
            if (_ended)
            {
                return 0; // a terminal's end-of-file is read once: do not wait on it again
            }
            var n = await inner.ReadAsync(_chunk, cancellationToken).ConfigureAwait(false);
            _ended = n == 0;
            (_pending, _pendingAt) = (_ended ? _scanner.Flush() : _scanner.Scan(_chunk.AsSpan(0, n)), 0);
        }
        var count = Math.Min(buffer.Length, _pending.Length - _pendingAt);
        _pending.AsSpan(_pendingAt, count).CopyTo(buffer.Span);
        _pendingAt += count;
        return count;
    }

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
        }
        base.Dispose(disposing);
    }
}

using System.Text;
using Orchestrator.Ctl;

namespace Orchestrator.Syntax.Tests;

/// <summary>
/// orchctl attach's command line as orchctl reads it (its entry in the command table, then
/// AttachCommand.Options), docker's --detach-keys grammar, and the scanner that finds the keys
/// in the input however the reads split it.
/// </summary>
public sealed class AttachArgsTests
{
    private static AttachCommand.Options Attach(params string[] args) => AttachCommand.Options.From(ParsedArgs.Parse("attach", args));

    private static string UsageError(params string[] args) => Assert.Throws<UsageException>(() => Attach(args)).Message;

    private static readonly byte[] s_ctrlPCtrlQ = [0x10, 0x11];

    [Fact]
    public void Attach_flags_parse_alone_grouped_and_in_any_order()
    {
        var plain = Attach("web-0");
        Assert.Equal("web-0", plain.Name);
        Assert.False(plain.Stdin);
        Assert.False(plain.Tty);
        Assert.Equal(s_ctrlPCtrlQ, plain.DetachKeys); // docker's default

        foreach (var args in new[] { ["-it", "web-0"], ["-ti", "web-0"], ["web-0", "-i", "-t"], ["--stdin", "--tty", "web-0"], new[] { "-i", "web-0", "--tty" } })
        {
            var both = Attach(args);
            Assert.True(both.Stdin && both.Tty, string.Join(' ', args));
            Assert.Equal("web-0", both.Name);
        }
        Assert.True(Attach("-i", "web-0") is { Stdin: true, Tty: false });
        Assert.True(Attach("-t", "web-0") is { Stdin: false, Tty: true });

        // -n takes a value, also last in a group (-itn NODE), as exec's.
        var parsed = ParsedArgs.Parse("attach", ["-itn", "gw-01", "console-0", "--detach-keys", "ctrl-a,d"]);
        Assert.Equal("gw-01", parsed.Value("--node"));
        var options = AttachCommand.Options.From(parsed);
        Assert.True(options is { Name: "console-0", Stdin: true, Tty: true });
        Assert.Equal([0x01, (byte)'d'], options.DetachKeys);
    }

    [Fact]
    public void Detach_keys_read_as_docker_reads_them_and_empty_turns_them_off()
    {
        Assert.Equal(s_ctrlPCtrlQ, DetachKeys.Parse("ctrl-p,ctrl-q"));
        Assert.Equal([0x01], DetachKeys.Parse("ctrl-a"));
        Assert.Equal("ab"u8.ToArray(), DetachKeys.Parse("a,b"));
        Assert.Equal([0x00, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F, 0x7F], DetachKeys.Parse("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_,DEL"));
        Assert.Equal([0x1A, (byte)'Z', (byte)'1'], DetachKeys.Parse("ctrl-z,Z,1"));
        Assert.Empty(DetachKeys.Parse(""));

        // On the command line: --detach-keys=, or "" as the next word, turns them off.
        Assert.Empty(Attach("--detach-keys=", "web-0").DetachKeys);
        Assert.Empty(Attach("--detach-keys", "", "web-0").DetachKeys);
        Assert.Equal([0x01, (byte)'x'], Attach("web-0", "--detach-keys=ctrl-a,x").DetachKeys);
    }

    [Fact]
    public void A_key_that_is_not_one_is_a_usage_error_naming_the_fix()
    {
        foreach (var spec in new[] { "ctrl-1", "ctrl-pp", "ctrl-", "alt-x", "ab", "ctrl-p,,ctrl-q", "ctrl-p,", "\u00e9", "\t" })
        {
            var message = UsageError($"--detach-keys={spec}", "web-0");
            Assert.StartsWith($"--detach-keys '{spec}'", message, StringComparison.Ordinal);
            Assert.Contains("--detach-keys=ctrl-p,ctrl-q", message, StringComparison.Ordinal);
            Assert.Contains("ctrl-LETTER", message, StringComparison.Ordinal);
        }
        Assert.Contains("'ctrl-1' is not a key", UsageError("--detach-keys=ctrl-1", "web-0"), StringComparison.Ordinal);
        Assert.Contains("has an empty key", UsageError("--detach-keys=ctrl-p,,ctrl-q", "web-0"), StringComparison.Ordinal);
    }

    [Fact]
    public void Usage_errors_say_what_attach_takes()
    {
        Assert.StartsWith("attach needs a container name: orchctl attach CONTAINER", UsageError(), StringComparison.Ordinal);
        Assert.Contains("orchctl exec -it CONTAINER -- sh", UsageError("web-0", "--", "sh"), StringComparison.Ordinal);
        Assert.Contains("runs no command", UsageError("web-0", "sh"), StringComparison.Ordinal);
        Assert.Equal("attach has no flag --detach-key (did you mean --detach-keys?); `orchctl attach --help` lists its flags", UsageError("--detach-key=x", "web-0"));
        Assert.Equal("attach has no flag --stdn (did you mean --stdin?); `orchctl attach --help` lists its flags", UsageError("--stdn", "web-0"));
        Assert.Equal("attach has no flag -x; `orchctl attach --help` lists its flags", UsageError("-x", "web-0"));
        Assert.Equal("attach has no flag --frobnicate; `orchctl attach --help` lists its flags", UsageError("--frobnicate", "web-0"));
        Assert.Equal("--detach-keys needs a value: --detach-keys KEYS", UsageError("web-0", "--detach-keys"));
        // -d is no flag of attach, so -itd is no group.
        Assert.StartsWith("attach has no flag -itd", UsageError("-itd", "web-0"), StringComparison.Ordinal);
    }

    [Fact]
    public void The_scanner_finds_the_keys_split_across_reads_and_drops_what_follows()
    {
        var scanner = new DetachScanner(s_ctrlPCtrlQ);
        Assert.Equal("ls"u8.ToArray(), scanner.Scan("ls\u0010"u8));
        Assert.False(scanner.Detached);
        Assert.Empty(scanner.Scan("\u0011after"u8));
        Assert.True(scanner.Detached);
        Assert.Empty(scanner.Scan("more"u8));

        var oneRead = new DetachScanner(s_ctrlPCtrlQ);
        Assert.Equal("echo hi\r"u8.ToArray(), oneRead.Scan("echo hi\r\u0010\u0011exit\r"u8));
        Assert.True(oneRead.Detached);

        // A byte a read: each held until it is known.
        var typed = new DetachScanner("abc"u8.ToArray());
        Assert.Equal("x"u8.ToArray(), typed.Scan("x"u8));
        Assert.Empty(typed.Scan("a"u8));
        Assert.Empty(typed.Scan("b"u8));
        Assert.Empty(typed.Scan("c"u8));
        Assert.True(typed.Detached);
    }

    [Fact]
    public void A_partial_sequence_that_does_not_complete_passes_on_in_order()
    {
        var scanner = new DetachScanner(s_ctrlPCtrlQ);
        Assert.Empty(scanner.Scan("\u0010"u8)); // held: it may be the start
        Assert.Equal("\u0010x"u8.ToArray(), scanner.Scan("x"u8));
        Assert.False(scanner.Detached);
        // ctrl-p twice: the first goes on, the second may still start the sequence, which then completes.
        Assert.Equal("\u0010"u8.ToArray(), scanner.Scan("\u0010\u0010"u8));
        Assert.Empty(scanner.Scan("\u0011"u8));
        Assert.True(scanner.Detached);

        // An overlap: in "aab" with keys "ab" the second a starts the sequence.
        var overlap = new DetachScanner("aab"u8.ToArray());
        Assert.Equal("a"u8.ToArray(), overlap.Scan("aaa"u8));
        Assert.Empty(overlap.Scan("b"u8));
        Assert.True(overlap.Detached);

        // The input ends inside a sequence: the held bytes go on as typed.
        var ended = new DetachScanner(s_ctrlPCtrlQ);
        Assert.Equal("q"u8.ToArray(), ended.Scan("q\u0010"u8));
        Assert.Equal("\u0010"u8.ToArray(), ended.Flush());
        Assert.False(ended.Detached);
    }

    [Fact]
    public void Without_keys_everything_passes()
    {
        var scanner = new DetachScanner([]);
        Assert.Equal("\u0010\u0011\u0003"u8.ToArray(), scanner.Scan("\u0010\u0011\u0003"u8));
        Assert.False(scanner.Detached);
        Assert.Empty(scanner.Flush());
    }

    [Fact]
    public async Task The_input_stream_hands_over_what_precedes_the_keys_then_detaches()
    {
        var detached = 0;
        using var input = new DetachingInput(new Chunks("hel", "lo\u0010", "\u0011", "never sent"), s_ctrlPCtrlQ, () => detached++);
        Assert.Equal("hello", await ReadToDetachOrEndAsync(input));
        Assert.Equal(1, detached);

        // Disabled: the keys are input like any other; the end is the end.
        var never = 0;
        using var plain = new DetachingInput(new Chunks("a\u0010", "\u0011b"), [], () => never++);
        Assert.Equal("a\u0010\u0011b", await ReadToDetachOrEndAsync(plain));
        Assert.Equal(0, never);

        // A partial sequence at the end of the input goes on, and the end stays the end.
        using var partial = new DetachingInput(new Chunks("x\u0010"), s_ctrlPCtrlQ, () => never++);
        Assert.Equal("x\u0010", await ReadToDetachOrEndAsync(partial));
        Assert.Equal(0, await partial.ReadAsync(new byte[8], TestContext.Current.CancellationToken));
        Assert.Equal(0, never);

        // A small buffer gets what a read passed on over several reads.
        using var small = new DetachingInput(new Chunks("abcdef"), s_ctrlPCtrlQ, () => never++);
        var buffer = new byte[4];
        Assert.Equal(4, await small.ReadAsync(buffer, TestContext.Current.CancellationToken));
        Assert.Equal(2, await small.ReadAsync(buffer, TestContext.Current.CancellationToken));
        Assert.Equal("ef", Encoding.Latin1.GetString(buffer, 0, 2));
    }

    /// <summary>What a session's sender gets: the reads' bytes until the end, or until a read is cancelled by the keys.</summary>
    private static async Task<string> ReadToDetachOrEndAsync(Stream input)
    {
        var text = new StringBuilder();
        var buffer = new byte[64];
        try
        {
            int n;
            while ((n = await input.ReadAsync(buffer, TestContext.Current.CancellationToken)) > 0)
            {
                text.Append(Encoding.Latin1.GetString(buffer, 0, n));
            }
        }
        catch (OperationCanceledException)
        {
        }
        return text.ToString();
    }

    /// <summary>A stream that returns one chunk per read, as a terminal hands over keys, then the end (once: a second read after it fails).</summary>
    private sealed class Chunks(params string[] chunks) : InputStream
    {
        private int _next;

        public override int Read(byte[] buffer, int offset, int count)
        {
            if (_next > chunks.Length)
            {
                throw new InvalidOperationException("read again after the end (a terminal would wait here)");
            }
            if (_next == chunks.Length)
            {
                _next++;
                return 0;
            }
            var bytes = Encoding.Latin1.GetBytes(chunks[_next++]);
            Assert.True(bytes.Length <= count);
            bytes.CopyTo(buffer, offset);
            return bytes.Length;
        }
    }
}

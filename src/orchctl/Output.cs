using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Orchestrator.Ctl;

/// <summary>
/// Whether standard output is a terminal that gets colour and progress bars: only a TTY, never
/// with NO_COLOR set (any value), TERM=dumb or --no-color. Piped output has no escape codes.
/// </summary>
internal static class Terminal
{
    public static bool NoColorFlag { get; set; }

    public static bool IsTty => !Console.IsOutputRedirected && Environment.GetEnvironmentVariable("TERM") is not "dumb";

    public static bool Color => IsTty && !NoColorFlag && Environment.GetEnvironmentVariable("NO_COLOR") is null;

    public static bool StderrColor => !Console.IsErrorRedirected && !NoColorFlag && Environment.GetEnvironmentVariable("NO_COLOR") is null
        && Environment.GetEnvironmentVariable("TERM") is not "dumb";

    /// <summary>
    /// Ctrl-C (SIGINT) and SIGTERM cancel <paramref name="cancellation"/> instead of killing the
    /// process. A signal registration, not Console.CancelKeyPress, which would set up the terminal
    /// (an escape sequence on the screen).
    /// </summary>
    public static IDisposable OnInterrupt(CancellationTokenSource cancellation)
    {
        void Handler(System.Runtime.InteropServices.PosixSignalContext context)
        {
            context.Cancel = true;
            try
            {
                cancellation.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // the signal came as the command was ending: it has nothing left to cancel
            }
        }
        return new Registrations(System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, Handler),
            System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, Handler));
    }

    private sealed class Registrations(params IDisposable[] registrations) : IDisposable
    {
        public void Dispose()
        {
            foreach (var registration in registrations)
            {
                registration.Dispose();
            }
        }
    }

    public static string Paint(string text, string code, bool enabled) => enabled && text.Length > 0 ? $"\u001b[{code}m{text}\u001b[0m" : text;

    public const string Bold = "1", Red = "31", Green = "32", Yellow = "33", Cyan = "36", Dim = "2";

    /// <summary>The colour of a state word: good green, in-between yellow, bad red; null for anything else.</summary>
    public static string? StateColor(string value) => value.Split(',')[0].Split(' ')[0] switch
    {
        "ready" or "running" or "complete" or "yes" or "True" or "created" => Green,
        "unreachable" or "progressing" or "degraded" or "paused" or "backoff" or "created-pending" or "cordoned" or "draining" or "changed" or "configured" => Yellow,
        "lost" or "failed" or "rolled-back" or "exited" or "stopped" or "no" or "False" => Red,
        _ => null,
    };
}

/// <summary>
/// Standard output or error as a plain file descriptor: no terminal set-up sequences (which .NET's
/// console streams write first on a TTY), and a reader that went away (`orchctl … | head`) ends the
/// output quietly instead of with an exception.
/// </summary>
internal sealed partial class StandardStream(int fd) : Stream
{
    private bool _closed;

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        if (_closed)
        {
            return;
        }
        // write(2) at the descriptor's offset: `(echo a; orchctl …; echo b) > f` and two orchctl
        // appending to one file keep every byte, in order.
        if (OperatingSystem.IsWindows())
        {
            try
            {
                (_windows ??= fd == 1 ? Console.OpenStandardOutput() : Console.OpenStandardError()).Write(buffer);
            }
            catch (IOException)
            {
                _closed = true;
            }
            return;
        }
        if (WriteAll(fd, buffer) != 0)
        {
            _closed = true; // EPIPE (nobody reads any more) or another error: the rest is dropped quietly
        }
    }

    private Stream? _windows;

    /// <summary>write(2) until all is written, retrying on EINTR and partial writes: the errno of a failure, or 0.</summary>
    private static int WriteAll(int fd, ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            var n = write(fd, ref System.Runtime.InteropServices.MemoryMarshal.GetReference(data), (nuint)data.Length);
            if (n < 0)
            {
                var errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
                if (errno == 4 /* EINTR */)
                {
                    continue;
                }
                return errno;
            }
            data = data[(int)n..];
        }
        return 0;
    }

    // orchctl links no Linux bindings (it builds for macOS and Windows too): its own write(2).
    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    private static partial nint write(int fd, ref byte buffer, nuint count);

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

}

/// <summary>How orchctl prints: aligned tables (colour on a TTY only), JSON, YAML, one-line errors.</summary>
internal static class Output
{
    private static readonly HashSet<string> s_stateColumns = new(StringComparer.Ordinal) { "STATE", "STATUS", "PHASE", "READY" };

    /// <summary>Aligned columns, two spaces apart, the last one free. Widths count the text, not escape codes.</summary>
    public static void Table(string[] header, IEnumerable<string[]> rows, TextWriter? writer = null)
    {
        writer ??= Console.Out;
        var all = rows.Prepend(header).ToList();
        var widths = Widths(header, all);
        for (var r = 0; r < all.Count; r++)
        {
            TableRow(header, widths, all[r], isHeader: r == 0, writer);
        }
    }

    /// <summary>Each column's width: its widest cell among <paramref name="rows"/> (the header among them).</summary>
    public static int[] Widths(string[] header, IReadOnlyList<string[]> rows)
        => Enumerable.Range(0, header.Length).Select(i => rows.Max(r => r[i].Length)).ToArray();

    /// <summary>
    /// One line of a table with the columns' widths (a longer cell pushes the rest right): what
    /// <see cref="Table"/> writes, and what `get -w` adds under a table printed before.
    /// </summary>
    public static void TableRow(string[] header, int[] widths, string[] row, bool isHeader, TextWriter? writer = null)
    {
        writer ??= Console.Out;
        var color = ReferenceEquals(writer, Console.Out) && Terminal.Color;
        var line = new StringBuilder();
        for (var i = 0; i < row.Length; i++)
        {
            var cell = row[i];
            var padded = i == row.Length - 1 ? cell : cell.PadRight(widths[i]);
            if (color && isHeader)
            {
                padded = Terminal.Paint(cell, Terminal.Bold, true) + padded[cell.Length..];
            }
            else if (color && s_stateColumns.Contains(header[i]) && Terminal.StateColor(cell) is { } code)
            {
                padded = Terminal.Paint(cell, code, true) + padded[cell.Length..];
            }
            line.Append(padded);
            if (i < row.Length - 1)
            {
                line.Append("  ");
            }
        }
        writer.WriteLine(line.ToString().TrimEnd());
    }

    /// <summary>Indented JSON from compact JSON bytes (what the source-generated contexts write).</summary>
    public static string PrettyJson(ReadOnlySpan<byte> json)
    {
        using var doc = JsonDocument.Parse(json.ToArray());
        return PrettyJson(doc.RootElement);
    }

    public static string PrettyJson(JsonElement element)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            element.WriteTo(writer);
        }
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary>Writes a document (already JSON) as -o json or -o yaml asks.</summary>
    public static void Document(string format, JsonElement element)
    {
        Console.Out.WriteLine(format == "yaml" ? Yaml.FromJson(element).TrimEnd('\n') : PrettyJson(element));
    }

    public static string Age(DateTimeOffset? since) => since is { } at ? Duration(DateTimeOffset.UtcNow - at) : "-";

    /// <summary>A duration the way kubectl shows ages: 45s, 3m, 5h, 2d.</summary>
    public static string Duration(TimeSpan age)
    {
        if (age < TimeSpan.Zero)
        {
            age = TimeSpan.Zero;
        }
        return age.TotalDays >= 1 ? $"{(int)age.TotalDays}d" : age.TotalHours >= 1 ? $"{(int)age.TotalHours}h" : age.TotalMinutes >= 1 ? $"{(int)age.TotalMinutes}m" : $"{(int)age.TotalSeconds}s";
    }

    public static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):F1}Gi"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):F1}Mi"),
        >= 1L << 10 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:F0}Ki"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes}B"),
    };

    public static string Int(long value) => value.ToString(CultureInfo.InvariantCulture);

    public static string Labels(IEnumerable<KeyValuePair<string, string>>? labels)
        => labels is null ? "" : string.Join(",", labels.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={kv.Value}"));

    public static string Time(DateTimeOffset? at) => at is { } t && t != default ? t.ToUniversalTime().ToString("yyyy-MM-dd HH:mm:ss'Z'", CultureInfo.InvariantCulture) : "-";

    /// <summary>An error on stderr, one line: "orchctl: …" (manifest errors, which name their file, are printed as they are).</summary>
    public static void Error(string message)
        => Console.Error.WriteLine(message.StartsWith("orchctl: ", StringComparison.Ordinal) ? message : $"orchctl: {message}");

    public static void Warning(string message)
        => Console.Error.WriteLine($"{Terminal.Paint("warning", Terminal.Yellow, Terminal.StderrColor)}: {message}");
}

/// <summary>
/// -o yaml: a JSON document written through YamlDotNet's emitter (events, no reflection, AOT-safe):
/// block mappings and sequences (kubectl's layout: "- " at the key's indentation), plain scalars
/// where YAML reads them back as the same string, double quotes otherwise, no line folding.
/// </summary>
/// <remarks>
/// The static serializer (<c>StaticSerializerBuilder</c>) serializes typed objects through a
/// generated context; what orchctl prints is JSON already (a node's answer, with "node" added in
/// front), so it drives the serializer's own back end, the emitter, with that document's events.
/// </remarks>
internal static class Yaml
{
    public static string FromJson(JsonElement element)
    {
        using var text = new StringWriter(CultureInfo.InvariantCulture) { NewLine = "\n" };
        var emitter = new YamlDotNet.Core.Emitter(text, bestIndent: 2, bestWidth: int.MaxValue);
        emitter.Emit(new YamlDotNet.Core.Events.StreamStart());
        emitter.Emit(new YamlDotNet.Core.Events.DocumentStart());
        Node(emitter, element);
        emitter.Emit(new YamlDotNet.Core.Events.DocumentEnd(isImplicit: true));
        emitter.Emit(new YamlDotNet.Core.Events.StreamEnd());
        return text.ToString();
    }

    private static void Node(YamlDotNet.Core.IEmitter emitter, JsonElement value)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.Object:
                var empty = !value.EnumerateObject().Any();
                emitter.Emit(new YamlDotNet.Core.Events.MappingStart(null, null, isImplicit: true,
                    empty ? YamlDotNet.Core.Events.MappingStyle.Flow : YamlDotNet.Core.Events.MappingStyle.Block));
                foreach (var property in value.EnumerateObject())
                {
                    String(emitter, property.Name);
                    Node(emitter, property.Value);
                }
                emitter.Emit(new YamlDotNet.Core.Events.MappingEnd());
                break;
            case JsonValueKind.Array:
                emitter.Emit(new YamlDotNet.Core.Events.SequenceStart(null, null, isImplicit: true,
                    value.GetArrayLength() == 0 ? YamlDotNet.Core.Events.SequenceStyle.Flow : YamlDotNet.Core.Events.SequenceStyle.Block));
                foreach (var item in value.EnumerateArray())
                {
                    Node(emitter, item);
                }
                emitter.Emit(new YamlDotNet.Core.Events.SequenceEnd());
                break;
            case JsonValueKind.String:
                String(emitter, value.GetString() ?? "");
                break;
            default:
                Plain(emitter, value.ValueKind switch
                {
                    JsonValueKind.Number => value.GetRawText(),
                    JsonValueKind.True => "true",
                    JsonValueKind.False => "false",
                    _ => "null",
                });
                break;
        }
    }

    private static void Plain(YamlDotNet.Core.IEmitter emitter, string text)
        => emitter.Emit(new YamlDotNet.Core.Events.Scalar(null, null, text, YamlDotNet.Core.ScalarStyle.Plain, isPlainImplicit: true, isQuotedImplicit: false));

    private static void String(YamlDotNet.Core.IEmitter emitter, string text)
    {
        if (NeedsQuotes(text))
        {
            emitter.Emit(new YamlDotNet.Core.Events.Scalar(null, null, text, YamlDotNet.Core.ScalarStyle.DoubleQuoted, isPlainImplicit: false, isQuotedImplicit: true));
        }
        else
        {
            Plain(emitter, text);
        }
    }

    private static readonly string[] s_reserved =
    [
        "null", "Null", "NULL", "~", "true", "True", "TRUE", "false", "False", "FALSE", "yes", "Yes", "YES", "no", "No", "NO",
        "on", "On", "ON", "off", "Off", "OFF", "y", "Y", "n", "N", ".inf", ".Inf", ".INF", "-.inf", ".nan", ".NaN", ".NAN",
    ];

    /// <summary>Whether a plain scalar would read back as something else (a number, a bool, null) or break the syntax.</summary>
    public static bool NeedsQuotes(string s)
    {
        if (s.Length == 0 || s_reserved.Contains(s) || s != s.Trim())
        {
            return true;
        }
        if (double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out _) || s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            || s.StartsWith("0o", StringComparison.OrdinalIgnoreCase) || s.All(c => char.IsDigit(c) || c is ':' or '_' or '.' or '-' or '+'))
        {
            return true;
        }
        if (s.Length >= 10 && char.IsAsciiDigit(s[0]) && s[4] == '-' && s[7] == '-')
        {
            return true; // a date or timestamp, which YAML 1.1 readers turn into one
        }
        if ("-?:,[]{}#&*!|>'\"%@`".Contains(s[0], StringComparison.Ordinal))
        {
            return true;
        }
        foreach (var c in s)
        {
            if (c < ' ' || c == '\u007f' || c > '\u007e' && c < '\u00a0')
            {
                return true;
            }
        }
        return s.Contains(": ", StringComparison.Ordinal) || s.Contains(" #", StringComparison.Ordinal) || s.EndsWith(':');
    }
}

/// <summary>A line diff (longest common subsequence) printed as unified hunks with three lines of context.</summary>
internal static class Diff
{
    public static IReadOnlyList<string> Unified(string oldName, string newName, string oldText, string newText, int context = 3)
    {
        var a = oldText.Replace("\r\n", "\n", StringComparison.Ordinal).TrimEnd('\n').Split('\n');
        var b = newText.Replace("\r\n", "\n", StringComparison.Ordinal).TrimEnd('\n').Split('\n');
        var lcs = new int[a.Length + 1, b.Length + 1];
        for (var i = a.Length - 1; i >= 0; i--)
        {
            for (var j = b.Length - 1; j >= 0; j--)
            {
                lcs[i, j] = a[i] == b[j] ? lcs[i + 1, j + 1] + 1 : Math.Max(lcs[i + 1, j], lcs[i, j + 1]);
            }
        }
        // The edit script: (' ', line, aIndex, bIndex), ('-', …), ('+', …).
        var ops = new List<(char Op, string Line, int A, int B)>();
        int x = 0, y = 0;
        while (x < a.Length || y < b.Length)
        {
            if (x < a.Length && y < b.Length && a[x] == b[y])
            {
                ops.Add((' ', a[x], x++, y++));
            }
            else if (x < a.Length && (y == b.Length || lcs[x + 1, y] >= lcs[x, y + 1]))
            {
                ops.Add(('-', a[x], x++, y));
            }
            else
            {
                ops.Add(('+', b[y], x, y++));
            }
        }
        var result = new List<string>();
        if (ops.All(o => o.Op == ' '))
        {
            return result;
        }
        result.Add($"--- {oldName}");
        result.Add($"+++ {newName}");
        var k = 0;
        while (k < ops.Count)
        {
            if (ops[k].Op == ' ')
            {
                k++;
                continue;
            }
            var start = Math.Max(0, k - context);
            var end = k;
            // Extend the hunk while the next change is within 2 × context unchanged lines.
            while (true)
            {
                while (end < ops.Count && ops[end].Op != ' ')
                {
                    end++;
                }
                var next = end;
                while (next < ops.Count && ops[next].Op == ' ' && next - end < 2 * context)
                {
                    next++;
                }
                if (next < ops.Count && ops[next].Op != ' ')
                {
                    end = next;
                    continue;
                }
                end = Math.Min(ops.Count, end + context);
                break;
            }
            var hunk = ops.GetRange(start, end - start);
            var aStart = hunk[0].A + 1;
            var bStart = hunk[0].B + 1;
            var aCount = hunk.Count(o => o.Op != '+');
            var bCount = hunk.Count(o => o.Op != '-');
            result.Add(string.Create(CultureInfo.InvariantCulture, $"@@ -{(aCount == 0 ? aStart - 1 : aStart)},{aCount} +{(bCount == 0 ? bStart - 1 : bStart)},{bCount} @@"));
            result.AddRange(hunk.Select(o => o.Op + o.Line));
            k = end;
        }
        return result;
    }
}

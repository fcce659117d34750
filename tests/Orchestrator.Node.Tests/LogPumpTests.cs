using System.Buffers;
using System.Text;
using Orchestrator.Node.Logs;

namespace Orchestrator.Node.Tests;

/// <summary>The log pump in-process, on real FIFOs (no container needed: this test process is the writer).</summary>
public sealed class LogPumpTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Lines_are_framed_in_cri_format_and_an_unfinished_line_waits()
    {
        var (framed, consumed) = LogPump.Frame("stdout", "one\ntwo\nthr"u8, flushPartial: false);
        Assert.Equal(8, consumed);
        var lines = Encoding.UTF8.GetString(framed).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z stdout F one$", lines[0]);
        var (flushed, all) = LogPump.Frame("stderr", "thr"u8, flushPartial: true);
        Assert.Equal(3, all);
        Assert.EndsWith(" stderr P thr\n", Encoding.UTF8.GetString(flushed), StringComparison.Ordinal);
        var parsed = LogReader.Parse(new ReadOnlySequence<byte>(Encoding.UTF8.GetBytes(lines[1])));
        Assert.Equal(new LogLine(parsed!.Time, "stdout", "two", false), parsed);
    }

    [Fact]
    public void A_line_longer_than_the_limit_is_split_into_partial_records()
    {
        var data = Encoding.ASCII.GetBytes(new string('x', LogPump.MaxLine + 10) + "\n");
        var (framed, consumed) = LogPump.Frame("stdout", data, flushPartial: false);
        Assert.Equal(data.Length, consumed);
        var records = Encoding.ASCII.GetString(framed).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, records.Length);
        Assert.Contains(" stdout P ", records[0], StringComparison.Ordinal);
        Assert.EndsWith(" stdout F xxxxxxxxxx", records[1], StringComparison.Ordinal);
    }

    [Fact]
    public void Disposing_with_containers_still_attached_closes_their_fifos()
    {
        // What orchd's shutdown does: its containers keep running, their FIFOs still attached.
        var pump = new LogPump(new LogOptions());
        var fds = new List<int>();
        for (var i = 0; i < 3; i++)
        {
            var fifos = _dir.Combine($"fifo{i}");
            var (stdout, stderr) = LogPump.CreateFifos(fifos);
            fds.AddRange([stdout, stderr]);
            pump.Attach($"c{i}", fifos, _dir.Combine($"logs{i}"));
        }
        pump.Flush(); // the attaches have run on the pump's thread
        pump.Dispose(); // threw "Collection was modified" with more than one stream attached
        var intoFifos = Enumerable.Range(0, 3).Sum(i => OpenFiles.Under(_dir.Combine($"fifo{i}")));
        Assert.Equal(fds.Count, intoFifos); // only the container's own ends, which this test holds
        foreach (var fd in fds)
        {
            Orchestrator.Linux.Libc.close(fd);
        }
    }

    [Fact]
    public async Task Output_goes_through_fifos_into_a_rotated_log_and_reads_back_in_order()
    {
        using var pump = new LogPump(new LogOptions(MaxFileBytes: 4096, MaxFiles: 3));
        var fifos = _dir.Combine("fifo");
        var logs = _dir.Combine("logs");
        var (stdout, stderr) = LogPump.CreateFifos(fifos);
        pump.Attach("c1", fifos, logs);
        using (var writer = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(stdout, ownsHandle: true), FileAccess.Write))
        {
            for (var i = 0; i < 300; i++)
            {
                writer.Write(Encoding.ASCII.GetBytes($"line-{i}\n"));
                writer.Flush();
            }
        }
        Orchestrator.Linux.Libc.close(stderr);
        var lines = await Eventually.ValueAsync("line-299 in the log", async () =>
        {
            pump.Flush();
            return await LogReader.ReadAsync(logs, tail: null, since: null);
        }, l => l.Any(x => x.Text == "line-299"), TimeSpan.FromSeconds(10), TimeSpan.Zero, l => l.Count == 0 ? "no lines" : $"{l.Count} lines, the last '{l[^1].Text}'");
        // 300 records of ~50 bytes fill more than three 4 KiB files: the oldest lines are gone.
        Assert.True(File.Exists(Path.Combine(logs, "container.log.1")));
        Assert.False(File.Exists(Path.Combine(logs, "container.log.3")));
        var texts = lines.Select(l => l.Text).ToList();
        Assert.Equal("line-299", texts[^1]);
        Assert.Equal(Enumerable.Range(300 - texts.Count, texts.Count).Select(i => $"line-{i}"), texts);
        Assert.True(texts.Count is > 120 and < 300, $"{texts.Count} lines kept");

        var tail = await LogReader.ReadAsync(logs, tail: 5, since: null);
        Assert.Equal(["line-295", "line-296", "line-297", "line-298", "line-299"], tail.Select(l => l.Text));
        var none = await LogReader.ReadAsync(logs, tail: null, since: DateTimeOffset.UtcNow.AddMinutes(1));
        Assert.Empty(none);
    }

    [Fact]
    public async Task Follow_sees_new_lines_across_a_rotation()
    {
        using var pump = new LogPump(new LogOptions(MaxFileBytes: 4096, MaxFiles: 2));
        var fifos = _dir.Combine("fifo2");
        var logs = _dir.Combine("logs2");
        var (stdout, stderr) = LogPump.CreateFifos(fifos);
        pump.Attach("c2", fifos, logs);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var seen = new List<string>();
        var follower = Task.Run(async () =>
        {
            await foreach (var line in LogReader.FollowAsync(logs, tail: 0, since: null, cts.Token))
            {
                seen.Add(line.Text);
                if (line.Text == "line-199")
                {
                    break;
                }
            }
        });
        await Task.Delay(300);
        using (var writer = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(stdout, ownsHandle: true), FileAccess.Write))
        {
            for (var i = 0; i < 200; i++)
            {
                writer.Write(Encoding.ASCII.GetBytes($"line-{i}\n"));
                writer.Flush();
                if (i % 20 == 0)
                {
                    await Task.Delay(20);
                }
            }
        }
        Orchestrator.Linux.Libc.close(stderr);
        await follower.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(Enumerable.Range(0, 200).Select(i => $"line-{i}"), seen);
    }

    [Fact]
    public async Task A_follower_that_falls_two_rotations_behind_reads_the_file_between()
    {
        // The follower is pulled: while this test does not ask for lines, it reads nothing, as a
        // slow client over NATS. Meanwhile the log rotates twice or more (MaxFiles 3 keeps them).
        // Once it reopened "container.log" after the file it was reading and skipped the one
        // between (CI: line-81 followed by line-161).
        using var pump = new LogPump(new LogOptions(MaxFileBytes: 4096, MaxFiles: 3));
        var fifos = _dir.Combine("fifo-slow");
        var logs = _dir.Combine("logs-slow");
        var (stdout, stderr) = LogPump.CreateFifos(fifos);
        pump.Attach("slow", fifos, logs);
        using var writer = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(stdout, ownsHandle: true), FileAccess.Write);
        void Write(int from, int to)
        {
            for (var i = from; i < to; i++)
            {
                writer.Write(Encoding.ASCII.GetBytes($"line-{i}\n"));
            }
            writer.Flush();
        }
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        Write(0, 10);
        await using var lines = LogReader.FollowAsync(logs, tail: null, since: null, cts.Token).GetAsyncEnumerator(cts.Token);
        var seen = new List<string>();
        while (seen.Count < 10 && await lines.MoveNextAsync())
        {
            seen.Add(lines.Current.Text);
        }
        Write(10, 260); // about three files' worth at 4 KiB each
        await Eventually.TrueAsync("two rotations", () => File.Exists(Path.Combine(logs, "container.log.2")), TimeSpan.FromSeconds(20));
        while (seen.Count < 260 && await lines.MoveNextAsync())
        {
            seen.Add(lines.Current.Text);
        }
        Orchestrator.Linux.Libc.close(stderr);
        Assert.Equal(Enumerable.Range(0, 260).Select(i => $"line-{i}"), seen);
    }

    [Fact]
    public async Task Follow_with_a_tail_starts_at_the_last_lines_and_continues_without_a_gap()
    {
        using var pump = new LogPump(new LogOptions());
        var fifos = _dir.Combine("fifo3");
        var logs = _dir.Combine("logs3");
        var (stdout, stderr) = LogPump.CreateFifos(fifos);
        pump.Attach("c3", fifos, logs);
        using var writer = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(stdout, ownsHandle: true), FileAccess.Write);
        for (var i = 0; i < 50; i++)
        {
            writer.Write(Encoding.ASCII.GetBytes($"line-{i}\n"));
        }
        writer.Flush();
        await Eventually.ValueAsync("line-49 as the last line", async () =>
        {
            pump.Flush();
            return await LogReader.ReadAsync(logs, tail: 1, since: null);
        }, l => l is [{ Text: "line-49" }], TimeSpan.FromSeconds(10), TimeSpan.Zero, l => l.Count == 0 ? "no lines" : $"'{l[^1].Text}'");
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var seen = new List<string>();
        var historyRead = new TaskCompletionSource();
        var follower = Task.Run(async () =>
        {
            await foreach (var line in LogReader.FollowAsync(logs, tail: 5, since: null, cts.Token))
            {
                seen.Add(line.Text);
                if (seen.Count == 5)
                {
                    historyRead.SetResult();
                }
                if (line.Text == "line-99")
                {
                    break;
                }
            }
        });
        await historyRead.Task.WaitAsync(TimeSpan.FromSeconds(10));
        for (var i = 50; i < 100; i++)
        {
            writer.Write(Encoding.ASCII.GetBytes($"line-{i}\n"));
            writer.Flush();
            if (i % 10 == 0)
            {
                await Task.Delay(10);
            }
        }
        await follower.WaitAsync(TimeSpan.FromSeconds(20));
        Orchestrator.Linux.Libc.close(stderr);
        Assert.Equal(Enumerable.Range(45, 55).Select(i => $"line-{i}"), seen);
    }
}

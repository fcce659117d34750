using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// orchctl exec streams over a real fleet (nats-server and orchd, on both backends): output as the
/// command writes it, stdout and stderr apart, raw bytes beyond one NATS message, the command's exit
/// code, and the command killed when orchctl goes away. And orchctl pull's progress from a real registry.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed partial class ExecStreamTests
{
    [Theory(Timeout = 240_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task Exec_streams_output_as_written_keeps_stderr_apart_exits_with_the_code_and_dies_with_orchctl(string runtime)
    {
        await using var node = await NodeHost.StartAsync(runtime: runtime);
        var status = await node.Client.RunAsync(NodeHost.Sh("box", "exec sleep 100000", w => w.StopGracePeriodSeconds = 0));
        Assert.True(status.State == ContainerState.Running, $"{status.State}: {status.Message}");
        string[] exec = ["exec", "box", "-n", node.NodeName, "--"];

        // The first line arrives while the command still sleeps, not with the exit.
        await using (var slow = StreamingOrchctl.Start(node, [.. exec, "sh", "-c", "echo first; sleep 2; echo second >&2; echo third"]))
        {
            var firstAt = await slow.WaitForStdoutAsync("first\n", TimeSpan.FromSeconds(30));
            var code = await slow.WaitForExitAsync(TimeSpan.FromSeconds(30));
            var exitAt = slow.Clock.Elapsed;
            Assert.True(code == 0, slow.Describe());
            Assert.Equal("first\nthird\n", slow.StdoutText);
            Assert.Equal("second\n", slow.StderrText);
            TestContext.Current.TestOutputHelper?.WriteLine($"{runtime}: first line after {firstAt.TotalMilliseconds:F0} ms, exit after {exitAt.TotalMilliseconds:F0} ms");
            Assert.True(exitAt - firstAt >= TimeSpan.FromSeconds(1), $"the first line came {firstAt.TotalMilliseconds:F0} ms in, the exit {exitAt.TotalMilliseconds:F0} ms: not streamed");
        }

        // stderr apart from stdout, and the command's exit code is orchctl's.
        await using (var coded = StreamingOrchctl.Start(node, [.. exec, "sh", "-c", "echo out; echo err >&2; exit 7"]))
        {
            Assert.Equal(7, await coded.WaitForExitAsync(TimeSpan.FromSeconds(30)));
            Assert.Equal("out\n", coded.StdoutText);
            Assert.Equal("err\n", coded.StderrText);
        }

        // More than the old 64 KiB cap and than one NATS message, byte for byte: multi-byte
        // characters that reads split anywhere, a cut character at the end, then NULs.
        await using (var big = StreamingOrchctl.Start(node, [.. exec, "sh", "-c", "yes 'grüße €' | head -c 1048575; dd if=/dev/zero bs=1024 count=16 2>/dev/null"]))
        {
            Assert.True(await big.WaitForExitAsync(TimeSpan.FromSeconds(60)) == 0, big.Describe());
            var line = Encoding.UTF8.GetBytes("grüße €\n");
            var expected = new byte[1048575 + 16 * 1024];
            for (var i = 0; i < 1048575; i++)
            {
                expected[i] = line[i % line.Length];
            }
            var got = big.Stdout;
            Assert.Equal(expected.Length, got.Length);
            Assert.True(expected.AsSpan().SequenceEqual(got), "the output differs from what the command wrote");
            Assert.Equal("", big.StderrText);
        }

        // Ctrl-C: orchctl exits 130 and the node kills the command.
        await using (var interrupted = StreamingOrchctl.Start(node, [.. exec, "sh", "-c", "echo started; exec sleep 4321"]))
        {
            await interrupted.WaitForStdoutAsync("started\n", TimeSpan.FromSeconds(30));
            Assert.True(await RunningAsync(node, "sleep 4321"));
            interrupted.Signal(Signals.SIGINT);
            Assert.Equal(130, await interrupted.WaitForExitAsync(TimeSpan.FromSeconds(10)));
            var gone = await GoneAfterAsync(node, "sleep 4321", interrupted.Clock);
            TestContext.Current.TestOutputHelper?.WriteLine($"{runtime}: after Ctrl-C the command was gone {gone.TotalMilliseconds:F0} ms later");
        }

        // orchctl killed outright (no goodbye): the node notices its alive subject is gone.
        await using (var killed = StreamingOrchctl.Start(node, [.. exec, "sh", "-c", "echo started; exec sleep 4322"]))
        {
            await killed.WaitForStdoutAsync("started\n", TimeSpan.FromSeconds(30));
            Assert.True(await RunningAsync(node, "sleep 4322"));
            killed.Signal(Signals.SIGKILL);
            await killed.WaitForExitAsync(TimeSpan.FromSeconds(10));
            var gone = await GoneAfterAsync(node, "sleep 4322", killed.Clock);
            TestContext.Current.TestOutputHelper?.WriteLine($"{runtime}: after SIGKILL of orchctl the command was gone {gone.TotalMilliseconds:F0} ms later");
        }

        // Errors: one sentence each; an unknown container fails (1), a node that is not there is unreachable (3).
        var ghost = await Orchctl.RunAsync(["--server", node.Nats!.Url, "exec", "ghost", "-n", node.NodeName, "--", "true"]);
        Assert.True(ghost.Code == 1, ghost.All);
        Assert.Contains("no container 'ghost'", ghost.Err, StringComparison.Ordinal);
        var absent = await Orchctl.RunAsync(["--server", node.Nats.Url, "exec", "box", "-n", "no-such-node", "--", "true"]);
        Assert.True(absent.Code == 3, absent.All);
        Assert.Contains("no node 'no-such-node' is connected to the fleet", absent.Err, StringComparison.Ordinal);

        // The one-reply exec of older clients still works next to the streamed one.
        var oneShot = await node.Client.ExecAsync("box", ["sh", "-c", "echo old; exit 3"]);
        Assert.Equal((3, "old\n"), (oneShot.ExitCode, oneShot.Stdout));
    }

    [Theory(Timeout = 180_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task Pull_shows_progress_lines_off_a_terminal_and_a_bar_on_one(string runtime)
    {
        // native pulls into orchd's store (config and layers counted), containerd into containerd's (layers).
        await using var node = await NodeHost.StartAsync(runtime: runtime);
        await using var registry = await RegistryServer.StartAsync();
        var layout = node.Dir.Combine("layers");
        BusyboxImage.CreateLayout(layout);
        // Three more layers of their own size: four layers and a config to pull.
        var umoci = Requires.Program("umoci", "umoci");
        for (var i = 1; i <= 3; i++)
        {
            var file = node.Dir.Combine($"layer{i}.bin");
            await File.WriteAllBytesAsync(file, RandomBytes(i * 200_000));
            await using var insert = DaemonProcess.Start(umoci, ["insert", "--image", $"{layout}:latest", file, $"/data/layer{i}.bin"]);
            Assert.True(await insert.WaitForExitAsync(TimeSpan.FromSeconds(60)) == 0, insert.Output);
        }
        await registry.PushAsync($"{layout}:latest", "edge/layers", "1");
        var reference = $"{registry.Host}/edge/layers:1";

        var pulled = await Orchctl.RunAsync(["--server", node.Nats!.Url, "pull", "-n", node.NodeName, reference]);
        Assert.True(pulled.Code == 0, pulled.All);
        Assert.DoesNotContain('\u001b', pulled.All);
        Assert.DoesNotContain('\r', pulled.All);
        var lines = pulled.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        TestContext.Current.TestOutputHelper?.WriteLine($"{runtime}:\n{pulled.Out}");
        Assert.True(lines.Length >= 2, pulled.All);
        Assert.All(lines[..^1], l => Assert.Matches($@"^{Regex.Escape(reference)}: [0-5]/[45] blobs, \S+/\S+$", l));
        Assert.Matches($@"^{Regex.Escape(reference)}: ([45])/\1 blobs, (\S+)/\2$", lines[^2]);
        Assert.Matches($@"^pulled {Regex.Escape(reference)} sha256:[0-9a-f]{{64}} \(linux/[a-z0-9]+, [0-9.]+(Ki|Mi)\)$", lines[^1]);
        Assert.Contains(await node.Client.ImagesAsync(), i => i.Name == reference);

        // On a terminal (script(1) gives orchctl a pty): one bar redrawn in place, then the same last line.
        await node.Client.RemoveImageAsync(reference);
        var script = Requires.Program("script", "bsdutils");
        var command = $"{Repo.Binary("orchctl")} --server {node.Nats.Url} pull -n {node.NodeName} {reference}";
        var onTty = await Orchctl.RunAsync(["-qfec", command, "/dev/null"], new Dictionary<string, string?> { ["TERM"] = "xterm", ["NO_COLOR"] = "1" }, program: script);
        Assert.True(onTty.Code == 0, onTty.All);
        Assert.Contains("\r\u001b[K[", onTty.Out, StringComparison.Ordinal);
        Assert.Matches($@"\] {Regex.Escape(reference)}: ([45])/\1 blobs, ", onTty.Out);
        Assert.Contains($"\npulled {reference} sha256:", onTty.Out.Replace("\r\n", "\n", StringComparison.Ordinal), StringComparison.Ordinal);
    }

    private static byte[] RandomBytes(int count)
    {
        var bytes = new byte[count];
        Random.Shared.NextBytes(bytes);
        return bytes;
    }

    private static async Task<bool> RunningAsync(NodeHost node, string command)
        => (await node.Client.ExecAsync("box", ["ps", "-o", "pid,args"])).Stdout.Split('\n').Any(l => l.TrimEnd().EndsWith(command, StringComparison.Ordinal));

    /// <summary>Waits until the container runs no <paramref name="command"/>; how long after the clock's start (orchctl's start) that was seen.</summary>
    private static async Task<TimeSpan> GoneAfterAsync(NodeHost node, string command, Stopwatch clock)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        var since = clock.Elapsed;
        while (await RunningAsync(node, command))
        {
            Assert.True(DateTime.UtcNow < deadline, $"'{command}' still runs in the container 20 s after orchctl went away");
            await Task.Delay(200);
        }
        return clock.Elapsed - since;
    }

    /// <summary>orchctl with its output read as it comes (raw bytes, arrival times), in the clean environment <see cref="Orchctl.RunAsync"/> gives it.</summary>
    private sealed class StreamingOrchctl : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly MemoryStream _stdout = new();
        private readonly MemoryStream _stderr = new();
        private readonly Task _reading;

        private StreamingOrchctl(Process process)
        {
            _process = process;
            _reading = Task.WhenAll(PumpAsync(process.StandardOutput.BaseStream, _stdout), PumpAsync(process.StandardError.BaseStream, _stderr));
        }

        public Stopwatch Clock { get; } = Stopwatch.StartNew();

        public byte[] Stdout
        {
            get
            {
                lock (_stdout)
                {
                    return _stdout.ToArray();
                }
            }
        }

        public string StdoutText => Encoding.UTF8.GetString(Stdout);

        public string StderrText
        {
            get
            {
                lock (_stderr)
                {
                    return Encoding.UTF8.GetString(_stderr.ToArray());
                }
            }
        }

        public static StreamingOrchctl Start(NodeHost node, string[] args)
        {
            var psi = new ProcessStartInfo(Repo.Binary("orchctl"))
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                RedirectStandardInput = true,
                UseShellExecute = false,
            };
            foreach (var arg in (string[])["--server", node.Nats!.Url, .. args])
            {
                psi.ArgumentList.Add(arg);
            }
            foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("ORCH", StringComparison.Ordinal) && k != "ORCH_BIN_DIR").ToList())
            {
                psi.Environment.Remove(key);
            }
            psi.Environment["ORCH_CONFIG"] = "/nonexistent/orchctl-config.yaml";
            var process = Process.Start(psi)!;
            process.StandardInput.Close();
            return new StreamingOrchctl(process);
        }

        private static async Task PumpAsync(Stream from, MemoryStream into)
        {
            var buffer = new byte[64 * 1024];
            int n;
            while ((n = await from.ReadAsync(buffer)) > 0)
            {
                lock (into)
                {
                    into.Write(buffer, 0, n);
                }
            }
        }

        /// <summary>Waits until stdout starts with <paramref name="expected"/>; when that was, on <see cref="Clock"/>.</summary>
        public async Task<TimeSpan> WaitForStdoutAsync(string expected, TimeSpan timeout)
        {
            var deadline = DateTime.UtcNow + timeout;
            while (!StdoutText.StartsWith(expected, StringComparison.Ordinal))
            {
                Assert.True(DateTime.UtcNow < deadline && !_reading.IsCompleted, $"orchctl did not write '{expected.TrimEnd()}': {Describe()}");
                await Task.Delay(5);
            }
            return Clock.Elapsed;
        }

        public async Task<int> WaitForExitAsync(TimeSpan timeout)
        {
            using var cts = new CancellationTokenSource(timeout);
            try
            {
                await _process.WaitForExitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                Assert.Fail($"orchctl did not exit within {timeout.TotalSeconds} s: {Describe()}");
            }
            await _reading;
            return _process.ExitCode;
        }

        public void Signal(int signal) => Signals.Send(_process.Id, signal);

        public string Describe() => $"stdout: {StdoutText.Length} chars '{Tail(StdoutText)}', stderr '{Tail(StderrText)}'";

        private static string Tail(string text) => text.Length > 300 ? "…" + text[^300..] : text;

        public async ValueTask DisposeAsync()
        {
            if (!_process.HasExited)
            {
                _process.Kill();
                await _process.WaitForExitAsync();
            }
            _process.Dispose();
        }
    }
}

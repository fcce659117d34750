using System.IO.Pipelines;
using System.Security.Cryptography;
using System.Text;
using System.Threading.Channels;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Client;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// exec -i / -t against a real orchd and real containers (both backends): a shell on a terminal
/// that takes keystrokes, follows resizes and exits with its code; stdin to its end without a
/// terminal, stdout and stderr apart; the orchctl binary in a real pseudo-terminal (script(1));
/// and a client that quits or vanishes leaves no process behind in the container.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class ExecInteractiveTests(ITestOutputHelper output)
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(60);

    /// <summary>A node with container "box" running (a sleeper, no network) to exec into.</summary>
    private static async Task<NodeHost> WithBoxAsync(string runtime)
    {
        var node = await NodeHost.StartAsync(runtime: runtime);
        try
        {
            await node.Client.RunAsync(NodeHost.Sh("box", "exec sleep 100000", w => { w.StopGracePeriodSeconds = 0; w.Network = NetworkMode.None; }));
            await node.WaitForAsync("box", c => c.State == ContainerState.Running, s_wait, "running");
            return node;
        }
        catch
        {
            await node.DisposeAsync();
            throw;
        }
    }

    private static async Task<int> CountAsync(NodeHost node, string name, string pattern)
        => (await node.Client.ExecAsync(name, ["sh", "-c", $"ps -o args | grep -c '^{pattern}' || true"])).Stdout.Trim() is var n && int.TryParse(n, out var count) ? count : -1;

    [Theory(Timeout = 240_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task A_shell_on_a_terminal_takes_keystrokes_follows_resizes_and_exits_with_its_code(string runtime)
    {
        await using var node = await WithBoxAsync(runtime);

        var keys = new Pipe();
        var screen = new Screen();
        var resizes = Channel.CreateUnbounded<(int, int)>();
        var session = node.Client.ExecInteractiveAsync("box", ["sh"], keys.Reader.AsStream(), tty: true, rows: 40, cols: 100, screen.Take, resizes.Reader, TestContext.Current.CancellationToken);
        async Task TypeAsync(string line) => await keys.Writer.WriteAsync(Encoding.UTF8.GetBytes(line + "\n"));

        await TypeAsync("stty size");
        await screen.UntilAsync("40 100", session);
        resizes.Writer.TryWrite((50, 132));
        await Task.Delay(300); // the resize frame is acked before the next line's, but both are in flight at once
        await TypeAsync("stty size; tty; echo $((6*7))x");
        await screen.UntilAsync("42x", session);
        Assert.Contains("50 132", screen.Out, StringComparison.Ordinal);
        Assert.Matches(@"/dev/pts/\d+", screen.Out);
        // The terminal echoes what was typed, as a terminal does (the command line appears on the screen).
        Assert.Contains("echo $((6*7))x", screen.Out, StringComparison.Ordinal);
        // Ctrl-C is a key: it interrupts the foreground command, not the session.
        await TypeAsync("sleep 4243");
        await Eventually.TrueAsync("sleep 4243 in the container", async () => await CountAsync(node, "box", "sleep 4243") == 1, s_wait);
        await keys.Writer.WriteAsync(new byte[] { 3 });
        await Eventually.TrueAsync("sleep 4243 interrupted by ^C", async () => await CountAsync(node, "box", "sleep 4243") == 0, s_wait);
        await TypeAsync("exit 3");
        Assert.Equal(3, await session.WaitAsync(s_wait));
        Assert.Equal(0, await CountAsync(node, "box", "sh$"));
        Assert.Equal("", screen.Err);
    }

    [Theory(Timeout = 240_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task Without_a_terminal_stdin_reaches_the_command_to_its_end_and_stdout_and_stderr_stay_apart(string runtime)
    {
        await using var node = await WithBoxAsync(runtime);

        // 3 MiB in, hashed in the container: every byte arrives, in order, and the end of input is the end.
        var payload = RandomNumberGenerator.GetBytes(3 << 20);
        var screen = new Screen();
        var code = await node.Client.ExecInteractiveAsync("box", ["sh", "-c", "sha256sum; echo oops >&2; exit 5"], new MemoryStream(payload), tty: false, rows: 0, cols: 0,
            screen.Take, cancellationToken: TestContext.Current.CancellationToken).WaitAsync(s_wait);
        Assert.Equal(5, code);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(payload)) + "  -", screen.Out.Trim());
        Assert.Equal("oops", screen.Err.Trim());

        // No -i: the command reads end-of-file at once (cat ends), and output larger than the
        // read-ahead (64 frames) comes through whole: the command waits for the client, not the reverse.
        var quiet = new Screen();
        Assert.Equal(0, await node.Client.ExecInteractiveAsync("box", ["sh", "-c", "cat; head -c 4000000 /dev/zero | tr '\\0' a"], null, tty: false, rows: 0, cols: 0,
            quiet.Take, cancellationToken: TestContext.Current.CancellationToken).WaitAsync(s_wait));
        Assert.Equal(4_000_000, quiet.Out.Length);
    }

    [Fact(Timeout = 240_000)]
    public async Task The_orchctl_binary_in_a_real_terminal_runs_a_shell_and_exits_with_its_code()
    {
        await using var node = await WithBoxAsync("native");

        // script(1) gives orchctl a pseudo-terminal of its own; what script reads goes to it as typed keys.
        // After orchctl, the terminal's settings are what they were: canonical, echoing (raw mode undone).
        var orchctl = $"{Repo.Binary("orchctl")} --server {node.Nats!.Url} -n {node.NodeName} exec -it box -- sh";
        var result = await Orchctl.RunAsync(["-qec", $"sh -c '{orchctl}; code=$?; stty -a; exit $code'", "/dev/null"], env: new Dictionary<string, string?> { ["TERM"] = "xterm" },
            stdin: "stty size; echo $((6*7))x; exit 4\n", program: "/usr/bin/script");
        Assert.True(result.Code == 4, $"exit {result.Code}: {result.All}");
        Assert.Matches(@"(^|\s)icanon(\s|$)", result.Out); // stty -a ran (raw, it would say -icanon and -echo)
        Assert.DoesNotMatch(@"(^|\s)-icanon(\s|$)", result.Out);
        Assert.DoesNotMatch(@"(^|\s)-echo(\s|$)", result.Out);
        Assert.Contains("42x", result.Out, StringComparison.Ordinal);
        Assert.Matches(@"\d+ \d+", result.Out); // the size script's terminal has (stty size)
        Assert.DoesNotContain("unable to use a TTY", result.All, StringComparison.Ordinal);

        // Off a terminal, -t goes on without one (kubectl's way), and says so.
        var piped = await Orchctl.RunAsync(["--server", node.Nats.Url, "-n", node.NodeName, "exec", "-it", "box", "--", "sh", "-c", "test -t 0 || echo no-tty; cat"],
            stdin: "typed\n");
        Assert.True(piped.Code == 0, piped.All);
        Assert.Equal("no-tty\ntyped\n", piped.Out);
        Assert.Contains("unable to use a TTY", piped.Err, StringComparison.Ordinal);
    }

    private static long RssKiB(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact(Timeout = 240_000)]
    public async Task A_fast_producer_is_held_back_by_a_reader_that_does_not_read_and_loses_nothing()
    {
        await using var node = await WithBoxAsync("native");

        // orchctl's stdout is a pipe nobody reads for 8 s: the producer (a shell counting, as fast as it can
        // write) must wait for it, and neither orchd nor orchctl may hold what it wrote meanwhile.
        var psi = new System.Diagnostics.ProcessStartInfo(Repo.Binary("orchctl"))
        {
            RedirectStandardOutput = true, RedirectStandardInput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var arg in (string[])["--server", node.Nats!.Url, "-n", node.NodeName, "exec", "-i", "box", "--", "sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; done"])
        {
            psi.ArgumentList.Add(arg);
        }
        psi.Environment["ORCH_CONFIG"] = "/nonexistent/orchctl-config.yaml";
        var orchdBefore = node.Daemon.RssKiB();
        using var orchctl = System.Diagnostics.Process.Start(psi)!;
        var stderr = orchctl.StandardError.ReadToEndAsync();
        try
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (await CountAsync(node, "box", "sh -c i=0") != 1)
            {
                if (orchctl.HasExited)
                {
                    Assert.Fail($"orchctl exited {orchctl.ExitCode}: {await stderr}");
                }
                Assert.True(clock.Elapsed < s_wait, $"no counter in the container: {(await node.Client.ExecAsync("box", ["ps", "-o", "args"])).Stdout}");
                await Task.Delay(200);
            }
            var orchctlBefore = RssKiB(orchctl.Id);
            await Task.Delay(TimeSpan.FromSeconds(8));
            var orchdGrowth = node.Daemon.RssKiB() - orchdBefore;
            var orchctlGrowth = RssKiB(orchctl.Id) - orchctlBefore;
            output.WriteLine($"while nobody read for 8 s: orchd grew {orchdGrowth} KiB, orchctl {orchctlGrowth} KiB");
            Assert.True(orchdGrowth < 48 * 1024, $"orchd grew by {orchdGrowth} KiB while nobody read the output");
            Assert.True(orchctlGrowth < 48 * 1024, $"orchctl grew by {orchctlGrowth} KiB while nobody read its stdout");
            // Then read: the numbers come in order from 1, none lost or doubled (for 20 s).
            var reading = System.Diagnostics.Stopwatch.StartNew();
            var expected = 1;
            for (; reading.Elapsed < TimeSpan.FromSeconds(20); expected++)
            {
                var line = await orchctl.StandardOutput.ReadLineAsync().WaitAsync(s_wait);
                if (line != expected.ToString(System.Globalization.CultureInfo.InvariantCulture))
                {
                    Assert.Fail($"line {expected} is '{line}' (stderr: {(stderr.IsCompleted ? await stderr : "")})");
                }
            }
            output.WriteLine($"{expected - 1} lines in order in {reading.Elapsed.TotalSeconds:0.0} s");
            Assert.True(expected > 20_000, $"only {expected - 1} lines in 20 s");
        }
        finally
        {
            orchctl.Kill();
        }
        await Eventually.TrueAsync("the producer killed once orchctl went", async () => await CountAsync(node, "box", "sh -c i=0") == 0, TimeSpan.FromSeconds(60));
    }

    [Fact(Timeout = 240_000)]
    public async Task Ctrl_d_ends_a_shell_and_a_node_that_goes_ends_the_session_with_one_sentence()
    {
        await using var node = await WithBoxAsync("native");

        // ^D at the prompt: the shell's end-of-file, exit 0; so does the end of the client's input.
        var keys = new Pipe();
        var screen = new Screen();
        var session = node.Client.ExecInteractiveAsync("box", ["sh"], keys.Reader.AsStream(), tty: true, rows: 0, cols: 0, screen.Take, cancellationToken: TestContext.Current.CancellationToken);
        await keys.Writer.WriteAsync(Encoding.UTF8.GetBytes("stty size\n"));
        await screen.UntilAsync("24 80", session); // no size given: 24 × 80
        await keys.Writer.WriteAsync(new byte[] { 4 });
        Assert.Equal(0, await session.WaitAsync(s_wait));
        var ended = new Pipe();
        var closed = node.Client.ExecInteractiveAsync("box", ["sh"], ended.Reader.AsStream(), tty: true, rows: 0, cols: 0, new Screen().Take, cancellationToken: TestContext.Current.CancellationToken);
        await ended.Writer.CompleteAsync();
        Assert.Equal(0, await closed.WaitAsync(s_wait));

        // orchd killed under a running session: the client says the node stopped answering.
        var orphan = new Pipe();
        var cut = node.Client.ExecInteractiveAsync("box", ["sh"], orphan.Reader.AsStream(), tty: true, rows: 0, cols: 0, new Screen().Take, cancellationToken: TestContext.Current.CancellationToken);
        await Eventually.TrueAsync("the shell running", async () => await CountAsync(node, "box", "sh$") == 1, s_wait);
        await node.KillOrchdAsync();
        var gone = await Assert.ThrowsAsync<NodeRequestException>(() => cut.WaitAsync(s_wait));
        Assert.Contains("stopped answering", gone.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = 240_000)]
    public async Task A_client_that_quits_or_vanishes_leaves_no_process_behind_and_mistakes_get_one_sentence()
    {
        await using var node = await WithBoxAsync("native");

        // Quit: the client's cancellation sends Quit, and the node kills the command at once.
        using (var cancel = new CancellationTokenSource())
        {
            var keys = new Pipe();
            var session = node.Client.ExecInteractiveAsync("box", ["sleep", "4242"], keys.Reader.AsStream(), tty: true, rows: 0, cols: 0, new Screen().Take, cancellationToken: cancel.Token);
            await Eventually.TrueAsync("sleep 4242 running", async () => await CountAsync(node, "box", "sleep 4242") == 1, s_wait);
            await cancel.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => session);
            await Eventually.TrueAsync("sleep 4242 killed after the quit", async () => await CountAsync(node, "box", "sleep 4242") == 0, TimeSpan.FromSeconds(10));
        }

        // Vanished: orchctl killed -9 sends nothing more; the node gives up on it after 30 s quiet.
        var orchctl = Orchctl.Start(["--server", node.Nats!.Url, "-n", node.NodeName, "exec", "-i", "box", "--", "sleep", "4241"]);
        await using (orchctl)
        {
            await Eventually.TrueAsync("sleep 4241 running", async () => await CountAsync(node, "box", "sleep 4241") == 1, s_wait);
            orchctl.Signal(9);
            await Eventually.TrueAsync("sleep 4241 killed once orchctl went quiet", async () => await CountAsync(node, "box", "sleep 4241") == 0, TimeSpan.FromSeconds(60));
        }

        // Mistakes: one sentence each, and the container runs on.
        var stopped = await Assert.ThrowsAsync<NodeRequestException>(() => node.Client.ExecInteractiveAsync("nothing", ["sh"], null, true, 0, 0, new Screen().Take));
        Assert.Contains("'nothing'", stopped.Message, StringComparison.Ordinal);
        var missing = await Orchctl.RunAsync(["--server", node.Nats.Url, "-n", node.NodeName, "exec", "-it", "box", "--", "/no/such/program"]);
        Assert.NotEqual(0, missing.Code);
        Assert.Contains("/no/such/program", missing.All, StringComparison.Ordinal);
        var huge = await Assert.ThrowsAsync<NodeRequestException>(() => node.Client.ExecInteractiveAsync("box", ["sh"], null, true, 70000, 80, new Screen().Take));
        Assert.Contains("70000 rows", huge.Message, StringComparison.Ordinal);
        Assert.Equal(ContainerState.Running, (await node.Client.InspectAsync("box")).State);
    }
}

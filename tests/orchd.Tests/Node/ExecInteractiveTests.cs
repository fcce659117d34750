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
public sealed class ExecInteractiveTests
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(60);

    private static Workload Box(string name) => NodeHost.Sh(name, "exec sleep 100000", w => { w.StopGracePeriodSeconds = 0; w.Network = NetworkMode.None; });

    /// <summary>The session's output as it comes, and what it has said so far.</summary>
    private sealed class Screen
    {
        private readonly StringBuilder _out = new(), _err = new();

        public ValueTask Take(bool stderr, ReadOnlyMemory<byte> data)
        {
            lock (_out)
            {
                (stderr ? _err : _out).Append(Encoding.UTF8.GetString(data.Span));
            }
            return ValueTask.CompletedTask;
        }

        public string Out
        {
            get
            {
                lock (_out)
                {
                    return _out.ToString();
                }
            }
        }

        public string Err
        {
            get
            {
                lock (_out)
                {
                    return _err.ToString();
                }
            }
        }

        public Task UntilAsync(string text, Task session)
            => Eventually.TrueAsync($"'{text}' on the screen", () => Out.Contains(text, StringComparison.Ordinal) || session.IsCompleted, s_wait,
                () => $"screen so far: {Out}\nstderr: {Err}\nsession: {session.Status} {session.Exception?.GetBaseException().Message}");
    }

    private static async Task<int> CountAsync(NodeHost node, string name, string pattern)
        => (await node.Client.ExecAsync(name, ["sh", "-c", $"ps -o args | grep -c '^{pattern}' || true"])).Stdout.Trim() is var n && int.TryParse(n, out var count) ? count : -1;

    [Theory(Timeout = 240_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task A_shell_on_a_terminal_takes_keystrokes_follows_resizes_and_exits_with_its_code(string runtime)
    {
        await using var node = await NodeHost.StartAsync(runtime: runtime);
        await node.Client.RunAsync(Box("box"));
        await node.WaitForAsync("box", c => c.State == ContainerState.Running, s_wait, "running");

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
        await using var node = await NodeHost.StartAsync(runtime: runtime);
        await node.Client.RunAsync(Box("box"));
        await node.WaitForAsync("box", c => c.State == ContainerState.Running, s_wait, "running");

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
        await using var node = await NodeHost.StartAsync();
        await node.Client.RunAsync(Box("box"));
        await node.WaitForAsync("box", c => c.State == ContainerState.Running, s_wait, "running");

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

    [Fact(Timeout = 240_000)]
    public async Task A_client_that_quits_or_vanishes_leaves_no_process_behind_and_mistakes_get_one_sentence()
    {
        await using var node = await NodeHost.StartAsync();
        await node.Client.RunAsync(Box("box"));
        await node.WaitForAsync("box", c => c.State == ContainerState.Running, s_wait, "running");

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

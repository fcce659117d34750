using Orchestrator.Api;
using Orchestrator.Client;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>Restart policies with backoff, OOM kills, and the three kinds of probes, on real containers.</summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class RestartAndProbeTests
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);

    [Theory(Timeout = 120_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task A_crash_loop_backs_off_exponentially_and_records_exit_codes(string runtime)
    {
        await using var node = await NodeHost.StartAsync(runtime: runtime);
        await node.Client.RunAsync(NodeHost.Sh("crasher", "echo start; exit 7", w =>
            w.Restart = new RestartPolicy { Policy = RestartPolicyKind.Always, Backoff = "200ms", MaxBackoff = "1600ms" }));
        var status = await node.WaitForAsync("crasher", c => c.Restarts >= 4, s_wait, "four restarts");
        Assert.Equal(7, status.LastExit!.Code);
        Assert.Equal("exited", status.LastExit.Reason);

        // The starts as the log shows them: the gaps grow (200, 400, 800, 1600 ms, capped).
        var starts = (await node.Client.LogsAsync("crasher")).Where(l => l.Text == "start").Select(l => l.Time).ToList();
        Assert.True(starts.Count >= 5, $"{starts.Count} starts");
        var gaps = starts.Zip(starts.Skip(1), (a, b) => (b - a).TotalMilliseconds).ToList();
        // No upper bound on one gap: a start through containerd on a loaded 2-core machine took
        // 0.5 s and more. The backoff's exact delays are SupervisorRestartTests' (fake clock).
        Assert.True(gaps[0] >= 150, $"first gap {gaps[0]} ms");
        Assert.True(gaps[3] >= 1400, $"fourth gap {gaps[3]} ms; gaps {string.Join(", ", gaps)}");
        // Each gap is the backoff plus one start (about 0.1 s natively, up to 0.4 s through containerd
        // on a loaded machine): the growth between the first and the fourth is the backoff's, 1.4 s.
        Assert.True(gaps[3] - gaps[0] >= 1000, $"gaps {string.Join(", ", gaps)}");
    }

    [Theory(Timeout = 120_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task Logs_previous_is_the_last_exited_run_whether_the_container_runs_again_or_not(string runtime)
    {
        await using var node = await NodeHost.StartAsync(runtime: runtime);
        // The first run writes to both streams and fails; the next ones say so and stay up.
        await node.Client.RunAsync(NodeHost.Sh("twice", "if [ -e /data/once ]; then echo second run; exec sleep 300; fi; touch /data/once; echo first run; echo first stderr >&2; exit 3", w =>
        {
            w.Restart = new RestartPolicy { Policy = RestartPolicyKind.OnFailure, Backoff = "100ms" };
            w.Volumes = [new Volume { Name = "data", Target = "/data" }];
        }));
        await node.Client.RunAsync(NodeHost.Sh("steady", "echo only run; exec sleep 300"));
        await node.LogsUntilAsync("twice", lines => lines.Any(l => l.Text == "second run"), s_wait, "the second run's line");

        // Running again: the previous run is the first, both streams, and nothing of the second.
        var previous = await node.Client.LogsAsync("twice", previous: true);
        // Order within a stream is kept; between the two streams it is the order orchd read them
        // in, which through containerd's two FIFOs (as through docker's) is not the order written.
        Assert.Equal(["stderr first stderr", "stdout first run"], previous.Select(l => $"{l.Stream} {l.Text}").Order(StringComparer.Ordinal));
        Assert.Equal([previous[^1].Text], (await node.Client.LogsAsync("twice", tail: 1, previous: true)).Select(l => l.Text));
        var status = await node.Client.InspectAsync("twice");
        Assert.Equal(3, status.LastExit!.Code);
        Assert.NotNull(status.LastExit.StartedAt);
        // (Not ordered against At: containerd stamps the exit itself, and a run as short as this
        // one can end before the start call returns to orchd.)

        // Stopped: its last run (the second) is the previous one.
        await node.Client.StopAsync("twice");
        await node.WaitForAsync("twice", c => c.State == ContainerState.Stopped, s_wait, "stopped");
        Assert.Equal(["second run"], (await node.Client.LogsAsync("twice", previous: true)).Select(l => l.Text));

        // Started again: still the second run, not the one now running (which wrote the same line).
        await node.Client.StartAsync("twice");
        await node.LogsUntilAsync("twice", lines => lines.Count(l => l.Text == "second run") == 2, s_wait, "the third run's line");
        Assert.Equal(["second run"], (await node.Client.LogsAsync("twice", previous: true)).Select(l => l.Text));
        Assert.Equal(4, (await node.Client.LogsAsync("twice")).Count);

        // A container that never ended has no previous run: a not-found error that says so.
        await node.LogsUntilAsync("steady", lines => lines.Count == 1, s_wait, "its line");
        var none = await Assert.ThrowsAsync<NodeRequestException>(() => node.Client.LogsAsync("steady", previous: true));
        Assert.Equal(ErrorKind.NotFound, none.Kind);
        Assert.Contains("has not restarted", none.Message, StringComparison.Ordinal);
    }

    [Theory(Timeout = 120_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task On_failure_gives_up_after_max_retries_and_never_leaves_a_clean_exit_alone(string runtime)
    {
        await using var node = await NodeHost.StartAsync(runtime: runtime);
        await node.Client.RunAsync(NodeHost.Sh("flaky", "exit 3", w =>
            w.Restart = new RestartPolicy { Policy = RestartPolicyKind.OnFailure, MaxRetries = 2, Backoff = "100ms" }));
        await node.Client.RunAsync(NodeHost.Sh("done", "exit 0", w => w.Restart = new RestartPolicy { Policy = RestartPolicyKind.OnFailure, Backoff = "100ms" }));
        await node.Client.RunAsync(NodeHost.Sh("once", "exit 5", w => w.Restart = new RestartPolicy { Policy = RestartPolicyKind.Never }));

        var flaky = await node.WaitForAsync("flaky", c => c.State == ContainerState.Failed, s_wait, "giving up");
        Assert.Equal(2, flaky.Restarts);
        Assert.Equal(3, flaky.LastExit!.Code);
        Assert.Contains("gave up after 2 restarts", flaky.Message, StringComparison.Ordinal);
        var done = await node.WaitForAsync("done", c => c.State == ContainerState.Exited, s_wait, "a clean exit");
        Assert.Equal(0, done.LastExit!.Code);
        var once = await node.WaitForAsync("once", c => c.State == ContainerState.Exited, s_wait, "exit under never");
        Assert.Equal(5, once.LastExit!.Code);
        await Task.Delay(1000);
        Assert.Equal(0, (await node.Client.InspectAsync("done")).Restarts);
        Assert.Equal(0, (await node.Client.InspectAsync("once")).Restarts);
    }

    [Theory(Timeout = 120_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task An_oom_kill_is_recorded_as_such(string runtime)
    {
        await using var node = await NodeHost.StartAsync(runtime: runtime);
        // tail of /dev/zero buffers one endless line: it grows until the memory limit stops it.
        await node.Client.RunAsync(NodeHost.Sh("hog", "tail /dev/zero", w =>
        {
            w.Resources = new Resources { Memory = "16Mi" };
            w.Restart = new RestartPolicy { Policy = RestartPolicyKind.Never };
        }));
        var status = await node.WaitForAsync("hog", c => c.State == ContainerState.Exited, s_wait, "the OOM kill");
        Assert.True(status.LastExit!.OomKilled, $"exit {status.LastExit.Code}, reason {status.LastExit.Reason}");
        Assert.Equal("oom-killed", status.LastExit.Reason);
        Assert.Equal(137, status.LastExit.Code);
    }

    [Theory(Timeout = 120_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task A_failing_liveness_probe_restarts_the_container(string runtime)
    {
        await using var node = await NodeHost.StartAsync(runtime: runtime);
        // Healthy for about a second after each start, then not.
        await node.Client.RunAsync(NodeHost.Sh("sick", "touch /tmp/healthy; sleep 1; rm /tmp/healthy; exec sleep 100000", w =>
        {
            w.Restart = new RestartPolicy { Backoff = "100ms" };
            w.Probes = new Probes { Liveness = new Probe { Exec = new ExecAction { Command = ["cat", "/tmp/healthy"] }, PeriodSeconds = 0.2, FailureThreshold = 2 } };
        }));
        var status = await node.WaitForAsync("sick", c => c.Restarts >= 1 && c.State == ContainerState.Running, s_wait, "a restart by the liveness probe");
        Assert.Equal("liveness-probe", status.LastExit!.Reason);
        Assert.Equal(137, status.LastExit.Code);
    }

    [Theory(Timeout = 120_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task Readiness_follows_exec_http_and_tcp_probes(string runtime)
    {
        await using var node = await NodeHost.StartAsync(runtime: runtime, extraArgs: ["--allow-host-network", "true"]);
        var port = FreePort.Next();
        await node.Client.RunAsync(NodeHost.Sh("gate", "exec sleep 100000", w =>
            w.Probes = new Probes { Readiness = new Probe { Exec = new ExecAction { Command = ["test", "-f", "/tmp/ready"] }, PeriodSeconds = 0.2, FailureThreshold = 1 } }));
        await node.Client.RunAsync(NodeHost.Sh("web", $"mkdir -p /www; echo ok > /www/index.html; exec httpd -f -p 127.0.0.1:{port} -h /www", w =>
        {
            w.Network = NetworkMode.Host;
            w.Probes = new Probes
            {
                Startup = new Probe { TcpSocket = new TcpSocketAction { Port = port }, PeriodSeconds = 0.1, FailureThreshold = 50 },
                Readiness = new Probe { HttpGet = new HttpGetAction { Path = "/index.html", Port = port }, PeriodSeconds = 0.2 },
            };
        }));

        Assert.False((await node.Client.InspectAsync("gate")).Ready);
        await node.Client.ExecAsync("gate", ["touch", "/tmp/ready"]);
        await node.WaitForAsync("gate", c => c.Ready, s_wait, "ready after the file appears");
        await node.Client.ExecAsync("gate", ["rm", "/tmp/ready"]);
        var notReady = await node.WaitForAsync("gate", c => !c.Ready, s_wait, "not ready after the file goes");
        Assert.Contains("not ready: exec test -f /tmp/ready exited 1", notReady.Message, StringComparison.Ordinal);
        Assert.Equal(0, notReady.Restarts); // readiness never restarts

        await node.WaitForAsync("web", c => c.Ready, s_wait, "ready once httpd answers");

        // A probe whose program is not in the image fails (and says why); it does not stop probing.
        await node.Client.RunAsync(NodeHost.Sh("typo", "exec sleep 100000", w =>
            w.Probes = new Probes { Readiness = new Probe { Exec = new ExecAction { Command = ["/no/such/program"] }, PeriodSeconds = 0.2, FailureThreshold = 1 } }));
        await node.Client.ExecAsync("typo", ["true"]);
        var typo = await node.WaitForAsync("typo", c => c.Message is not null, s_wait, "the probe's failure reported");
        Assert.False(typo.Ready);
        Assert.Contains("/no/such/program", typo.Message, StringComparison.Ordinal);
        var status = await node.Client.StatusAsync();
        Assert.Equal(1, status.Ready);
        Assert.Equal(3, status.Running);
    }
}

using Orchestrator.Client;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>The node API over a real nats-server, against containers run by the real orchd.</summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class NodeApiTests
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(20);

    [Theory(Timeout = 120_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task Run_ps_logs_exec_inspect_stats_stop_start_rm(string runtime)
    {
        await using var node = await NodeHost.StartAsync(runtime: runtime, extraArgs: NodeHost.MetricsOnNats);
        var status = await node.Client.RunAsync(NodeHost.Sh("hello", "echo hello from $HOSTNAME; echo oops >&2; exec sleep 1000", w => { w.Env = new() { ["GREETING"] = "hi" }; w.StopGracePeriodSeconds = 1; }));
        Assert.True(status.State == ContainerState.Running, $"{status.State}: {status.Message}");
        Assert.True(status.Pid > 0);

        var ps = await node.Client.ListAsync();
        Assert.Equal("hello", Assert.Single(ps).Name);

        var lines = await node.LogsUntilAsync("hello", l => l.Count >= 2, s_wait, "two lines");
        Assert.Contains(lines, l => l is { Stream: "stdout", Text: "hello from hello" });
        Assert.Contains(lines, l => l is { Stream: "stderr", Text: "oops" });
        Assert.All(lines, l => Assert.True(Math.Abs((DateTimeOffset.UtcNow - l.Time).TotalMinutes) < 5, $"timestamp {l.Time}"));

        var exec = await node.Client.ExecAsync("hello", ["sh", "-c", "echo $GREETING; cat /etc/hostname; exit 3"]);
        Assert.Equal(3, exec.ExitCode);
        Assert.Equal("hi\nhello\n", exec.Stdout);

        // A command that leaves a background child holding its stdout still returns at once.
        var clock = DateTime.UtcNow;
        var detached = await node.Client.ExecAsync("hello", ["sh", "-c", "sleep 600 & echo hi"]);
        Assert.Equal("hi\n", detached.Stdout);
        Assert.True(DateTime.UtcNow - clock < TimeSpan.FromSeconds(5), $"exec took {DateTime.UtcNow - clock}");
        var timedOut = await node.Client.ExecAsync("hello", ["sleep", "30"], timeoutSeconds: 0.5);
        Assert.True(timedOut.TimedOut);
        Assert.Equal(137, timedOut.ExitCode);

        var inspect = await node.Client.InspectAsync("hello");
        Assert.Equal(NodeHost.Image, inspect.Spec!.Image);
        var stats = Assert.Single(await node.Client.StatsAsync());
        Assert.True(stats.MemoryBytes > 0 && stats.Pids >= 1, $"memory {stats.MemoryBytes}, pids {stats.Pids}");
        var nodeStatus = await node.Client.StatusAsync();
        Assert.Equal(1, nodeStatus.Running);
        Assert.Equal(Environment.ProcessorCount * 1000, nodeStatus.CpuMilliCapacity);
        Assert.StartsWith(runtime + " (", nodeStatus.Driver, StringComparison.Ordinal);
        if (runtime == "containerd")
        {
            Assert.Equal(["hello"], await node.ContainerdContainersAsync());
        }

        var pid = status.Pid;
        var stopped = await node.Client.StopAsync("hello");
        Assert.Equal(ContainerState.Stopped, stopped.State);
        Assert.False(NodeHost.IsAlive(pid), "the process is gone after stop");
        await node.WaitForReconcilePassesAsync(2); // a stopped container stays stopped
        Assert.Equal(ContainerState.Stopped, (await node.Client.InspectAsync("hello")).State);

        var started = await node.Client.StartAsync("hello");
        Assert.Equal(ContainerState.Running, started.State);
        Assert.NotEqual(pid, started.Pid);

        await node.Client.RemoveAsync("hello");
        Assert.Empty(await node.Client.ListAsync());
        Assert.False(Directory.Exists(Path.Combine(node.StateDir, "logs", "hello")));
        await node.AssertNoContainersLeftAsync();
    }

    [Fact(Timeout = 120_000)]
    public async Task Logs_bigger_than_one_message_come_back_whole_in_several()
    {
        await using var node = await NodeHost.StartAsync();
        // About 2.5 MB of log: more than one NATS message can carry.
        await node.Client.RunAsync(NodeHost.Sh("chatty", "z=$(printf '%080d' 0); i=0; while [ $i -lt 25000 ]; do echo \"line-$i $z\"; i=$((i+1)); done; echo done; exec sleep 100000"));
        var lines = await node.LogsUntilAsync("chatty", l => l.Any(x => x.Text == "done"), TimeSpan.FromSeconds(60), "done, the last line",
            TimeSpan.FromMilliseconds(200)); // each read is the whole 2.5 MB log: not too often
        Assert.Equal(Enumerable.Range(0, 25000).Select(i => $"line-{i} {new string('0', 80)}").Append("done"), lines.Select(l => l.Text));
        var tail = await node.Client.LogsAsync("chatty", tail: 10);
        Assert.Equal(10, tail.Count);
        Assert.Equal("done", tail[^1].Text);
    }

    [Theory(Timeout = 120_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task Logs_follow_over_nats_continues_from_the_tail_and_ends_when_the_client_goes(string runtime)
    {
        await using var node = await NodeHost.StartAsync(runtime: runtime);
        await node.Client.RunAsync(NodeHost.Sh("ticker", "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.05; done", w => w.StopGracePeriodSeconds = 1));
        await Task.Delay(500);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var seen = new List<int>();
        await foreach (var line in node.Client.FollowLogsAsync("ticker", tail: 3, cancellationToken: cts.Token))
        {
            seen.Add(int.Parse(line.Text["tick-".Length..], System.Globalization.CultureInfo.InvariantCulture));
            if (seen.Count == 40)
            {
                break;
            }
        }
        // Three lines of history, then the new ones: consecutive, none missing, none twice.
        Assert.Equal(Enumerable.Range(seen[0], 40), seen);
        Assert.True(seen[0] > 0, "the tail starts at the last lines, not the first");
        // The client went away: the node notices (its alive subject has no responders) and stops.
        await node.Daemon.WaitForLogAsync("logs -f of ticker ended", TimeSpan.FromSeconds(15));

        var unknown = await Assert.ThrowsAsync<NodeRequestException>(async () =>
        {
            await foreach (var _ in node.Client.FollowLogsAsync("ghost", cancellationToken: cts.Token))
            {
            }
        });
        Assert.Equal("no container 'ghost' on this node; `ps` lists the ones there are", unknown.Message);
    }

    [Theory(Timeout = 180_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task A_private_registry_serves_a_node_with_registry_auth_file_and_refuses_one_without(string runtime)
    {
        await using var registry = await RegistryServer.StartAsync("edge", "s3cret");
        await using var node = await NodeHost.StartAsync(start: false, runtime: runtime);
        var layout = node.Dir.Combine("pushed");
        BusyboxImage.CreateLayout(layout, extraFiles: new Dictionary<string, string> { ["etc/motd"] = "from a private registry\n" });
        await registry.PushAsync($"{layout}:latest", "team/app", "1", "edge", "s3cret");
        var reference = $"{registry.Host}/team/app:1";

        // Without credentials: one error naming the registry and the fix.
        await node.StartOrchdAsync();
        var refused = await Assert.ThrowsAsync<NodeRequestException>(() => node.Client.PullAsync(reference));
        Assert.Equal($"registry {registry.Host} wants credentials and none are configured for it", refused.Message);
        await node.KillOrchdAsync();

        // With a docker-style auth file: a workload's image comes down and runs (through containerd's store on a containerd node).
        var auth = node.Dir.Combine("registry-auth.json");
        File.WriteAllText(auth, "{\"auths\": {\"" + registry.Host + "\": {\"auth\": \"" + Convert.ToBase64String("edge:s3cret"u8) + "\"}}}");
        await node.StartOrchdAsync(["--registry-auth-file", auth]);
        var running = await node.Client.RunAsync(new Workload { Name = "private", Image = reference, Command = ["sh", "-c", "cat /etc/motd; exec sleep 100000"], StopGracePeriodSeconds = 0 });
        Assert.True(running.State == ContainerState.Running, $"{running.State}: {running.Message}");
        await node.LogsUntilAsync("private", l => l.Any(x => x.Text == "from a private registry"), TimeSpan.FromSeconds(20), "the private image's motd");
        Assert.Equal(runtime == "containerd" ? "containerd" : null, (await node.Client.InspectImageAsync(reference)).Store);
    }

    [Fact(Timeout = 180_000)]
    public async Task Images_over_the_node_api_list_pull_run_refuse_removal_in_use_and_gc()
    {
        await using var node = await NodeHost.StartAsync();
        await using var registry = await RegistryServer.StartAsync();
        var layout = node.Dir.Combine("pushed");
        var image = BusyboxImage.CreateLayout(layout, extraFiles: new Dictionary<string, string> { ["etc/motd"] = "pulled through the node api\n" });
        await registry.PushAsync($"{layout}:latest", "edge/motd", "1");
        var reference = $"{registry.Host}/edge/motd:1";

        var pulled = await node.Client.PullAsync(reference);
        Assert.Equal(image.ManifestDigest, pulled.ManifestDigest);
        await node.Client.RunAsync(new Workload { Name = "motd", Image = reference, Command = ["sh", "-c", "cat /etc/motd; exec sleep 100000"], StopGracePeriodSeconds = 0 });
        await node.LogsUntilAsync("motd", l => l.Any(x => x.Text == "pulled through the node api"), TimeSpan.FromSeconds(20), "the pulled image's motd");

        var images = await node.Client.ImagesAsync();
        Assert.Equal(["motd"], images.Single(i => i.Name == reference).UsedBy);
        Assert.Contains(images, i => i.Name == NodeHost.StoredImage && i.UsedBy.Count == 0);
        var inspected = await node.Client.InspectImageAsync(reference);
        Assert.Equal(image.LayerDigest, Assert.Single(inspected.Layers!).Digest);

        var inUse = await Assert.ThrowsAsync<NodeRequestException>(() => node.Client.RemoveImageAsync(reference));
        Assert.Equal($"image '{reference}' is used by 'motd'; remove those workloads first", inUse.Message);
        await node.Client.RemoveAsync("motd");
        await node.Client.RemoveImageAsync(reference);
        var gc = await node.Client.GcImagesAsync();
        Assert.True(gc.FreedBytes > 500_000, $"freed {gc.FreedBytes} bytes");
        Assert.True(gc.PrunedLayers >= 1);
        Assert.DoesNotContain(await node.Client.ImagesAsync(), i => i.Name == reference);

        var missing = await Assert.ThrowsAsync<NodeRequestException>(() => node.Client.PullAsync($"{registry.Host}/edge/nothing:1"));
        Assert.Contains("edge/nothing", missing.Message, StringComparison.Ordinal);
    }

    [Theory(Timeout = 60_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task Ps_and_logs_answer_while_a_stop_waits_out_its_grace_period(string runtime)
    {
        await using var node = await NodeHost.StartAsync(runtime: runtime);
        // sleep as pid 1 ignores SIGTERM: the stop takes the whole grace period.
        await node.Client.RunAsync(NodeHost.Sh("stubborn", "exec sleep 100000", w => w.StopGracePeriodSeconds = 10));
        var stopping = node.Client.StopAsync("stubborn");
        // Reported as stopping, not ready, while the grace runs (it said running and ready: #22).
        var shown = await Eventually.ValueAsync("stubborn reported stopping", async () => Assert.Single(await node.Client.ListAsync()),
            c => c.State == ContainerState.Stopping, TimeSpan.FromSeconds(8));
        Assert.False(shown.Ready);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var ps = await node.Client.ListAsync();
        await node.Client.LogsAsync("stubborn");
        await node.Client.StatsAsync();
        Assert.True(clock.ElapsedMilliseconds < 1000, $"reads took {clock.ElapsedMilliseconds} ms during a stop");
        Assert.False(stopping.IsCompleted);
        Assert.Equal("stubborn", Assert.Single(ps).Name);
        Assert.Equal(ContainerState.Stopping, (await node.Client.InspectAsync("stubborn")).State);
        Assert.Equal(ContainerState.Stopped, (await stopping).State);
        Assert.Equal(ContainerState.Stopped, (await node.Client.InspectAsync("stubborn")).State);
    }

    [Theory(Timeout = 60_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task Workloads_run_under_the_default_seccomp_profile_unless_unconfined(string runtime)
    {
        await using var node = await NodeHost.StartAsync(runtime: runtime, extraArgs: ["--allow-unconfined-seccomp", "true"]);
        await node.Client.RunAsync(NodeHost.Sh("confined", "exec sleep 100000", w => w.StopGracePeriodSeconds = 0));
        await node.Client.RunAsync(NodeHost.Sh("free", "exec sleep 100000", w => { w.StopGracePeriodSeconds = 0; w.Seccomp = "unconfined"; }));
        // A user namespace needs no capability, so only the profile stands in the way.
        var refused = await node.Client.ExecAsync("confined", ["busybox", "unshare", "-U", "true"]);
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("Operation not permitted", refused.Stderr, StringComparison.Ordinal);
        Assert.Contains("Seccomp:\t2", (await node.Client.ExecAsync("confined", ["cat", "/proc/self/status"])).Stdout, StringComparison.Ordinal);
        var allowed = await node.Client.ExecAsync("free", ["busybox", "unshare", "-U", "true"]);
        Assert.True(allowed.ExitCode == 0, allowed.Stderr);
    }

    [Theory(Timeout = 120_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task The_default_seccomp_profile_refuses_namespaces_by_clone_and_io_uring_as_dockers_does(string runtime)
    {
        // clone(CLONE_NEWUSER|CLONE_NEWNET) gives the child every capability over a new network
        // namespace (the usual nf_tables escalation), and io_uring bypasses the filter: both are
        // refused; plain clone, fork and threads (glibc tries clone3 first, then clone) still work.
        using var tools = new TempDir("seccomp-tools");
        File.WriteAllText(tools.Combine("probe.c"), """
            #define _GNU_SOURCE
            #include <errno.h>
            #include <pthread.h>
            #include <sched.h>
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/syscall.h>
            #include <sys/wait.h>
            #include <unistd.h>
            static char stack[1 << 16];
            static int child(void *arg) { (void)arg; return 0; }
            static void *thread(void *arg) { return arg; }
            static void report(const char *what, long r) { printf("%s: %s\n", what, r < 0 ? strerror(errno) : "ok"); }
            int main(void) {
                int pid = clone(child, stack + sizeof stack, CLONE_NEWUSER | CLONE_NEWNET | SIGCHLD, NULL);
                report("clone-newuser-newnet", pid); if (pid > 0) waitpid(pid, NULL, 0);
                pid = clone(child, stack + sizeof stack, CLONE_NEWNS | SIGCHLD, NULL);
                report("clone-newns", pid); if (pid > 0) waitpid(pid, NULL, 0);
                pid = clone(child, stack + sizeof stack, SIGCHLD, NULL);
                report("clone-plain", pid); if (pid > 0) waitpid(pid, NULL, 0);
                pid = fork(); if (pid == 0) _exit(0);
                report("fork", pid); if (pid > 0) waitpid(pid, NULL, 0);
                pthread_t t; errno = pthread_create(&t, NULL, thread, NULL);
                report("thread", errno ? -1 : 0); if (!errno) pthread_join(t, NULL);
                unsigned char params[120] = {0};
                report("io_uring_setup", syscall(__NR_io_uring_setup, 1, params));
                return 0;
            }
            """);
        await using (var gcc = DaemonProcess.Start("gcc", ["-static", "-pthread", "-O1", "-o", tools.Combine("probe"), tools.Combine("probe.c")]))
        {
            Assert.True(await gcc.WaitForExitAsync(TimeSpan.FromSeconds(60)) == 0, gcc.Output);
        }
        await using var node = await NodeHost.StartAsync(runtime: runtime, extraArgs: ["--allow-host-path", tools.Path]);
        await node.Client.RunAsync(NodeHost.Sh("confined", "exec sleep 100000", w =>
        {
            w.StopGracePeriodSeconds = 0;
            w.Volumes = [new Volume { HostPath = tools.Path, Target = "/tools", ReadOnly = true }];
        }));
        // Run straight from the volume: an exec finds a program on a bind mount (it used to look
        // in the image's rootfs on the host only).
        var probe = await node.Client.ExecAsync("confined", ["/tools/probe"]);
        Assert.True(probe.ExitCode == 0, probe.Stderr);
        Assert.Equal(
            ["clone-newuser-newnet: Operation not permitted", "clone-newns: Operation not permitted", "clone-plain: ok", "fork: ok", "thread: ok", "io_uring_setup: Operation not permitted"],
            probe.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact(Timeout = 60_000)]
    public async Task Events_of_the_node_reach_the_fleets_stream_in_order()
    {
        await using var node = await NodeHost.StartAsync();
        var since = DateTimeOffset.UtcNow.AddSeconds(-1);
        await node.Client.RunAsync(NodeHost.Sh("blip", "exit 3", w => w.Restart = new RestartPolicy { Policy = RestartPolicyKind.Never }));
        await node.WaitForAsync("blip", c => c.State == ContainerState.Exited, TimeSpan.FromSeconds(20), "the exit");
        await using var connection = new NATS.Client.Core.NatsConnection(new NATS.Client.Core.NatsOpts { Url = node.Nats!.Url });
        await connection.ConnectAsync();
        var fleet = new FleetClient(connection);
        var events = await Eventually.ValueAsync("a container.exited event", () => ToListAsync(fleet.EventsAsync(since, watch: false)),
            events => events.Any(e => e.Kind == "container.exited"), TimeSpan.FromSeconds(20), TimeSpan.FromMilliseconds(200),
            events => "events: " + string.Join("; ", events.Select(e => e.Kind)));
        var blip = events.Where(e => e.Subject == "blip").ToList();
        Assert.Equal(["container.started", "container.exited"], blip.Select(e => e.Kind));
        Assert.Equal("exited with code 3 (exited)", blip[1].Message);
        Assert.All(blip, e => Assert.Equal(node.NodeName, e.Node));
    }

    private static async Task<List<T>> ToListAsync<T>(IAsyncEnumerable<T> items)
    {
        var list = new List<T>();
        await foreach (var item in items)
        {
            list.Add(item);
        }
        return list;
    }

    [Theory(Timeout = 60_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task Bad_requests_get_one_clear_error_reply(string runtime)
    {
        await using var node = await NodeHost.StartAsync(runtime: runtime);
        var invalid = await Assert.ThrowsAsync<NodeRequestException>(() => node.Client.RunAsync(new Workload { Name = "bad name", Image = "" }));
        Assert.Contains("name: 'bad name' is not a valid name", invalid.Message, StringComparison.Ordinal);
        Assert.Contains("image: required", invalid.Message, StringComparison.Ordinal);

        var missing = await Assert.ThrowsAsync<NodeRequestException>(() => node.Client.InspectAsync("ghost"));
        Assert.Equal("no container 'ghost' on this node; `ps` lists the ones there are", missing.Message);

        var unknownField = System.Text.Encoding.UTF8.GetBytes("{\"name\":\"x\",\"image\":\"busybox:latest\",\"replicas\":3}");
        Assert.Equal("the request is not valid JSON for this operation at replicas; send a workload (name, image, …; see docs/manifest.md)",
            ErrorOf(await node.Client.RawAsync("run", unknownField)));
        Assert.StartsWith("'frobnicate' is not a node operation; use one of info, run,", ErrorOf(await node.Client.RawAsync("frobnicate", [])), StringComparison.Ordinal);

        var nobody = new NodeClient(GetConnection(node), "no-such-node", TimeSpan.FromSeconds(5));
        var unknownNode = await Assert.ThrowsAsync<NodeRequestException>(() => nobody.ListAsync());
        Assert.Equal("no node 'no-such-node' is connected to the fleet; `orchctl get nodes` lists the nodes that are", unknownNode.Message);

        // A missing image is reported on the container, and nothing that runs is disturbed.
        await node.Client.RunAsync(NodeHost.Sh("keeper", "exec sleep 1000"));
        var noImage = await node.Client.RunAsync(new Workload { Name = "noimage", Image = "127.0.0.1:1/nothing:here" });
        Assert.Equal(ContainerState.Backoff, noImage.State);
        Assert.Contains("127.0.0.1:1", noImage.Message, StringComparison.Ordinal);
        Assert.Equal(ContainerState.Running, (await node.Client.InspectAsync("keeper")).State);
    }

    [Fact(Timeout = 90_000)]
    public async Task Hostile_requests_are_refused_at_the_edge_and_the_node_keeps_answering()
    {
        await using var node = await NodeHost.StartAsync();
        await node.Client.RunAsync(NodeHost.Sh("keeper", "exec sleep 1000"));
        static byte[] Json(string text) => System.Text.Encoding.UTF8.GetBytes(text);

        Assert.Equal("name: null is not allowed there; give a value or leave the property out; send {\"name\": \"CONTAINER\"}",
            ErrorOf(await node.Client.RawAsync("stop", Json("{\"name\":null}"))));
        Assert.StartsWith("image: null is not allowed there",
            ErrorOf(await node.Client.RawAsync("run", Json("{\"name\":\"n\",\"image\":null}"))), StringComparison.Ordinal);
        // A 900 KB image name was accepted, and every later `ps` reply was over NATS's max_payload.
        var huge = ErrorOf(await node.Client.RawAsync("run", Json($"{{\"name\":\"big\",\"image\":\"{new string('a', 900_000)}\"}}")));
        Assert.StartsWith("the request is 900", huge, StringComparison.Ordinal);
        Assert.Contains("bytes, more than the 256 KiB a node request may be", huge, StringComparison.Ordinal);
        var longString = ErrorOf(await node.Client.RawAsync("run", Json($"{{\"name\":\"big\",\"image\":\"busybox:latest\",\"env\":{{\"A\":\"{new string('a', 70_000)}\"}}}}")));
        Assert.StartsWith("'env.A' is 70000 bytes long, more than the 64 KiB a string in a request may be", longString, StringComparison.Ordinal);
        var longImage = await Assert.ThrowsAsync<NodeRequestException>(() => node.Client.RunAsync(new Workload { Name = "img", Image = "busybox:" + new string('1', 600) }));
        Assert.Contains("image: 608 characters; an image reference has at most 512", longImage.Message, StringComparison.Ordinal);
        var longHost = await Assert.ThrowsAsync<NodeRequestException>(() => node.Client.RunAsync(new Workload { Name = "host", Image = "busybox:latest", Hostname = new string('h', 5000) }));
        Assert.Contains("is not a host name; use at most 63 letters, digits", longHost.Message, StringComparison.Ordinal);
        Assert.Equal("'name' is given twice; give each property once; send a workload (name, image, …; see docs/manifest.md)",
            ErrorOf(await node.Client.RawAsync("run", Json("{\"name\":\"dup\",\"image\":\"busybox:latest\",\"name\":\"other\"}"))));
        Assert.StartsWith("'env.A' is given twice",
            ErrorOf(await node.Client.RawAsync("run", Json("{\"name\":\"dup\",\"image\":\"busybox:latest\",\"env\":{\"A\":\"1\",\"A\":\"2\"}}"))), StringComparison.Ordinal);
        Assert.StartsWith("the request nests objects and arrays more than 32 deep",
            ErrorOf(await node.Client.RawAsync("run", Json(new string('[', 100_000)))), StringComparison.Ordinal);

        // Nothing was made, nothing that ran was disturbed, and the node still answers.
        var listed = await node.Client.ListAsync();
        Assert.Equal(["keeper"], listed.Select(c => c.Name));
        Assert.Equal(ContainerState.Running, listed.Single().State);
    }

    private static string? ErrorOf(byte[] reply)
    {
        using var doc = System.Text.Json.JsonDocument.Parse(reply);
        return doc.RootElement.GetProperty("error").GetString();
    }

    private static NATS.Client.Core.NatsConnection GetConnection(NodeHost node)
    {
        var connection = new NATS.Client.Core.NatsConnection(new NATS.Client.Core.NatsOpts { Url = node.Nats!.Url });
        return connection;
    }
}

using System.Globalization;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>orchd dies or restarts; the containers do not notice, and their logs lose nothing.</summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class LiveRestoreTests
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);

    [Theory(Timeout = 240_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task Twenty_containers_survive_kill_9_and_a_clean_restart_untouched(string runtime)
    {
        await using var node = await NodeHost.StartAsync(runtime: runtime);
        for (var i = 0; i < 20; i++)
        {
            await node.Client.RunAsync(NodeHost.Sh($"c{i:00}", "exec sleep 100000"));
        }
        var before = (await node.Client.ListAsync()).ToDictionary(c => c.Name, c => c.Pid);
        Assert.Equal(20, before.Count);
        Assert.All(before.Values, pid => Assert.True(pid > 0));
        var startTicks = before.ToDictionary(kv => kv.Key, kv => NodeHost.ProcessStartTicks(kv.Value));

        await node.KillOrchdAsync();
        Assert.All(before.Values, pid => Assert.True(NodeHost.IsAlive(pid), $"pid {pid} died with orchd"));
        await node.StartOrchdAsync();
        await node.Daemon.WaitForLogAsync("re-adopted 20 running containers", s_wait);
        var afterKill = await node.Client.ListAsync();
        Assert.All(afterKill, c =>
        {
            Assert.Equal(ContainerState.Running, c.State);
            Assert.Equal(before[c.Name], c.Pid);
            Assert.Equal(startTicks[c.Name], NodeHost.ProcessStartTicks(c.Pid));
            Assert.Equal(0, c.Restarts);
        });

        // SIGTERM is what `systemctl restart` sends: orchd stops, its containers do not.
        node.Daemon.Signal(15);
        Assert.Equal(0, await node.Daemon.WaitForExitAsync(s_wait, drainOutput: false));
        await node.StartOrchdAsync();
        await node.Daemon.WaitForLogAsync("re-adopted 20 running containers", s_wait);
        Assert.All(await node.Client.ListAsync(), c => Assert.Equal(before[c.Name], c.Pid));

        // A re-adopted container that then dies is noticed (pidfd) and restarted by policy.
        Orchestrator.Linux.Libc.kill(before["c07"], 9);
        var restarted = await node.WaitForAsync("c07", c => c.State == ContainerState.Running && c.Restarts == 1, s_wait, "restart after a kill");
        Assert.NotEqual(before["c07"], restarted.Pid);
        if (runtime == "native")
        {
            Assert.Null(restarted.LastExit!.Code); // not our child any more: the code is unknown, and said so
        }
        else
        {
            Assert.Equal(137, restarted.LastExit!.Code); // containerd's shim is the parent, and keeps the code for the next orchd
        }
    }

    [Theory(Timeout = 240_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task A_container_writing_every_millisecond_loses_and_repeats_no_line_across_kill_9(string runtime)
    {
        await using var node = await NodeHost.StartAsync(runtime: runtime);
        // Numbered lines, one every millisecond (plus the fork of usleep: about 1.5 ms a line here),
        // every second one also on stderr.
        const int total = 4000;
        await node.Client.RunAsync(NodeHost.Sh("counter",
            $"i=1; while [ $i -le {total} ]; do echo line-$i; if [ $((i % 2)) -eq 0 ]; then echo err-$i >&2; fi; i=$((i+1)); busybox usleep 1000; done; exec sleep 100000"));
        // Kill orchd three times while the container writes.
        for (var round = 0; round < 3; round++)
        {
            await Task.Delay(300 + 200 * round);
            await node.KillOrchdAsync();
            await Task.Delay(400);
            await node.StartOrchdAsync();
        }
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        IReadOnlyList<Orchestrator.Api.LogLine> lines;
        while (true)
        {
            lines = await node.Client.LogsAsync("counter");
            if (lines.Any(l => l.Text == $"line-{total}") || DateTime.UtcNow > deadline)
            {
                break;
            }
            await Task.Delay(200);
        }
        var stdout = lines.Where(l => l.Stream == "stdout").Select(l => l.Text).ToList();
        var stderr = lines.Where(l => l.Stream == "stderr").Select(l => l.Text).ToList();
        Assert.Equal(Enumerable.Range(1, total).Select(i => $"line-{i}"), stdout);
        Assert.Equal(Enumerable.Range(1, total / 2).Select(i => $"err-{2 * i}"), stderr);
        Assert.Equal(0, (await node.Client.InspectAsync("counter")).Restarts);
    }

    [Theory(Timeout = 120_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task A_corrupt_state_file_is_recovered_and_the_container_kept(string runtime)
    {
        await using var node = await NodeHost.StartAsync(runtime: runtime);
        var running = await node.Client.RunAsync(NodeHost.Sh("web", "exec sleep 100000"));
        await node.KillOrchdAsync();
        var record = Path.Combine(node.StateDir, "containers", "web.json");
        File.WriteAllText(record, "{\"name\":\"web\",\"state\":\"runn"); // a torn write
        await node.StartOrchdAsync();
        await node.Daemon.WaitForLogAsync("is corrupt", s_wait);
        // Reads are served from a view published once recovery is done; until then "web" is not in it.
        Orchestrator.Api.ContainerStatus? status = null;
        var deadline = DateTime.UtcNow + s_wait;
        while (status is null)
        {
            try
            {
                status = await node.Client.InspectAsync("web");
            }
            catch (Orchestrator.Client.NodeRequestException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(50);
            }
        }
        Assert.Equal(ContainerState.Running, status.State);
        Assert.Equal(running.Pid, status.Pid);
        Assert.Single(Directory.GetFiles(Path.Combine(node.StateDir, "containers"), "web.json.corrupt-*"));
        // The rebuilt record is written again, whole.
        Assert.Contains("\"state\": \"running\"", File.ReadAllText(record), StringComparison.Ordinal);
    }

    [Fact(Timeout = 120_000)]
    public async Task After_a_reboot_what_should_run_runs_again()
    {
        await using var node = await NodeHost.StartAsync();
        await node.Client.RunAsync(NodeHost.Sh("svc", "echo booted; exec sleep 100000"));
        var stopped = await node.Client.RunAsync(NodeHost.Sh("idle", "exec sleep 100000", w => w.StopGracePeriodSeconds = 0));
        await node.Client.StopAsync("idle");
        var pid = (await node.Client.InspectAsync("svc")).Pid;
        await node.KillOrchdAsync();
        // A reboot: every process gone, the run dir (tmpfs) empty, the state dir kept.
        var runtime = Path.Combine(node.RunDir, "runtime");
        foreach (var id in Directory.EnumerateDirectories(runtime).Select(Path.GetFileName))
        {
            await using var delete = DaemonProcess.Start(Repo.Binary("orch-runc"), ["--root", runtime, "delete", "--force", id!]);
            await delete.WaitForExitAsync(s_wait);
        }
        foreach (var mount in File.ReadAllLines("/proc/self/mountinfo").Select(l => l.Split(' ')[4]).Where(m => m.StartsWith(node.Dir.Path, StringComparison.Ordinal)))
        {
            Orchestrator.Linux.Libc.umount2(mount, Orchestrator.Linux.Libc.MNT_DETACH);
        }
        Directory.Delete(node.RunDir, recursive: true);
        Assert.False(NodeHost.IsAlive(pid));

        await node.StartOrchdAsync();
        var svc = await node.WaitForAsync("svc", c => c.State == ContainerState.Running, s_wait, "start after reboot");
        Assert.NotEqual(pid, svc.Pid);
        Assert.Equal(ContainerState.Stopped, (await node.Client.InspectAsync("idle")).State);
        var logs = await node.Client.LogsAsync("svc");
        Assert.Equal(2, logs.Count(l => l.Text == "booted")); // the log from before the reboot is kept
        _ = stopped;
    }
}

/// <summary>orchd killed at the worst moments of a log batch (failpoints): still every line once.</summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class LogCrashTests
{
    [Theory(Timeout = 120_000)]
    [InlineData("log-torn-write", "native")]
    [InlineData("log-written-not-consumed", "native")]
    [InlineData("log-torn-write", "containerd")]
    [InlineData("log-written-not-consumed", "containerd")]
    public async Task A_crash_inside_a_log_batch_neither_loses_nor_repeats_lines(string failpoint, string runtime)
    {
        await using var node = await NodeHost.StartAsync(start: false, runtime: runtime);
        // The workload is in the node's manifest directory, so orchd starts it on its own.
        File.WriteAllText(Path.Combine(node.ManifestDir, "counter.yaml"), """
            name: counter
            image: busybox:latest
            command: ["sh", "-c", "sleep 0.5; i=1; while [ $i -le 300 ]; do echo line-$i; i=$((i+1)); done; exec sleep 100000"]
            """);
        var daemon = DaemonProcess.Start(Repo.Binary("orchd"), node.Args(), new Dictionary<string, string?> { ["ORCHD_FAILPOINT"] = failpoint });
        await using (daemon)
        {
            var exited = await daemon.WaitForExitAsync(TimeSpan.FromSeconds(30), drainOutput: false);
            Assert.True(exited == 137 || exited == -1 || exited == 128 + 9, $"orchd exit {exited}: {daemon.Output}");
        }
        var log = Path.Combine(node.StateDir, "logs", "counter", "container.log");
        var cursor = Path.Combine(node.StateDir, "logs", "counter", "stdout.cursor");
        Assert.True(File.Exists(cursor));
        var beforeRestart = File.ReadAllBytes(log);
        if (failpoint == "log-torn-write")
        {
            Assert.NotEqual((byte)'\n', beforeRestart[^1]); // the crash left half a batch
        }

        await node.StartOrchdAsync();
        var lines = await node.LogsUntilAsync("counter", l => l.Any(x => x.Text == "line-300"), TimeSpan.FromSeconds(30), "line-300");
        Assert.Equal(Enumerable.Range(1, 300).Select(i => $"line-{i}"), lines.Select(l => l.Text));
        Assert.All(lines, l => Assert.False(l.Partial));
    }
}

using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Client;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// A workload's Linux settings as the container sees them, through both backends: capabilities
/// (dropped, added, refused by the node's policy), a read-only root with tmpfs mounts, groups,
/// a namespaced sysctl, ulimits, /dev/shm's size, tini as PID 1 reaping an orphan, a stop
/// signal a trap sees, and privileged (refused by default, everything with the policy).
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class LinuxSettingsTests
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(60);

    /// <summary>A field of /proc/self/status as the container's shell reads it.</summary>
    private static async Task<string> StatusAsync(NodeHost node, string container, string field)
    {
        var exec = await node.Client.ExecAsync(container, ["sh", "-c", $"grep '^{field}:' /proc/self/status"]);
        Assert.Equal(0, exec.ExitCode);
        return exec.Stdout.Split(':', 2)[1].Trim();
    }

    private static async Task<string> ShAsync(NodeHost node, string container, string script, int expectedExit = 0)
    {
        var exec = await node.Client.ExecAsync(container, ["sh", "-c", script]);
        Assert.True(exec.ExitCode == expectedExit, $"`{script}` exited {exec.ExitCode} (wanted {expectedExit}): {exec.Stdout}{exec.Stderr}");
        return exec.Stdout.Trim();
    }

    [Theory(Timeout = 180_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task Each_setting_reaches_the_container_and_the_node_policy_decides_what_may_be_added(string runtime)
    {
        await using var node = await NodeHost.StartAsync(runtime: runtime, extraArgs: ["--allow-capability", "SYS_TIME"]);

        // Capabilities: all dropped but one of the default set; one added that the policy allows.
        await node.Client.RunAsync(NodeHost.Sh("caps", "exec sleep 300", w =>
        {
            w.CapDrop = ["ALL"];
            w.CapAdd = ["NET_BIND_SERVICE", "cap_sys_time"];
        }));
        await node.WaitForAsync("caps", c => c.State == ContainerState.Running, s_wait, "running");
        // CAP_NET_BIND_SERVICE is bit 10, CAP_SYS_TIME bit 25.
        Assert.Equal((1UL << 10) | (1UL << 25), Convert.ToUInt64(await StatusAsync(node, "caps", "CapEff"), 16));
        Assert.Equal((1UL << 10) | (1UL << 25), Convert.ToUInt64(await StatusAsync(node, "caps", "CapBnd"), 16));

        // One the policy does not list is refused with the setting that would allow it; nothing runs.
        var refused = await Assert.ThrowsAsync<NodeRequestException>(() => node.Client.RunAsync(NodeHost.Sh("admin", "exec sleep 300", w => w.CapAdd = ["NET_ADMIN", "SYS_TIME"])));
        Assert.Contains("capAdd: CAP_NET_ADMIN is not allowed on this node (policy.capabilities: CAP_SYS_TIME)", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(await node.Client.ListAsync(), c => c.Name == "admin");

        // A read-only root with tmpfs mounts, groups, a sysctl of its own network namespace, ulimits, /dev/shm.
        await node.Client.RunAsync(NodeHost.Sh("locked", "exec sleep 300", w =>
        {
            w.ReadOnlyRootfs = true;
            w.Tmpfs = [new TmpfsMount { Target = "/scratch", Size = "1Mi", Mode = "700" }, new TmpfsMount { Target = "/run/app" }];
            w.Groups = ["20", "nogroup"]; // a name: the image's /etc/group numbers it (65534)
            w.Sysctls = new() { ["net.ipv4.ip_unprivileged_port_start"] = "80" };
            w.Ulimits = new() { ["nofile"] = new Ulimit { Soft = 1000, Hard = 2000 }, ["core"] = new Ulimit { Soft = 0, Hard = 0 } };
            w.ShmSize = "16Mi";
        }));
        await node.WaitForAsync("locked", c => c.State == ContainerState.Running, s_wait, "running");
        var readOnly = await node.Client.ExecAsync("locked", ["sh", "-c", "touch /should-fail"]);
        Assert.NotEqual(0, readOnly.ExitCode);
        Assert.Contains("Read-only file system", readOnly.Stderr, StringComparison.Ordinal);
        await ShAsync(node, "locked", "touch /scratch/ok /run/app/ok /dev/shm/ok");
        var mounts = await ShAsync(node, "locked", "cat /proc/mounts");
        Assert.Matches(@"tmpfs /scratch tmpfs [^ ]*size=1024k[^ ]*mode=700", mounts);
        Assert.Matches(@"/dev/shm tmpfs [^ ]*size=16384k", mounts);
        Assert.Matches(@"^\S+ / \S+ ro[, ]", mounts.Split('\n').First(l => l.Split(' ')[1] == "/"));
        Assert.Equal("20 65534", await StatusAsync(node, "locked", "Groups"));
        Assert.Equal("80", await ShAsync(node, "locked", "cat /proc/sys/net/ipv4/ip_unprivileged_port_start"));
        // The first process's limits (an exec through runc 1.1.5 built with Go ≥ 1.19 gets the soft limit raised to the hard one by Go's runtime, as docker exec does there).
        Assert.Matches(@"Max open files\s+1000\s+2000", await ShAsync(node, "locked", "cat /proc/1/limits"));
        Assert.Matches(@"Max core file size\s+0\s+0", await ShAsync(node, "locked", "cat /proc/self/limits"));
        // The node's own value is untouched (the sysctl was the container's namespace's).
        Assert.NotEqual("80", File.ReadAllText("/proc/sys/net/ipv4/ip_unprivileged_port_start").Trim());

        // init: tini is PID 1 and reaps an orphan; without it the orphan stays a zombie under sleep.
        await node.Client.RunAsync(NodeHost.Sh("reaped", "exec sleep 300", w => w.Init = true));
        await node.Client.RunAsync(NodeHost.Sh("zombies", "exec sleep 300"));
        await node.WaitForAsync("reaped", c => c.State == ContainerState.Running, s_wait, "running");
        await node.WaitForAsync("zombies", c => c.State == ContainerState.Running, s_wait, "running");
        Assert.StartsWith("/dev/init", (await ShAsync(node, "reaped", "tr '\\0' ' ' < /proc/1/cmdline")), StringComparison.Ordinal);
        const string Orphan = "sh -c 'sleep 0.2 &' ; sleep 1; grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l";
        Assert.Equal("0", await ShAsync(node, "reaped", Orphan));
        Assert.NotEqual("0", await ShAsync(node, "zombies", Orphan));

        // stopSignal: the trap sees SIGINT, and the container ends by itself with code 0, well inside its grace.
        await node.Client.RunAsync(NodeHost.Sh("interrupted", "trap 'echo got INT; exit 0' INT; echo ready; while true; do sleep 0.1; done", w =>
        {
            w.StopSignal = "SIGINT";
            w.StopGracePeriodSeconds = 30;
        }));
        await node.LogsUntilAsync("interrupted", lines => lines.Any(l => l.Text == "ready"), s_wait, "its ready line");
        var stopping = System.Diagnostics.Stopwatch.StartNew();
        await node.Client.StopAsync("interrupted");
        var stopped = await node.WaitForAsync("interrupted", c => c.State == ContainerState.Stopped, s_wait, "stopped");
        Assert.True(stopping.Elapsed < TimeSpan.FromSeconds(20), $"the stop took {stopping.Elapsed} (SIGINT not delivered: the grace ran out)");
        Assert.Contains(await node.Client.LogsAsync("interrupted"), l => l.Text == "got INT");
        Assert.Equal(0, stopped.LastExit!.Code);

        // A group name the image has not: the start fails naming it and the fix (and is retried, as a failed start is).
        await node.Client.RunAsync(NodeHost.Sh("nogroup", "exec sleep 300", w => w.Groups = ["dialout"]));
        var failed = await node.WaitForAsync("nogroup", c => c.Message is not null, s_wait, "a start that failed");
        Assert.Contains("workload 'nogroup': group 'dialout' is not in image 'busybox:latest''s /etc/group; give its number (groups: [20])", failed.Message, StringComparison.Ordinal);
        Assert.NotEqual(ContainerState.Running, failed.State);

        // privileged: refused by default.
        var privileged = await Assert.ThrowsAsync<NodeRequestException>(() => node.Client.RunAsync(NodeHost.Sh("root", "exec sleep 300", w => w.Privileged = true)));
        Assert.Contains("privileged: true is not allowed on this node (policy.privileged: false)", privileged.Message, StringComparison.Ordinal);
    }

    [Theory(Timeout = 120_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task Privileged_where_the_policy_allows_it_has_every_capability_no_filter_and_the_nodes_devices(string runtime)
    {
        await using var node = await NodeHost.StartAsync(runtime: runtime, extraArgs: ["--allow-privileged", "true"]);
        await node.Client.RunAsync(NodeHost.Sh("root", "exec sleep 300", w => w.Privileged = true));
        await node.WaitForAsync("root", c => c.State == ContainerState.Running, s_wait, "running");
        // Every capability orchd itself holds (this machine's root lacks CAP_SYS_RESOURCE, for one).
        var own = File.ReadLines("/proc/self/status").Single(l => l.StartsWith("CapBnd:", StringComparison.Ordinal))["CapBnd:".Length..].Trim();
        Assert.Equal(Convert.ToUInt64(own, 16), Convert.ToUInt64(await StatusAsync(node, "root", "CapEff"), 16));
        Assert.Equal("0", await StatusAsync(node, "root", "Seccomp"));
        // The node's devices: /dev/null and the loop control device (the test never opens a disk).
        await ShAsync(node, "root", "test -c /dev/loop-control && test -c /dev/null");
        Assert.Contains("rw", (await ShAsync(node, "root", "grep ' /sys ' /proc/mounts")).Split(' ')[3].Split(','));
    }
}

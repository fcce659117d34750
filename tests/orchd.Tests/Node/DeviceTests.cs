using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Client;
using Orchestrator.Linux;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// Devices through a real orchd and both backends, with device nodes this test makes (aliases of
/// /dev/null and /dev/zero under a temp dir, and symlinks to them as /dev/serial/by-id has):
/// globs and links mapped where the workload asked, read-only access held by the cgroup, a group
/// by name from the image, a device plugged in and pulled out while the container runs (and while
/// orchd is down), the policy that refuses what it does not list, device cgroup rules, and a
/// container that plants a symlink where a device will go, to send it to the host.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class DeviceTests
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(60);

    private static void MakeNode(string path, int minor, int major = 1)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        Assert.True(Libc.mknod(path, 0x2000 | 0x1B6 /* 0666 */, Libc.makedev((ulong)major, (ulong)minor)) == 0, $"mknod {path}");
        File.SetUnixFileMode(path, (UnixFileMode)0x1B6); // past the umask: the container's node has the host node's mode
    }

    private static async Task<(int Code, string Output)> ShAsync(NodeHost node, string container, string script)
    {
        var exec = await node.Client.ExecAsync(container, ["sh", "-c", script]);
        return (exec.ExitCode, (exec.Stdout + exec.Stderr).Trim());
    }

    private static async Task<List<NodeEvent>> EventsAsync(FleetClient fleet, DateTimeOffset since)
    {
        var list = new List<NodeEvent>();
        await foreach (var e in fleet.EventsAsync(since, watch: false))
        {
            list.Add(e);
        }
        return list;
    }

    [Theory(Timeout = 240_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task Devices_by_path_and_glob_reach_the_container_with_their_access_and_follow_hot_plug(string runtime)
    {
        using var dev = new TempDir("orch-devices");
        using var hostTarget = new TempDir("orch-device-escape");
        MakeNode(dev.Combine("ttyUSB0"), 3);
        // 10:237 (loop-control: opening it does nothing) is no device a container gets by default, as null and zero are.
        MakeNode(dev.Combine("sensor"), 237, major: 10);
        Directory.CreateDirectory(dev.Combine("serial", "by-id"));
        File.CreateSymbolicLink(dev.Combine("serial", "by-id", "usb-GPS-if00"), "../../ttyUSB0");
        await using var node = await NodeHost.StartAsync(runtime: runtime, extraArgs:
        [
            "--allow-device", dev.Combine("ttyUSB*"), "--allow-device", dev.Combine("serial/by-id/*"), "--allow-device", dev.Combine("sensor"),
            "--allow-device", dev.Combine("ttyS*"),
        ]);
        await using var connection = new NATS.Client.Core.NatsConnection(new NATS.Client.Core.NatsOpts { Url = node.Nats!.Url });
        await connection.ConnectAsync();
        var fleet = new FleetClient(connection);

        // What the policy does not list is refused, naming the setting; nothing runs.
        var refused = await Assert.ThrowsAsync<NodeRequestException>(() => node.Client.RunAsync(NodeHost.Sh("grab", "exec sleep 300", w =>
        {
            w.Devices = [new DeviceMapping { HostPath = "/dev/mem" }, new DeviceMapping { HostPath = dev.Combine("*") }];
            w.DeviceCgroupRules = ["a *:* rwm"];
        })));
        Assert.Contains("devices[0].hostPath: '/dev/mem' is not a device this node allows", refused.Message, StringComparison.Ordinal);
        Assert.Contains($"devices[1].hostPath: '{dev.Combine("*")}' is not a device this node allows", refused.Message, StringComparison.Ordinal);
        Assert.Contains("deviceCgroupRules are not allowed on this node (policy.device_cgroup_rules: false)", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(await node.Client.ListAsync(), c => c.Name == "grab");

        await node.Client.RunAsync(NodeHost.Sh("serial", "exec sleep 600", w =>
        {
            w.Devices =
            [
                new DeviceMapping { HostPath = dev.Combine("ttyUSB*"), ContainerPath = "/dev" },
                new DeviceMapping { HostPath = dev.Combine("serial/by-id/usb-GPS-if00"), ContainerPath = "/dev/gps" },
                new DeviceMapping { HostPath = dev.Combine("sensor"), ContainerPath = "/dev/sensor", Permissions = "r" },
            ];
            w.Groups = ["nogroup"];
        }));
        await node.WaitForAsync("serial", c => c.State == ContainerState.Running, s_wait, "running");
        Assert.Equal((0, "character special file 1:3 666"), await ShAsync(node, "serial", "stat -c '%F %t:%T %a' /dev/ttyUSB0"));
        Assert.Equal((0, "character special file 1:3"), await ShAsync(node, "serial", "stat -c '%F %t:%T' /dev/gps"));
        Assert.Equal((0, "ok"), await ShAsync(node, "serial", "echo hello > /dev/ttyUSB0 && echo hello > /dev/gps && echo ok"));
        Assert.Equal((0, "opened"), await ShAsync(node, "serial", "exec 3</dev/sensor && echo opened"));
        var write = await ShAsync(node, "serial", "exec 3>/dev/sensor");
        Assert.NotEqual(0, write.Code); // the cgroup gives it r only
        Assert.Contains("Operation not permitted", write.Output, StringComparison.Ordinal);
        Assert.Equal((0, "Groups:\t65534"), await ShAsync(node, "serial", "grep '^Groups:' /proc/self/status"));

        // Plugged in while it runs: the container gets it within a pass or two; pulled out: gone.
        var since = DateTimeOffset.UtcNow.AddSeconds(-1);
        MakeNode(dev.Combine("ttyUSB1"), 5);
        await Eventually.TrueAsync("/dev/ttyUSB1 in the container", async () => (await ShAsync(node, "serial", "test -c /dev/ttyUSB1")).Code == 0, TimeSpan.FromSeconds(20));
        Assert.Equal((0, "00 00"), await ShAsync(node, "serial", "head -c 2 /dev/ttyUSB1 | od -An -tx1"));
        var events = await Eventually.ValueAsync("a container.device-added event", () => EventsAsync(fleet, since),
            events => events.Any(e => e is { Kind: "container.device-added", Subject: "serial" }), TimeSpan.FromSeconds(20), TimeSpan.FromMilliseconds(200));
        Assert.Equal("devices plugged in: /dev/ttyUSB1", events.First(e => e.Kind == "container.device-added").Message);
        File.Delete(dev.Combine("ttyUSB1"));
        await Eventually.TrueAsync("/dev/ttyUSB1 gone from the container", async () => (await ShAsync(node, "serial", "test -e /dev/ttyUSB1")).Code != 0, TimeSpan.FromSeconds(20));

        // Plugged in while orchd is down: the container it left running gets it once orchd is back.
        await node.KillOrchdAsync();
        MakeNode(dev.Combine("ttyUSB2"), 3);
        await node.StartOrchdAsync(
        [
            "--allow-device", dev.Combine("ttyUSB*"), "--allow-device", dev.Combine("serial/by-id/*"), "--allow-device", dev.Combine("sensor"),
            "--allow-device", dev.Combine("ttyS*"),
        ]);
        await Eventually.TrueAsync("/dev/ttyUSB2 in the container after orchd's restart", async () => (await ShAsync(node, "serial", "test -c /dev/ttyUSB2 && echo hi > /dev/ttyUSB2")).Code == 0,
            TimeSpan.FromSeconds(30), transient: [typeof(NodeRequestException), typeof(NATS.Client.Core.NatsNoRespondersException), typeof(TimeoutException)]);
        Assert.Equal((0, "ok"), await ShAsync(node, "serial", "echo hello > /dev/ttyUSB0 && echo ok")); // what it had still works

        // A container that plants a symlink where its next device goes cannot send the node to the host.
        await node.Client.RunAsync(NodeHost.Sh("planter", $"ln -s {hostTarget.Path} /dev/usb; ln -s ../../../../../..{hostTarget.Path} /dev/usb2; exec sleep 600", w =>
            w.Devices = [new DeviceMapping { HostPath = dev.Combine("ttyS*"), ContainerPath = "/dev/usb" }, new DeviceMapping { HostPath = dev.Combine("ttyS*"), ContainerPath = "/dev/usb2" }]));
        await node.WaitForAsync("planter", c => c.State == ContainerState.Running, s_wait, "running");
        await Eventually.TrueAsync("the planted links", async () => (await ShAsync(node, "planter", "test -L /dev/usb && test -L /dev/usb2")).Code == 0, TimeSpan.FromSeconds(10));
        since = DateTimeOffset.UtcNow.AddSeconds(-1);
        MakeNode(dev.Combine("ttyS0"), 3);
        events = await Eventually.ValueAsync("container.device-failed events for planter", () => EventsAsync(fleet, since),
            events => events.Count(e => e is { Kind: "container.device-failed", Subject: "planter" }) >= 2, TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(200),
            events => string.Join("; ", events.Select(e => $"{e.Kind} {e.Subject} {e.Message}")));
        Assert.Empty(Directory.EnumerateFileSystemEntries(hostTarget.Path));
        Assert.Equal("running", (await node.Client.InspectAsync("planter")).State.ToString().ToLowerInvariant());
    }

    [Theory(Timeout = 180_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task Device_cgroup_rules_allow_devices_by_number_and_nothing_else(string runtime)
    {
        await using var node = await NodeHost.StartAsync(runtime: runtime, extraArgs: ["--allow-device-cgroup-rules", "true"]);
        // 10:237 (loop-control) is no device a container gets by default; the rule lets it make it (m) and open it to read (r), not to write.
        await node.Client.RunAsync(NodeHost.Sh("rules", "exec sleep 600", w => w.DeviceCgroupRules = ["c 10:237 rm"]));
        await node.Client.RunAsync(NodeHost.Sh("plain", "exec sleep 600"));
        await node.WaitForAsync("rules", c => c.State == ContainerState.Running, s_wait, "running");
        await node.WaitForAsync("plain", c => c.State == ContainerState.Running, s_wait, "running");

        Assert.Equal((0, "opened"), await ShAsync(node, "rules", "mknod /dev/t c 10 237 && exec 3</dev/t && echo opened"));
        var write = await ShAsync(node, "rules", "exec 3>/dev/t");
        Assert.NotEqual(0, write.Code);
        Assert.Contains("Operation not permitted", write.Output, StringComparison.Ordinal);
        // Another device cannot be opened (runc lets any node be made, as docker does; orchd's runtime not even that).
        var other = await ShAsync(node, "rules", "mknod /dev/p c 1 4 2>/dev/null; exec 3</dev/p");
        Assert.NotEqual(0, other.Code);
        Assert.Matches("Operation not permitted|no such file", other.Output);
        // Without a rule, not even that one.
        Assert.NotEqual(0, (await ShAsync(node, "plain", "mknod /dev/t c 10 237 2>/dev/null; exec 3</dev/t")).Code);
    }
}

using Orchestrator.Client;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// Choosing the backend: runtime: auto falls back to containerd when the native runtime's checks
/// fail, one clear error when neither can run, and a workload asking for the other backend.
/// (The node tests themselves run on both backends: see <see cref="NodeHost.Runtimes"/>.)
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class ContainerdBackendTests
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);

    [Fact(Timeout = 120_000)]
    public async Task Auto_falls_back_to_containerd_when_the_native_checks_fail()
    {
        await using var node = await NodeHost.StartAsync(start: false, runtime: "containerd");
        node.RuntimeSetting = "auto";
        // A host without a usable cgroup hierarchy (what orchd sees at ORCH_CGROUP_ROOT is empty):
        // the native runtime cannot confine containers there; containerd (which has its own view) can.
        var noCgroups = node.Dir.Combine("no-cgroups");
        Directory.CreateDirectory(noCgroups);
        await node.StartOrchdAsync(environment: new Dictionary<string, string?> { ["ORCH_CGROUP_ROOT"] = noCgroups });
        await node.Daemon.WaitForLogAsync("container backend: containerd (auto: containerd 1.", s_wait);
        Assert.Contains($"because the native runtime cannot run here: no cgroup hierarchy at {noCgroups}", node.Daemon.Output, StringComparison.Ordinal);

        var status = await node.Client.StatusAsync();
        Assert.StartsWith("containerd (auto: containerd 1.", status.Driver, StringComparison.Ordinal);
        Assert.Contains("no cgroup hierarchy", status.Driver, StringComparison.Ordinal);
        await using var connection = new NATS.Client.Core.NatsConnection(new NATS.Client.Core.NatsOpts { Url = node.Nats!.Url });
        Assert.Equal("containerd", (await new FleetClient(connection).GetNodeInfoAsync(node.NodeName, TimeSpan.FromSeconds(5)))!.Runtime);

        var running = await node.Client.RunAsync(NodeHost.Sh("fallback", "echo via containerd; exec sleep 100000", w => w.StopGracePeriodSeconds = 0));
        Assert.True(running.State == ContainerState.Running, $"{running.State}: {running.Message}");
        Assert.Equal(["fallback"], await node.ContainerdContainersAsync());
        await WaitForLineAsync(node, "fallback", "via containerd");

        // orchd cannot see the cgroups here: stats and OOM kills come from containerd's Metrics.
        var stats = Assert.Single(await node.Client.StatsAsync());
        Assert.True(stats.MemoryBytes > 0 && stats.Pids == 1, $"memory {stats.MemoryBytes}, pids {stats.Pids}");
        await node.Client.RunAsync(NodeHost.Sh("hog", "tail /dev/zero", w =>
        {
            w.Resources = new Resources { Memory = "16Mi" };
            w.Restart = new RestartPolicy { Policy = RestartPolicyKind.Never };
        }));
        var hog = await node.WaitForAsync("hog", c => c.State == ContainerState.Exited, s_wait, "the OOM kill");
        Assert.True(hog.LastExit!.OomKilled, $"exit {hog.LastExit.Code}, reason {hog.LastExit.Reason}");
    }

    [Fact(Timeout = 60_000)]
    public async Task Auto_with_neither_backend_usable_is_one_error_naming_both()
    {
        await using var node = await NodeHost.StartAsync(start: false, withNats: false);
        var noCgroups = node.Dir.Combine("no-cgroups");
        Directory.CreateDirectory(noCgroups);
        var socket = node.Dir.Combine("nowhere", "containerd.sock");
        await using var daemon = DaemonProcess.Start(Repo.Binary("orchd"), node.Args(["--runtime", "auto", "--containerd-socket", socket]),
            new Dictionary<string, string?> { ["ORCH_CGROUP_ROOT"] = noCgroups });
        // 78, not 1: no runtime can work on this host and no restart can change that (the unit's
        // RestartPreventExitStatus=78 stops the crash loop of a restart every 2 s).
        Assert.Equal(78, await daemon.WaitForExitAsync(s_wait));
        Assert.Equal(
            $"orchd: runtime auto: orchd's native runtime cannot run here (no cgroup hierarchy at {noCgroups} (neither cgroup v2 nor the v1 controllers memory, cpu, pids, freezer)) "
            + $"and containerd is no fallback: containerd socket '{socket}' does not exist (nor its directory): install and start containerd, or set containerd_socket",
            Assert.Single(daemon.Stderr));
    }

    [Fact(Timeout = 60_000)]
    public async Task Auto_with_containerd_socket_there_but_not_answering_exits_1_so_systemd_retries()
    {
        await using var node = await NodeHost.StartAsync(start: false, withNats: false);
        var noCgroups = node.Dir.Combine("no-cgroups");
        Directory.CreateDirectory(noCgroups);
        // A socket nobody listens on: containerd installed but not up yet (boot order, its restart).
        var socket = node.Dir.Combine("containerd.sock");
        // Bound, never listening: connect() is refused (and .NET unlinks the file when the socket is disposed, so it lives to the end).
        using var bound = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        bound.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(socket));
        Assert.True(File.Exists(socket));
        await using var daemon = DaemonProcess.Start(Repo.Binary("orchd"), node.Args(["--runtime", "auto", "--containerd-socket", socket]),
            new Dictionary<string, string?> { ["ORCH_CGROUP_ROOT"] = noCgroups });
        Assert.Equal(1, await daemon.WaitForExitAsync(s_wait));
        Assert.Contains("containerd is no fallback", Assert.Single(daemon.Stderr), StringComparison.Ordinal);
    }

    [Fact(Timeout = 60_000)]
    public async Task Runtime_containerd_without_access_to_the_socket_says_permission_denied()
    {
        await using var node = await NodeHost.StartAsync(start: false, withNats: false, runtime: "containerd");
        var setpriv = Requires.Program("setpriv", "util-linux");
        // orchd as an unprivileged user (nobody) that owns its own dirs but not containerd's socket (0660 root).
        foreach (var dir in new[] { node.Dir.Path, node.StateDir, node.RunDir, node.ManifestDir })
        {
            Directory.CreateDirectory(dir);
        }
        File.SetUnixFileMode(node.Dir.Path, (UnixFileMode)0x1ED); // 0755: nobody may walk to its dirs
        await using (var chown = DaemonProcess.Start("/bin/chown", ["-R", "65534:65534", node.StateDir, node.RunDir, node.ManifestDir]))
        {
            Assert.Equal(0, await chown.WaitForExitAsync(s_wait));
        }
        File.SetUnixFileMode(Path.GetDirectoryName(node.Containerd!.Socket)!, (UnixFileMode)0x1ED);
        File.SetUnixFileMode(node.Containerd.Socket, (UnixFileMode)0x180); // 0600 root
        await using var daemon = DaemonProcess.Start(setpriv, ["--reuid=65534", "--regid=65534", "--clear-groups", Repo.Binary("orchd"), .. node.Args()]);
        Assert.Equal(78, await daemon.WaitForExitAsync(s_wait));
        Assert.Equal($"orchd: permission denied on containerd socket '{node.Containerd.Socket}': run orchd as root, or give its user access to the socket",
            Assert.Single(daemon.Stderr));
    }

    [Fact(Timeout = 60_000)]
    public async Task Runtime_containerd_with_no_containerd_fails_before_ready_naming_the_socket()
    {
        await using var node = await NodeHost.StartAsync(start: false, withNats: false);
        var socket = node.Dir.Combine("containerd.sock");
        await using var daemon = DaemonProcess.Start(Repo.Binary("orchd"), node.Args(["--runtime", "containerd", "--containerd-socket", socket]));
        Assert.Equal(78, await daemon.WaitForExitAsync(s_wait)); // no socket: no restart can help (the unit does not restart on 78)
        Assert.Equal($"orchd: containerd socket '{socket}' does not exist: start containerd, or set containerd_socket", Assert.Single(daemon.Stderr));
    }

    [Fact(Timeout = 180_000)]
    public async Task A_containerd_node_pulls_through_containerd_and_runs_each_container_on_its_own_snapshot()
    {
        await using var registry = await RegistryServer.StartAsync();
        await using var node = await NodeHost.StartAsync(runtime: "containerd");
        var layout = node.Dir.Combine("pushed");
        BusyboxImage.CreateLayout(layout, extraFiles: new Dictionary<string, string> { ["etc/motd"] = "from the registry\n" });
        await registry.PushAsync($"{layout}:latest", "edge/busybox", "2");
        var reference = $"{registry.Host}/edge/busybox:2";

        var running = await node.Client.RunAsync(new Workload { Name = "pulled", Image = reference, Command = ["sh", "-c", "cat /etc/motd; echo written > /scratch; exec sleep 100000"], StopGracePeriodSeconds = 0 });
        Assert.True(running.State == ContainerState.Running, $"{running.State}: {running.Message}");
        await WaitForLineAsync(node, "pulled", "from the registry");

        // The image is containerd's (pulled through its content service), not orchd's.
        var ns = node.ContainerdNamespace;
        var images = await node.Containerd!.Ctr(ns, "images", "ls", "-q");
        Assert.Contains(reference, images.Stdout.Split('\n', StringSplitOptions.TrimEntries));
        var listed = Assert.Single(await node.Client.ImagesAsync(), i => i.Name == reference); // once: containerd's, not orchd's
        Assert.Equal("containerd", listed.Store);
        Assert.Equal(["pulled"], listed.UsedBy);
        Assert.Null(Assert.Single(await node.Client.ImagesAsync(), i => i.Name == NodeHost.StoredImage).Store); // the imported one is orchd's
        var table = await Orchctl.RunAsync(["--server", node.Nats!.Url, "images", "-n", node.NodeName], null);
        Assert.True(table.Code == 0, table.All);
        Assert.Matches($@"^{System.Text.RegularExpressions.Regex.Escape(reference)}\s.*\scontainerd\s+pulled$", table.Out.Split('\n').Single(l => l.StartsWith(reference, StringComparison.Ordinal)));
        Assert.Matches($@"^{System.Text.RegularExpressions.Regex.Escape(NodeHost.StoredImage)}\s.*\sorchd\s*$", table.Out.Split('\n').Single(l => l.StartsWith(NodeHost.StoredImage, StringComparison.Ordinal)));
        // Its rootfs: an active snapshot of its own on the image's top layer, mounted where its spec points.
        var snapshots = await node.Containerd.Ctr(ns, "snapshots", "--snapshotter", "overlayfs", "ls");
        var own = Assert.Single(snapshots.Stdout.Split('\n'), l => l.StartsWith("orchd/pulled ", StringComparison.Ordinal));
        Assert.Contains("Active", own, StringComparison.Ordinal);
        var root = Assert.Single(File.ReadLines($"/proc/{running.Pid}/mountinfo"), l => l.Split(' ')[4] == "/");
        Assert.Contains(Path.Combine(node.Containerd.Root, "io.containerd.snapshotter.v1.overlayfs", "snapshots"), root, StringComparison.Ordinal);

        // A second container of the same image: its own snapshot, nothing downloaded or unpacked again.
        await node.Client.RunAsync(new Workload { Name = "second", Image = reference, Command = ["sh", "-c", "test -e /scratch && echo shared || echo clean; exec sleep 100000"], StopGracePeriodSeconds = 0 });
        await WaitForLineAsync(node, "second", "clean");

        // A container restart keeps its writes (the snapshot stays mounted); removal takes the snapshot and the mount.
        await node.Client.RestartAsync("pulled");
        await node.WaitForAsync("pulled", c => c.State == ContainerState.Running && c.Pid != running.Pid, s_wait, "the restart");
        Assert.Equal(0, (await node.Client.ExecAsync("pulled", ["test", "-e", "/scratch"])).ExitCode);
        await node.Client.RemoveAsync("pulled");
        snapshots = await node.Containerd.Ctr(ns, "snapshots", "--snapshotter", "overlayfs", "ls");
        Assert.DoesNotContain("orchd/pulled ", snapshots.Stdout, StringComparison.Ordinal);
        Assert.Contains("orchd/second ", snapshots.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain(File.ReadLines("/proc/self/mountinfo"), l => l.Contains("/pulled/containerd-rootfs", StringComparison.Ordinal));

        // An image the registry does not have: one error naming it and the fix; the running container is untouched.
        var missing = await node.Client.RunAsync(new Workload { Name = "nothing", Image = $"{registry.Host}/edge/nothing:1", Command = ["true"], Restart = new RestartPolicy { Policy = RestartPolicyKind.Never } });
        Assert.Equal(ContainerState.Failed, missing.State);
        Assert.Equal($"manifest 1 of edge/nothing was not found on {registry.Host} (404); check the name and tag", missing.Message);
        Assert.Equal(ContainerState.Running, (await node.Client.InspectAsync("second")).State);

        // The node API's image commands speak of containerd's store too.
        var used = await Assert.ThrowsAsync<NodeRequestException>(() => node.Client.RemoveImageAsync(reference));
        Assert.Equal($"image '{reference}' is used by 'second'; remove those workloads first", used.Message);
        await node.Client.RemoveAsync("second");
        await node.Client.RemoveImageAsync(reference);
        Assert.DoesNotContain(reference, (await node.Containerd.Ctr(ns, "images", "ls", "-q")).Stdout, StringComparison.Ordinal);
        var pulled = await node.Client.PullAsync(reference);
        Assert.Equal(("containerd", "linux/" + Orchestrator.Images.Oci.Platform.Current.Architecture), (pulled.Store, pulled.Platform));
        Assert.Single(pulled.Layers!);
        Assert.Contains(reference, (await node.Containerd.Ctr(ns, "images", "ls", "-q")).Stdout, StringComparison.Ordinal);
    }

    [Fact(Timeout = 60_000)]
    public async Task Runtime_containerd_with_a_too_old_containerd_fails_before_ready_naming_the_minimum()
    {
        await using var old = await OldContainerdServer.StartAsync("1.5.9");
        await using var node = await NodeHost.StartAsync(start: false, withNats: false);
        await using var daemon = DaemonProcess.Start(Repo.Binary("orchd"), node.Args(["--runtime", "containerd", "--containerd-socket", old.Socket]));
        Assert.Equal(78, await daemon.WaitForExitAsync(s_wait));
        Assert.Equal($"orchd: containerd 1.5.9 at '{old.Socket}' is too old: orchd needs containerd {Orchestrator.Containerd.ContainerdClient.MinimumVersion} or later; upgrade containerd or use runtime: native",
            Assert.Single(daemon.Stderr));
    }

    [Fact(Timeout = 120_000)]
    public async Task A_workload_may_ask_for_containerd_on_a_native_node()
    {
        await using var node = await NodeHost.StartAsync(start: false, runtime: "containerd");
        node.RuntimeSetting = "auto"; // native checks pass here: native is the default, containerd answers too
        await node.StartOrchdAsync();
        Assert.StartsWith("native (auto: its checks pass)", (await node.Client.StatusAsync()).Driver, StringComparison.Ordinal);

        await node.Client.RunAsync(NodeHost.Sh("mine", "echo native; exec sleep 100000", w => w.StopGracePeriodSeconds = 0));
        var viaContainerd = await node.Client.RunAsync(NodeHost.Sh("theirs", "echo containerd; exec sleep 100000", w => { w.StopGracePeriodSeconds = 0; w.Runtime = WorkloadRuntime.Containerd; }));
        Assert.True(viaContainerd.State == ContainerState.Running, $"{viaContainerd.State}: {viaContainerd.Message}");
        Assert.Equal(["theirs"], await node.ContainerdContainersAsync());
        Assert.Equal(["mine"], Directory.GetDirectories(Path.Combine(node.RunDir, "runtime")).Select(Path.GetFileName));
        await WaitForLineAsync(node, "mine", "native");
        await WaitForLineAsync(node, "theirs", "containerd");
        Assert.Equal(0, (await node.Client.ExecAsync("theirs", ["true"])).ExitCode);

        // Live restore across both backends at once.
        var pids = (await node.Client.ListAsync()).ToDictionary(c => c.Name, c => c.Pid);
        await node.KillOrchdAsync();
        await node.StartOrchdAsync();
        await node.Daemon.WaitForLogAsync("re-adopted 2 running containers", s_wait);
        Assert.All(await node.Client.ListAsync(), c => Assert.Equal(pids[c.Name], c.Pid));

        // Moving a workload to the other backend replaces its container there.
        await node.Client.RunAsync(NodeHost.Sh("theirs", "echo moved; exec sleep 100000", w => w.StopGracePeriodSeconds = 0));
        await node.WaitForAsync("theirs", c => c.State == ContainerState.Running && c.Pid != pids["theirs"], s_wait, "the move to native");
        Assert.Empty(await node.ContainerdContainersAsync());
        await node.Client.RemoveAsync("mine");
        await node.Client.RemoveAsync("theirs");
        await node.AssertNoContainersLeftAsync();
    }

    [Fact(Timeout = 120_000)]
    public async Task A_containerd_restart_stops_nothing_and_exits_meanwhile_are_still_seen()
    {
        await using var node = await NodeHost.StartAsync(runtime: "containerd");
        var steady = await node.Client.RunAsync(NodeHost.Sh("steady", "exec sleep 100000", w => w.StopGracePeriodSeconds = 0));
        var victim = await node.Client.RunAsync(NodeHost.Sh("victim", "echo up; exec sleep 100000", w =>
        {
            w.StopGracePeriodSeconds = 0;
            w.Restart = new RestartPolicy { Backoff = "100ms" };
        }));

        // containerd goes away for a while; the shims (and so the containers) do not.
        await node.Containerd!.RestartAsync(async () =>
        {
            Orchestrator.Linux.Libc.kill(victim.Pid, 9); // an exit while containerd is down: its shim keeps the status
            await Task.Delay(1000); // orchd's waits fail and retry meanwhile
            Assert.Equal(ContainerState.Running, (await node.Client.InspectAsync("victim")).State);
        });
        var restarted = await node.WaitForAsync("victim", c => c.State == ContainerState.Running && c.Restarts == 1, s_wait, "the restart after the kill");
        Assert.Equal(137, restarted.LastExit!.Code);
        Assert.NotEqual(victim.Pid, restarted.Pid);

        var still = await node.Client.InspectAsync("steady");
        Assert.Equal(ContainerState.Running, still.State);
        Assert.Equal(steady.Pid, still.Pid);
        Assert.Equal("hi\n", (await node.Client.ExecAsync("steady", ["echo", "hi"])).Stdout);
        await WaitForLineAsync(node, "victim", "up");
    }

    [Fact(Timeout = 120_000)]
    public async Task An_exit_while_orchd_is_away_keeps_its_code_under_containerd()
    {
        await using var node = await NodeHost.StartAsync(runtime: "containerd");
        var before = await node.Client.RunAsync(NodeHost.Sh("brief", "exec sleep 100000", w =>
        {
            w.StopGracePeriodSeconds = 0;
            w.Restart = new RestartPolicy { Backoff = "100ms" };
        }));
        await node.KillOrchdAsync();
        Orchestrator.Linux.Libc.kill(before.Pid, 9);
        await Task.Delay(500);
        await node.StartOrchdAsync();
        var after = await node.WaitForAsync("brief", c => c.State == ContainerState.Running && c.Restarts == 1, s_wait, "the restart of what died meanwhile");
        Assert.Equal(137, after.LastExit!.Code); // the native runtime records null here: it was nobody's child
        Assert.NotEqual(before.Pid, after.Pid);
    }

    [Fact(Timeout = 120_000)]
    public async Task After_a_reboot_what_should_run_runs_again_under_containerd()
    {
        await using var node = await NodeHost.StartAsync(runtime: "containerd");
        await node.Client.RunAsync(NodeHost.Sh("svc", "echo booted; exec sleep 100000", w => w.StopGracePeriodSeconds = 0));
        await node.Client.RunAsync(NodeHost.Sh("idle", "exec sleep 100000", w => w.StopGracePeriodSeconds = 0));
        await node.Client.StopAsync("idle");
        var pid = (await node.Client.InspectAsync("svc")).Pid;
        await node.KillOrchdAsync();

        // A reboot: every process gone (containers, shims, containerd), /run empty (containerd's
        // state, runc's state of the shims, orchd's run dir), /var/lib kept (containerd's
        // metadata still lists the containers; orchd's state dir).
        await node.Containerd!.RestartAsync(async () =>
        {
            foreach (var dir in Directory.EnumerateDirectories("/proc").Select(Path.GetFileName).Where(d => d!.All(char.IsAsciiDigit)))
            {
                try
                {
                    var cmdline = File.ReadAllText($"/proc/{dir}/cmdline").Replace('\0', ' ');
                    if (cmdline.Contains("containerd-shim", StringComparison.Ordinal) && cmdline.Contains(node.Containerd.Socket, StringComparison.Ordinal))
                    {
                        Orchestrator.Linux.Libc.kill(int.Parse(dir!, System.Globalization.CultureInfo.InvariantCulture), 9);
                    }
                }
                catch (IOException)
                {
                }
            }
            Orchestrator.Linux.Libc.kill(pid, 9);
            await Task.Delay(300);
            foreach (var mount in File.ReadAllLines("/proc/self/mountinfo").Select(l => l.Split(' ')[4])
                         .Where(m => m.StartsWith(node.Dir.Path, StringComparison.Ordinal) || m.StartsWith(node.Containerd.State, StringComparison.Ordinal)).OrderByDescending(m => m.Length))
            {
                Orchestrator.Linux.Libc.umount2(mount, Orchestrator.Linux.Libc.MNT_DETACH);
            }
            Directory.Delete(node.Containerd.State, recursive: true);
            Directory.Delete(Path.Combine("/run/containerd/runc", node.ContainerdNamespace), recursive: true);
            Directory.Delete(node.RunDir, recursive: true);
        });
        Assert.False(NodeHost.IsAlive(pid));

        await node.StartOrchdAsync();
        await node.Daemon.WaitForLogAsync("re-adopted 0 running containers", s_wait);
        var deadline = DateTime.UtcNow + s_wait;
        while (true)
        {
            try
            {
                await node.Client.InspectAsync("svc"); // reads come from a view published once recovery is done
                break;
            }
            catch (Orchestrator.Client.NodeRequestException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(50);
            }
        }
        var svc = await node.WaitForAsync("svc", c => c.State == ContainerState.Running, s_wait, "start after the reboot");
        Assert.NotEqual(pid, svc.Pid);
        Assert.Null(svc.LastExit!.Code); // nobody kept this one: the reboot took containerd's state too
        Assert.Equal(ContainerState.Stopped, (await node.Client.InspectAsync("idle")).State);
        Assert.Contains("svc", await node.ContainerdContainersAsync()); // the stale record replaced by a new container
        Assert.Equal(2, (await node.Client.LogsAsync("svc")).Count(l => l.Text == "booted"));
    }

    private static Task<IReadOnlyList<Orchestrator.Api.LogLine>> WaitForLineAsync(NodeHost node, string name, string text)
        => node.LogsUntilAsync(name, l => l.Any(x => x.Text == text), s_wait, $"'{text}'");
}

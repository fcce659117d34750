using System.Text.Json.Nodes;

namespace Orchestrator.Runtime.Tests.Privileged;

/// <summary>
/// The native runtime for real, through the published orch-runc (the C shim is linked into
/// the AOT binary only): real namespaces, mounts and cgroups, as root.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(HostState.Collection)]
public sealed class RuncCliTests : IDisposable
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(60);
    private readonly TempDir _state = new("orch-runc-root");

    public RuncCliTests() => Requires.Root();

    public void Dispose()
    {
        // A test that failed halfway leaves containers running: delete them, or their
        // processes and cgroups outlive the temp dir that named them.
        foreach (var dir in Directory.Exists(_state.Path) ? Directory.GetDirectories(_state.Path) : [])
        {
            using var delete = System.Diagnostics.Process.Start(Repo.Binary("orch-runc"), ["--root", _state.Path, "delete", "--force", Path.GetFileName(dir)]);
            delete.WaitForExit(10_000);
        }
        _state.Dispose();
    }

    private async Task<(int Code, string Stdout, string Stderr)> Runc(params string[] args)
    {
        var process = DaemonProcess.Start(Repo.Binary("orch-runc"), ["--root", _state.Path, .. args]);
        // create leaves the container holding orch-runc's stdout, as runc's does: do not wait for EOF.
        var detached = args[0] == "create" || (args[0] == "run" && args.Contains("-d"));
        var code = await process.WaitForExitAsync(s_wait, drainOutput: !detached);
        var result = (code, string.Join("\n", process.Stdout), string.Join("\n", process.Stderr));
        await process.DisposeAsync();
        return result;
    }

    private static OciBundle Shell(string script) => OciBundle.CreateBusybox("sh", "-c", script);

    private async Task<string> RunOk(OciBundle bundle, string id = "t")
    {
        var (code, stdout, stderr) = await Runc("run", "--bundle", bundle.Path, id);
        Assert.True(code == 0, $"exit {code}\nstdout: {stdout}\nstderr: {stderr}");
        return stdout;
    }

    [Fact(Timeout = 120_000)]
    public async Task Container_process_is_pid_1_with_its_own_hostname_and_no_host_processes()
    {
        using var bundle = Shell("echo pid=$$; hostname; echo /proc/[0-9]*");
        bundle.Edit(s => s["hostname"] = "box-7");
        var lines = (await RunOk(bundle)).Split('\n');
        Assert.Equal("pid=1", lines[0]);
        Assert.Equal("box-7", lines[1]);
        Assert.Equal("/proc/1", lines[2]); // the shell alone: nothing of the host, no runtime process
    }

    [Fact(Timeout = 120_000)]
    public async Task Host_mounts_are_invisible_and_the_rootfs_is_read_only()
    {
        using var bundle = Shell("cut -d' ' -f5 /proc/self/mountinfo; touch /x 2>/dev/null && echo WRITABLE || echo read-only");
        var lines = (await RunOk(bundle)).Split('\n');
        // Mount points (field 5) are the container's own; none of the host's (/work, /tmp, /run…).
        var mountPoints = lines[..^1];
        Assert.Contains("/", mountPoints);
        Assert.Contains("/proc", mountPoints);
        Assert.All(mountPoints, m => Assert.True(m is "/" || m.StartsWith("/proc", StringComparison.Ordinal) || m.StartsWith("/dev", StringComparison.Ordinal) || m.StartsWith("/sys", StringComparison.Ordinal), $"unexpected mount point {m}"));
        Assert.Equal("read-only", lines[^1]);
    }

    [Fact(Timeout = 120_000)]
    public async Task Capabilities_are_really_dropped_and_no_new_privs_is_set()
    {
        using var bundle = Shell("grep -E '^(CapEff|CapBnd|CapPrm|NoNewPrivs)' /proc/self/status");
        var status = (await RunOk(bundle)).Split('\n').Select(l => l.Split(':')).ToDictionary(p => p[0], p => p[1].Trim());
        // The default spec keeps CAP_AUDIT_WRITE (29), CAP_KILL (5), CAP_NET_BIND_SERVICE (10) only.
        Assert.Equal("0000000020000420", status["CapEff"]);
        Assert.Equal("0000000020000420", status["CapBnd"]);
        Assert.Equal("0000000020000420", status["CapPrm"]);
        Assert.Equal("1", status["NoNewPrivs"]);
    }

    [Fact(Timeout = 120_000)]
    public async Task Masked_and_read_only_paths_are_applied()
    {
        // /proc/keys and /sys/firmware exist on every kernel this runs on (kcore may not).
        using var bundle = Shell("wc -c < /proc/keys; echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo WROTE || echo denied; ls /sys/firmware | wc -l");
        var lines = (await RunOk(bundle)).Split('\n');
        Assert.Equal("0", lines[0].Trim());
        Assert.Equal("denied", lines[1]);
        Assert.Equal("0", lines[2].Trim());
    }

    [Fact(Timeout = 120_000)]
    public async Task A_runtime_killed_before_its_child_may_go_leaves_no_child_holding_its_stdio()
    {
        // orchd (here orch-runc) SIGKILLed between the clone and the "go": the child used to wait
        // for it forever, holding the runtime's stdout and stderr (a test harness then waited on
        // them for good) and its other fds. It must see the pipe's end and exit.
        using var bundle = Shell("echo never");
        var id = "killed-" + Guid.NewGuid().ToString("N")[..8];
        var info = new System.Diagnostics.ProcessStartInfo(Repo.Binary("orch-runc"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[] { "--root", _state.Path, "run", "--bundle", bundle.Path, id })
        {
            info.ArgumentList.Add(arg);
        }
        info.Environment["ORCHD_FAILPOINT"] = "spawn-before-go";
        using var runtime = System.Diagnostics.Process.Start(info)!;
        var stdout = runtime.StandardOutput.ReadToEndAsync();
        var stderr = runtime.StandardError.ReadToEndAsync();
        await runtime.WaitForExitAsync().WaitAsync(s_wait);
        Assert.Equal(137, runtime.ExitCode); // the fault point's SIGKILL
        try
        {
            // EOF on both: nothing else holds the runtime's pipes.
            await Task.WhenAll(stdout, stderr).WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal("", await stdout);
        }
        finally
        {
            foreach (var pid in ProcessesWith(id))
            {
                _ = Orchestrator.Linux.Libc.kill(pid, 9); // what the bug left behind, so the run goes on
            }
        }
        await Eventually.TrueAsync("no orphan of the killed runtime", () => ProcessesWith(id).Count == 0, TimeSpan.FromSeconds(10));
    }

    /// <summary>Processes whose command line holds <paramref name="word"/> (the clone of a runtime that never exec'd keeps its argv).</summary>
    private static List<int> ProcessesWith(string word)
    {
        var found = new List<int>();
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(dir), out var pid))
            {
                try
                {
                    if (File.ReadAllText(Path.Combine(dir, "cmdline")).Split('\0').Contains(word))
                    {
                        found.Add(pid);
                    }
                }
                catch (IOException)
                {
                }
                catch (UnauthorizedAccessException)
                {
                }
            }
        }
        return found;
    }

    [Fact(Timeout = 120_000)]
    public async Task No_host_fd_leaks_into_the_container()
    {
        using var bundle = Shell("ls /proc/self/fd");
        // ls opens its directory as fd 3: 0, 1, 2 and that one are all there may be.
        Assert.Equal(["0", "1", "2", "3"], (await RunOk(bundle)).Split('\n'));
    }

    [Fact(Timeout = 120_000)]
    public async Task Pids_limit_is_enforced()
    {
        // The subshell forks until the limit stops it; the outer shell counts what runs.
        using var bundle = Shell("(for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done) 2>/dev/null; set -- /proc/[0-9]*; echo $#; cat /sys/fs/cgroup/pids/pids.max");
        bundle.Edit(s => s["linux"]!["resources"]!["pids"] = new JsonObject { ["limit"] = 5 });
        var lines = (await RunOk(bundle)).Split('\n');
        Assert.InRange(int.Parse(lines[0].Trim(), System.Globalization.CultureInfo.InvariantCulture), 1, 5);
        Assert.Equal("5", lines[1]);
    }

    [Fact(Timeout = 120_000)]
    public async Task Memory_limit_oom_kills_and_the_kill_is_reported()
    {
        // The shell grows a string until the 8 MiB limit stops it; the kernel kills it (137).
        using var bundle = Shell("x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while true; do x=$x$x; done");
        bundle.Edit(s =>
        {
            s["linux"]!["resources"]!["memory"] = new JsonObject { ["limit"] = 8 << 20 };
            s["process"]!["rlimits"] = new JsonArray();
        });
        var (code, _, _) = await Runc("run", "--bundle", bundle.Path, "oom");
        Assert.Equal(137, code);

        // create/start keeps the cgroup around long enough to read the OOM counter.
        using var held = Shell("x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while true; do x=$x$x; done & wait; sleep 30");
        held.Edit(s => s["linux"]!["resources"]!["memory"] = new JsonObject { ["limit"] = 8 << 20 });
        Assert.Equal(0, (await Runc("create", "--bundle", held.Path, "oom2")).Code);
        Assert.Equal(0, (await Runc("start", "oom2")).Code);
        string stats = "";
        for (var i = 0; i < 100 && !stats.Contains("\"oom_kill\":1", StringComparison.Ordinal); i++)
        {
            await Task.Delay(100);
            stats = (await Runc("events", "--stats", "oom2")).Stdout;
        }
        Assert.Contains("\"oom_kill\":1", stats, StringComparison.Ordinal);
        Assert.Equal(0, (await Runc("delete", "--force", "oom2")).Code);

        // The event stream reports the OOM kill as it happens, and ends when the container stops.
        using var streamed = Shell("sleep 1; x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while true; do x=$x$x; done");
        streamed.Edit(s => s["linux"]!["resources"]!["memory"] = new JsonObject { ["limit"] = 8 << 20 });
        Assert.Equal(0, (await Runc("create", "--bundle", streamed.Path, "oom3")).Code);
        var events = DaemonProcess.Start(Repo.Binary("orch-runc"), ["--root", _state.Path, "events", "--interval", "200ms", "oom3"]);
        Assert.Equal(0, (await Runc("start", "oom3")).Code);
        await events.WaitForLogAsync("\"type\":\"oom\"", s_wait);
        Assert.Contains(events.Stdout, l => l.StartsWith("{\"type\":\"stats\",\"id\":\"oom3\"", StringComparison.Ordinal));
        Assert.Equal(0, await events.WaitForExitAsync(s_wait));
        await events.DisposeAsync();
        // A stream whose first look comes after the kill (as one started before `start` can, on a
        // loaded machine) still reports it, after a last sample.
        var late = await Runc("events", "--interval", "200ms", "oom3");
        Assert.Equal(0, late.Code);
        var lateLines = late.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lateLines.Length);
        Assert.StartsWith("{\"type\":\"stats\",\"id\":\"oom3\"", lateLines[0], StringComparison.Ordinal);
        Assert.Equal("{\"type\":\"oom\",\"id\":\"oom3\"}", lateLines[1]);
        Assert.Equal(0, (await Runc("delete", "oom3")).Code);
    }

    [Fact(Timeout = 120_000)]
    public async Task Lifecycle_create_start_state_kill_delete_leaves_nothing_behind()
    {
        using var bundle = OciBundle.CreateBusybox("sleep", "60");
        var pidFile = Path.Combine(_state.Path, "pid");
        Assert.Equal(0, (await Runc("create", "--bundle", bundle.Path, "--pid-file", pidFile, "life")).Code);
        var pid = int.Parse(await File.ReadAllTextAsync(pidFile), System.Globalization.CultureInfo.InvariantCulture);
        var created = JsonNode.Parse((await Runc("state", "life")).Stdout)!;
        Assert.Equal("created", (string?)created["status"]);
        Assert.Equal(pid, (int)created["pid"]!);
        Assert.Equal(bundle.Path, (string?)created["bundle"]);

        Assert.Equal(0, (await Runc("start", "life")).Code);
        Assert.Equal("running", (string?)JsonNode.Parse((await Runc("state", "life")).Stdout)!["status"]);
        Assert.Equal(0, (await Runc("pause", "life")).Code);
        Assert.Equal("paused", (string?)JsonNode.Parse((await Runc("state", "life")).Stdout)!["status"]);
        Assert.Equal(0, (await Runc("resume", "life")).Code);

        var (deleteCode, _, deleteError) = await Runc("delete", "life");
        Assert.Equal(1, deleteCode);
        Assert.Equal("orch-runc: container 'life' is running; stop it first or delete with --force", deleteError);

        Assert.Equal(0, (await Runc("kill", "life", "SIGKILL")).Code);
        for (var i = 0; i < 100 && Directory.Exists($"/proc/{pid}") && !File.ReadAllText($"/proc/{pid}/stat").Contains(") Z ", StringComparison.Ordinal); i++)
        {
            await Task.Delay(20);
        }
        Assert.Equal("stopped", (string?)JsonNode.Parse((await Runc("state", "life")).Stdout)!["status"]);
        Assert.Equal(0, (await Runc("delete", "life")).Code);
        Assert.False(Directory.Exists("/sys/fs/cgroup/memory/orchestrator/life"));
        Assert.False(Directory.Exists(Path.Combine(_state.Path, "life")));
        var (_, _, missing) = await Runc("state", "life");
        Assert.StartsWith("orch-runc: container 'life' does not exist", missing, StringComparison.Ordinal);
    }

    [Fact(Timeout = 300_000)]
    public async Task Two_hundred_runs_leak_no_cgroup_mount_state_or_process()
    {
        using var bundle = OciBundle.CreateBusybox("true");
        // Mounts that mention this bundle (other test classes mount and unmount in parallel).
        int OurMounts() => File.ReadAllLines("/proc/self/mountinfo").Count(l => l.Contains(bundle.Path, StringComparison.Ordinal));
        var mountsBefore = OurMounts();
        // Its own cgroups only (orchestrator/cycle-N): other tests and orchd nodes on this host make theirs meanwhile.
        int OurCgroups() => Directory.Exists("/sys/fs/cgroup/pids/orchestrator")
            ? Directory.GetDirectories("/sys/fs/cgroup/pids/orchestrator").Count(d => Path.GetFileName(d).StartsWith("cycle-", StringComparison.Ordinal)) : 0;
        var cgroupsBefore = OurCgroups();
        for (var i = 0; i < 200; i++)
        {
            var (code, _, stderr) = await Runc("run", "--bundle", bundle.Path, $"cycle-{i}");
            Assert.True(code == 0, stderr);
        }
        Assert.Equal(mountsBefore, OurMounts());
        Assert.Equal(cgroupsBefore, OurCgroups());
        Assert.Empty(Directory.GetDirectories(_state.Path));
        Assert.DoesNotContain(Directory.GetDirectories("/proc"), d => File.Exists(Path.Combine(d, "cmdline")) && SafeRead(Path.Combine(d, "cmdline")).Contains(bundle.Rootfs, StringComparison.Ordinal));
    }

    [Fact(Timeout = 300_000)]
    public async Task Two_hundred_in_process_runs_leak_no_fd_mount_or_cgroup()
    {
        // The library as orchd uses it: one process, many containers.
        using var bundle = OciBundle.CreateBusybox("true");
        var (code, stdout, stderr) = await Runc("bench-inprocess", "--bundle", bundle.Path, "--runs", "200");
        Assert.True(code == 0, stderr);
        Assert.Equal(200, stdout.Split(',').Length);
        var leaks = System.Text.RegularExpressions.Regex.Match(stderr, @"fds (\d+) -> (\d+), mounts (\d+) -> (\d+), cgroups (\d+) -> (\d+)");
        Assert.True(leaks.Success, stderr);
        Assert.Equal(leaks.Groups[1].Value, leaks.Groups[2].Value);
        Assert.Equal(leaks.Groups[3].Value, leaks.Groups[4].Value);
        Assert.Equal(leaks.Groups[5].Value, leaks.Groups[6].Value);
        Assert.Empty(Directory.GetDirectories(_state.Path));
    }

    private static string SafeRead(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (IOException)
        {
            return "";
        }
    }

    [Fact(Timeout = 120_000)]
    public async Task A_symlink_in_the_image_cannot_redirect_a_mount_onto_the_host()
    {
        using var hostDir = new TempDir("host-target");
        await File.WriteAllTextAsync(Path.Combine(hostDir.Path, "precious"), "keep");
        using var bundle = Shell("ls /data | wc -l; touch /data/written");
        // The image says /data -> <a host directory>; the mount must land inside the rootfs.
        File.CreateSymbolicLink(Path.Combine(bundle.Rootfs, "data"), hostDir.Path);
        bundle.Edit(s => s["mounts"]!.AsArray().Add(new JsonObject { ["destination"] = "/data", ["type"] = "tmpfs", ["source"] = "tmpfs", ["options"] = new JsonArray("nosuid") }));
        Assert.Equal("0", (await RunOk(bundle)).Trim());
        Assert.Equal(["precious"], Directory.GetFiles(hostDir.Path).Select(Path.GetFileName));
        Assert.True(Directory.Exists(Path.Combine(bundle.Rootfs, hostDir.Path.TrimStart('/'))), "the mount point was made inside the rootfs");
    }

    [Fact(Timeout = 120_000)]
    public async Task A_mount_under_a_bind_is_made_in_the_binds_source_and_shadows_it()
    {
        // The node_modules pattern: the source bound at /app, a volume of its own at /app/node_modules.
        using var source = new TempDir("bind-source");
        await File.WriteAllTextAsync(Path.Combine(source.Path, "on-host"), "bound");
        using var bundle = Shell("cat /app/on-host; echo; ls /app/node_modules | wc -l; touch /app/node_modules/inside; grep -c ' /app/node_modules ' /proc/self/mountinfo");
        bundle.Edit(s =>
        {
            s["mounts"]!.AsArray().Add(new JsonObject { ["destination"] = "/app", ["type"] = "bind", ["source"] = source.Path, ["options"] = new JsonArray("rbind", "rw") });
            s["mounts"]!.AsArray().Add(new JsonObject { ["destination"] = "/app/node_modules", ["type"] = "tmpfs", ["source"] = "tmpfs", ["options"] = new JsonArray("nosuid") });
        });
        Assert.Equal(["bound", "0", "1"], (await RunOk(bundle)).Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.True(Directory.Exists(Path.Combine(source.Path, "node_modules")), "the mount point, made in the bind's source as runc makes it");
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(source.Path, "node_modules"))); // written to the tmpfs over it, not to the host
        Assert.False(Directory.Exists(Path.Combine(bundle.Rootfs, "app", "node_modules")), "not made in the rootfs, under the bind, where it would be hidden");
    }

    [Fact(Timeout = 120_000)]
    public async Task A_symlink_in_a_binds_source_cannot_redirect_a_mount_under_it_onto_the_host()
    {
        // A volume a container wrote: node_modules -> a host directory. The next start must not mount there.
        using var source = new TempDir("bind-source");
        using var hostDir = new TempDir("host-target");
        await File.WriteAllTextAsync(Path.Combine(hostDir.Path, "precious"), "keep");
        File.CreateSymbolicLink(Path.Combine(source.Path, "node_modules"), hostDir.Path);
        using var bundle = Shell("true");
        bundle.Edit(s =>
        {
            s["mounts"]!.AsArray().Add(new JsonObject { ["destination"] = "/app", ["type"] = "bind", ["source"] = source.Path, ["options"] = new JsonArray("rbind", "rw") });
            s["mounts"]!.AsArray().Add(new JsonObject { ["destination"] = "/app/node_modules", ["type"] = "tmpfs", ["source"] = "tmpfs", ["options"] = new JsonArray("nosuid") });
        });
        var (code, _, stderr) = await Runc("run", "--bundle", bundle.Path, "link");
        Assert.Equal(1, code);
        Assert.Contains($"mounts: /app/node_modules is under the bind mount at /app, whose source {source.Path} has a symlink on the way to node_modules", stderr, StringComparison.Ordinal);
        Assert.Equal(["precious"], Directory.GetFileSystemEntries(hostDir.Path).Select(Path.GetFileName));
        Assert.DoesNotContain(File.ReadAllLines("/proc/self/mountinfo"), l => l.Contains(hostDir.Path, StringComparison.Ordinal));
    }

    [Fact(Timeout = 120_000)]
    public async Task A_cwd_reaching_outside_the_rootfs_through_a_leaked_fd_is_refused()
    {
        // The runc CVE-2024-21626 shape: cwd through /proc/self/fd/N. No host fd is open in the
        // child at chdir time except runtime pipes; whatever it reaches, it is not under our root.
        using var bundle = Shell("pwd");
        bundle.Edit(s => s["process"]!["cwd"] = "/proc/self/fd/7");
        var (code, stdout, stderr) = await Runc("run", "--bundle", bundle.Path, "cwd");
        Assert.NotEqual(0, code);
        Assert.DoesNotContain("/", stdout, StringComparison.Ordinal);
        Assert.Contains("orch-runc: container setup failed at chdir to process.cwd ('/proc/self/fd/7')", stderr, StringComparison.Ordinal);
    }

    [Fact(Timeout = 120_000)]
    public async Task The_runtime_binary_is_not_reachable_from_inside()
    {
        // CVE-2019-5736 class: no process of the runtime exists in the container's pid namespace
        // at any point the container's code runs, so /proc/<pid>/exe can never be the host binary.
        using var bundle = Shell("for p in /proc/[0-9]*; do readlink $p/exe; done");
        var exes = (await RunOk(bundle)).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.All(exes, e => Assert.Equal("/bin/busybox", e));
    }

    [Fact(Timeout = 120_000)]
    public async Task Malformed_config_and_missing_rootfs_are_one_clear_error()
    {
        using var bundle = OciBundle.CreateBusybox("true");
        await File.WriteAllTextAsync(bundle.ConfigPath, "{ not json");
        var (code, _, stderr) = await Runc("run", "--bundle", bundle.Path, "bad");
        Assert.Equal(1, code);
        Assert.StartsWith($"orch-runc: {bundle.ConfigPath}: ", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', stderr);

        using var noRoot = OciBundle.CreateBusybox("true");
        Directory.Delete(noRoot.Rootfs, recursive: true);
        var (code2, _, stderr2) = await Runc("run", "--bundle", noRoot.Path, "bad2");
        Assert.Equal(1, code2);
        Assert.Equal($"orch-runc: root.path: '{noRoot.Rootfs}' is not a directory; unpack the image there or fix root.path", stderr2);
        Assert.Empty(Directory.GetDirectories(_state.Path));
    }

    [Fact(Timeout = 120_000)]
    public async Task User_namespace_maps_container_root_to_an_unprivileged_host_range()
    {
        using var bundle = Shell("id -u; cat /proc/self/uid_map; stat -c %u /bin/busybox");
        // The mapped root (host uid 100000) must be able to reach the rootfs: temp dirs are 0700.
        File.SetUnixFileMode(bundle.Path, (UnixFileMode)0x1ED /* 0755 */);
        bundle.Edit(s =>
        {
            s["linux"]!["namespaces"]!.AsArray().Add(new JsonObject { ["type"] = "user" });
            s["linux"]!["uidMappings"] = new JsonArray(new JsonObject { ["containerID"] = 0, ["hostID"] = 100000, ["size"] = 65536 });
            s["linux"]!["gidMappings"] = new JsonArray(new JsonObject { ["containerID"] = 0, ["hostID"] = 100000, ["size"] = 65536 });
        });
        var lines = (await RunOk(bundle)).Split('\n');
        Assert.Equal("0", lines[0]);
        Assert.Equal(["0", "100000", "65536"], lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal("65534", lines[2]); // host root's files are nobody's inside
    }

    [Fact(Timeout = 120_000)]
    public async Task A_user_namespace_without_mappings_is_a_clear_error()
    {
        using var bundle = OciBundle.CreateBusybox("true");
        bundle.Edit(s => s["linux"]!["namespaces"]!.AsArray().Add(new JsonObject { ["type"] = "user" }));
        var (code, _, stderr) = await Runc("run", "--bundle", bundle.Path, "nomap");
        Assert.Equal(1, code);
        Assert.Contains("linux.uidMappings: a new user namespace needs uidMappings and gidMappings", stderr, StringComparison.Ordinal);
    }

    [Fact(Timeout = 120_000)]
    public async Task User_groups_rlimits_oom_score_sysctl_and_cwd_are_applied()
    {
        var hostForward = (await File.ReadAllTextAsync("/proc/sys/net/ipv4/ip_forward")).Trim();
        using var bundle = Shell("id; ulimit -n; cat /proc/self/oom_score_adj; cat /proc/sys/net/ipv4/ip_forward; pwd");
        bundle.Edit(s =>
        {
            s["process"]!["user"] = new JsonObject { ["uid"] = 1000, ["gid"] = 1000, ["additionalGids"] = new JsonArray(10, 20) };
            s["process"]!["rlimits"] = new JsonArray(new JsonObject { ["type"] = "RLIMIT_NOFILE", ["soft"] = 77, ["hard"] = 88 });
            s["process"]!["oomScoreAdj"] = 321;
            s["process"]!["cwd"] = "/work/dir";
            s["linux"]!["sysctl"] = new JsonObject { ["net.ipv4.ip_forward"] = "1" };
        });
        var lines = (await RunOk(bundle)).Split('\n');
        Assert.StartsWith("uid=1000 gid=1000 groups=10,20", lines[0], StringComparison.Ordinal);
        Assert.Equal("77", lines[1]);
        Assert.Equal("321", lines[2]);
        Assert.Equal("1", lines[3]); // in the container's own network namespace, not the host's
        Assert.Equal("/work/dir", lines[4]);
        Assert.Equal(hostForward, (await File.ReadAllTextAsync("/proc/sys/net/ipv4/ip_forward")).Trim());
    }

    [Fact(Timeout = 120_000)]
    public async Task Exec_runs_a_process_in_the_container_s_namespaces_and_cgroup()
    {
        using var bundle = OciBundle.CreateBusybox("sleep", "60");
        bundle.Edit(s => s["hostname"] = "exec-box");
        Assert.Equal(0, (await Runc("run", "-d", "--bundle", bundle.Path, "ex")).Code);

        var (code, stdout, stderr) = await Runc("exec", "--env", "GREETING=hi", "--cwd", "/tmp", "ex", "sh", "-c", "echo $GREETING $$ $(hostname) $(pwd); head -1 /proc/self/cgroup | cut -d: -f3; echo /proc/[0-9]*; exit 5");
        Assert.True(code == 5, stderr);
        var lines = stdout.Split('\n');
        Assert.Equal("hi 2 exec-box /tmp", lines[0]); // pid 2: the container's pid namespace
        Assert.Equal("/", lines[1]);                  // the root of the container's cgroup namespace
        Assert.Equal("/proc/1 /proc/2", lines[2]);    // the container's processes, nothing else

        // --process, as containerd's shim passes it.
        var processFile = Path.Combine(_state.Path, "process.json");
        await File.WriteAllTextAsync(processFile, """{"args":["sh","-c","id -u; exit 0"],"cwd":"/","user":{"uid":1234,"gid":1234},"env":["PATH=/bin"]}""");
        var viaFile = await Runc("exec", "--process", processFile, "ex");
        Assert.True(viaFile.Code == 0, viaFile.Stderr);
        Assert.Equal("1234", viaFile.Stdout);

        Assert.Equal(0, (await Runc("delete", "--force", "ex")).Code);
        var (stoppedCode, _, stoppedError) = await Runc("exec", "ex", "true");
        Assert.Equal(1, stoppedCode);
        Assert.StartsWith("orch-runc: container 'ex' does not exist", stoppedError, StringComparison.Ordinal);
    }

    [Fact(Timeout = 120_000)]
    public async Task A_seccomp_rule_really_returns_its_errno_and_argument_filters_hold()
    {
        using var bundle = Shell("mkdir /tmp/x 2>&1; kill -0 $$ && echo kill0-allowed; kill -9 $$ 2>&1; echo survived");
        bundle.Edit(s =>
        {
            s["root"]!["readonly"] = false;
            s["linux"]!["seccomp"] = JsonNode.Parse("""
                {"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_AARCH64"],
                 "syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":38},
                             {"names":["kill"],"action":"SCMP_ACT_ERRNO","args":[{"index":1,"value":9,"op":"SCMP_CMP_EQ"}]}]}
                """);
        });
        var lines = (await RunOk(bundle)).Split('\n');
        Assert.Equal("mkdir: can't create directory '/tmp/x': Function not implemented", lines[0]); // errno 38, ENOSYS
        Assert.Equal("kill0-allowed", lines[1]);
        Assert.Equal("sh: can't kill pid 1: Operation not permitted", lines[2]); // signal 9 only
        Assert.Equal("survived", lines[3]);
    }

    [Fact(Timeout = 120_000)]
    public async Task Hooks_run_with_the_state_on_stdin_at_their_points()
    {
        using var bundle = Shell("echo ran");
        var log = Path.Combine(_state.Path, "hooks.log");
        JsonObject Hook(string name) => new()
        {
            ["path"] = "/bin/sh",
            ["args"] = new JsonArray("sh", "-c", $"echo {name} $(cat) >> {log}"),
        };
        bundle.Edit(s =>
        {
            s["root"]!["readonly"] = false;
            s["hooks"] = new JsonObject
            {
                ["createRuntime"] = new JsonArray(Hook("createRuntime")),
                // In the container's namespaces before pivot_root: the host's paths still resolve.
                ["createContainer"] = new JsonArray(Hook("createContainer")),
                // In the container, at start: its paths, its files.
                ["startContainer"] = new JsonArray(new JsonObject { ["path"] = "/bin/sh", ["args"] = new JsonArray("sh", "-c", "cat > /tmp/start-hook") }),
                ["poststart"] = new JsonArray(Hook("poststart")),
                ["poststop"] = new JsonArray(Hook("poststop")),
            };
        });
        Assert.Equal("ran", await RunOk(bundle, "hooked"));
        var startState = JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(bundle.Rootfs, "tmp", "start-hook")))!;
        Assert.Equal("hooked", (string?)startState["id"]);
        // Each hook logged "<phase> <state JSON>" on one line (the shell's $(cat) joins the lines).
        var entries = (await File.ReadAllLinesAsync(log)).Select(l => (Phase: l[..l.IndexOf(' ', StringComparison.Ordinal)], State: JsonNode.Parse(l[l.IndexOf(' ', StringComparison.Ordinal)..])!)).ToArray();
        Assert.Equal(["createRuntime", "createContainer", "poststart", "poststop"], entries.Select(e => e.Phase));
        Assert.All(entries, e => Assert.Equal("hooked", (string?)e.State["id"]));
        Assert.Equal("creating", (string?)entries[0].State["status"]);
        Assert.True((int)entries[0].State["pid"]! > 0);
        Assert.Equal(entries[0].State["pid"]!.ToString(), entries[1].State["pid"]!.ToString());
        Assert.Equal("stopped", (string?)entries[3].State["status"]);
    }

    [Fact(Timeout = 120_000)]
    public async Task A_failing_create_runtime_hook_aborts_the_container_and_leaves_nothing()
    {
        using var bundle = Shell("echo should-not-run");
        bundle.Edit(s => s["hooks"] = new JsonObject { ["createRuntime"] = new JsonArray(new JsonObject { ["path"] = "/bin/false" }) });
        var (code, stdout, stderr) = await Runc("run", "--bundle", bundle.Path, "badhook");
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Equal("orch-runc: hooks.createRuntime: '/bin/false' exited with 1: ", stderr);
        Assert.Empty(Directory.GetDirectories(_state.Path));
        Assert.False(Directory.Exists("/sys/fs/cgroup/pids/orchestrator/badhook"));
    }

    [Fact(Timeout = 120_000)]
    public async Task Spec_devices_are_created_with_their_numbers_owner_and_mode_and_allowed()
    {
        using var bundle = Shell("stat -c '%F %t:%T %u:%g %a' /dev/mynull; echo data > /dev/mynull && echo writable");
        bundle.Edit(s => s["linux"]!["devices"] = new JsonArray(new JsonObject
        {
            ["path"] = "/dev/mynull", ["type"] = "c", ["major"] = 1, ["minor"] = 3, ["fileMode"] = 390 /* 0606: others (our root without CAP_DAC_OVERRIDE) may write */, ["uid"] = 7, ["gid"] = 8,
        }));
        var lines = (await RunOk(bundle)).Split('\n');
        Assert.Equal("character special file 1:3 7:8 606", lines[0]);
        Assert.Equal("writable", lines[1]);
    }

    [Fact(Timeout = 120_000)]
    public async Task No_pivot_moves_the_rootfs_and_chroots()
    {
        using var bundle = Shell("echo pid=$$; ls /bin/busybox");
        var (code, stdout, stderr) = await Runc("run", "--no-pivot", "--bundle", bundle.Path, "nopivot");
        Assert.True(code == 0, stderr);
        Assert.Equal("pid=1\n/bin/busybox", stdout);
    }

    [Fact(Timeout = 120_000)]
    public async Task A_terminal_is_a_pty_of_the_container_s_own_devpts_with_its_size()
    {
        using var bundle = Shell("tty; stty size");
        bundle.Edit(s =>
        {
            s["process"]!["terminal"] = true;
            s["process"]!["consoleSize"] = new JsonObject { ["height"] = 30, ["width"] = 100 };
        });
        var lines = (await RunOk(bundle)).Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
        Assert.Equal("/dev/pts/0", lines[0]); // the first pty of a fresh devpts instance
        Assert.Equal("30 100", lines[1]);

        var (code, _, stderr) = await Runc("create", "--bundle", bundle.Path, "tty-detached");
        Assert.Equal(1, code);
        Assert.Equal("orch-runc: process.terminal: a detached container's terminal goes to --console-socket; pass one (as containerd does) or run in the foreground", stderr);
    }

    [Fact(Timeout = 120_000)]
    public async Task A_stopped_container_reports_its_exit_status()
    {
        using var bundle = Shell("exit 3");
        Assert.Equal(3, (await Runc("run", "--keep", "--bundle", bundle.Path, "kept")).Code);
        var state = JsonNode.Parse((await Runc("state", "kept")).Stdout)!;
        Assert.Equal("stopped", (string?)state["status"]);
        Assert.Equal(3, (int)state["exitStatus"]!);
        Assert.Equal(0, (int)state["pid"]!);
        Assert.Equal(0, (await Runc("delete", "kept")).Code);
    }

    [Fact(Timeout = 120_000)]
    public async Task Exit_status_of_the_program_is_run_s_exit_status()
    {
        using var bundle = Shell("exit 42");
        Assert.Equal(42, (await Runc("run", "--bundle", bundle.Path, "exit")).Code);
    }

    [Fact(Timeout = 120_000)]
    public async Task Systemd_cgroup_flag_is_refused_clearly()
    {
        var (code, _, stderr) = await Runc("--systemd-cgroup", "list");
        Assert.Equal(1, code);
        Assert.StartsWith("orch-runc: --systemd-cgroup is not supported", stderr, StringComparison.Ordinal);
    }
}

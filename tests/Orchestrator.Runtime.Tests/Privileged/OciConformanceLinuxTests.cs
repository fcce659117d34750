using System.Text.Json.Nodes;

namespace Orchestrator.Runtime.Tests.Privileged;

/// <summary>
/// OCI runtime spec, config-linux.md: each MUST and SHOULD, for real. Where this machine cannot do
/// a thing (cgroup v1 without a blkio weight file, no hugetlb or net_cls hierarchy, no AppArmor),
/// the test checks that orch-runc fails as runc 1.1 does on the same bundle, and the test of the
/// applied setting skips saying why.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(HostState.Collection)]
public sealed class OciConformanceLinuxTests : OciHarness
{
    private const string SeccompDeniesRuntimeSetup = """
        {"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_AARCH64"],
         "syscalls":[{"names":["setresuid","setresgid","setgroups","setuid","setgid","capset","chdir","fchdir","getcwd","close_range","prctl","umask"],
                      "action":"SCMP_ACT_ERRNO","errnoRet":1}]}
        """;

    // config-linux.md#default-filesystems: "The following filesystems SHOULD be made available in
    // each container's filesystem: /proc proc, /sys sysfs, /dev/pts devpts, /dev/shm tmpfs" (the
    // default spec asks for them; each is mounted with its type).
    [Fact(Timeout = 120_000)]
    public async Task Default_filesystems_SHOULD_be_available()
    {
        using var bundle = Shell("awk '{ for (i = 7; $i != \"-\"; i++) ; print $5, $(i + 1) }' /proc/self/mountinfo");
        var mounts = (await RunOk(bundle)).Split('\n').Select(l => l.Split(' ')).GroupBy(p => p[0]).ToDictionary(g => g.Key, g => g.Last()[1]);
        Assert.Equal("proc", mounts["/proc"]);
        Assert.Equal("sysfs", mounts["/sys"]);
        Assert.Equal("devpts", mounts["/dev/pts"]);
        Assert.Equal("tmpfs", mounts["/dev/shm"]);
    }

    // config-linux.md#namespaces: "If path is not specified, the runtime MUST create a new container
    // namespace of type type." "If a namespace type is not specified in the namespaces array, the
    // container MUST inherit the runtime namespace of that type."
    [Fact(Timeout = 120_000)]
    public async Task Listed_namespaces_are_new_and_unlisted_ones_are_the_runtime_s()
    {
        string[] kinds = ["net", "ipc", "uts", "cgroup", "pid", "mnt"];
        using var bundle = Shell(string.Join("; ", kinds.Select(k => $"readlink /proc/self/ns/{k}")));
        var inNew = (await RunOk(bundle, "ns-new")).Split('\n');
        for (var i = 0; i < kinds.Length; i++)
        {
            Assert.NotEqual(HostNs(kinds[i]), inNew[i]);
        }

        using var shared = Shell(string.Join("; ", kinds.Select(k => $"readlink /proc/self/ns/{k}")));
        shared.Edit(s =>
        {
            s["linux"]!["namespaces"] = Namespaces("mount", "pid");
            s.Remove("hostname");
        });
        var inShared = (await RunOk(shared, "ns-shared")).Split('\n');
        Assert.Equal(kinds[..4].Select(HostNs), inShared[..4]);
    }

    // config-linux.md#namespaces: "The runtime MUST place the container process in the namespace
    // associated with that path." A pid namespace joined by path (issue #16 class 3: setns of a pid
    // namespace moves only children; the process stayed in the host's).
    [Fact(Timeout = 120_000)]
    public async Task A_pid_namespace_joined_by_path_MUST_hold_the_process()
    {
        using var holder = OciBundle.CreateBusybox("sleep", "60");
        Assert.Equal(0, (await Runc("run", "-d", "--bundle", holder.Path, "holder")).Code);
        var holderPid = (int)JsonNode.Parse((await Runc("state", "holder")).Stdout)!["pid"]!;
        var pidNs = new FileInfo($"/proc/{holderPid}/ns/pid").LinkTarget;
        var netNs = new FileInfo($"/proc/{holderPid}/ns/net").LinkTarget;

        using var joiner = Shell("readlink /proc/self/ns/pid; readlink /proc/self/ns/net; echo $$; cat /proc/1/cmdline | tr '\\0' ' '");
        joiner.Edit(s => s["linux"]!["namespaces"] = new JsonArray(
            new JsonObject { ["type"] = "pid", ["path"] = $"/proc/{holderPid}/ns/pid" },
            new JsonObject { ["type"] = "network", ["path"] = $"/proc/{holderPid}/ns/net" },
            new JsonObject { ["type"] = "mount" }, new JsonObject { ["type"] = "ipc" }, new JsonObject { ["type"] = "uts" }));
        var lines = (await RunOk(joiner, "joiner")).Split('\n');
        Assert.Equal(pidNs, lines[0]);
        Assert.Equal(netNs, lines[1]);
        Assert.NotEqual("1", lines[2]);                  // pid 1 there is the holder's sleep
        Assert.Equal("sleep 60", lines[3].Trim());
        Assert.Equal(0, (await Runc("delete", "--force", "holder")).Code);
    }

    // config-linux.md#namespaces: "The runtime MUST generate an error if path is not associated with
    // a namespace of type type."
    [Fact(Timeout = 120_000)]
    public async Task A_namespace_path_of_another_type_MUST_be_an_error()
    {
        using var bundle = Shell("true");
        bundle.Edit(s =>
        {
            s["linux"]!["namespaces"] = new JsonArray(new JsonObject { ["type"] = "ipc", ["path"] = "/proc/self/ns/net" }, new JsonObject { ["type"] = "mount" });
            s.Remove("hostname");
        });
        Assert.Contains("is not a ipc namespace (it is a network namespace)", await RunFails(bundle), StringComparison.Ordinal);
    }

    // config-linux.md#namespaces: "If a namespace type is not specified in the namespaces array, the
    // container MUST inherit the runtime namespace of that type" (issue #16 class 8: a spec without
    // a mount namespace was refused). As runc, the mounts are made in the runtime's mount namespace
    // and the root entered with chroot; unlike runc, they are undone when the container goes.
    [Fact(Timeout = 120_000)]
    public async Task Without_a_mount_namespace_the_container_shares_the_runtime_s()
    {
        using var bundle = Shell("readlink /proc/self/ns/mnt; ls /bin/busybox; cat /proc/self/cgroup > /dev/null && echo proc-mounted");
        bundle.Edit(s =>
        {
            s["linux"]!["namespaces"] = Namespaces("pid", "ipc", "uts", "network");
            s["linux"]!.AsObject().Remove("maskedPaths");
            s["linux"]!.AsObject().Remove("readonlyPaths");
            s["root"]!["readonly"] = false;
            s["mounts"] = new JsonArray(new JsonObject { ["destination"] = "/proc", ["type"] = "proc", ["source"] = "proc" });
        });
        int OurMounts() => File.ReadAllLines("/proc/self/mountinfo").Count(l => l.Contains(bundle.Path, StringComparison.Ordinal));
        var before = OurMounts();
        var lines = (await RunOk(bundle)).Split('\n');
        Assert.Equal(HostNs("mnt"), lines[0]);
        Assert.Equal("/bin/busybox", lines[1]); // the rootfs is the root
        Assert.Equal("proc-mounted", lines[2]);
        Assert.Equal(before, OurMounts());
    }

    // As runc: masking or a read-only root without a mount namespace would change the host's mounts.
    [Fact(Timeout = 120_000)]
    public async Task Without_a_mount_namespace_masked_paths_are_refused_as_runc_refuses_them()
    {
        using var bundle = Shell("true");
        bundle.Edit(s => s["linux"]!["namespaces"] = Namespaces("pid", "uts"));
        Assert.Contains("need a mount namespace", await RunFails(bundle), StringComparison.Ordinal);
        var (code, _, _) = await ReferenceRunc("run", "--bundle", bundle.Path, "nomnt-ref");
        Assert.NotEqual(0, code);
    }

    // config-linux.md#user-namespace-mappings: "The runtime SHOULD NOT modify the ownership of
    // referenced filesystems to realize the mapping."
    [Fact(Timeout = 120_000)]
    public async Task User_namespace_maps_ids_without_changing_file_ownership()
    {
        using var bundle = Shell("cat /proc/self/uid_map /proc/self/gid_map | tr -s ' ' | sed 's/^ //'");
        File.SetUnixFileMode(bundle.Path, (UnixFileMode)0x1ED);
        bundle.Edit(s =>
        {
            s["linux"]!["namespaces"]!.AsArray().Add(new JsonObject { ["type"] = "user" });
            s["linux"]!["uidMappings"] = new JsonArray(new JsonObject { ["containerID"] = 0, ["hostID"] = 200000, ["size"] = 65536 });
            s["linux"]!["gidMappings"] = new JsonArray(new JsonObject { ["containerID"] = 0, ["hostID"] = 300000, ["size"] = 65536 });
        });
        Assert.Equal(["0 200000 65536", "0 300000 65536"], (await RunOk(bundle)).Split('\n'));
        var busybox = new FileInfo(Path.Combine(bundle.Rootfs, "bin", "busybox"));
        Assert.Equal(0, StatUid(busybox.FullName));
    }

    private static int StatUid(string path)
    {
        using var stat = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("stat", ["-c", "%u", path]) { RedirectStandardOutput = true })!;
        var text = stat.StandardOutput.ReadToEnd().Trim();
        stat.WaitForExit();
        return int.Parse(text, System.Globalization.CultureInfo.InvariantCulture);
    }

    // config-linux.md#devices: "devices (array of objects, OPTIONAL) lists devices that MUST be
    // available in the container", type "c, b, u or p"; major/minor "REQUIRED unless type is p".
    // A fifo (issue #16 class 4) is made, but not written to devices.allow, which refuses it: runc
    // skips fifos in the cgroup rules too.
    [Fact(Timeout = 120_000)]
    public async Task Devices_MUST_be_available_including_a_fifo()
    {
        using var bundle = Shell("stat -c '%F %t:%T %u:%g %a' /dev/mynull /dev/myfifo; grep -c '^p' /sys/fs/cgroup/devices/devices.list || true");
        bundle.Edit(s => s["linux"]!["devices"] = new JsonArray(
            new JsonObject { ["path"] = "/dev/mynull", ["type"] = "c", ["major"] = 1, ["minor"] = 3, ["fileMode"] = 432, ["uid"] = 7, ["gid"] = 8 },
            new JsonObject { ["path"] = "/dev/myfifo", ["type"] = "p", ["fileMode"] = 420 }));
        var lines = (await RunOk(bundle)).Split('\n');
        Assert.Equal("character special file 1:3 7:8 660", lines[0]);
        Assert.Equal("fifo 0:0 0:0 644", lines[1]);
        Assert.Equal("0", lines[2]);
    }

    // config-linux.md#devices: path: "If a file already exists at path that does not match the
    // requested device, the runtime MUST generate an error." One that matches is left as it is.
    [Fact(Timeout = 120_000)]
    public async Task A_file_at_a_device_path_that_does_not_match_MUST_be_an_error()
    {
        using var mismatch = Shell("true");
        mismatch.Edit(s => s["linux"]!["devices"] = new JsonArray(new JsonObject { ["path"] = "/dev/null", ["type"] = "c", ["major"] = 1, ["minor"] = 5 }));
        Assert.Contains("is not that device", await RunFails(mismatch, "dev-mismatch"), StringComparison.Ordinal);

        var hostMode = File.GetUnixFileMode("/dev/null");
        using var match = Shell("stat -c %t:%T /dev/null");
        match.Edit(s => s["linux"]!["devices"] = new JsonArray(new JsonObject { ["path"] = "/dev/null", ["type"] = "c", ["major"] = 1, ["minor"] = 3, ["fileMode"] = 384 }));
        Assert.Equal("1:3", await RunOk(match, "dev-match"));
        Assert.Equal(hostMode, File.GetUnixFileMode("/dev/null")); // the host's node (bound in) is not chmod'ed
    }

    // config-linux.md#default-devices: "the runtime MUST also supply: /dev/null, /dev/zero, /dev/full,
    // /dev/random, /dev/urandom, /dev/tty, /dev/console (if terminal is enabled: the pseudoterminal
    // slave bind-mounted), /dev/ptmx (a bind-mount or symlink of the container's /dev/pts/ptmx)".
    [Fact(Timeout = 120_000)]
    public async Task Default_devices_MUST_be_supplied()
    {
        using var bundle = Shell("for d in null zero full random urandom tty; do stat -c '%n %F %t:%T' /dev/$d; done; readlink /dev/ptmx; stat -c %t:%T /dev/console $(tty)");
        bundle.Edit(s => s["process"]!["terminal"] = true);
        var lines = (await RunOk(bundle)).Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
        Assert.Equal(
            ["/dev/null character special file 1:3", "/dev/zero character special file 1:5", "/dev/full character special file 1:7",
             "/dev/random character special file 1:8", "/dev/urandom character special file 1:9", "/dev/tty character special file 5:0"],
            lines[..6]);
        Assert.Equal("pts/ptmx", lines[6]);
        Assert.Equal(lines[8], lines[7]); // /dev/console is the terminal
    }

    // config-linux.md#cgroups-path: "In the case of an absolute path (starting with /), the runtime
    // MUST take the path to be relative to the cgroups mount point." "The cgroups will be created if
    // they don't exist."
    [Fact(Timeout = 120_000)]
    public async Task An_absolute_cgroups_path_is_relative_to_the_cgroup_mount_point()
    {
        using var bundle = OciBundle.CreateBusybox("sleep", "30");
        bundle.Edit(s => s["linux"]!["cgroupsPath"] = "/orch-conformance/cg-1");
        Assert.Equal(0, (await Runc("create", "--bundle", bundle.Path, "cg")).Code);
        var pid = (int)JsonNode.Parse((await Runc("state", "cg")).Stdout)!["pid"]!;
        Assert.Contains(pid.ToString(System.Globalization.CultureInfo.InvariantCulture), await File.ReadAllLinesAsync("/sys/fs/cgroup/pids/orch-conformance/cg-1/cgroup.procs"));
        Assert.Equal(0, (await Runc("delete", "--force", "cg")).Code);
        Assert.False(Directory.Exists("/sys/fs/cgroup/pids/orch-conformance/cg-1"));
        Directory.Delete("/sys/fs/cgroup/pids/orch-conformance"); // the parent is not the runtime's to remove, but it is this test's
        foreach (var controller in Directory.GetDirectories("/sys/fs/cgroup"))
        {
            if (Directory.Exists(Path.Combine(controller, "orch-conformance")))
            {
                Directory.Delete(Path.Combine(controller, "orch-conformance"));
            }
        }
    }

    // config-linux.md#cgroups-path: "Runtimes MAY consider certain cgroupsPath values to be invalid,
    // and MUST generate an error if this is the case." (A systemd slice path: this runtime manages cgroupfs paths.)
    [Fact(Timeout = 120_000)]
    public async Task An_invalid_cgroups_path_MUST_be_an_error()
    {
        using var bundle = Shell("true");
        bundle.Edit(s => s["linux"]!["cgroupsPath"] = "system.slice:orch:x");
        Assert.Contains("linux.cgroupsPath", await RunFails(bundle), StringComparison.Ordinal);
    }

    // config-linux.md#device-allowlist: "The runtime MUST apply entries in the listed order."
    [Theory(Timeout = 120_000)]
    [InlineData(true, "1")]
    [InlineData(false, "0")]
    public async Task Device_rules_MUST_be_applied_in_the_listed_order(bool denyFirst, string expected)
    {
        using var bundle = Shell("grep -c '^c 10:229 rw$' /sys/fs/cgroup/devices/devices.list || true");
        var deny = new JsonObject { ["allow"] = false, ["access"] = "rwm" };
        var allow = new JsonObject { ["allow"] = true, ["type"] = "c", ["major"] = 10, ["minor"] = 229, ["access"] = "rw" };
        bundle.Edit(s => s["linux"]!["resources"]!["devices"] = denyFirst ? new JsonArray(deny, allow) : new JsonArray(allow, deny));
        Assert.Equal(expected, await RunOk(bundle));
    }

    // config-linux.md#memory, #cpu, #pids: the values are written to the container's cgroup.
    [Fact(Timeout = 120_000)]
    public async Task Memory_cpu_and_pids_values_are_applied()
    {
        using var bundle = Shell("cd /sys/fs/cgroup; cat memory/memory.limit_in_bytes memory/memory.soft_limit_in_bytes memory/memory.memsw.limit_in_bytes memory/memory.swappiness; grep oom_kill_disable memory/memory.oom_control; cat cpu/cpu.shares cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us cpu/cpu.rt_period_us cpuset/cpuset.cpus cpuset/cpuset.mems pids/pids.max");
        if (!File.Exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"))
        {
            Assert.Skip("this kernel has no swap accounting (memory.memsw.*)");
        }
        bundle.Edit(s => s["linux"]!["resources"] = JsonNode.Parse("""
            {"devices":[{"allow":false,"access":"rwm"}],
             "memory":{"limit":67108864,"reservation":33554432,"swap":134217728,"swappiness":10,"disableOOMKiller":true,"kernel":-1},
             "cpu":{"shares":512,"quota":50000,"period":100000,"realtimePeriod":500000,"cpus":"0","mems":"0"},
             "pids":{"limit":42}}
            """));
        Assert.Equal(["67108864", "33554432", "134217728", "10", "oom_kill_disable 1", "512", "50000", "100000", "500000", "0", "0", "42"], (await RunOk(bundle)).Split('\n'));
    }

    // config-linux.md#block-io: "weight (uint16, OPTIONAL) - specifies per-cgroup weight." Docker
    // always sends {"weight": 0} (issue #16 class 10): 0 means unset, as in runc, and must start.
    [Fact(Timeout = 120_000)]
    public async Task BlockIO_weight_zero_as_docker_sends_it_starts_as_with_runc()
    {
        using var bundle = Shell("echo started");
        bundle.Edit(s => s["linux"]!["resources"]!["blockIO"] = new JsonObject { ["weight"] = 0 });
        Assert.Equal("started", await RunOk(bundle));
        var (code, stdout, stderr) = await ReferenceRunc("run", "--bundle", bundle.Path, "blkio0-ref");
        Assert.True(code == 0, stderr);
        Assert.Equal("started", stdout);
    }

    private static bool HasBlkioWeight => File.Exists("/sys/fs/cgroup/blkio/blkio.weight") || File.Exists("/sys/fs/cgroup/blkio/blkio.bfq.weight");

    // config-linux.md#block-io: weight applied where the kernel has a proportional I/O scheduler.
    [Fact(Timeout = 120_000)]
    public async Task BlockIO_weight_is_applied_where_the_kernel_has_a_weight_file()
    {
        if (!HasBlkioWeight)
        {
            Assert.Skip("this kernel's blkio controller has no weight file (no BFQ or CFQ scheduler: blkio.weight and blkio.bfq.weight are missing); BlockIO_weight_without_a_weight_file_fails_as_runc_does covers this host");
        }
        using var bundle = Shell("cat /sys/fs/cgroup/blkio/blkio.bfq.weight 2>/dev/null || cat /sys/fs/cgroup/blkio/blkio.weight");
        bundle.Edit(s => s["linux"]!["resources"]!["blockIO"] = new JsonObject { ["weight"] = 300 });
        Assert.Contains("300", await RunOk(bundle), StringComparison.Ordinal);
    }

    // Where the kernel cannot weigh I/O, runc 1.1 fails the container: so does orch-runc, naming the field.
    [Fact(Timeout = 120_000)]
    public async Task BlockIO_weight_without_a_weight_file_fails_as_runc_does()
    {
        if (HasBlkioWeight)
        {
            Assert.Skip("this kernel has a blkio weight file; BlockIO_weight_is_applied_where_the_kernel_has_a_weight_file covers it");
        }
        using var bundle = Shell("true");
        bundle.Edit(s => s["linux"]!["resources"]!["blockIO"] = new JsonObject { ["weight"] = 300 });
        Assert.Contains("linux.resources.blockIO.weight", await RunFails(bundle), StringComparison.Ordinal);
        Assert.NotEqual(0, (await ReferenceRunc("run", "--bundle", bundle.Path, "blkio-ref")).Code);
    }

    // config-linux.md#block-io: throttleReadBpsDevice ... "bandwidth rate limit in bytes per second for the device".
    [Fact(Timeout = 120_000)]
    public async Task BlockIO_throttles_are_applied()
    {
        var disk = Directory.Exists("/sys/block") ? Directory.GetDirectories("/sys/block").Select(Path.GetFileName)
            .FirstOrDefault(n => n is not null && !n.StartsWith("loop", StringComparison.Ordinal) && !n.StartsWith("ram", StringComparison.Ordinal) && !n.StartsWith("zram", StringComparison.Ordinal)) : null;
        if (disk is null || !File.Exists("/sys/fs/cgroup/blkio/blkio.throttle.read_bps_device"))
        {
            Assert.Skip("no block device or no blkio throttle files on this host");
        }
        var numbers = (await File.ReadAllTextAsync($"/sys/block/{disk}/dev")).Trim().Split(':');
        using var bundle = Shell("cat /sys/fs/cgroup/blkio/blkio.throttle.read_bps_device /sys/fs/cgroup/blkio/blkio.throttle.write_iops_device");
        bundle.Edit(s => s["linux"]!["resources"]!["blockIO"] = JsonNode.Parse($$"""
            {"weight":0,
             "throttleReadBpsDevice":[{"major":{{numbers[0]}},"minor":{{numbers[1]}},"rate":1048576}],
             "throttleWriteIOPSDevice":[{"major":{{numbers[0]}},"minor":{{numbers[1]}},"rate":300}]}
            """));
        Assert.Equal([$"{numbers[0]}:{numbers[1]} 1048576", $"{numbers[0]}:{numbers[1]} 300"], (await RunOk(bundle)).Split('\n'));
    }

    // config-linux.md#huge-page-limits: applied where the host has a hugetlb hierarchy for the
    // container's cgroup; here (hybrid cgroups: hugetlb only on the unified mount) runc 1.1 fails
    // the container, and orch-runc fails it the same way.
    [Fact(Timeout = 120_000)]
    public async Task HugepageLimits_are_applied_or_fail_as_runc_does()
    {
        using var bundle = Shell("cat /sys/fs/cgroup/hugetlb/hugetlb.2MB.limit_in_bytes");
        bundle.Edit(s => s["linux"]!["resources"]!["hugepageLimits"] = new JsonArray(new JsonObject { ["pageSize"] = "2MB", ["limit"] = 4194304 }));
        if (!Directory.Exists("/sys/fs/cgroup/hugetlb"))
        {
            Assert.Contains("linux.resources.hugepageLimits", await RunFails(bundle), StringComparison.Ordinal);
            Assert.NotEqual(0, (await ReferenceRunc("run", "--bundle", bundle.Path, "huge-ref")).Code);
            Assert.Skip("no cgroup v1 hugetlb hierarchy on this host: the refusal (as runc's) was checked, the applied limit cannot be");
        }
        Assert.Equal("4194304", await RunOk(bundle));
    }

    // config-linux.md#network: classID and priorities go to net_cls and net_prio; here there is no
    // such hierarchy and runc 1.1 fails the container, as orch-runc does.
    [Fact(Timeout = 120_000)]
    public async Task Network_class_and_priorities_are_applied_or_fail_as_runc_does()
    {
        using var bundle = Shell("cat /sys/fs/cgroup/net_cls/net_cls.classid; grep '^lo ' /sys/fs/cgroup/net_prio/net_prio.ifpriomap");
        bundle.Edit(s => s["linux"]!["resources"]!["network"] = JsonNode.Parse("""{"classID":1048577,"priorities":[{"name":"lo","priority":5}]}"""));
        if (!Directory.Exists("/sys/fs/cgroup/net_cls") || !Directory.Exists("/sys/fs/cgroup/net_prio"))
        {
            Assert.Contains("linux.resources.network", await RunFails(bundle), StringComparison.Ordinal);
            Assert.NotEqual(0, (await ReferenceRunc("run", "--bundle", bundle.Path, "net-ref")).Code);
            Assert.Skip("no net_cls/net_prio hierarchy on this host: the refusal (as runc's) was checked, the applied values cannot be");
        }
        Assert.Equal(["1048577", "lo 5"], (await RunOk(bundle)).Split('\n'));
    }

    // config.md#linux-process apparmorProfile "specifies the name of the AppArmor profile for the
    // process": applied where AppArmor is enabled; without it runc 1.1 fails, and so does orch-runc.
    [Fact(Timeout = 120_000)]
    public async Task AppArmor_profile_is_applied_or_fails_as_runc_does()
    {
        using var bundle = Shell("cat /proc/self/attr/current");
        bundle.Edit(s => s["process"]!["apparmorProfile"] = "unconfined");
        var enabled = File.Exists("/sys/module/apparmor/parameters/enabled") && File.ReadAllText("/sys/module/apparmor/parameters/enabled").Trim() == "Y";
        if (!enabled)
        {
            Assert.Contains("AppArmor is not enabled on this host", await RunFails(bundle), StringComparison.Ordinal);
            Assert.NotEqual(0, (await ReferenceRunc("run", "--bundle", bundle.Path, "aa-ref")).Code);
            Assert.Skip("AppArmor is not enabled on this host: the refusal (as runc's) was checked, a confined process cannot be");
        }
        Assert.Equal("unconfined", await RunOk(bundle));
    }

    // config-linux.md#sysctl: "allows kernel parameters to be modified at runtime for the container".
    [Fact(Timeout = 120_000)]
    public async Task Sysctl_is_set_in_the_container_only()
    {
        var host = (await File.ReadAllTextAsync("/proc/sys/net/ipv4/ip_forward")).Trim();
        using var bundle = Shell("cat /proc/sys/net/ipv4/ip_forward");
        bundle.Edit(s => s["linux"]!["sysctl"] = new JsonObject { ["net.ipv4.ip_forward"] = host == "1" ? "0" : "1" });
        Assert.Equal(host == "1" ? "0" : "1", await RunOk(bundle));
        Assert.Equal(host, (await File.ReadAllTextAsync("/proc/sys/net/ipv4/ip_forward")).Trim());
    }

    // config-linux.md#seccomp, with config.md#linux-process noNewPrivileges false or true (issue #16
    // class 1): the filter is the last thing before execve, so a profile that denies what the runtime
    // itself calls while setting up (setresuid, setgroups, capset, chdir, getcwd, close_range, prctl)
    // still starts the container, as with runc and crun; the filter is in force in the program.
    [Theory(Timeout = 120_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Seccomp_is_installed_after_the_runtime_s_own_setup(bool noNewPrivileges)
    {
        using var bundle = Shell("id -u; grep -E '^(Seccomp|CapEff|CapPrm|NoNewPrivs):' /proc/self/status; cd /tmp 2>/dev/null && echo cd-allowed || echo cd-denied");
        bundle.Edit(s =>
        {
            s["process"]!["noNewPrivileges"] = noNewPrivileges;
            s["process"]!["user"] = new JsonObject { ["uid"] = 1000, ["gid"] = 1000, ["additionalGids"] = new JsonArray(5) };
            s["process"]!["cwd"] = "/tmp";
            s["linux"]!["seccomp"] = JsonNode.Parse(SeccompDeniesRuntimeSetup);
        });
        var output = await RunOk(bundle);
        var fields = StatusFields(output);
        Assert.StartsWith("1000\n", output, StringComparison.Ordinal);
        Assert.Equal("2", fields["Seccomp"]);
        Assert.Equal(noNewPrivileges ? "1" : "0", fields["NoNewPrivs"]);
        Assert.Equal("0000000000000000", fields["CapEff"]); // CAP_SYS_ADMIN, held for the filter, is gone after execve
        Assert.Equal("0000000000000000", fields["CapPrm"]);
        Assert.EndsWith("cd-denied", output, StringComparison.Ordinal); // the filter holds in the program
    }

    // The same as root without noNewPrivileges: the capability sets after execve are the spec's.
    [Fact(Timeout = 120_000)]
    public async Task Seccomp_without_no_new_privs_leaves_the_spec_s_capabilities_to_a_root_process()
    {
        using var bundle = Shell("grep -E '^(Seccomp|CapEff|CapPrm|CapBnd):' /proc/self/status");
        bundle.Edit(s =>
        {
            s["process"]!["noNewPrivileges"] = false;
            s["linux"]!["seccomp"] = JsonNode.Parse(SeccompDeniesRuntimeSetup);
        });
        var fields = StatusFields(await RunOk(bundle));
        Assert.Equal("2", fields["Seccomp"]);
        Assert.Equal("0000000020000420", fields["CapEff"]);
        Assert.Equal("0000000020000420", fields["CapPrm"]);
        Assert.Equal("0000000020000420", fields["CapBnd"]);
    }

    // config-linux.md#seccomp: a rule's action with its errnoRet, and the default action.
    [Fact(Timeout = 120_000)]
    public async Task Seccomp_rules_and_default_action_apply()
    {
        using var bundle = Shell("mkdir /tmp/x 2>&1; echo done");
        bundle.Edit(s =>
        {
            s["root"]!["readonly"] = false;
            s["linux"]!["seccomp"] = JsonNode.Parse("""
                {"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}
                """);
        });
        Assert.Equal(["mkdir: can't create directory '/tmp/x': Permission denied", "done"], (await RunOk(bundle)).Split('\n'));
    }

    // config-linux.md#rootfs-mount-propagation: "rootfsPropagation (string, OPTIONAL) sets the rootfs's
    // mount propagation. Its value is either slave, private, shared or unbindable." (issue #16 class
    // 6: shared was refused.) The container's / carries it, as mountinfo's optional fields show.
    [Theory(Timeout = 120_000)]
    [InlineData("shared", "shared:")]
    [InlineData("rshared", "shared:")]
    [InlineData("slave", "master:")]
    [InlineData("unbindable", "unbindable")]
    [InlineData("private", "")]
    public async Task RootfsPropagation_is_set_on_the_container_s_root(string propagation, string expected)
    {
        using var bundle = Shell("awk '$5 == \"/\" { for (i = 7; $i != \"-\"; i++) printf \"%s \", $i; print \"\" }' /proc/self/mountinfo");
        bundle.Edit(s => s["linux"]!["rootfsPropagation"] = propagation);
        if (expected == "master:" && !HostMountIsShared(bundle.Rootfs))
        {
            // A slave of a private mount has no master: the host's mount holding the bundle is private here.
            expected = "";
        }
        var fields = (await RunOk(bundle)).Trim();
        if (expected.Length == 0)
        {
            Assert.Equal("", fields);
        }
        else
        {
            Assert.Contains(expected, fields, StringComparison.Ordinal);
        }
    }

    /// <summary>Whether the host mount that holds <paramref name="path"/> propagates (has a peer group).</summary>
    private static bool HostMountIsShared(string path)
    {
        var best = "";
        var shared = false;
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            var fields = line.Split(' ');
            var mountPoint = fields[4];
            if ((path == mountPoint || path.StartsWith(mountPoint.TrimEnd('/') + "/", StringComparison.Ordinal)) && mountPoint.Length >= best.Length)
            {
                best = mountPoint;
                shared = fields[6..Array.IndexOf(fields, "-")].Any(f => f.StartsWith("shared:", StringComparison.Ordinal));
            }
        }
        return shared;
    }

    // config-linux.md#masked-paths: "will mask over the provided paths inside the container so that
    // they cannot be read"; #readonly-paths: "will set the provided paths as readonly".
    [Fact(Timeout = 120_000)]
    public async Task Masked_paths_cannot_be_read_and_readonly_paths_cannot_be_written()
    {
        // /proc/keys and /sys/firmware exist on every kernel this runs on (kcore may not).
        using var bundle = Shell("wc -c < /proc/keys; ls /sys/firmware | wc -l; echo x > /proc/sys/kernel/domainname 2>/dev/null && echo wrote || echo denied");
        bundle.Edit(s =>
        {
            s["linux"]!["maskedPaths"] = new JsonArray("/proc/keys", "/sys/firmware", "/no/such/path");
            s["linux"]!["readonlyPaths"] = new JsonArray("/proc/sys", "/no/such/path");
        });
        Assert.Equal(["0", "0", "denied"], (await RunOk(bundle)).Split('\n').Select(l => l.Trim()));
    }

    // config.md#linux-process capabilities, ambient as `runc spec` writes it: without the matching
    // inheritable capabilities (issue #16 class 9). runc 1.1 raises an ambient capability only where
    // permitted and inheritable allow it and otherwise skips it; orch-runc does the same and warns.
    [Fact(Timeout = 120_000)]
    public async Task Ambient_capabilities_without_inheritable_are_skipped_as_runc_does()
    {
        using var bundle = Shell("grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status");
        bundle.Edit(s => s["process"]!["capabilities"]!["ambient"] = new JsonArray("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"));
        var (code, stdout, stderr) = await Runc("run", "--bundle", bundle.Path, "amb");
        Assert.True(code == 0, stderr);
        Assert.Contains("warning: process.capabilities.ambient: CAP_KILL was not raised", stderr, StringComparison.Ordinal);
        var ours = StatusFields(stdout);
        Assert.Equal("0000000000000000", ours["CapAmb"]);
        var (refCode, reference, refError) = await ReferenceRunc("run", "--bundle", bundle.Path, "amb-ref");
        Assert.True(refCode == 0, refError);
        Assert.Equal(StatusFields(reference), ours);
    }
}

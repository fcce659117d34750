using System.Text.Json;
using Orchestrator.Api.Workloads;
using Orchestrator.Linux;
using Orchestrator.Node.Reconcile;
using Orchestrator.Runtime.Spec;

namespace Orchestrator.Node.Tests;

/// <summary>
/// Device mapping on its own: the globs (as a shell matches them), the node policy that allows
/// devices, how a workload's paths and globs resolve against device nodes this test makes with
/// mknod in a temp directory (aliases of /dev/null and /dev/zero: never the machine's hardware),
/// the spec's device entries and cgroup rules, the node's hw.* labels, and the groups' wire form.
/// </summary>
[Trait("Category", "Privileged")]
public sealed class DeviceMappingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-dev-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A character device node (1:3 is null, 1:5 zero) at a path under the temp dir.</summary>
    private string Node(string relative, int minor = 3, uint mode = 0x1B0 /* 0660 */)
    {
        var path = Path.Combine(_dir, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        Assert.True(Libc.mknod(path, 0x2000 | mode, Libc.makedev(1, (ulong)minor)) == 0, $"mknod {path}: errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()} (this test needs root)");
        Assert.Equal(0, Libc.lchown(path, 0, 20));
        return path;
    }

    [Theory]
    [InlineData("/dev/ttyUSB*", "/dev/ttyUSB0", true)]
    [InlineData("/dev/ttyUSB*", "/dev/ttyUSB", true)]
    [InlineData("/dev/ttyUSB*", "/dev/ttyACM0", false)]
    [InlineData("/dev/ttyUSB*", "/dev/ttyUSB0/x", false)]
    [InlineData("/dev/*", "/dev/serial/by-id/x", false)]
    [InlineData("/dev/serial/by-id/*", "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0", true)]
    [InlineData("/dev/video[0-3]", "/dev/video2", true)]
    [InlineData("/dev/video[0-3]", "/dev/video4", false)]
    [InlineData("/dev/video[!0]", "/dev/video0", false)]
    [InlineData("/dev/video[!0]", "/dev/video1", true)]
    [InlineData("/dev/i2c-?", "/dev/i2c-1", true)]
    [InlineData("/dev/i2c-?", "/dev/i2c-10", false)]
    [InlineData("/dev/a.b", "/dev/aXb", false)]
    [InlineData("/dev/ttyUSB0", "/dev/ttyUSB0", true)]
    public void Globs_match_as_a_shell_matches_within_one_path_component(string pattern, string path, bool matches)
        => Assert.Equal(matches, DeviceGlob.Matches(pattern, path));

    [Fact]
    public void The_policy_allows_a_glob_only_through_a_pattern_that_covers_it_and_a_link_by_its_own_path_or_its_node()
    {
        var usb0 = Node("ttyUSB0");
        var byId = Path.Combine(_dir, "serial", "by-id", "usb-FTDI-if00-port0");
        Directory.CreateDirectory(Path.GetDirectoryName(byId)!);
        File.CreateSymbolicLink(byId, "../../ttyUSB0");
        var policy = new NodePolicy { Devices = [$"{_dir}/ttyUSB*"] };
        Assert.True(policy.DeviceAllowed(usb0));
        Assert.True(policy.DeviceAllowed($"{_dir}/ttyUSB*"));
        Assert.True(policy.DeviceAllowed(byId)); // it links to ttyUSB0, which is allowed
        Assert.False(policy.DeviceAllowed($"{_dir}/serial/by-id/*")); // a glob is judged as written
        Assert.False(policy.DeviceAllowed($"{_dir}/tty*")); // wider than the policy's
        Assert.False(policy.DeviceAllowed("/dev/sda"));
        Assert.False(new NodePolicy().DeviceAllowed(usb0)); // none by default
        Assert.True(new NodePolicy { Devices = ["*"] }.DeviceAllowed("/dev/sda"));

        var w = new Workload { Name = "gw", Image = "x", Devices = [new DeviceMapping { HostPath = "/dev/sda" }, new DeviceMapping { HostPath = $"{_dir}/ttyUSB*" }], DeviceCgroupRules = ["c 188:* rwm"] };
        var refusals = policy.Refusals(w);
        Assert.Equal(2, refusals.Count);
        Assert.Equal($"devices[0].hostPath: '/dev/sda' is not a device this node allows (policy.devices: {_dir}/ttyUSB*); an operator of the node can add it or a glob of it in orchd.yaml (--allow-device)", refusals[0]);
        Assert.StartsWith("deviceCgroupRules are not allowed on this node (policy.device_cgroup_rules: false)", refusals[1], StringComparison.Ordinal);
        Assert.Empty((policy with { DeviceCgroupRules = true, Devices = ["/dev/sd?", .. policy.Devices] }).Refusals(w));
    }

    [Fact]
    public void Paths_and_globs_resolve_to_the_nodes_there_now_each_where_the_container_sees_it_with_its_access()
    {
        Node("ttyUSB0");
        Node("ttyUSB1", minor: 5);
        Node("ttyACM0");
        File.WriteAllText(Path.Combine(_dir, "ttyUSB-not-a-device"), "x");
        Node("sensor", minor: 5, mode: 0x180 /* 0600 */);
        Directory.CreateDirectory(Path.Combine(_dir, "serial", "by-id"));
        File.CreateSymbolicLink(Path.Combine(_dir, "serial", "by-id", "usb-GPS-if00"), "../../ttyACM0");
        var w = new Workload
        {
            Name = "gw", Image = "x",
            Devices =
            [
                new DeviceMapping { HostPath = $"{_dir}/ttyUSB*", ContainerPath = "/dev/" },
                new DeviceMapping { HostPath = $"{_dir}/serial/by-id/usb-GPS-if00", ContainerPath = "/dev/gps" },
                new DeviceMapping { HostPath = $"{_dir}/sensor", Permissions = "r" },
                new DeviceMapping { HostPath = $"{_dir}/video*" }, // nothing plugged in yet: no error
            ],
        };
        var mapped = HostDevices.Map(w, new NodePolicy { Devices = ["*"] });
        Assert.Equal(
            [("/dev/ttyUSB0", 3L, "rwm"), ("/dev/ttyUSB1", 5L, "rwm"), ("/dev/gps", 3L, "rwm"), ($"{_dir}/sensor", 5L, "r")],
            mapped.Select(d => (d.ContainerPath, d.Node.Minor, d.Access)));
        Assert.All(mapped, d => Assert.Equal(("c", 1L, 20u), (d.Node.Type, d.Node.Major, d.Node.Gid)));
        Assert.Equal(0x180u, mapped[3].Node.FileMode);

        // The spec: a node and a cgroup rule with the workload's access for each, and the cgroup rules asked for.
        w.DeviceCgroupRules = ["c 188:* rwm", "a *:* r"];
        var spec = SpecBuilder.Build(w, new Orchestrator.Images.Oci.ImageConfigFile { Config = new() { Cmd = ["sh"] } }, new ContainerPaths(Path.Combine(_dir, "bundle"), "/nonexistent", _dir, "orch/gw"), mapped);
        Assert.Equal(["/dev/ttyUSB0", "/dev/ttyUSB1", "/dev/gps", $"{_dir}/sensor"], spec.Linux!.Devices!.Select(d => d.Path));
        var rules = spec.Linux.Resources!.Devices!.Select(r => $"{(r.Allow ? "allow" : "deny")} {r.Type ?? "a"} {r.Major?.ToString() ?? "*"}:{r.Minor?.ToString() ?? "*"} {r.Access}").ToList();
        Assert.Equal(["deny a *:* rwm", "allow c 1:3 rwm", "allow c 1:5 rwm", "allow c 1:3 rwm", "allow c 1:5 r", "allow c 188:* rwm", "allow a *:* r"], rules);

        // A path that is not there names itself and the fix; one that is not a device says so; one the policy does not allow is refused.
        var missing = Assert.Throws<SpecException>(() => HostDevices.Map(new Workload { Name = "gw", Devices = [new DeviceMapping { HostPath = $"{_dir}/ttyUSB9" }] }, new NodePolicy { Devices = ["*"] }));
        Assert.Equal($"workload 'gw': device '{_dir}/ttyUSB9' is not on this node; plug it in (the start is retried) or map a glob (/dev/ttyUSB*) that may match nothing", missing.Message);
        var notDevice = Assert.Throws<SpecException>(() => HostDevices.Map(new Workload { Name = "gw", Devices = [new DeviceMapping { HostPath = $"{_dir}/ttyUSB-not-a-device" }] }, new NodePolicy { Devices = ["*"] }));
        Assert.Contains("is not a device node", notDevice.Message, StringComparison.Ordinal);
        Assert.Throws<SpecException>(() => HostDevices.Map(w, new NodePolicy()));

        // Each match of a glob is checked against the policy on its own: a pattern that covers the
        // glob's text but not what it expands to ("[*]" is a literal star) lets nothing through.
        var literal = HostDevices.Map(new Workload { Name = "gw", Devices = [new DeviceMapping { HostPath = $"{_dir}/*" }] }, new NodePolicy { Devices = [$"{_dir}/[*]"] });
        Assert.Empty(literal);
        // A link under an allowed pattern is judged by its own path (only the node's root makes one there).
        File.CreateSymbolicLink(Path.Combine(_dir, "ttyUSB7"), "/dev/null");
        var linked = HostDevices.Map(new Workload { Name = "gw", Devices = [new DeviceMapping { HostPath = $"{_dir}/ttyUSB*" }] }, new NodePolicy { Devices = [$"{_dir}/ttyUSB*"] });
        Assert.Equal([$"{_dir}/ttyUSB0", $"{_dir}/ttyUSB1", $"{_dir}/ttyUSB7"], linked.Select(d => d.ContainerPath));
    }

    [Fact]
    public void A_node_labels_itself_with_the_devices_it_has_its_cpus_and_its_memory_class()
    {
        Node("ttyUSB0");
        Node("ttyACM3");
        Node("video0");
        Node("video1");
        Node("gpiochip0");
        Node("snd/pcmC0D0p");
        File.WriteAllText(Path.Combine(_dir, "ttyUSB-file"), ""); // not a device: not counted
        Directory.CreateDirectory(Path.Combine(_dir, "video9")); // nor a directory
        var meminfo = Path.Combine(_dir, "meminfo");
        File.WriteAllText(meminfo, "MemTotal:         492000 kB\nMemFree: 1 kB\n");
        var labels = HostDevices.Labels(_dir, meminfo);
        Assert.Equal("2", labels["hw.serial"]);
        Assert.Equal("2", labels["hw.video"]);
        Assert.Equal("1", labels["hw.gpio"]);
        Assert.Equal("1", labels["hw.sound"]);
        Assert.False(labels.ContainsKey("hw.i2c")); // none: absent, so a selector on it means "has one"
        Assert.Equal("512Mi", labels["hw.memory"]);
        Assert.Equal(Environment.ProcessorCount.ToString(System.Globalization.CultureInfo.InvariantCulture), labels["hw.cpus"]);
        Assert.All(labels, kv => Assert.Null(LabelSelector.Problem(kv.Key, kv.Value)));

        File.WriteAllText(meminfo, "MemTotal:        8039412 kB\n");
        Assert.Equal("8Gi", HostDevices.MemoryClass(meminfo));
        File.WriteAllText(meminfo, "MemTotal:        1048576 kB\n");
        Assert.Equal("1Gi", HostDevices.MemoryClass(meminfo));
    }

    [Fact]
    public void Groups_are_ids_or_names_and_ids_keep_their_wire_form_as_numbers()
    {
        var old = JsonSerializer.Deserialize("""{"name":"a","image":"x","groups":[20,44]}""", WorkloadJsonContext.Default.Workload)!;
        Assert.Equal(["20", "44"], old.Groups);
        var mixed = new Workload { Name = "a", Image = "x", Groups = ["20", "dialout", "007"] };
        var json = JsonSerializer.Serialize(mixed, WorkloadJsonContext.Default.Workload);
        Assert.Contains("\"groups\": [\n    20,\n    \"dialout\",\n    \"007\"\n  ]", json.ReplaceLineEndings("\n"), StringComparison.Ordinal);
        Assert.Equal(["20", "dialout", "007"], JsonSerializer.Deserialize(json, WorkloadJsonContext.Default.Workload)!.Groups);

        Assert.Null(LinuxSettings.GroupProblem("dialout"));
        Assert.Null(LinuxSettings.GroupProblem("4294967294"));
        Assert.NotNull(LinuxSettings.GroupProblem("4294967295"));
        Assert.NotNull(LinuxSettings.GroupProblem("bad group"));
        Assert.NotNull(LinuxSettings.GroupProblem(""));
        Assert.Equal(("c", 188L, -1L, "rwm"), LinuxSettings.DeviceRule("c 188:* rwm"));
        Assert.Equal(("a", -1L, -1L, "r"), LinuxSettings.DeviceRule("a *:* r"));
        Assert.Null(LinuxSettings.DeviceRule("c 188:* rwx"));
        Assert.Null(LinuxSettings.DeviceRule("c 188:* rrw"));
        Assert.Null(LinuxSettings.DeviceRule("x 1:3 r"));
        Assert.Null(LinuxSettings.DeviceRule("c 99999999999:1 r"));
    }
}

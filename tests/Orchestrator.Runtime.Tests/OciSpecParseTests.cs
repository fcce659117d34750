using System.Text;
using System.Text.Json.Nodes;
using Orchestrator.Runtime.Cli;
using Orchestrator.Runtime.Spec;

namespace Orchestrator.Runtime.Tests;

/// <summary>
/// The OCI runtime spec's requirements that reading config.json alone decides (config.md,
/// config-linux.md) and features.md: no root needed. Each test quotes its section.
/// </summary>
public sealed class OciSpecParseTests
{
    private const string Minimal = """
        {"ociVersion":"1.2.0","process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"},
         "hostname":"h","linux":{"namespaces":[{"type":"mount"},{"type":"pid"},{"type":"uts"}]}}
        """;

    private static RuntimeSpec Parse(string json) => SpecReader.Parse(Encoding.UTF8.GetBytes(json), "/b/config.json");

    private static RuntimeSpec ParseEdited(Action<JsonObject> edit)
    {
        var node = JsonNode.Parse(Minimal)!.AsObject();
        edit(node);
        return Parse(node.ToJsonString());
    }

    private static string Fails(Action<JsonObject> edit) => Assert.Throws<SpecException>(() => ParseEdited(edit)).Message;

    // config.md#extensibility: "Runtimes ... MUST NOT generate an error if they encounter an unknown
    // property. Instead they MUST ignore unknown properties." (issue #16 class 7)
    [Fact]
    public void Unknown_properties_MUST_be_ignored()
    {
        var spec = ParseEdited(s =>
        {
            s["somethingNew"] = new JsonObject { ["deep"] = new JsonArray(1, "two", null) };
            s["process"]!["frobnicate"] = 1;
            s["process"]!["user"] = new JsonObject { ["uid"] = 5, ["gid"] = 6, ["username"] = "windows-only" };
            s["root"]!["future"] = true;
            s["linux"]!["future"] = "x";
            s["linux"]!["namespaces"]![0]!["future"] = 1;
            s["linux"]!["resources"] = new JsonObject { ["pids"] = new JsonObject { ["limit"] = 3, ["future"] = 1 }, ["futureController"] = new JsonObject() };
            s["hooks"] = new JsonObject { ["futureHookPoint"] = new JsonArray(), ["poststop"] = new JsonArray(new JsonObject { ["path"] = "/x", ["future"] = 1 }) };
        });
        Assert.Equal(5u, spec.Process!.User.Uid);
        Assert.Equal(3, spec.Linux!.Resources!.Pids!.Limit);
        Assert.Equal("/x", spec.Hooks!.Poststop![0].Path);
    }

    // config.md#annotations: "MUST NOT generate an error if they encounter an unknown annotation key."
    [Fact]
    public void Unknown_annotation_keys_are_no_error()
        => Assert.Equal("v", ParseEdited(s => s["annotations"] = new JsonObject { ["com.example.never-heard-of"] = "v" }).Annotations!["com.example.never-heard-of"]);

    // config.md#specification-version: ociVersion "MUST be in SemVer v2.0.0 format"; this runtime
    // implements 1.x ("compatible with all runtimes that support any 1.1 or later release").
    [Theory]
    [InlineData("1.0.2", null)]
    [InlineData("1.0.2-dev", null)]
    [InlineData("1.2.0+build.5", null)]
    [InlineData("1.0", "is not a SemVer version")]
    [InlineData("v1.0.0", "is not a SemVer version")]
    [InlineData("2.0.0", "is not a 1.x version")]
    public void OciVersion_MUST_be_semver(string version, string? error)
    {
        if (error is null)
        {
            Assert.Equal(version, ParseEdited(s => s["ociVersion"] = version).OciVersion);
        }
        else
        {
            Assert.Contains(error, Fails(s => s["ociVersion"] = version), StringComparison.Ordinal);
        }
    }

    // config.md#root: root is REQUIRED on Linux; config.md#process: cwd "MUST be an absolute path";
    // args "at least one entry is REQUIRED".
    [Fact]
    public void Root_cwd_and_args_are_checked()
    {
        Assert.Contains("root.path: is required", Fails(s => s.Remove("root")), StringComparison.Ordinal);
        // config.md#process: "This property is REQUIRED when start is called" (create needs it here).
        Assert.Contains("process: is required", Fails(s => s.Remove("process")), StringComparison.Ordinal);
        Assert.Contains("process.cwd", Fails(s => s["process"]!["cwd"] = "relative"), StringComparison.Ordinal);
        Assert.Contains("process.args", Fails(s => s["process"]!["args"] = new JsonArray()), StringComparison.Ordinal);
    }

    // config.md#mounts (1.1): a relative destination "MUST be interpreted as relative to "/"".
    [Fact]
    public void A_relative_mount_destination_is_relative_to_root()
        => Assert.Equal("/data/x", ParseEdited(s => s["mounts"] = new JsonArray(new JsonObject { ["destination"] = "data/x", ["type"] = "tmpfs", ["source"] = "tmpfs" })).Mounts[0].Destination);

    // config.md#posix-process: "The runtime MUST generate an error for any values which cannot be
    // mapped to a relevant kernel interface." "If rlimits contains duplicated entries with same
    // type, the runtime MUST generate an error."
    [Fact]
    public void Rlimits_unknown_or_duplicated_MUST_be_an_error()
    {
        Assert.Contains("'RLIMIT_WHATEVER' is not an rlimit", Fails(s => s["process"]!["rlimits"] = new JsonArray(new JsonObject { ["type"] = "RLIMIT_WHATEVER", ["soft"] = 1, ["hard"] = 1 })), StringComparison.Ordinal);
        Assert.Contains("RLIMIT_NOFILE is listed twice", Fails(s => s["process"]!["rlimits"] = new JsonArray(
            new JsonObject { ["type"] = "RLIMIT_NOFILE", ["soft"] = 1, ["hard"] = 1 },
            new JsonObject { ["type"] = "RLIMIT_NOFILE", ["soft"] = 2, ["hard"] = 2 })), StringComparison.Ordinal);
    }

    // config.md#linux-process: capabilities "Any value which cannot be mapped to a relevant kernel
    // interface MUST cause an error."
    [Fact]
    public void An_unknown_capability_MUST_be_an_error()
        => Assert.Contains("'CAP_TELEPORT' is not a capability", Fails(s => s["process"]!["capabilities"] = new JsonObject { ["ambient"] = new JsonArray("CAP_TELEPORT") }), StringComparison.Ordinal);

    // config.md#posix-platform-hooks: path "MUST be absolute"; timeout "If set, timeout MUST be greater than zero."
    [Fact]
    public void Hook_path_MUST_be_absolute_and_timeout_positive()
    {
        Assert.Contains("must be absolute", Fails(s => s["hooks"] = new JsonObject { ["poststart"] = new JsonArray(new JsonObject { ["path"] = "bin/true" }) }), StringComparison.Ordinal);
        Assert.Contains("timeout 0 of '/bin/true' must be greater than zero", Fails(s => s["hooks"] = new JsonObject { ["prestart"] = new JsonArray(new JsonObject { ["path"] = "/bin/true", ["timeout"] = 0 }) }), StringComparison.Ordinal);
    }

    // config.md#valid-values: "MUST generate an error when invalid or unsupported values are
    // encountered." Properties of the spec this runtime does not implement are refused, never ignored.
    [Theory]
    [InlineData("linux", "intelRdt", """{"closID":"x"}""")]
    [InlineData("linux", "personality", """{"domain":"LINUX32"}""")]
    [InlineData("linux", "timeOffsets", """{"monotonic":{"secs":1}}""")]
    [InlineData("linux", "mountLabel", "\"system_u:object_r:x\"")]
    [InlineData("process", "selinuxLabel", "\"system_u:system_r:x\"")]
    [InlineData("process", "ioPriority", """{"class":"IOPRIO_CLASS_RT","priority":1}""")]
    [InlineData("process", "scheduler", """{"policy":"SCHED_FIFO"}""")]
    public void Unsupported_spec_properties_MUST_be_an_error(string parent, string property, string value)
        => Assert.Contains($"{property}: is not supported by this runtime", Fails(s => s[parent]![property] = JsonNode.Parse(value)), StringComparison.Ordinal);

    // config-linux.md#intelrdt: "If no mounted resctrl pseudo-filesystem is available ... the runtime
    // MUST generate an error" (not implemented: always refused); rdma and unified likewise.
    [Fact]
    public void Rdma_and_unified_are_refused()
    {
        Assert.Contains("linux.resources.rdma", Fails(s => s["linux"]!["resources"] = new JsonObject { ["rdma"] = new JsonObject { ["mlx5_1"] = new JsonObject { ["hcaHandles"] = 3 } } }), StringComparison.Ordinal);
        Assert.Contains("linux.resources.unified", Fails(s => s["linux"]!["resources"] = new JsonObject { ["unified"] = new JsonObject { ["io.weight"] = "10" } }), StringComparison.Ordinal);
    }

    // config-linux.md#namespaces: "If a namespaces field contains duplicated namespaces with same
    // type, the runtime MUST generate an error."
    [Fact]
    public void Duplicated_namespaces_MUST_be_an_error()
        => Assert.Contains("'pid' is listed twice", Fails(s => s["linux"]!["namespaces"]!.AsArray().Add(new JsonObject { ["type"] = "pid" })), StringComparison.Ordinal);

    // config.md#hostname: set in the container's UTS namespace; without a new one it would rename
    // the host (runc refuses it too).
    [Fact]
    public void Hostname_without_a_new_uts_namespace_is_an_error()
        => Assert.Contains("hostname: can only be set in a new UTS namespace", Fails(s => s["linux"]!["namespaces"] = new JsonArray(new JsonObject { ["type"] = "mount" })), StringComparison.Ordinal);

    // config-linux.md#rootfs-mount-propagation: "Its value is either slave, private, shared or unbindable." (class 6)
    [Theory]
    [InlineData("shared")]
    [InlineData("rshared")]
    [InlineData("slave")]
    [InlineData("private")]
    [InlineData("unbindable")]
    public void RootfsPropagation_accepts_every_spec_value(string value)
        => Assert.Equal(value, ParseEdited(s => s["linux"]!["rootfsPropagation"] = value).Linux!.RootfsPropagation);

    [Fact]
    public void RootfsPropagation_refuses_other_values()
        => Assert.Contains("'sideways' is not a propagation", Fails(s => s["linux"]!["rootfsPropagation"] = "sideways"), StringComparison.Ordinal);

    // config-linux.md#block-io (class 10): docker's {"weight":0} parses; weightDevice "You MUST
    // specify at least one of weight or leafWeight in a given entry".
    [Fact]
    public void BlockIO_parses_and_weight_device_needs_a_weight()
    {
        Assert.Equal((ushort)0, ParseEdited(s => s["linux"]!["resources"] = new JsonObject { ["blockIO"] = new JsonObject { ["weight"] = 0 } }).Linux!.Resources!.BlockIO!.Weight);
        var spec = ParseEdited(s => s["linux"]!["resources"] = JsonNode.Parse("""
            {"blockIO":{"weight":10,"leafWeight":10,"weightDevice":[{"major":8,"minor":0,"weight":500,"leafWeight":300}],
             "throttleReadBpsDevice":[{"major":8,"minor":0,"rate":600}],"throttleWriteIOPSDevice":[{"major":8,"minor":16,"rate":300}]},
             "hugepageLimits":[{"pageSize":"2MB","limit":209715200}],
             "network":{"classID":1048577,"priorities":[{"name":"eth0","priority":500}]}}
            """));
        var resources = spec.Linux!.Resources!;
        Assert.Equal(300ul, resources.BlockIO!.ThrottleWriteIopsDevice![0].Rate);
        Assert.Equal("2MB", resources.HugepageLimits![0].PageSize);
        Assert.Equal(1048577u, resources.Network!.ClassId);
        Assert.Contains("8:0 needs a weight or a leafWeight", Fails(s => s["linux"]!["resources"] = JsonNode.Parse("""{"blockIO":{"weightDevice":[{"major":8,"minor":0}]}}""")), StringComparison.Ordinal);
    }

    // features.md (issue #16 class 11): what `features` lists is what the runtime does: every hook
    // point, the user namespace, and only mount options, namespaces and seccomp names it accepts.
    [Fact]
    public void Features_are_true()
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        Assert.Equal(0, RuncCli.Run(["features"], stdout, stderr));
        var features = JsonNode.Parse(stdout.ToString())!;
        Assert.Equal(["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"], features["hooks"]!.AsArray().Select(h => (string?)h));
        var namespaces = features["linux"]!["namespaces"]!.AsArray().Select(n => (string)n!).ToArray();
        Assert.Equal(["cgroup", "ipc", "mount", "network", "pid", "user", "uts"], namespaces);
        foreach (var ns in namespaces)
        {
            var spec = ParseEdited(s =>
            {
                s["linux"]!["namespaces"] = new JsonArray([.. new[] { ns, "uts", "mount" }.Distinct().Select(t => (JsonNode)new JsonObject { ["type"] = t })]);
                if (ns == "user")
                {
                    s["linux"]!["uidMappings"] = new JsonArray(new JsonObject { ["containerID"] = 0, ["hostID"] = 100000, ["size"] = 1 });
                    s["linux"]!["gidMappings"] = new JsonArray(new JsonObject { ["containerID"] = 0, ["hostID"] = 100000, ["size"] = 1 });
                }
            });
            Assert.Contains(spec.Linux!.Namespaces!, n => n.Type == ns);
        }
        var options = features["mountOptions"]!.AsArray().Select(o => (string)o!).ToArray();
        Assert.Contains("rbind", options);
        Assert.Contains("rshared", options);
        Assert.All(options, o => Assert.True(MountOptions.IsKnown(o), o));
        Assert.All(features["linux"]!["seccomp"]!["actions"]!.AsArray(), a => Security.SeccompCompiler.Action((string)a!, null));
        var seccomp = new SeccompSpec
        {
            DefaultAction = "SCMP_ACT_ALLOW",
            Architectures = [.. features["linux"]!["seccomp"]!["archs"]!.AsArray().Select(a => (string)a!)],
            Syscalls = [.. features["linux"]!["seccomp"]!["operators"]!.AsArray().Select(o => new SeccompSyscallSpec { Names = ["read"], Action = "SCMP_ACT_ERRNO", Args = [new SeccompArgSpec { Index = 0, Value = 1, Op = (string)o! }] })],
        };
        Assert.NotEmpty(Security.SeccompCompiler.Compile(seccomp, _ => 0, 0xC000003E));
        Assert.Contains("CAP_SYS_ADMIN", features["linux"]!["capabilities"]!.AsArray().Select(c => (string?)c));
        Assert.False((bool)features["linux"]!["cgroup"]!["systemd"]!);
    }
}

using System.Text;
using Orchestrator.Runtime.Spec;

namespace Orchestrator.Runtime.Tests;

public sealed class SpecTests
{
    private const string Minimal = """
        {"ociVersion":"1.2.0","process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"},
         "linux":{"namespaces":[{"type":"mount"},{"type":"pid"}]}}
        """;

    private static RuntimeSpec Parse(string json) => SpecReader.Parse(Encoding.UTF8.GetBytes(json), "/b/config.json");

    private static string Fails(string json) => Assert.Throws<SpecException>(() => Parse(json)).Message;

    [Fact]
    public void Minimal_spec_parses()
    {
        var spec = Parse(Minimal);
        Assert.Equal(["sh"], spec.Process!.Args);
        Assert.Equal("rootfs", spec.Root!.Path);
    }

    [Fact]
    public void Default_spec_round_trips_and_is_valid()
    {
        var json = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(DefaultSpec.Create(), SpecJsonContext.Default.RuntimeSpec);
        var spec = SpecReader.Parse(json, "config.json");
        Assert.Equal(6, spec.Linux!.Namespaces!.Count);
        Assert.True(spec.Process!.NoNewPrivileges);
    }

    [Theory]
    [InlineData("{", "/b/config.json: the document is malformed")]
    [InlineData("""{"ociVersion":"2.0.0","process":{"args":["sh"],"cwd":"/"},"root":{"path":"r"},"linux":{}}""", "/b/config.json: ociVersion: '2.0.0' is not a 1.x version")]
    [InlineData("""{"ociVersion":"1.2.0","process":{"args":[],"cwd":"/"},"root":{"path":"r"},"linux":{}}""", "/b/config.json: process.args: must name the program to run")]
    [InlineData("""{"ociVersion":"1.2.0","process":{"args":["sh"],"cwd":"/"},"linux":{}}""", "/b/config.json: root.path: is required")]
    [InlineData("""{"ociVersion":"1.2.0","process":{"args":["sh"],"cwd":"tmp"},"root":{"path":"r"},"linux":{}}""", "/b/config.json: process.cwd: 'tmp' must be an absolute path")]
    [InlineData("""{"ociVersion":"1.2.0","process":{"args":["sh"],"cwd":"/"},"root":{"path":"r"},"linux":{"namespaces":[{"type":"pidd"}]}}""", "/b/config.json: linux.namespaces: 'pidd' is not a namespace type")]
    [InlineData("""{"ociVersion":"1.2.0","process":{"args":["sh"],"cwd":"/"},"root":{"path":"r"},"linux":{"namespaces":[{"type":"pid"},{"type":"pid"}]}}""", "/b/config.json: linux.namespaces: 'pid' is listed twice")]
    [InlineData("""{"ociVersion":"1.2.0","process":{"args":["sh"],"cwd":"/","capabilities":{"bounding":["CAP_FLY"]}},"root":{"path":"r"},"linux":{}}""", "/b/config.json: process.capabilities: 'CAP_FLY' is not a capability")]
    [InlineData("""{"ociVersion":"1.2.0","process":{"args":["sh"],"cwd":"/","rlimits":[{"type":"RLIMIT_NOFILE","soft":10,"hard":5}]},"root":{"path":"r"},"linux":{}}""", "/b/config.json: process.rlimits: RLIMIT_NOFILE soft limit 10 is above its hard limit 5")]
    [InlineData("""{"ociVersion":"1.2.0","process":{"args":["sh"],"cwd":"/"},"root":{"path":"r"},"linux":{"seccomp":{"defaultAction":"SCMP_ACT_NOTIFY"}}}""", "/b/config.json: linux.seccomp: action 'SCMP_ACT_NOTIFY' is not supported")]
    [InlineData("""{"ociVersion":"1.2.0","process":{"args":["sh"],"cwd":"/"},"root":{"path":"r"},"mounts":[{"destination":"/x","type":"tmpfs","options":["bogus"]}],"linux":{}}""", "/b/config.json: mounts: option 'bogus' of /x is not a mount option")]
    public void Bad_spec_is_one_clear_error(string json, string expectedStart)
        => Assert.StartsWith(expectedStart, Fails(json), StringComparison.Ordinal);

    [Fact]
    public void Mount_options_become_flags_propagation_and_data()
    {
        var (flags, propagation, data) = MountOptions.Parse(["nosuid", "ro", "rw", "rbind", "rslave", "mode=755", "size=1m"]);
        Assert.Equal(Linux.Libc.MS_NOSUID | Linux.Libc.MS_BIND | Linux.Libc.MS_REC, flags);
        Assert.Equal(Linux.Libc.MS_SLAVE | Linux.Libc.MS_REC, propagation);
        Assert.Equal("mode=755,size=1m", data);
    }

    [Fact]
    public void Capability_masks_use_kernel_numbers()
    {
        Assert.Equal((1UL << 5) | (1UL << 10) | (1UL << 29), Capabilities.Mask(["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]));
        Assert.Equal(21, Capabilities.Number("CAP_SYS_ADMIN"));
        Assert.Equal(7, Capabilities.Rlimit("RLIMIT_NOFILE"));
    }
}

using Orchestrator.Runtime.Cgroups;
using Orchestrator.Runtime.Spec;

namespace Orchestrator.Runtime.Tests;

/// <summary>The cgroup drivers against fake cgroupfs trees: the file names and formats of v1 and v2.</summary>
public sealed class CgroupFileTests : IDisposable
{
    private readonly TempDir _tree = new("cgroupfs");

    public void Dispose() => _tree.Dispose();

    private static readonly ResourcesSpec s_resources = new()
    {
        Memory = new MemorySpec { Limit = 64 << 20, Reservation = 32 << 20 },
        Cpu = new CpuSpec { Shares = 512, Quota = 50_000, Period = 100_000 },
        Pids = new PidsSpec { Limit = 64 },
    };

    private string Read(params string[] parts) => File.ReadAllText(_tree.Combine(parts)).Trim();

    [Fact]
    public void V2_is_detected_by_cgroup_controllers_and_writes_unified_files()
    {
        File.WriteAllText(_tree.Combine("cgroup.controllers"), "cpuset cpu io memory pids");
        File.WriteAllText(_tree.Combine("cgroup.subtree_control"), "");
        var cgroup = CgroupFactory.Open("/orchestrator/web-1", _tree.Path);
        cgroup.Create(s_resources);
        Assert.Equal((64 << 20).ToString(System.Globalization.CultureInfo.InvariantCulture), Read("orchestrator", "web-1", "memory.max"));
        Assert.Equal((32 << 20).ToString(System.Globalization.CultureInfo.InvariantCulture), Read("orchestrator", "web-1", "memory.low"));
        Assert.Equal("50000 100000", Read("orchestrator", "web-1", "cpu.max"));
        Assert.Equal("20", Read("orchestrator", "web-1", "cpu.weight"));
        Assert.Equal("64", Read("orchestrator", "web-1", "pids.max"));

        cgroup.Attach(1234);
        Assert.Equal("1234", Read("orchestrator", "web-1", "cgroup.procs"));
        cgroup.Freeze();
        Assert.Equal("1", Read("orchestrator", "web-1", "cgroup.freeze"));
    }

    [Fact]
    public void V2_inside_a_systemd_scope_enables_controllers_only_from_the_scope_down()
    {
        // What systemd made: the root and system.slice, with what it delegated enabled already.
        foreach (var dir in new[] { "", "system.slice", "system.slice/orchestrator-0123456789ab.scope" })
        {
            Directory.CreateDirectory(_tree.Combine(dir));
            File.WriteAllText(_tree.Combine(dir, "cgroup.controllers"), "cpu memory pids");
            File.WriteAllText(_tree.Combine(dir, "cgroup.subtree_control"), dir.EndsWith(".scope", StringComparison.Ordinal) ? "" : "cpu memory pids");
        }
        File.WriteAllText(_tree.Combine("cgroup.subtree_control"), "systemd's");
        File.WriteAllText(_tree.Combine("system.slice", "cgroup.subtree_control"), "systemd's");
        CgroupFactory.Open("/system.slice/orchestrator-0123456789ab.scope/web-1", _tree.Path).Create(s_resources);
        Assert.Equal("systemd's", Read("cgroup.subtree_control"));
        Assert.Equal("systemd's", Read("system.slice", "cgroup.subtree_control"));
        Assert.NotEqual("", Read("system.slice", "orchestrator-0123456789ab.scope", "cgroup.subtree_control")); // the scope is ours
        Assert.Equal("64", Read("system.slice", "orchestrator-0123456789ab.scope", "web-1", "pids.max"));
    }

    [Fact]
    public void V2_enables_only_what_a_level_lacks()
    {
        File.WriteAllText(_tree.Combine("cgroup.controllers"), "cpu memory pids");
        File.WriteAllText(_tree.Combine("cgroup.subtree_control"), "cpu memory pids");
        CgroupFactory.Open("/orchestrator/web-1", _tree.Path).Create(null);
        Assert.Equal("cpu memory pids", Read("cgroup.subtree_control")); // nothing written where all is enabled
        Assert.True(Directory.Exists(_tree.Combine("orchestrator", "web-1")));
    }

    [Fact]
    public void V2_stats_and_oom_kills_come_from_memory_events()
    {
        File.WriteAllText(_tree.Combine("cgroup.controllers"), "memory pids");
        var dir = Directory.CreateDirectory(_tree.Combine("c")).FullName;
        File.WriteAllText(Path.Combine(dir, "memory.current"), "4096\n");
        File.WriteAllText(Path.Combine(dir, "memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
        File.WriteAllText(Path.Combine(dir, "cpu.stat"), "usage_usec 1500\nuser_usec 1000\n");
        File.WriteAllText(Path.Combine(dir, "pids.current"), "2\n");
        var stats = CgroupFactory.Open("/c", _tree.Path).Stats();
        Assert.Equal(new CgroupStats(4096, 0, 1_500_000, 2, 1), stats);
    }

    [Fact]
    public void V1_writes_one_file_per_controller_and_copies_cpuset_down()
    {
        foreach (var controller in new[] { "memory", "cpu", "cpuacct", "cpuset", "pids", "freezer" })
        {
            Directory.CreateDirectory(_tree.Combine(controller));
        }
        File.WriteAllText(_tree.Combine("cpuset", "cpuset.cpus"), "0-1");
        File.WriteAllText(_tree.Combine("cpuset", "cpuset.mems"), "0");
        var cgroup = CgroupFactory.Open("/orchestrator/db", _tree.Path);
        cgroup.Create(s_resources);
        Assert.Equal((64 << 20).ToString(System.Globalization.CultureInfo.InvariantCulture), Read("memory", "orchestrator", "db", "memory.limit_in_bytes"));
        Assert.Equal((32 << 20).ToString(System.Globalization.CultureInfo.InvariantCulture), Read("memory", "orchestrator", "db", "memory.soft_limit_in_bytes"));
        Assert.Equal("512", Read("cpu", "orchestrator", "db", "cpu.shares"));
        Assert.Equal("50000", Read("cpu", "orchestrator", "db", "cpu.cfs_quota_us"));
        Assert.Equal("100000", Read("cpu", "orchestrator", "db", "cpu.cfs_period_us"));
        Assert.Equal("64", Read("pids", "orchestrator", "db", "pids.max"));
        Assert.Equal("0-1", Read("cpuset", "orchestrator", "cpuset.cpus"));
        Assert.Equal("0", Read("cpuset", "orchestrator", "db", "cpuset.mems"));
    }

    [Fact]
    public void V1_swap_without_swap_accounting_is_a_clear_error()
    {
        Directory.CreateDirectory(_tree.Combine("memory"));
        var cgroup = CgroupFactory.Open("/x", _tree.Path);
        var error = Assert.Throws<CgroupException>(() => cgroup.Create(new ResourcesSpec { Memory = new MemorySpec { Limit = 1 << 20, Swap = 2 << 20 } }));
        Assert.Contains("no swap accounting", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(2UL, 1UL)]
    [InlineData(1024UL, 39UL)]
    [InlineData(262144UL, 10000UL)]
    public void Shares_map_to_weights_as_runc_does(ulong shares, ulong weight)
        => Assert.Equal(weight, CgroupV2.SharesToWeight(shares));
}

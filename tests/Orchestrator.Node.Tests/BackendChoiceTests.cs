using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Node.Drivers;
using Orchestrator.Runtime.Cgroups;

namespace Orchestrator.Node.Tests;

/// <summary>The native runtime's checks on fake /proc and cgroup trees, and how RuntimeBackends routes containers.</summary>
public sealed class BackendChoiceTests : IDisposable
{
    private readonly TempDir _dir = new("orch-backends");

    public void Dispose() => _dir.Dispose();

    private string FakeProc(bool overlay = true, string? missingNamespace = null, string? switchedOff = null)
    {
        var proc = _dir.Combine("proc");
        Directory.CreateDirectory(Path.Combine(proc, "self", "ns"));
        foreach (var ns in new[] { "mnt", "pid", "net", "ipc", "uts", "cgroup" }.Where(n => n != missingNamespace))
        {
            File.WriteAllText(Path.Combine(proc, "self", "ns", ns), "");
        }
        Directory.CreateDirectory(Path.Combine(proc, "sys", "user"));
        foreach (var limit in new[] { "max_user_namespaces", "max_mnt_namespaces", "max_pid_namespaces", "max_net_namespaces" })
        {
            File.WriteAllText(Path.Combine(proc, "sys", "user", limit), limit == switchedOff ? "0\n" : "63510\n");
        }
        File.WriteAllText(Path.Combine(proc, "filesystems"), overlay ? "nodev\tproc\nnodev\toverlay\n" : "nodev\tproc\n");
        return proc;
    }

    private string FakeCgroupV1(params string[] controllers)
    {
        var root = _dir.Combine("cgroup-v1");
        foreach (var c in controllers)
        {
            Directory.CreateDirectory(Path.Combine(root, c));
        }
        return root;
    }

    [Fact]
    public void A_host_with_everything_passes()
    {
        Assert.SkipUnless(Environment.IsPrivilegedProcess, "the root check needs root");
        Assert.Empty(NativeChecks.Run(FakeCgroupV1("memory", "cpu", "pids", "freezer"), FakeProc()));
    }

    [Fact]
    public void A_cgroup_v2_hierarchy_is_recognised_by_its_controllers_file()
    {
        Assert.SkipUnless(Environment.IsPrivilegedProcess, "the root check needs root");
        var root = _dir.Combine("cgroup-v2");
        Directory.CreateDirectory(root);
        File.WriteAllText(Path.Combine(root, "cgroup.controllers"), "cpu memory pids\n");
        Assert.Empty(NativeChecks.Run(root, FakeProc()));
    }

    [Fact]
    public void Each_missing_piece_is_one_sentence()
    {
        var failures = NativeChecks.Run(FakeCgroupV1("memory", "cpu"), FakeProc(overlay: false, missingNamespace: "pid", switchedOff: "max_mnt_namespaces"));
        var proc = _dir.Combine("proc");
        Assert.Contains($"the kernel has no pid namespaces ({proc}/self/ns/pid is missing)", failures);
        Assert.Contains($"mount namespaces are switched off ({Path.Combine(proc, "sys", "user", "max_mnt_namespaces")} is 0)", failures);
        Assert.Contains($"cgroup v1 controllers missing at {_dir.Combine("cgroup-v1")}: pids, freezer", failures);
        Assert.Contains("the kernel has no overlayfs (modprobe overlay)", failures);
    }

    [Fact]
    public void No_cgroup_hierarchy_at_all_is_said_so()
    {
        var empty = _dir.Combine("empty");
        Directory.CreateDirectory(empty);
        Assert.Contains($"no cgroup hierarchy at {empty} (neither cgroup v2 nor the v1 controllers memory, cpu, pids, freezer)", NativeChecks.Run(empty, FakeProc()));
    }

    [Fact]
    public void Workloads_go_to_the_backend_they_ask_for_and_stay_with_it()
    {
        var native = new FakeDriver(WorkloadRuntime.Native);
        var containerd = new FakeDriver(WorkloadRuntime.Containerd);
        var backends = new RuntimeBackends(native, "native (auto: its checks pass)", [containerd], new Dictionary<WorkloadRuntime, string>());
        Assert.Equal("native (auto: its checks pass)", backends.Name);

        backends.Start(Config("a"));
        backends.Start(Config("b") with { Runtime = WorkloadRuntime.Containerd });
        Assert.Equal(["a"], native.Running);
        Assert.Equal(["b"], containerd.Running);
        backends.Signal("b", 15, all: false);
        Assert.Equal(["b:15"], containerd.Signals);

        // Moving b to the default backend removes it from containerd first.
        backends.Start(Config("b"));
        Assert.Empty(containerd.Running);
        Assert.Equal(["a", "b"], native.Running.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void A_backend_the_node_lacks_is_a_clear_error_and_a_down_one_hides_nothing_of_the_other()
    {
        var containerd = new FakeDriver(WorkloadRuntime.Containerd);
        var backends = new RuntimeBackends(containerd, "containerd (auto: …)", [], new Dictionary<WorkloadRuntime, string> { [WorkloadRuntime.Native] = "no cgroup hierarchy at /x" });
        var refused = Assert.Throws<InvalidOperationException>(() => backends.Start(Config("web") with { Runtime = WorkloadRuntime.Native }));
        Assert.Equal("workload 'web' asks for runtime native, which is not available on this node (no cgroup hierarchy at /x); drop runtime: from the workload or fix the node", refused.Message);

        var native = new FakeDriver(WorkloadRuntime.Native);
        var down = new FakeDriver(WorkloadRuntime.Containerd) { Down = true };
        var mixed = new RuntimeBackends(native, "native", [down], new Dictionary<WorkloadRuntime, string>());
        native.Start(Config("kept"));
        Assert.Equal(["kept"], mixed.List());
        Assert.NotNull(mixed.Recover("kept"));
        Assert.Null(mixed.Recover("gone"));
        mixed.Destroy("kept");
        Assert.Empty(native.Running);
    }

    private static TaskConfig Config(string id) => new(id, "/bundle", 1, 2);

    private sealed class FakeDriver(WorkloadRuntime backend) : ITaskDriver
    {
        public List<string> Running { get; } = [];
        public List<string> Signals { get; } = [];
        public bool Down { get; init; }
        public string Name => WireNames.Of(backend);
        public WorkloadRuntime Backend => backend;

        private void Check()
        {
            if (Down)
            {
                throw new IOException($"{Name} does not answer");
            }
        }

        public TaskHandle Start(TaskConfig config)
        {
            Check();
            Running.Add(config.Id);
            return new TaskHandle(config.Id, 100, 1, false);
        }

        public TaskHandle? Recover(string id)
        {
            Check();
            return Running.Contains(id) ? new TaskHandle(id, 100, 1, false) : null;
        }

        public void Watch(TaskHandle handle, Action<TaskHandle, TaskExit> exited)
        {
        }

        public void Signal(string id, int signal, bool all) => Signals.Add($"{id}:{signal}");

        public void Destroy(string id)
        {
            Check();
            Running.Remove(id);
        }

        public Task<ExecExit> ExecStreamAsync(string id, IReadOnlyList<string> command, ExecOutputSink output, TimeSpan timeout, CancellationToken cancellationToken)
            => Task.FromResult(new ExecExit(0, false));

        public Task<InteractiveProcess> ExecInteractiveAsync(string id, IReadOnlyList<string> command, InteractiveOptions options, CancellationToken cancellationToken)
            => throw new NotSupportedException("the fake driver runs no processes");

        public CgroupStats? Stats(string id) => null;

        public IReadOnlyList<string> List()
        {
            Check();
            return Running;
        }
    }
}

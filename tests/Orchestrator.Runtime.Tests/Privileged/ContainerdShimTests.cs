namespace Orchestrator.Runtime.Tests.Privileged;

/// <summary>
/// containerd's io.containerd.runc.v2 shim drives orch-runc in place of runc (BinaryName,
/// here through ctr's --runc-binary): the proof that the command line is runc-compatible.
/// </summary>
[Trait("Category", "Privileged")]
public sealed class ContainerdShimTests
{
    [Fact(Timeout = 240_000)]
    public async Task Containerd_runs_a_busybox_container_to_completion_through_orch_runc()
    {
        Requires.Root();
        await using var containerd = await ContainerdServer.StartAsync();
        using var dir = new TempDir("orch-shim");
        var archive = dir.Combine("busybox.tar");
        BusyboxImage.CreateArchive(archive);

        var import = await containerd.Ctr("orch", "image", "import", "--base-name", "docker.io/library/busybox", archive);
        Assert.True(import.Code == 0, $"{import.Stdout}\n{import.Stderr}");
        var images = await containerd.Ctr("orch", "image", "ls", "-q");
        Assert.Contains("docker.io/library/busybox:latest", images.Stdout, StringComparison.Ordinal);

        var run = await containerd.Ctr("orch", "run", "--rm", "--runc-binary", Repo.Binary("orch-runc"),
            "docker.io/library/busybox:latest", "shim-test", "sh", "-c", "echo hello as pid $$ in $(cut -d: -f3 /proc/self/cgroup | head -1); exit 3");
        Assert.True(run.Code == 3, $"exit {run.Code}\nstdout: {run.Stdout}\nstderr: {run.Stderr}\ncontainerd: {containerd.DaemonOutput}");
        // pid 1 of its own pid namespace, at the root of its own cgroup namespace.
        Assert.Equal("hello as pid 1 in /", run.Stdout.Trim());

        // --rm deleted it through orch-runc: nothing is left in containerd or in the cgroups.
        var containers = await containerd.Ctr("orch", "containers", "ls", "-q");
        Assert.Equal("", containers.Stdout.Trim());
        Assert.False(Directory.Exists("/sys/fs/cgroup/pids/orch/shim-test"), "the container's cgroup was removed");
    }
}

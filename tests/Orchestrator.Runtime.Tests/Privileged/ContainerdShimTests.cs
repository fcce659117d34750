namespace Orchestrator.Runtime.Tests.Privileged;

/// <summary>
/// containerd's io.containerd.runc.v2 shim drives orch-runc in place of runc (BinaryName,
/// here through ctr's --runc-binary): the proof that the command line is runc-compatible.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(HostState.Collection)]
public sealed class ContainerdShimTests
{
    [Fact(Timeout = 240_000)]
    public async Task Containerd_runs_a_busybox_container_to_completion_through_orch_runc()
    {
        Requires.Root();
        await using var containerd = await ContainerdServer.StartAsync();
        // The shim keeps runtime state under /run/containerd/runc/<namespace>, outside the temp
        // dir: a namespace of our own keeps runs apart.
        var ns = $"orch-{Guid.NewGuid():N}"[..13];
        using var dir = new TempDir("orch-shim");
        var archive = dir.Combine("busybox.tar");
        BusyboxImage.CreateArchive(archive);

        var import = await containerd.Ctr(ns, "image", "import", "--base-name", "docker.io/library/busybox", archive);
        Assert.True(import.Code == 0, $"{import.Stdout}\n{import.Stderr}");
        var images = await containerd.Ctr(ns, "image", "ls", "-q");
        Assert.Contains("docker.io/library/busybox:latest", images.Stdout, StringComparison.Ordinal);

        var run = await containerd.Ctr(ns, "run", "--rm", "--runc-binary", Repo.Binary("orch-runc"),
            "docker.io/library/busybox:latest", "shim-test", "sh", "-c", "echo hello as pid $$ in $(cut -d: -f3 /proc/self/cgroup | head -1); exit 3");
        Assert.True(run.Code == 3, $"exit {run.Code}\nstdout: {run.Stdout}\nstderr: {run.Stderr}\ncontainerd: {containerd.DaemonOutput}");
        // pid 1 of its own pid namespace, at the root of its own cgroup namespace.
        Assert.Equal("hello as pid 1 in /", run.Stdout.Trim());

        // --rm deleted it through orch-runc: nothing is left in containerd or in the cgroups.
        var containers = await containerd.Ctr(ns, "containers", "ls", "-q");
        Assert.Equal("", containers.Stdout.Trim());
        Assert.False(Directory.Exists($"/sys/fs/cgroup/pids/{ns}/shim-test"), "the container's cgroup was removed");

        // -t: the shim hands orch-runc a --console-socket and takes the pty master from it.
        // ctr wants a terminal of its own: script(1) gives it one.
        var script = Requires.Program("script", "bsdutils");
        var ctr = Requires.Program("ctr", "containerd");
        var tty = DaemonProcess.Start(script, ["-qec",
            $"{ctr} --address {containerd.Socket} --namespace {ns} run --rm -t --runc-binary {Repo.Binary("orch-runc")} docker.io/library/busybox:latest tty-test sh -c 'tty; exit 4'",
            "/dev/null"]);
        var ttyCode = await tty.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.True(ttyCode == 4, $"exit {ttyCode}\n{tty.Output}\ncontainerd: {containerd.DaemonOutput}");
        Assert.Contains("/dev/pts/0", tty.Output, StringComparison.Ordinal);
        await tty.DisposeAsync();
    }
}

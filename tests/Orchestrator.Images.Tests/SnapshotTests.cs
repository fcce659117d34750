using System.Text.Json.Nodes;
using Orchestrator.Images.Snapshots;
using Orchestrator.Images.Store;

namespace Orchestrator.Images.Tests;

/// <summary>An imported image becomes a rootfs (overlay, or the copy fallback) that the runtime really runs.</summary>
[Trait("Category", "Privileged")]
public sealed class SnapshotTests : IDisposable
{
    private readonly TempDir _dir = new("snapshots");

    public SnapshotTests() => Requires.Root();

    public void Dispose() => _dir.Dispose();

    [Theory(Timeout = 120_000)]
    [InlineData(false, "overlay")]
    [InlineData(true, "copy")]
    public async Task An_image_rootfs_runs_in_the_runtime_and_writes_stay_with_the_container(bool forceCopy, string mode)
    {
        var images = new ImageStore(_dir.Combine("images"));
        var image = BusyboxImage.CreateLayout(_dir.Combine("layout"));
        await images.ImportLayoutAsync(_dir.Combine("layout"), "busybox:run");
        var snapshots = new SnapshotStore(images, _dir.Combine("snapshots"), forceCopy);
        var rootfs = await snapshots.PrepareAsync("busybox:run", "c1");
        Assert.Equal(mode, snapshots.LastMode);

        // A bundle whose root is the snapshot; writable, so the container can leave a file.
        using var bundle = OciBundle.CreateBusybox("sh", "-c", "echo from-the-image > /written; cat /etc/hostname");
        bundle.Edit(s => s["root"] = new JsonObject { ["path"] = rootfs, ["readonly"] = false });
        var run = DaemonProcess.Start(Repo.Binary("orch-runc"), ["--root", _dir.Combine("runc"), "run", "--bundle", bundle.Path, $"snap-{mode}"]);
        Assert.True(await run.WaitForExitAsync(TimeSpan.FromSeconds(60)) == 0, run.Output);
        Assert.Equal("busybox", run.Stdout.Single());
        Assert.True(File.Exists(Path.Combine(rootfs, "written")));
        if (mode == "overlay")
        {
            // The write went to the container's upper dir; the shared layer is untouched.
            Assert.True(File.Exists(_dir.Combine("snapshots", "containers", "c1", "upper", "written")));
            Assert.False(File.Exists(_dir.Combine("snapshots", "layers", image.LayerDigest[7..], "written")));
            var second = await snapshots.PrepareAsync("busybox:run", "c2");
            Assert.False(File.Exists(Path.Combine(second, "written")));
            snapshots.Remove("c2");
        }

        // The image may go while a container still stands on its layers: prune keeps them.
        images.Remove("busybox:run");
        Assert.Equal(0, snapshots.Prune());
        Assert.True(File.Exists(Path.Combine(rootfs, "bin", "busybox")));

        snapshots.Remove("c1");
        Assert.False(Directory.Exists(_dir.Combine("snapshots", "containers", "c1")));
        Assert.DoesNotContain(File.ReadAllLines("/proc/self/mountinfo"), l => l.Contains(_dir.Path, StringComparison.Ordinal));
        Assert.Equal(mode == "overlay" ? 1 : 0, snapshots.Prune());
    }

    [Fact(Timeout = 120_000)]
    public async Task A_layer_that_would_fill_the_disk_is_refused_before_it_does()
    {
        // The snapshots on a 96 MiB file system: the reserve (64 MiB) leaves about 32 MiB for
        // layers. busybox fits; a layer of 48 MiB of zeros (a few hundred KB compressed) does not.
        var small = _dir.Combine("small");
        Directory.CreateDirectory(small);
        await using (var mount = DaemonProcess.Start("/bin/mount", ["-t", "tmpfs", "-o", "size=96m", "tmpfs", small]))
        {
            Assert.True(await mount.WaitForExitAsync(TimeSpan.FromSeconds(10)) == 0, mount.Output);
        }
        try
        {
            var images = new ImageStore(_dir.Combine("images"));
            BusyboxImage.CreateLayout(_dir.Combine("fine"));
            await images.ImportLayoutAsync(_dir.Combine("fine"), "busybox:fine");
            BusyboxImage.CreateLayout(_dir.Combine("bomb"), extraFiles: new Dictionary<string, string> { ["bomb"] = new string('\0', 48 << 20) });
            await images.ImportLayoutAsync(_dir.Combine("bomb"), "busybox:bomb");
            var snapshots = new SnapshotStore(images, Path.Combine(small, "snapshots"), forceCopy: true);

            Assert.True(File.Exists(Path.Combine(await snapshots.PrepareAsync("busybox:fine", "fine"), "bin", "busybox")));
            var refused = await Assert.ThrowsAsync<Orchestrator.Images.Unpack.HostileLayerException>(() => snapshots.PrepareAsync("busybox:bomb", "bomb"));
            Assert.Contains("it is refused (disk budget: the space left on the file system less a reserve for logs and state, or what images.disk_budget leaves)", refused.Message, StringComparison.Ordinal);
            Assert.True(new DriveInfo(small).AvailableFreeSpace > 60L << 20, $"the refused layer filled the disk: {new DriveInfo(small).AvailableFreeSpace} bytes left");
            Assert.False(Directory.Exists(Path.Combine(small, "snapshots", "containers", "bomb")), "a refused snapshot was left behind");
            snapshots.Remove("fine");
        }
        finally
        {
            await using var umount = DaemonProcess.Start("/bin/umount", ["-l", small]);
            await umount.WaitForExitAsync(TimeSpan.FromSeconds(10));
        }
    }

    [Fact(Timeout = 120_000)]
    public async Task Unpacked_layers_count_against_the_image_disk_budget()
    {
        // A roomy disk, but a node budget of 24 MiB for images: busybox (about 1 MB packed,
        // 2 MB unpacked) fits; a layer of 48 MiB of zeros is refused at the budget, before it is
        // written, although the file system has the space.
        var images = new ImageStore(_dir.Combine("images"), budgetBytes: 24L << 20);
        BusyboxImage.CreateLayout(_dir.Combine("fine"));
        await images.ImportLayoutAsync(_dir.Combine("fine"), "busybox:fine");
        BusyboxImage.CreateLayout(_dir.Combine("bomb"), extraFiles: new Dictionary<string, string> { ["bomb"] = new string('\0', 48 << 20) });
        await images.ImportLayoutAsync(_dir.Combine("bomb"), "busybox:bomb");
        var snapshots = new SnapshotStore(images, _dir.Combine("snapshots"), forceCopy: true);

        Assert.True(File.Exists(Path.Combine(await snapshots.PrepareAsync("busybox:fine", "fine"), "bin", "busybox")));
        var refused = await Assert.ThrowsAsync<Orchestrator.Images.Unpack.HostileLayerException>(() => snapshots.PrepareAsync("busybox:bomb", "bomb"));
        Assert.Contains("what images.disk_budget leaves", refused.Message, StringComparison.Ordinal);
        Assert.Contains("raise images.disk_budget", refused.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(_dir.Combine("snapshots", "containers", "bomb")), "a refused snapshot was left behind");
        var unpacked = Directory.EnumerateFiles(_dir.Combine("snapshots"), "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        Assert.True(unpacked < 24L << 20, $"the refused layer was written past the budget: {unpacked} bytes under snapshots");
        // A second try is refused the same way (nothing of the first attempt counts against it).
        await Assert.ThrowsAsync<Orchestrator.Images.Unpack.HostileLayerException>(() => snapshots.PrepareAsync("busybox:bomb", "bomb"));
        // Still room for what fits.
        Assert.True(File.Exists(Path.Combine(await snapshots.PrepareAsync("busybox:fine", "fine2"), "bin", "busybox")));
    }
}

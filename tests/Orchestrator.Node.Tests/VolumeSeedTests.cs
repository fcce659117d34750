using Orchestrator.Api.Workloads;
using Orchestrator.Images.Oci;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Node.Tests;

/// <summary>A new named volume filled from the image at its target, as Docker does, once, and never from outside the rootfs.</summary>
public sealed class VolumeSeedTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private string Rootfs => _dir.Combine("rootfs");

    private string Volumes => _dir.Combine("volumes");

    [Fact]
    public void A_new_volume_gets_the_images_files_with_modes_owners_and_links_and_only_once()
    {
        var modules = Directory.CreateDirectory(Path.Combine(Rootfs, "app/node_modules/left-pad")).FullName;
        File.WriteAllText(Path.Combine(modules, "index.js"), "module.exports = 1;");
        File.SetUnixFileMode(Path.Combine(modules, "index.js"), UnixFileMode.UserRead | UnixFileMode.UserExecute);
        File.CreateSymbolicLink(Path.Combine(Rootfs, "app/node_modules/.bin"), "left-pad");
        Orchestrator.Linux.Libc.lchown(Path.Combine(Rootfs, "app/node_modules"), 1000, 1000);
        Directory.CreateDirectory(Volumes);

        var volume = VolumeSeed.Ensure(Volumes, "web-app-node_modules", Rootfs, "/app/node_modules");

        Assert.Equal("module.exports = 1;", File.ReadAllText(Path.Combine(volume, "left-pad/index.js")));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserExecute, File.GetUnixFileMode(Path.Combine(volume, "left-pad/index.js")));
        Assert.Equal("left-pad", new FileInfo(Path.Combine(volume, ".bin")).LinkTarget);
        Assert.Equal(1000, Owner(volume));
        Assert.Equal(["web-app-node_modules"], Directory.GetFileSystemEntries(Volumes).Select(Path.GetFileName)); // no staging left behind

        // The containers' data from now on: a second mount neither refills nor resets it.
        File.Delete(Path.Combine(volume, "left-pad/index.js"));
        File.WriteAllText(Path.Combine(volume, "mine"), "x");
        VolumeSeed.Ensure(Volumes, "web-app-node_modules", Rootfs, "/app/node_modules");
        Assert.False(File.Exists(Path.Combine(volume, "left-pad/index.js")));
        Assert.True(File.Exists(Path.Combine(volume, "mine")));
    }

    [Fact]
    public void A_target_that_links_out_of_the_rootfs_is_read_inside_it_and_a_cut_fill_is_redone()
    {
        // A hostile image: /data -> /etc (absolute): it must be the image's /etc, never the host's.
        Directory.CreateDirectory(Path.Combine(Rootfs, "etc"));
        File.WriteAllText(Path.Combine(Rootfs, "etc/image-file"), "image");
        File.CreateSymbolicLink(Path.Combine(Rootfs, "data"), "/etc");
        Directory.CreateDirectory(Volumes);
        Directory.CreateDirectory(Path.Combine(Volumes, ".data.filling/half")); // a crash in the middle of a fill

        var volume = VolumeSeed.Ensure(Volumes, "data", Rootfs, "/data");

        Assert.Equal(["image-file"], Directory.GetFileSystemEntries(volume).Select(Path.GetFileName));
        Assert.False(Directory.Exists(Path.Combine(Volumes, ".data.filling")));
    }

    [Fact]
    public void A_target_the_image_lacks_or_no_rootfs_gives_an_empty_volume()
    {
        Directory.CreateDirectory(Rootfs);
        Directory.CreateDirectory(Volumes);
        Assert.Empty(Directory.GetFileSystemEntries(VolumeSeed.Ensure(Volumes, "a", Rootfs, "/nothing/here")));
        Assert.Empty(Directory.GetFileSystemEntries(VolumeSeed.Ensure(Volumes, "b", null, "/data")));
        File.WriteAllText(Path.Combine(Rootfs, "file"), "x");
        Assert.Empty(Directory.GetFileSystemEntries(VolumeSeed.Ensure(Volumes, "c", Rootfs, "/file"))); // a file is not a directory to fill from
    }

    [Fact]
    public void Volumes_are_mounted_shallow_first_whatever_order_the_manifest_gives()
    {
        Directory.CreateDirectory(Path.Combine(Rootfs, "app"));
        var src = Directory.CreateDirectory(_dir.Combine("src")).FullName;
        var paths = new ContainerPaths(_dir.Combine("bundle"), Rootfs, Volumes, "/orchestrator/n/web");
        var spec = SpecBuilder.Build(new Workload
        {
            Name = "web", Image = "x",
            Volumes = [new Volume { Name = "mods", Target = "/app/node_modules" }, new Volume { HostPath = src, Target = "/app" }, new Volume { Name = "d", Target = "/data" }],
        }, new ImageConfigFile { Config = new ImageRunConfig { Cmd = ["/bin/sh"] } }, paths);
        var order = spec.Mounts!.Select(m => m.Destination).Where(d => d is "/app" or "/app/node_modules" or "/data").ToList();
        Assert.Equal(["/app", "/data", "/app/node_modules"], order);
    }

    private static int Owner(string path)
    {
        using var stat = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("stat", ["-c", "%u", path]) { RedirectStandardOutput = true })!;
        var text = stat.StandardOutput.ReadToEnd();
        stat.WaitForExit();
        return int.Parse(text.Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }
}

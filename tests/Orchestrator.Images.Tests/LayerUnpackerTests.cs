using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using Orchestrator.Images.Unpack;

namespace Orchestrator.Images.Tests;

/// <summary>Layers built by the test, hostile ones included, unpacked for real.</summary>
public sealed class LayerUnpackerTests : IDisposable
{
    private readonly TempDir _dir = new("unpack");

    public void Dispose() => _dir.Dispose();

    private static MemoryStream Layer(Action<TarWriter> write, bool gzip = true)
    {
        var tar = new MemoryStream();
        using (var writer = new TarWriter(tar, TarEntryFormat.Pax, leaveOpen: true))
        {
            write(writer);
        }
        tar.Position = 0;
        if (!gzip)
        {
            return tar;
        }
        var gz = new MemoryStream();
        using (var z = new GZipStream(gz, CompressionLevel.Fastest, leaveOpen: true))
        {
            tar.CopyTo(z);
        }
        gz.Position = 0;
        return gz;
    }

    private static void File(TarWriter w, string name, string text, UnixFileMode mode = (UnixFileMode)0x1A4)
        => w.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(text)), Mode = mode, ModificationTime = new DateTimeOffset(2020, 1, 2, 3, 4, 5, TimeSpan.Zero) });

    private static void Dir(TarWriter w, string name) => w.WriteEntry(new PaxTarEntry(TarEntryType.Directory, name) { Mode = (UnixFileMode)0x1ED });

    private static void Symlink(TarWriter w, string name, string target) => w.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, name) { LinkName = target });

    private static void HardLink(TarWriter w, string name, string target) => w.WriteEntry(new PaxTarEntry(TarEntryType.HardLink, name) { LinkName = target });

    private Task<long> Unpack(MemoryStream layer, string into, UnpackOptions? options = null)
        => LayerUnpacker.UnpackToNewDirectoryAsync(layer, _dir.Combine(into), options ?? new UnpackOptions { Whiteouts = WhiteoutMode.Apply });

    [Fact]
    public async Task Files_dirs_links_modes_and_times_are_unpacked()
    {
        var layer = Layer(w =>
        {
            Dir(w, "./etc/");
            File(w, "./etc/motd", "hi", (UnixFileMode)0x1ED);
            Symlink(w, "etc/link", "/etc/motd");
            HardLink(w, "etc/hard", "etc/motd");
            File(w, "bin/tool", "#!/bin/sh", (UnixFileMode)0x9ED /* setuid 4755 */);
        });
        await Unpack(layer, "root");
        var root = _dir.Combine("root");
        Assert.Equal("hi", await System.IO.File.ReadAllTextAsync(Path.Combine(root, "etc", "motd")));
        Assert.Equal("/etc/motd", new FileInfo(Path.Combine(root, "etc", "link")).LinkTarget);
        Assert.Equal("hi", await System.IO.File.ReadAllTextAsync(Path.Combine(root, "etc", "hard")));
        Assert.Equal((UnixFileMode)0x1ED, System.IO.File.GetUnixFileMode(Path.Combine(root, "etc", "motd")));
        Assert.Equal((UnixFileMode)0x9ED, System.IO.File.GetUnixFileMode(Path.Combine(root, "bin", "tool")));
        Assert.Equal(new DateTime(2020, 1, 2, 3, 4, 5, DateTimeKind.Utc), System.IO.File.GetLastWriteTimeUtc(Path.Combine(root, "etc", "motd")));
    }

    [Fact]
    public async Task Plain_tar_layers_work_too()
    {
        await Unpack(Layer(w => File(w, "a", "plain"), gzip: false), "root");
        Assert.Equal("plain", await System.IO.File.ReadAllTextAsync(_dir.Combine("root", "a")));
    }

    [Fact]
    public async Task Whiteouts_and_opaque_dirs_delete_lower_content_when_applied()
    {
        await Unpack(Layer(w =>
        {
            File(w, "keep", "1");
            File(w, "gone", "1");
            File(w, "opaque/old", "1");
        }), "root");
        var root = _dir.Combine("root");
        await LayerUnpacker.UnpackAsync(Layer(w =>
        {
            File(w, ".wh.gone", "");
            File(w, "opaque/.wh..wh..opq", "");
            File(w, "opaque/new", "2");
        }), root, new UnpackOptions { Whiteouts = WhiteoutMode.Apply });
        Assert.True(System.IO.File.Exists(Path.Combine(root, "keep")));
        Assert.False(System.IO.File.Exists(Path.Combine(root, "gone")));
        Assert.False(System.IO.File.Exists(Path.Combine(root, "opaque", "old")));
        Assert.True(System.IO.File.Exists(Path.Combine(root, "opaque", "new")));
        Assert.False(System.IO.File.Exists(Path.Combine(root, ".wh.gone")));
    }

    [Fact]
    [Trait("Category", "Privileged")]
    public async Task Whiteouts_become_overlayfs_markers_in_overlay_mode()
    {
        Requires.Root();
        await Unpack(Layer(w =>
        {
            File(w, ".wh.gone", "");
            Dir(w, "opaque/");
            File(w, "opaque/.wh..wh..opq", "");
        }), "layer", new UnpackOptions { Whiteouts = WhiteoutMode.Overlay });
        var whiteout = _dir.Combine("layer", "gone");
        var stat = DaemonProcess.Start("stat", ["-c", "%F %t:%T", whiteout]);
        Assert.Equal(0, await stat.WaitForExitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal("character special file 0:0", stat.Stdout.Single());
        var getfattr = Requires.Program("getfattr", "attr");
        var xattr = DaemonProcess.Start(getfattr, ["--absolute-names", "--only-values", "-n", "trusted.overlay.opaque", _dir.Combine("layer", "opaque")]);
        Assert.Equal(0, await xattr.WaitForExitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal("y", xattr.Stdout.Single());
    }

    [Theory]
    [InlineData("../evil", "'../evil' climbs out of the layer with '..'")]
    [InlineData("a/../../evil", "'a/../../evil' climbs out of the layer with '..'")]
    [InlineData("/etc/evil", "'/etc/evil' is an absolute path")]
    public async Task Paths_outside_the_root_are_refused_and_nothing_is_kept(string name, string expected)
    {
        var error = await Assert.ThrowsAsync<HostileLayerException>(() => Unpack(Layer(w =>
        {
            File(w, "fine", "ok");
            File(w, name, "pwned");
        }), "root"));
        Assert.StartsWith(expected, error.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(_dir.Combine("root")));
        Assert.False(System.IO.File.Exists(_dir.Combine("evil")));
    }

    [Theory]
    [InlineData(".wh...")]
    [InlineData("sub/.wh...")]
    [InlineData(".wh..")]
    [InlineData("sub/.wh.")]
    public async Task A_whiteout_of_dot_or_dot_dot_is_refused_and_deletes_nothing(string name)
    {
        // The layer store: the layer's root beside another image's layer (what ".wh..." at the
        // root used to delete in overlay mode, and in apply mode the root's parent).
        var store = _dir.Combine("layers");
        var sibling = Path.Combine(store, "other-layer", "bin");
        Directory.CreateDirectory(sibling);
        await System.IO.File.WriteAllTextAsync(Path.Combine(sibling, "sh"), "keep");
        var root = Path.Combine(store, "this-layer");
        Directory.CreateDirectory(Path.Combine(root, "sub"));
        await System.IO.File.WriteAllTextAsync(Path.Combine(root, "sub", "lower"), "keep");
        foreach (var mode in new[] { WhiteoutMode.Apply, WhiteoutMode.Overlay })
        {
            var error = await Assert.ThrowsAsync<HostileLayerException>(() => LayerUnpacker.UnpackAsync(Layer(w =>
            {
                Dir(w, "sub/");
                File(w, name, "");
            }), root, new UnpackOptions { Whiteouts = mode }));
            Assert.Contains($"'{name}' is a whiteout of", error.Message, StringComparison.Ordinal);
            Assert.Equal("keep", await System.IO.File.ReadAllTextAsync(Path.Combine(sibling, "sh")));
            Assert.Equal("keep", await System.IO.File.ReadAllTextAsync(Path.Combine(root, "sub", "lower")));
        }
    }

    [Fact]
    public async Task Aufs_metadata_entries_are_skipped()
    {
        await Unpack(Layer(w =>
        {
            File(w, "a", "1");
            Dir(w, ".wh..wh.plnk/");
            File(w, ".wh..wh.aufs", "");
        }), "root");
        Assert.Equal(["a"], Directory.GetFileSystemEntries(_dir.Combine("root")).Select(Path.GetFileName));
    }

    [Fact]
    public async Task A_write_through_a_symlink_is_refused()
    {
        using var outside = new TempDir("outside");
        var error = await Assert.ThrowsAsync<HostileLayerException>(() => Unpack(Layer(w =>
        {
            Symlink(w, "escape", outside.Path);
            File(w, "escape/payload", "pwned");
        }), "root"));
        Assert.StartsWith("'escape/payload' would be written through the symlink 'escape'", error.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(outside.Path));
    }

    [Fact]
    public async Task A_file_replacing_a_symlink_replaces_the_link_not_its_target()
    {
        using var outside = new TempDir("outside");
        var victim = Path.Combine(outside.Path, "victim");
        await System.IO.File.WriteAllTextAsync(victim, "original");
        await Unpack(Layer(w =>
        {
            Symlink(w, "file", victim);
            File(w, "file", "replaced");
        }), "root");
        Assert.Equal("original", await System.IO.File.ReadAllTextAsync(victim));
        Assert.Equal("replaced", await System.IO.File.ReadAllTextAsync(_dir.Combine("root", "file")));
        Assert.Null(new FileInfo(_dir.Combine("root", "file")).LinkTarget);
    }

    [Theory]
    [InlineData("../../etc/passwd", "climbs out of the layer")]
    [InlineData("missing", "does not name a regular file of the layer")]
    [InlineData("sym", "does not name a regular file of the layer")]
    [InlineData("dirlink/passwd", "would be written through the symlink 'dirlink'")]
    public async Task Hard_links_that_leave_the_root_are_refused(string target, string expected)
    {
        var error = await Assert.ThrowsAsync<HostileLayerException>(() => Unpack(Layer(w =>
        {
            Symlink(w, "sym", "/etc/passwd");
            Symlink(w, "dirlink", "/etc");
            HardLink(w, "stolen", target);
        }), "root"));
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(_dir.Combine("root")));
    }

    [Fact]
    public async Task Device_nodes_are_refused_unless_allowed()
    {
        var error = await Assert.ThrowsAsync<HostileLayerException>(() => Unpack(Layer(w =>
            w.WriteEntry(new PaxTarEntry(TarEntryType.BlockDevice, "dev/sda") { DeviceMajor = 8, DeviceMinor = 0 })), "root"));
        Assert.Equal("'dev/sda' is a device node or fifo, which this store does not unpack; remove it from the image", error.Message);
    }

    [Fact]
    public async Task A_tar_bomb_stops_at_the_budget()
    {
        var error = await Assert.ThrowsAsync<HostileLayerException>(() => Unpack(Layer(w =>
        {
            for (var i = 0; i < 20; i++)
            {
                w.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, $"zeros{i}") { DataStream = new MemoryStream(new byte[1 << 20]) });
            }
        }), "root", new UnpackOptions { Whiteouts = WhiteoutMode.Apply, MaxBytes = 5 << 20 }));
        Assert.StartsWith("the layer writes more than 5242880 bytes (at 'zeros5')", error.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(_dir.Combine("root")));
    }

    [Fact(Timeout = 60_000)]
    public async Task Zstd_layers_from_the_zstd_tool_unpack()
    {
        var zstd = Requires.Program("zstd", "zstd");
        var tar = Layer(w => File(w, "etc/motd", "compressed with zstd"), gzip: false);
        var plain = _dir.Combine("layer.tar");
        await System.IO.File.WriteAllBytesAsync(plain, tar.ToArray());
        var compress = DaemonProcess.Start(zstd, ["-q", "-19", plain, "-o", plain + ".zst"]);
        Assert.Equal(0, await compress.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        await using var layer = System.IO.File.OpenRead(plain + ".zst");
        await LayerUnpacker.UnpackToNewDirectoryAsync(layer, _dir.Combine("root"), new UnpackOptions { Whiteouts = WhiteoutMode.Apply });
        Assert.Equal("compressed with zstd", await System.IO.File.ReadAllTextAsync(_dir.Combine("root", "etc", "motd")));
    }

    [Fact]
    public async Task The_busybox_image_layer_unpacks_into_a_runnable_tree()
    {
        using var layout = new TempDir("layout");
        var image = BusyboxImage.CreateLayout(layout.Path);
        await using var blob = System.IO.File.OpenRead(layout.Combine("blobs", "sha256", image.LayerDigest[7..]));
        await LayerUnpacker.UnpackToNewDirectoryAsync(blob, _dir.Combine("busybox"), new UnpackOptions());
        Assert.Equal("busybox", new FileInfo(_dir.Combine("busybox", "bin", "sh")).LinkTarget);
        Assert.True((System.IO.File.GetUnixFileMode(_dir.Combine("busybox", "bin", "busybox")) & UnixFileMode.UserExecute) != 0);
    }
}

using System.Formats.Tar;
using System.Text;
using Orchestrator.Images.Oci;
using Orchestrator.Images.Store;

namespace Orchestrator.Images.Tests;

public sealed class ImageStoreTests : IDisposable
{
    private readonly TempDir _dir = new("image-store");

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Imports_a_layout_and_an_archive_and_exports_one_that_skopeo_reads()
    {
        var store = new ImageStore(_dir.Combine("store"));
        var image = BusyboxImage.CreateLayout(_dir.Combine("layout"));
        var fromLayout = await store.ImportLayoutAsync(_dir.Combine("layout"), "local/busybox:1");
        Assert.Equal(image.ManifestDigest, fromLayout.ManifestDigest);
        Assert.Equal(Platform.Current.ToString(), fromLayout.Platform);

        var archive = _dir.Combine("busybox.tar");
        BusyboxImage.CreateArchive(archive, "2");
        var fromArchive = await store.ImportArchiveAsync(archive, "local/busybox:2");
        Assert.Equal(image.ManifestDigest, fromArchive.ManifestDigest);
        Assert.Equal(["docker.io/local/busybox:1", "docker.io/local/busybox:2"], store.List().Select(i => i.Name));

        var exported = _dir.Combine("exported.tar");
        await store.ExportArchiveAsync("local/busybox:1", exported);
        var skopeo = Requires.Program("skopeo", "skopeo");
        var inspect = DaemonProcess.Start(skopeo, ["inspect", $"oci-archive:{exported}:local/busybox:1"]);
        Assert.True(await inspect.WaitForExitAsync(TimeSpan.FromSeconds(60)) == 0, inspect.Output);
        Assert.Contains(image.LayerDigest, inspect.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Imports_a_docker_save_archive()
    {
        // docker save's layout: manifest.json, <config>.json, <id>/layer.tar (uncompressed).
        using var layout = new TempDir("layout");
        var image = BusyboxImage.CreateLayout(layout.Path);
        var layerTar = new MemoryStream();
        using (var gz = new System.IO.Compression.GZipStream(File.OpenRead(layout.Combine("blobs", "sha256", image.LayerDigest[7..])), System.IO.Compression.CompressionMode.Decompress))
        {
            gz.CopyTo(layerTar);
        }
        var config = File.ReadAllBytes(layout.Combine("blobs", "sha256", image.ConfigDigest[7..]));
        var archive = _dir.Combine("docker.tar");
        using (var tar = new TarWriter(File.Create(archive), TarEntryFormat.Ustar, leaveOpen: false))
        {
            void Add(string name, byte[] data) => tar.WriteEntry(new UstarTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(data), Mode = (UnixFileMode)0x1A4 });
            Add("manifest.json", Encoding.UTF8.GetBytes($"[{{\"Config\":\"{image.ConfigDigest[7..]}.json\",\"RepoTags\":[\"busybox:saved\"],\"Layers\":[\"abc/layer.tar\"]}}]"));
            Add($"{image.ConfigDigest[7..]}.json", config);
            Add("abc/layer.tar", layerTar.ToArray());
        }
        var store = new ImageStore(_dir.Combine("store"));
        var imported = await store.ImportArchiveAsync(archive);
        Assert.Equal("docker.io/library/busybox:saved", imported.Name);
        var manifest = store.Manifest(imported);
        Assert.Equal(image.DiffId, manifest.Layers.Single().Digest); // the uncompressed layer: its digest is the diff id
        Assert.Equal(image.ConfigDigest, manifest.Config.Digest);
    }

    /// <summary>A docker save archive whose manifest.json names <paramref name="layer"/>, plus extra entries.</summary>
    private string HostileDockerArchive(string layer, Action<TarWriter>? extra = null)
    {
        using var layout = new TempDir("layout");
        var image = BusyboxImage.CreateLayout(layout.Path);
        var config = File.ReadAllBytes(layout.Combine("blobs", "sha256", image.ConfigDigest[7..]));
        var archive = _dir.Combine($"hostile-{Guid.NewGuid():N}.tar");
        using (var tar = new TarWriter(File.Create(archive), TarEntryFormat.Pax, leaveOpen: false))
        {
            void Add(string name, byte[] data) => tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(data), Mode = (UnixFileMode)0x1A4 });
            Add("manifest.json", Encoding.UTF8.GetBytes($"[{{\"Config\":\"{image.ConfigDigest[7..]}.json\",\"RepoTags\":[\"evil:1\"],\"Layers\":[\"{layer}\"]}}]"));
            Add($"{image.ConfigDigest[7..]}.json", config);
            extra?.Invoke(tar);
        }
        return archive;
    }

    [Theory]
    [InlineData("/etc/shadow", "which is not a relative path inside it")]
    [InlineData("/dev/zero", "which is not a relative path inside it")]
    [InlineData("../../../../../../etc/passwd", "which leads outside it")]
    [InlineData("abc/../../etc/passwd", "which leads outside it")]
    public async Task A_docker_archive_naming_a_host_file_is_refused_and_nothing_is_read(string layer, string why)
    {
        var store = new ImageStore(_dir.Combine("store"));
        var import = store.ImportArchiveAsync(HostileDockerArchive(layer));
        // /dev/zero used to be read forever: the refusal must come at once.
        Assert.Same(import, await Task.WhenAny(import, Task.Delay(TimeSpan.FromSeconds(30))));
        var error = await Assert.ThrowsAsync<ImageException>(() => import);
        Assert.Contains($"names '{layer}', {why}; the archive is refused", error.Message, StringComparison.Ordinal);
        Assert.Empty(store.List());
    }

    [Theory]
    [InlineData("/etc/passwd")]
    [InlineData("../../../../../../../../etc/passwd")]
    public async Task A_symlinked_layer_leading_out_of_the_archive_is_refused(string target)
    {
        var store = new ImageStore(_dir.Combine("store"));
        var archive = HostileDockerArchive("abc/layer.tar", tar =>
            tar.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, "abc/layer.tar") { LinkName = target }));
        var error = await Assert.ThrowsAsync<ImageException>(() => store.ImportArchiveAsync(archive));
        Assert.Contains("names 'abc/layer.tar'", error.Message, StringComparison.Ordinal);
        Assert.Empty(store.List());
    }

    [Fact]
    public async Task A_symlinked_manifest_json_leading_out_is_refused()
    {
        var archive = _dir.Combine("link.tar");
        using (var tar = new TarWriter(File.Create(archive), TarEntryFormat.Pax, leaveOpen: false))
        {
            tar.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, "manifest.json") { LinkName = "/dev/zero" });
        }
        var store = new ImageStore(_dir.Combine("store"));
        var import = store.ImportArchiveAsync(archive);
        Assert.Same(import, await Task.WhenAny(import, Task.Delay(TimeSpan.FromSeconds(30))));
        var error = await Assert.ThrowsAsync<ImageException>(() => import);
        Assert.Contains("names 'manifest.json', through the symlink 'manifest.json' -> /dev/zero", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_docker_25_archive_linking_layers_into_blobs_imports()
    {
        using var layout = new TempDir("layout");
        var image = BusyboxImage.CreateLayout(layout.Path);
        var layerTar = new MemoryStream();
        using (var gz = new System.IO.Compression.GZipStream(File.OpenRead(layout.Combine("blobs", "sha256", image.LayerDigest[7..])), System.IO.Compression.CompressionMode.Decompress))
        {
            gz.CopyTo(layerTar);
        }
        var archive = HostileDockerArchive("abc/layer.tar", tar =>
        {
            tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "blobs/sha256/layer") { DataStream = new MemoryStream(layerTar.ToArray()), Mode = (UnixFileMode)0x1A4 });
            tar.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, "abc/layer.tar") { LinkName = "../blobs/sha256/layer" });
        });
        var store = new ImageStore(_dir.Combine("store"));
        var imported = await store.ImportArchiveAsync(archive);
        Assert.Equal(image.DiffId, store.Manifest(imported).Layers.Single().Digest);
    }

    [Fact]
    public async Task Gc_keeps_what_images_use_and_frees_the_rest()
    {
        var store = new ImageStore(_dir.Combine("store"));
        BusyboxImage.CreateLayout(_dir.Combine("layout"));
        var record = await store.ImportLayoutAsync(_dir.Combine("layout"), "keep:1");
        var orphan = "orphan blob"u8.ToArray();
        await store.Content.WriteAsync(orphan, ContentStore.DigestOf(orphan));
        Assert.Equal(orphan.Length, store.Gc());
        Assert.True(store.Content.Contains(record.ManifestDigest));
        store.Remove("keep:1");
        Assert.True(store.Gc() > 1_000_000); // the busybox layer
        Assert.Empty(store.Content.Digests());
    }

    [Fact]
    public async Task A_pull_past_the_disk_budget_is_refused_and_keeps_nothing_partial()
    {
        var store = new ImageStore(_dir.Combine("store"), budgetBytes: 100_000);
        BusyboxImage.CreateLayout(_dir.Combine("layout"));
        var error = await Assert.ThrowsAsync<DiskBudgetExceededException>(() => store.ImportLayoutAsync(_dir.Combine("layout"), "big:1"));
        Assert.Contains("budget; run gc, remove images or raise the budget", error.Message, StringComparison.Ordinal);
        Assert.Empty(store.List());
        Assert.Empty(Directory.GetFiles(_dir.Combine("store", "content", "ingest")));
    }

    [Fact]
    public async Task A_corrupt_blob_in_a_layout_is_refused()
    {
        var image = BusyboxImage.CreateLayout(_dir.Combine("layout"));
        var layer = _dir.Combine("layout", "blobs", "sha256", image.LayerDigest[7..]);
        var bytes = File.ReadAllBytes(layer);
        bytes[^10] ^= 0xff;
        File.WriteAllBytes(layer, bytes);
        var store = new ImageStore(_dir.Combine("store"));
        var error = await Assert.ThrowsAsync<DigestMismatchException>(() => store.ImportLayoutAsync(_dir.Combine("layout"), "corrupt:1"));
        Assert.Equal(image.LayerDigest, error.Expected);
        Assert.False(store.Content.Contains(image.LayerDigest));
        Assert.Empty(store.List());
    }

    [Fact]
    public void Unknown_images_are_clear_errors()
        => Assert.Equal("image 'ghost:1' is not in the store; pull or import it first (list shows what is)",
            Assert.Throws<ImageException>(() => new ImageStore(_dir.Combine("store")).Inspect("ghost:1")).Message);
}

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
        Assert.Equal(["local/busybox:1", "local/busybox:2"], store.List().Select(i => i.Name));

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
        Assert.Equal("busybox:saved", imported.Name);
        var manifest = store.Manifest(imported);
        Assert.Equal(image.DiffId, manifest.Layers.Single().Digest); // the uncompressed layer: its digest is the diff id
        Assert.Equal(image.ConfigDigest, manifest.Config.Digest);
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

namespace Orchestrator.Daemon.Tests;

/// <summary>`orchd image …` against a real registry and nats-server, as an operator runs it.</summary>
[Trait("Category", "Integration")]
public sealed class ImageCommandTests : IDisposable
{
    private readonly TempDir _dir = new("orchd-image");

    public void Dispose() => _dir.Dispose();

    private async Task<(int Code, string Stdout, string Stderr)> Orchd(params string[] args)
    {
        await using var p = DaemonProcess.Start(Repo.Binary("orchd"), ["image", .. args, "--state-dir", _dir.Combine("state"), "--config", "/dev/null"]);
        var code = await p.WaitForExitAsync(TimeSpan.FromSeconds(120));
        return (code, string.Join("\n", p.Stdout), string.Join("\n", p.Stderr));
    }

    [Fact(Timeout = 240_000)]
    public async Task Pull_list_inspect_push_to_nats_export_rm_and_gc()
    {
        await using var registry = await RegistryServer.StartAsync();
        await using var nats = await NatsServer.StartAsync();
        var image = BusyboxImage.CreateLayout(_dir.Combine("layout"));
        await registry.PushAsync($"{_dir.Combine("layout")}:latest", "edge/busybox", "1");

        var pull = await Orchd("pull", $"{registry.Host}/edge/busybox:1", "--unpack");
        Assert.True(pull.Code == 0, pull.Stderr);
        Assert.Equal($"pulled {registry.Host}/edge/busybox:1 {image.ManifestDigest} (linux/amd64)".Replace("linux/amd64", Orchestrator.Images.Oci.Platform.Current.ToString(), StringComparison.Ordinal), pull.Stdout);
        Assert.Contains("2/2 blobs", pull.Stderr, StringComparison.Ordinal);
        // --unpack: the layer is in the snapshot store, ready to run.
        Assert.Equal("busybox", new FileInfo(_dir.Combine("state", "snapshots", "layers", image.LayerDigest[7..], "bin", "sh")).LinkTarget);

        var list = await Orchd("list");
        Assert.Contains($"{registry.Host}/edge/busybox:1", list.Stdout, StringComparison.Ordinal);
        var inspect = await Orchd("inspect", $"{registry.Host}/edge/busybox:1");
        Assert.Contains($"layer: {image.LayerDigest}", inspect.Stdout, StringComparison.Ordinal);

        var push = await Orchd("push", $"{registry.Host}/edge/busybox:1", "--nats", "--nats-url", nats.Url);
        Assert.True(push.Code == 0, push.Stderr);

        var exported = _dir.Combine("out.tar");
        Assert.Equal(0, (await Orchd("export", $"{registry.Host}/edge/busybox:1", exported)).Code);
        Assert.True(new FileInfo(exported).Length > 1_000_000);

        Assert.Equal(0, (await Orchd("rm", $"{registry.Host}/edge/busybox:1")).Code);
        var gc = await Orchd("gc");
        Assert.StartsWith("freed ", gc.Stdout, StringComparison.Ordinal);

        // With the registry gone, the same reference comes from the fleet's bucket.
        await registry.DisposeAsync();
        var fallback = await Orchd("pull", $"{registry.Host}/edge/busybox:1", "--nats-url", nats.Url);
        Assert.True(fallback.Code == 0, fallback.Stderr);
        Assert.Contains("trying the fleet's NATS bucket", fallback.Stderr, StringComparison.Ordinal);
        Assert.Contains(image.ManifestDigest, fallback.Stdout, StringComparison.Ordinal);
    }

    [Fact(Timeout = 60_000)]
    public async Task Bad_input_is_one_clear_error()
    {
        var missing = await Orchd("inspect", "ghost:1");
        Assert.Equal(1, missing.Code);
        Assert.Equal("orchd: image 'ghost:1' is not in the store; pull or import it first (list shows what is)", missing.Stderr);
        var usage = await Orchd("frobnicate");
        Assert.Equal(2, usage.Code);
        Assert.Equal("orchd: 'frobnicate' is not an image command; see orchd image --help", usage.Stderr);
        var hostile = _dir.Combine("hostile.tar");
        using (var tar = new System.Formats.Tar.TarWriter(File.Create(hostile), System.Formats.Tar.TarEntryFormat.Pax, leaveOpen: false))
        {
            tar.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.RegularFile, "../../escape") { DataStream = new MemoryStream([1]) });
        }
        var refused = await Orchd("import", hostile);
        Assert.Equal(1, refused.Code);
        Assert.Equal("orchd: '../../escape' climbs out of the layer with '..'; it is refused", refused.Stderr);
    }
}

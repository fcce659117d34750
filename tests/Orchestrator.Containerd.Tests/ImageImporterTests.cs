using Orchestrator.Containerd.Api.Events;

namespace Orchestrator.Containerd.Tests;

/// <summary>An OCI image put into a real containerd through content, leases, snapshots, diff and images; ctr then runs it.</summary>
[Trait("Category", "Privileged")]
public sealed class ImageImporterTests
{
    [Fact(Timeout = 120_000)]
    public async Task An_imported_image_runs_with_ctr_without_a_pull_and_is_collected_when_deleted()
    {
        Requires.Root();
        await using var server = await ContainerdServer.StartAsync();
        var ns = "orchd-import-" + Guid.NewGuid().ToString("N")[..8];
        using var client = new ContainerdClient(server.Socket, ns);
        await client.CheckAsync();
        using var layout = new TempDir("orch-ctrd-layout");
        var image = BusyboxImage.CreateLayout(layout.Path, extraFiles: new Dictionary<string, string> { ["etc/motd"] = "imported by orchd\n" });
        Task<Stream> Open(string digest, CancellationToken _) => Task.FromResult<Stream>(File.OpenRead(layout.Combine("blobs", "sha256", digest["sha256:".Length..])));

        using var events = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var created = WaitForImageCreateAsync(client, events.Token);
        await Task.Delay(300); // the subscription is in place before the import
        var imported = await ImageImporter.ImportAsync(client, "docker.io/orchd/busybox:1", image.ManifestDigest, Open);
        Assert.Equal((1, 1), (imported.LayersWritten, imported.LayersUnpacked));
        Assert.Equal(("docker.io/orchd/busybox:1", ns), await created);

        // The labels made it (content Info field 5, Write field 7), and the lease is gone.
        Assert.Equal(image.DiffId, (await client.ContentInfoAsync(image.LayerDigest))!.Labels["containerd.io/uncompressed"]);
        Assert.Equal(image.LayerDigest, (await client.ContentInfoAsync(image.ManifestDigest))!.Labels["containerd.io/gc.ref.content.l.0"]);
        Assert.Empty(await client.ListLeasesAsync());
        Assert.NotNull(await client.StatSnapshotAsync("overlayfs", imported.ChainId));
        Assert.Equal(image.ManifestDigest, (await client.GetImageAsync("docker.io/orchd/busybox:1"))!.Target.Digest);

        var run = await server.Ctr(ns, "run", "--rm", "--net-host", "docker.io/orchd/busybox:1", "motd", "cat", "/etc/motd");
        Assert.True(run.Code == 0, run.Stderr);
        Assert.Equal("imported by orchd", run.Stdout.Trim());

        // Again: nothing written, nothing unpacked.
        var again = await ImageImporter.ImportAsync(client, "docker.io/orchd/busybox:1", image.ManifestDigest, Open);
        Assert.Equal((0, 0), (again.LayersWritten, again.LayersUnpacked));

        // Deleted with sync: the garbage collector follows the labels and takes content and snapshots.
        await client.DeleteImageAsync("docker.io/orchd/busybox:1", sync: true);
        Assert.Null(await client.GetImageAsync("docker.io/orchd/busybox:1"));
        Assert.Null(await client.ContentInfoAsync(image.LayerDigest));
        Assert.Null(await client.ContentInfoAsync(image.ManifestDigest));
        Assert.Null(await client.StatSnapshotAsync("overlayfs", imported.ChainId));
    }

    [Fact(Timeout = 60_000)]
    public async Task A_blob_that_does_not_match_its_digest_is_refused_before_anything_is_made()
    {
        Requires.Root();
        await using var server = await ContainerdServer.StartAsync();
        using var client = new ContainerdClient(server.Socket, "orchd-import");
        using var layout = new TempDir("orch-ctrd-layout");
        var image = BusyboxImage.CreateLayout(layout.Path);
        var manifest = layout.Combine("blobs", "sha256", image.ManifestDigest["sha256:".Length..]);
        File.AppendAllText(manifest, " ");
        var broken = await Assert.ThrowsAsync<ContainerdException>(() => ImageImporter.ImportAsync(client, "broken:1", image.ManifestDigest,
            (d, _) => Task.FromResult<Stream>(File.OpenRead(layout.Combine("blobs", "sha256", d["sha256:".Length..])))));
        Assert.StartsWith($"blob {image.ManifestDigest} reads as sha256:", broken.Message, StringComparison.Ordinal);
        Assert.Empty(await client.ListImagesAsync());
        Assert.Empty(await client.ListLeasesAsync());
    }

    [Fact]
    public void Chain_ids_follow_the_image_spec()
    {
        var diffs = new[] { "sha256:aaaa", "sha256:bbbb" };
        var chains = ImageImporter.ChainIds(diffs);
        Assert.Equal("sha256:aaaa", chains[0]);
        Assert.Equal("sha256:" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData("sha256:aaaa sha256:bbbb"u8)), chains[1]);
    }

    private static async Task<(string Name, string Namespace)> WaitForImageCreateAsync(ContainerdClient client, CancellationToken cancellationToken)
    {
        await foreach (Envelope e in client.SubscribeAsync(["topic==\"/images/create\""], cancellationToken))
        {
            Assert.Equal("containerd.services.images.v1.ImageCreate", e.Event.TypeUrl);
            return (Api.Images.ImageCreate.Parser.ParseFrom(e.Event.Value).Name, e.Namespace);
        }
        throw new InvalidOperationException("the event stream ended");
    }
}

using Orchestrator.Images.Registry;
using Orchestrator.Images.Store;

namespace Orchestrator.Containerd.Tests;

/// <summary>
/// A pull from a real registry (Debian's docker-registry, pushed with skopeo) straight into a real
/// containerd's content store: resolved and fetched by orchd's registry client, ingested through
/// the content service, unpacked by the diff service; ctr then runs it.
/// </summary>
[Trait("Category", "Privileged")]
public sealed class RegistryPullTests
{
    [Fact(Timeout = 180_000)]
    public async Task A_pull_streams_the_blobs_into_containerd_and_a_second_pull_downloads_no_blob()
    {
        Requires.Root();
        await using var registry = await RegistryServer.StartAsync();
        await using var server = await ContainerdServer.StartAsync();
        var ns = "orchd-pull-" + Guid.NewGuid().ToString("N")[..8];
        using var client = new ContainerdClient(server.Socket, ns);
        await client.CheckAsync();
        using var layout = new TempDir("orch-ctrd-pull");
        var image = BusyboxImage.CreateLayout(layout.Path, extraFiles: new Dictionary<string, string> { ["etc/motd"] = "pulled through containerd\n" });
        await registry.PushAsync($"{layout.Path}:latest", "edge/busybox", "1");
        var reference = $"{registry.Host}/edge/busybox:1";

        var counting = new CountingHandler();
        using var registryClient = new RegistryClient(null, new RegistryOptions(), counting);
        var reports = new List<PullProgress>();
        var pulled = await ImageImporter.PullAsync(client, registryClient, reference, progress: new SyncProgress(reports));

        // skopeo pushed the index: the tag resolved through it to this platform's manifest.
        Assert.Equal(reference, pulled.Name);
        Assert.Equal(image.ManifestDigest, pulled.Manifest.Digest);
        Assert.Equal((1, 1), (pulled.LayersWritten, pulled.LayersUnpacked));
        Assert.Equal(1, counting.BlobGets(image.LayerDigest));
        Assert.Equal(1, counting.BlobGets(image.ConfigDigest));
        var last = reports[^1];
        Assert.Equal((1, 1), (last.LayersDone, last.LayersTotal));
        Assert.Equal(last.BytesTotal, last.BytesDone);
        Assert.Equal(image.LayerSize, last.BytesTotal - (await client.ContentInfoAsync(image.ConfigDigest))!.Size);
        Assert.Contains(reports, r => r.BytesDone < r.BytesTotal); // reported on the way, not only at the end

        Assert.Equal(image.DiffId, (await client.ContentInfoAsync(image.LayerDigest))!.Labels["containerd.io/uncompressed"]);
        Assert.NotNull(await client.StatSnapshotAsync("overlayfs", pulled.ChainId));
        Assert.Empty(await client.ListLeasesAsync());
        var run = await server.Ctr(ns, "run", "--rm", "--net-host", reference, "motd", "cat", "/etc/motd");
        Assert.True(run.Code == 0, run.Stderr);
        Assert.Equal("pulled through containerd", run.Stdout.Trim());

        // Again: the manifest is asked for (the tag may have moved), no blob is downloaded, nothing unpacked.
        var again = await ImageImporter.PullAsync(client, registryClient, reference);
        Assert.Equal((0, 0), (again.LayersWritten, again.LayersUnpacked));
        Assert.Equal(1, counting.BlobGets(image.LayerDigest));
    }

    [Fact(Timeout = 120_000)]
    public async Task An_unknown_tag_is_one_clear_error_and_leaves_nothing_behind()
    {
        Requires.Root();
        await using var registry = await RegistryServer.StartAsync();
        await using var server = await ContainerdServer.StartAsync();
        using var client = new ContainerdClient(server.Socket, "orchd-pull");
        using var registryClient = new RegistryClient(null, new RegistryOptions());
        var missing = await Assert.ThrowsAsync<ImageException>(() => ImageImporter.PullAsync(client, registryClient, $"{registry.Host}/edge/nothing:9"));
        Assert.Equal($"manifest 9 of edge/nothing was not found on {registry.Host} (404); check the name and tag", missing.Message);
        Assert.Empty(await client.ListImagesAsync());
        Assert.Empty(await client.ListLeasesAsync());
    }

    private sealed class SyncProgress(List<PullProgress> reports) : IProgress<PullProgress>
    {
        public void Report(PullProgress value)
        {
            lock (reports)
            {
                reports.Add(value);
            }
        }
    }

    private sealed class CountingHandler() : DelegatingHandler(new SocketsHttpHandler())
    {
        private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _gets = new(StringComparer.Ordinal);

        public int BlobGets(string digest) => _gets.GetValueOrDefault(digest);

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var path = request.RequestUri!.AbsolutePath;
            if (request.Method == HttpMethod.Get && path.Contains("/blobs/", StringComparison.Ordinal))
            {
                _gets.AddOrUpdate(path[(path.LastIndexOf('/') + 1)..], 1, (_, n) => n + 1);
            }
            return base.SendAsync(request, cancellationToken);
        }
    }
}

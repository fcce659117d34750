using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.ObjectStore;
using Orchestrator.Images.Distribution;
using Orchestrator.Images.Store;

namespace Orchestrator.Images.Tests;

/// <summary>Air-gapped pulls through a real nats-server's JetStream object store.</summary>
[Trait("Category", "Integration")]
public sealed class NatsDistributionTests : IDisposable
{
    private readonly TempDir _dir = new("nats-images");

    public void Dispose() => _dir.Dispose();

    [Fact(Timeout = 120_000)]
    public async Task An_image_pushed_by_one_node_is_pulled_by_another_with_the_same_digests()
    {
        await using var server = await NatsServer.StartAsync();
        await using var nats = new NatsConnection(new NatsOpts { Url = server.Url });
        var image = BusyboxImage.CreateLayout(_dir.Combine("layout"));
        var publisher = new ImageStore(_dir.Combine("a"));
        await publisher.ImportLayoutAsync(_dir.Combine("layout"), "edge/busybox:1");
        Assert.Equal(3, await new NatsImageDistribution(nats, publisher).PushAsync("edge/busybox:1"));
        Assert.Equal(0, await new NatsImageDistribution(nats, publisher).PushAsync("edge/busybox:1")); // nothing new to send

        var node = new ImageStore(_dir.Combine("b"));
        var pulled = await new NatsImageDistribution(nats, node).PullAsync("edge/busybox:1");
        Assert.Equal(image.ManifestDigest, pulled.ManifestDigest);
        Assert.True(node.Content.Contains(image.LayerDigest));

        var missing = await Assert.ThrowsAsync<ImageException>(() => new NatsImageDistribution(nats, node).PullAsync("edge/nothing:1"));
        Assert.StartsWith("image 'edge/nothing:1' is not published in the NATS bucket 'orch-images'", missing.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = 120_000)]
    public async Task A_tampered_object_is_refused_by_its_digest()
    {
        await using var server = await NatsServer.StartAsync();
        await using var nats = new NatsConnection(new NatsOpts { Url = server.Url });
        var image = BusyboxImage.CreateLayout(_dir.Combine("layout"));
        var publisher = new ImageStore(_dir.Combine("a"));
        await publisher.ImportLayoutAsync(_dir.Combine("layout"), "edge/busybox:1");
        await new NatsImageDistribution(nats, publisher).PushAsync("edge/busybox:1");

        // Someone with write access to the bucket swaps the layer's content.
        var bucket = await new NatsObjContext(new NatsJSContext(nats)).GetObjectStoreAsync("orch-images");
        await bucket.PutAsync("blobs/sha256/" + image.LayerDigest[7..], "not the layer"u8.ToArray());

        var node = new ImageStore(_dir.Combine("b"));
        var error = await Assert.ThrowsAsync<DigestMismatchException>(() => new NatsImageDistribution(nats, node).PullAsync("edge/busybox:1"));
        Assert.Equal(image.LayerDigest, error.Expected);
        Assert.False(node.Content.Contains(image.LayerDigest));
        Assert.Empty(node.List());
    }
}

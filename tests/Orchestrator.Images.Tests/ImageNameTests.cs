using System.Text.Json;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.ObjectStore;
using Orchestrator.Api;
using Orchestrator.Images.Distribution;
using Orchestrator.Images.Oci;
using Orchestrator.Images.Registry;
using Orchestrator.Images.Store;

namespace Orchestrator.Images.Tests;

/// <summary>The one rule for image names (docs/images.md): what is the same image, and how the store and the bucket keep it.</summary>
public sealed class ImageNameTests : IDisposable
{
    private readonly TempDir _dir = new("image-names");

    public void Dispose() => _dir.Dispose();

    private const string Digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    [Theory]
    [InlineData("busybox", "docker.io/library/busybox:latest")]
    [InlineData("busybox:latest", "docker.io/library/busybox:latest")]
    [InlineData("library/busybox:latest", "docker.io/library/busybox:latest")]
    [InlineData("docker.io/library/busybox:latest", "docker.io/library/busybox:latest")]
    [InlineData("docker.io/busybox", "docker.io/library/busybox:latest")]
    [InlineData("index.docker.io/library/busybox:latest", "docker.io/library/busybox:latest")]
    [InlineData("nats:busybox:latest", "docker.io/library/busybox:latest")]
    [InlineData("nats:docker.io/library/busybox", "docker.io/library/busybox:latest")]
    [InlineData("team/app:1.2", "docker.io/team/app:1.2")]
    [InlineData("localhost:5000/x", "localhost:5000/x:latest")]
    [InlineData("localhost/x:2", "localhost/x:2")]
    [InlineData("127.0.0.1:5000/edge/busybox:1", "127.0.0.1:5000/edge/busybox:1")]
    [InlineData("nats:registry.example:5000/team/app:1.2", "registry.example:5000/team/app:1.2")]
    [InlineData("busybox@" + Digest, "docker.io/library/busybox@" + Digest)]
    [InlineData("busybox:1.36@" + Digest, "docker.io/library/busybox@" + Digest)]
    [InlineData("localhost:5000/x@" + Digest, "localhost:5000/x@" + Digest)]
    public void Every_way_of_writing_a_name_has_one_canonical_form(string written, string canonical)
    {
        Assert.Equal(canonical, ImageReference.Normalize(written));
        Assert.True(ImageReference.SameImage(written, canonical));
    }

    [Fact]
    public void Nats_is_where_to_pull_from_and_familiar_names_are_the_short_ones()
    {
        var reference = ImageReference.Parse("nats:busybox:latest", out var fromNats);
        Assert.True(fromNats);
        Assert.Equal(("docker.io", "library/busybox", "latest"), (reference.Registry, reference.Repository, reference.Tag));
        ImageReference.Parse("busybox:latest", out fromNats);
        Assert.False(fromNats);
        Assert.Equal("busybox:latest", reference.Familiar);
        Assert.Equal("team/app:1", ImageReference.Parse("docker.io/team/app:1").Familiar);
        Assert.Equal("localhost:5000/x:latest", ImageReference.Parse("localhost:5000/x").Familiar);
        Assert.Equal(["busybox:latest", "busybox", "docker.io/busybox:latest"], reference.LegacyNames());
        Assert.False(ImageReference.SameImage("busybox:latest", "busybox:1.36"));
        Assert.False(ImageReference.SameImage("busybox", "team/busybox"));
        Assert.False(ImageReference.SameImage("localhost:5000/x", "localhost:5001/x"));
    }

    [Theory]
    [InlineData("Busybox:latest", "'Busybox:latest' is not an image reference: repository names are lower case ('busybox'); write it like busybox:1.36, registry.example:5000/team/app:1.2 or app@sha256:<64 hex digits>")]
    [InlineData("busybox:", "'busybox:' is not an image reference: the tag '' is not letters, digits, '_', '.' and '-' (at most 128, not starting with '.' or '-')")]
    [InlineData("nats:", "'nats:' is not an image reference: the name is empty")]
    [InlineData("team//app", "'team//app' is not an image reference: a part of the name is empty")]
    [InlineData("busy box", "'busy box' is not an image reference: it contains white space")]
    [InlineData("busybox@sha256:abc", "'busybox@sha256:abc': 'sha256:abc' is not a sha256 digest; pin images as name@sha256:<64 hex digits>")]
    public void A_bad_name_is_one_error_that_says_how_to_write_it(string written, string message)
    {
        var error = Assert.Throws<ImageException>(() => ImageReference.Parse(written));
        Assert.StartsWith(message, error.Message, StringComparison.Ordinal);
        Assert.Equal(ErrorKind.Invalid, error.Kind);
    }

    [Fact]
    public async Task The_store_keeps_canonical_names_and_finds_and_removes_an_image_by_any_of_them()
    {
        var image = BusyboxImage.CreateLayout(_dir.Combine("layout"));
        var store = new ImageStore(_dir.Combine("store"));
        var imported = await store.ImportLayoutAsync(_dir.Combine("layout"), "busybox:latest");
        Assert.Equal("docker.io/library/busybox:latest", imported.Name);
        foreach (var name in new[] { "busybox", "busybox:latest", "docker.io/library/busybox:latest", "nats:busybox:latest", "busybox@" + image.ManifestDigest })
        {
            Assert.Equal(image.ManifestDigest, store.Inspect(name).ManifestDigest);
        }
        Assert.Null(store.TryInspect("busybox:1.36"));
        Assert.Null(store.TryInspect("busybox@" + Digest)); // another digest is another image
        Assert.Null(store.TryInspect("team/busybox@" + image.ManifestDigest)); // the same content in another repository is not named by it
        Assert.Null(store.TryInspect("Not A Name"));
        var bad = Assert.Throws<ImageException>(() => store.Inspect("Busybox"));
        Assert.StartsWith("'Busybox' is not an image reference", bad.Message, StringComparison.Ordinal);

        store.Remove("nats:busybox");
        Assert.Empty(store.List());
        var gone = Assert.Throws<ImageException>(() => store.Remove("busybox:latest"));
        Assert.Equal("image 'busybox:latest' is not in the store; nothing to remove", gone.Message);
    }

    [Fact]
    public async Task A_store_written_by_the_previous_version_finds_its_images_under_their_short_names()
    {
        var image = BusyboxImage.CreateLayout(_dir.Combine("layout"));
        var root = _dir.Combine("store");
        var store = new ImageStore(root);
        await store.ImportLayoutAsync(_dir.Combine("layout"), "edge/tool:1");
        // What the previous version wrote: the names as imported or pulled, one of them no valid
        // reference, and an image under both its short and its full name (the full one newer).
        var record = store.Inspect("edge/tool:1");
        ImageRecord Old(string name, int minutes) => new() { Name = name, ManifestDigest = record.ManifestDigest, Platform = record.Platform, Size = record.Size, Created = DateTimeOffset.UnixEpoch.AddMinutes(minutes) };
        var old = new Dictionary<string, ImageRecord>
        {
            ["busybox:latest"] = Old("busybox:latest", 1),
            ["docker.io/library/busybox:latest"] = Old("docker.io/library/busybox:latest", 2),
            ["edge/app"] = Old("edge/app", 3),
            ["My App"] = Old("My App", 4),
        };
        var bytes = JsonSerializer.SerializeToUtf8Bytes(old, OciJsonContext.Default.DictionaryStringImageRecord);
        Orchestrator.Linux.StateFile.Write(Path.Combine(root, "images.json"), bytes);
        Orchestrator.Linux.StateFile.Write(Path.Combine(root, "images.json.bak"), bytes);

        store = new ImageStore(root);
        Assert.Equal(["My App", "docker.io/edge/app:latest", "docker.io/library/busybox:latest"], store.List().Select(i => i.Name));
        Assert.Equal(DateTimeOffset.UnixEpoch.AddMinutes(2), store.Inspect("busybox:latest").Created); // the newer of the two
        Assert.Equal("docker.io/edge/app:latest", store.Inspect("edge/app").Name);
        Assert.Equal("My App", store.Inspect("My App").Name);
        Assert.Equal(image.ManifestDigest, store.Inspect("docker.io/library/busybox").ManifestDigest);
        // The next change writes the canonical names.
        store.Remove("My App");
        var written = JsonSerializer.Deserialize(File.ReadAllBytes(Path.Combine(root, "images.json")), OciJsonContext.Default.DictionaryStringImageRecord)!;
        Assert.Equal(["docker.io/edge/app:latest", "docker.io/library/busybox:latest"], written.Keys.Order(StringComparer.Ordinal));
    }

    [Fact(Timeout = 120_000)]
    [Trait("Category", "Integration")]
    public async Task The_bucket_keys_images_canonically_and_still_serves_what_the_previous_version_pushed()
    {
        await using var server = await NatsServer.StartAsync();
        await using var nats = new NatsConnection(new NatsOpts { Url = server.Url });
        var image = BusyboxImage.CreateLayout(_dir.Combine("layout"));
        var publisher = new ImageStore(_dir.Combine("a"));
        await publisher.ImportLayoutAsync(_dir.Combine("layout"), "busybox:latest");
        await new NatsImageDistribution(nats, publisher).PushAsync("busybox");

        var bucket = await new NatsObjContext(new NatsJSContext(nats)).GetObjectStoreAsync("orch-images");
        var refs = new List<string>();
        await foreach (var info in bucket.ListAsync())
        {
            if (info.Name.StartsWith("refs/", StringComparison.Ordinal))
            {
                refs.Add(info.Name);
            }
        }
        Assert.Equal(["refs/docker.io/library/busybox:latest"], refs);

        // Pulled by every way of writing it, it is stored under the one name.
        var nodes = 0;
        foreach (var name in new[] { "nats:busybox:latest", "busybox", "docker.io/library/busybox:latest", "nats:busybox@" + image.ManifestDigest })
        {
            var node = new ImageStore(_dir.Combine("node-" + nodes++));
            var pulled = await new NatsImageDistribution(nats, node).PullAsync(name);
            Assert.Equal(image.ManifestDigest, pulled.ManifestDigest);
            Assert.Equal(ImageReference.Normalize(name), Assert.Single(node.List()).Name);
            Assert.Equal(image.ManifestDigest, node.Inspect(name).ManifestDigest);
        }

        // An image the previous version pushed: its ref under the name as written.
        await bucket.PutAsync("refs/edge/old:1", System.Text.Encoding.UTF8.GetBytes($"{image.ManifestDigest} {Platform.Current}"));
        var legacy = new ImageStore(_dir.Combine("legacy"));
        Assert.Equal("docker.io/edge/old:1", (await new NatsImageDistribution(nats, legacy).PullAsync("nats:docker.io/edge/old:1")).Name);

        var missing = await Assert.ThrowsAsync<ImageException>(() => new NatsImageDistribution(nats, legacy).PullAsync("nats:2.10"));
        Assert.Equal("image 'nats:2.10' is not published in the NATS bucket 'orch-images' (as docker.io/library/2.10:latest); push it there first (orchd image push 2.10:latest --nats) (for Docker Hub's nats image write library/nats:2.10)", missing.Message);
    }
}

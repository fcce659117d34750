using System.Net;
using System.Text.Json.Nodes;
using Orchestrator.Images.Oci;
using Orchestrator.Images.Registry;
using Orchestrator.Images.Store;

namespace Orchestrator.Images.Tests;

/// <summary>Pulls from a real registry (Debian's docker-registry) on loopback, images pushed by skopeo.</summary>
[Trait("Category", "Integration")]
public sealed class RegistryTests : IDisposable
{
    private readonly TempDir _dir = new("registry-test");

    public void Dispose() => _dir.Dispose();

    [Fact(Timeout = 180_000)]
    public async Task Pulls_anonymously_by_tag_and_by_digest_with_every_blob_verified()
    {
        await using var registry = await RegistryServer.StartAsync();
        var image = BusyboxImage.CreateLayout(_dir.Combine("layout"));
        await registry.PushAsync($"{_dir.Combine("layout")}:latest", "team/busybox", "1.0");

        var store = new ImageStore(_dir.Combine("store"));
        using var client = new RegistryClient(store, new RegistryOptions());
        var reports = new List<PullProgress>();
        var pulled = await client.PullAsync($"{registry.Host}/team/busybox:1.0", progress: new SyncProgress(reports));
        Assert.Equal(image.ManifestDigest, pulled.ManifestDigest);
        Assert.True(store.Content.Contains(image.LayerDigest));
        Assert.True(store.Content.Contains(image.ConfigDigest));
        Assert.Equal(2, reports.Max(r => r.LayersDone));

        var byDigest = await client.PullAsync($"{registry.Host}/team/busybox@{image.ManifestDigest}");
        Assert.Equal(image.ManifestDigest, byDigest.ManifestDigest);
        Assert.Equal(2, store.List().Count);
    }

    [Fact(Timeout = 180_000)]
    public async Task A_missing_image_and_a_wrong_digest_are_clear_errors()
    {
        await using var registry = await RegistryServer.StartAsync();
        BusyboxImage.CreateLayout(_dir.Combine("layout"));
        await registry.PushAsync($"{_dir.Combine("layout")}:latest", "busybox", "latest");
        var store = new ImageStore(_dir.Combine("store"));
        using var client = new RegistryClient(store, new RegistryOptions());

        var missing = await Assert.ThrowsAsync<ImageException>(() => client.PullAsync($"{registry.Host}/nothing:here"));
        Assert.Contains("was not found on", missing.Message, StringComparison.Ordinal);
        var pinnedWrong = "sha256:" + new string('0', 64);
        await Assert.ThrowsAnyAsync<Exception>(() => client.PullAsync($"{registry.Host}/busybox@{pinnedWrong}"));
        Assert.Empty(store.List());
    }

    [Fact(Timeout = 180_000)]
    public async Task A_multi_platform_index_resolves_to_the_asked_platform()
    {
        await using var registry = await RegistryServer.StartAsync();
        var layout = _dir.Combine("multi");
        var (amd64, arm64) = MultiPlatformLayout(layout);
        await registry.PushAsync($"{layout}:multi", "multi", "1");
        var store = new ImageStore(_dir.Combine("store"));
        using var client = new RegistryClient(store, new RegistryOptions());

        var pulledArm = await client.PullAsync($"{registry.Host}/multi:1", Platform.Parse("linux/arm64"));
        Assert.Equal(arm64, pulledArm.ManifestDigest);
        Assert.Equal("linux/arm64", pulledArm.Platform);
        var pulledAmd = await client.PullAsync($"{registry.Host}/multi:1", Platform.Parse("linux/amd64"));
        Assert.Equal(amd64, pulledAmd.ManifestDigest);
        var none = await Assert.ThrowsAsync<ImageException>(() => client.PullAsync($"{registry.Host}/multi:1", Platform.Parse("linux/arm/v7")));
        Assert.Equal($"image '{registry.Host}/multi:1' has no image for linux/arm/v7 (it offers linux/amd64, linux/arm64); pick one of those with --platform", none.Message);
    }

    [Fact(Timeout = 180_000)]
    public async Task Basic_auth_is_used_when_configured_and_its_absence_is_a_clear_error()
    {
        await using var registry = await RegistryServer.StartAsync("edge", "s3cret");
        var image = BusyboxImage.CreateLayout(_dir.Combine("layout"));
        await registry.PushAsync($"{_dir.Combine("layout")}:latest", "private/busybox", "1", "edge", "s3cret");
        var store = new ImageStore(_dir.Combine("store"));

        using (var anonymous = new RegistryClient(store, new RegistryOptions()))
        {
            var error = await Assert.ThrowsAsync<ImageException>(() => anonymous.PullAsync($"{registry.Host}/private/busybox:1"));
            Assert.Equal($"registry {registry.Host} wants credentials and none are configured for it", error.Message);
        }
        using var authed = new RegistryClient(store, new RegistryOptions
        {
            Credentials = new Dictionary<string, RegistryCredentials> { [registry.Host] = new("edge", "s3cret") },
        });
        Assert.Equal(image.ManifestDigest, (await authed.PullAsync($"{registry.Host}/private/busybox:1")).ManifestDigest);
    }

    [Fact(Timeout = 180_000)]
    public async Task Bearer_token_auth_follows_the_challenge_to_the_realm()
    {
        using var tokens = new TokenServer("edge", "s3cret");
        await using var registry = await RegistryServer.StartAsync(tokenRealm: tokens.Realm, tokenCertificatePem: tokens.CertificatePem);
        var image = BusyboxImage.CreateLayout(_dir.Combine("layout"));
        await registry.PushAsync($"{_dir.Combine("layout")}:latest", "private/busybox", "1", "edge", "s3cret");
        var pushTokens = tokens.Issued;
        var store = new ImageStore(_dir.Combine("store"));

        using (var anonymous = new RegistryClient(store, new RegistryOptions()))
        {
            var error = await Assert.ThrowsAsync<ImageException>(() => anonymous.PullAsync($"{registry.Host}/private/busybox:1"));
            Assert.StartsWith($"the token service of {registry.Host} ({tokens.Realm}) refused a token (401)", error.Message, StringComparison.Ordinal);
        }
        using var authed = new RegistryClient(store, new RegistryOptions
        {
            Credentials = new Dictionary<string, RegistryCredentials> { [registry.Host] = new("edge", "s3cret") },
        });
        Assert.Equal(image.ManifestDigest, (await authed.PullAsync($"{registry.Host}/private/busybox:1")).ManifestDigest);
        Assert.True(tokens.Issued > pushTokens, "the pull went through the token service");
    }

    [Fact(Timeout = 180_000)]
    public async Task A_transfer_that_breaks_resumes_with_a_range_request()
    {
        await using var registry = await RegistryServer.StartAsync();
        var image = BusyboxImage.CreateLayout(_dir.Combine("layout"));
        await registry.PushAsync($"{_dir.Combine("layout")}:latest", "busybox", "1");
        var store = new ImageStore(_dir.Combine("store"));
        // A fault-injection seam in front of the real registry: the layer's first transfer dies
        // after 300 KB, as a flaky uplink would do.
        using var flaky = new BreakingHandler(image.LayerDigest, 300_000);
        using var client = new RegistryClient(store, new RegistryOptions(), flaky);
        var pulled = await client.PullAsync($"{registry.Host}/busybox:1");
        Assert.Equal(image.ManifestDigest, pulled.ManifestDigest);
        Assert.True(store.Content.Contains(image.LayerDigest));
        Assert.Equal(["", "bytes=300000-"], flaky.LayerRanges);
        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.PartialContent], flaky.LayerStatuses);
    }

    private sealed class BreakingHandler(string digest, int breakAfter) : DelegatingHandler(new SocketsHttpHandler())
    {
        public List<string> LayerRanges { get; } = [];
        public List<HttpStatusCode> LayerStatuses { get; } = [];

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var response = await base.SendAsync(request, cancellationToken);
            if (!request.RequestUri!.AbsolutePath.EndsWith("/blobs/" + digest, StringComparison.Ordinal))
            {
                return response;
            }
            LayerRanges.Add(request.Headers.Range?.ToString() ?? "");
            LayerStatuses.Add(response.StatusCode);
            if (LayerRanges.Count == 1)
            {
                var body = await response.Content.ReadAsByteArrayAsync(cancellationToken);
                response.Content = new StreamContent(new BreakingStream(body, breakAfter));
            }
            return response;
        }
    }

    /// <summary>Serves the bytes, then fails at <c>breakAfter</c> as a reset connection does.</summary>
    private sealed class BreakingStream(byte[] data, int breakAfter) : Stream
    {
        private int _position;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => data.Length;
        public override long Position { get => _position; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (_position >= breakAfter)
            {
                throw new IOException("connection reset by peer (injected)");
            }
            var n = Math.Min(buffer.Length, Math.Min(breakAfter, data.Length) - _position);
            data.AsSpan(_position, n).CopyTo(buffer);
            _position += n;
            return n;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => ValueTask.FromResult(Read(buffer.Span));

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => Task.FromResult(Read(buffer, offset, count));
    }

    [Fact]
    public void Bearer_challenges_parse()
    {
        var p = RegistryClient.ParseChallenge("realm=\"https://auth.example/token\",service=\"registry.example\",scope=\"repository:a/b:pull\"");
        Assert.Equal("https://auth.example/token", p["realm"]);
        Assert.Equal("registry.example", p["service"]);
        Assert.Equal("repository:a/b:pull", p["scope"]);
    }

    [Theory]
    [InlineData("busybox", "docker.io", "library/busybox", "latest")]
    [InlineData("127.0.0.1:5000/team/app:1.2", "127.0.0.1:5000", "team/app", "1.2")]
    [InlineData("registry.example/app", "registry.example", "app", "latest")]
    public void References_parse_with_docker_hub_defaults(string text, string registry, string repository, string tag)
    {
        var r = ImageReference.Parse(text);
        Assert.Equal((registry, repository, tag), (r.Registry, r.Repository, r.Tag));
    }

    /// <summary>An index with the busybox image twice, once said to be arm64 (a different config).</summary>
    private static (string Amd64, string Arm64) MultiPlatformLayout(string layout)
    {
        var image = BusyboxImage.CreateLayout(layout, "multi");
        var blobs = Path.Combine(layout, "blobs", "sha256");
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(blobs, image.ConfigDigest[7..])))!;
        config["architecture"] = "arm64";
        var armConfig = System.Text.Encoding.UTF8.GetBytes(config.ToJsonString());
        var armConfigDigest = ContentStore.DigestOf(armConfig);
        File.WriteAllBytes(Path.Combine(blobs, armConfigDigest[7..]), armConfig);
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(blobs, image.ManifestDigest[7..])))!;
        manifest["config"]!["digest"] = armConfigDigest;
        manifest["config"]!["size"] = armConfig.Length;
        var armManifest = System.Text.Encoding.UTF8.GetBytes(manifest.ToJsonString());
        var armManifestDigest = ContentStore.DigestOf(armManifest);
        File.WriteAllBytes(Path.Combine(blobs, armManifestDigest[7..]), armManifest);
        var amdSize = new FileInfo(Path.Combine(blobs, image.ManifestDigest[7..])).Length;
        var inner = new JsonObject
        {
            ["schemaVersion"] = 2,
            ["mediaType"] = MediaTypes.OciIndex,
            ["manifests"] = new JsonArray(
                new JsonObject { ["mediaType"] = MediaTypes.OciManifest, ["digest"] = image.ManifestDigest, ["size"] = amdSize, ["platform"] = new JsonObject { ["architecture"] = "amd64", ["os"] = "linux" } },
                new JsonObject { ["mediaType"] = MediaTypes.OciManifest, ["digest"] = armManifestDigest, ["size"] = armManifest.Length, ["platform"] = new JsonObject { ["architecture"] = "arm64", ["os"] = "linux" } }),
        };
        var innerBytes = System.Text.Encoding.UTF8.GetBytes(inner.ToJsonString());
        var innerDigest = ContentStore.DigestOf(innerBytes);
        File.WriteAllBytes(Path.Combine(blobs, innerDigest[7..]), innerBytes);
        var index = new JsonObject
        {
            ["schemaVersion"] = 2,
            ["mediaType"] = MediaTypes.OciIndex,
            ["manifests"] = new JsonArray(new JsonObject
            {
                ["mediaType"] = MediaTypes.OciIndex, ["digest"] = innerDigest, ["size"] = innerBytes.Length,
                ["annotations"] = new JsonObject { ["org.opencontainers.image.ref.name"] = "multi" },
            }),
        };
        File.WriteAllText(Path.Combine(layout, "index.json"), index.ToJsonString());
        return (image.ManifestDigest, armManifestDigest);
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
}

using System.Text;
using Orchestrator.Images.Store;

namespace Orchestrator.Images.Tests;

public sealed class ContentStoreTests : IDisposable
{
    private readonly TempDir _dir = new("content-store");

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task A_blob_is_stored_under_its_digest_and_read_back()
    {
        var store = new ContentStore(_dir.Path);
        var data = Encoding.UTF8.GetBytes("hello layer");
        var digest = ContentStore.DigestOf(data);
        Assert.Equal(data.Length, await store.WriteAsync(data, digest));
        Assert.True(store.Contains(digest));
        using var read = new StreamReader(store.Open(digest));
        Assert.Equal("hello layer", await read.ReadToEndAsync());
        Assert.Equal(0, await store.WriteAsync(data, digest)); // present: not written again
    }

    [Fact]
    public async Task A_corrupt_blob_is_rejected_and_nothing_partial_is_left()
    {
        var store = new ContentStore(_dir.Path);
        var digest = ContentStore.DigestOf("the real content"u8);
        var error = await Assert.ThrowsAsync<DigestMismatchException>(() => store.WriteAsync(Encoding.UTF8.GetBytes("tampered content"), digest));
        Assert.StartsWith($"blob {digest} arrived as sha256:", error.Message, StringComparison.Ordinal);
        Assert.False(store.Contains(digest));
        Assert.Empty(Directory.GetFiles(_dir.Combine("ingest")));
        Assert.Empty(Directory.GetFiles(_dir.Combine("blobs", "sha256")));
    }

    [Fact]
    public async Task A_blob_longer_than_announced_is_stopped_at_the_size()
    {
        var store = new ContentStore(_dir.Path);
        var data = new byte[1000];
        await Assert.ThrowsAsync<DigestMismatchException>(() => store.WriteAsync(new MemoryStream(data), ContentStore.DigestOf(data), size: 10));
        Assert.Empty(store.Digests());
    }

    [Fact]
    public async Task The_disk_budget_refuses_a_blob_that_would_exceed_it()
    {
        var store = new ContentStore(_dir.Path, budgetBytes: 1500);
        var first = new byte[1000];
        await store.WriteAsync(first, ContentStore.DigestOf(first));
        var second = Enumerable.Repeat((byte)7, 1000).ToArray();
        var error = await Assert.ThrowsAsync<DiskBudgetExceededException>(() => store.WriteAsync(second, ContentStore.DigestOf(second)));
        Assert.Equal($"blob {ContentStore.DigestOf(second)} needs 1000 bytes but the image store holds 1000 of its 1500-byte budget; run gc, remove images or raise the budget (images.disk_budget)", error.Message);
        // Unknown size: refused as the bytes arrive, not after.
        await Assert.ThrowsAsync<DiskBudgetExceededException>(() => store.WriteAsync(new NonSeekable(second), ContentStore.DigestOf(second), size: null));
        Assert.Single(store.Digests());
        Assert.Equal(1000, store.UsedBytes);
    }

    [Fact]
    public async Task Sweep_removes_what_nothing_keeps()
    {
        var store = new ContentStore(_dir.Path);
        var kept = "kept"u8.ToArray();
        var dropped = "dropped"u8.ToArray();
        await store.WriteAsync(kept, ContentStore.DigestOf(kept));
        await store.WriteAsync(dropped, ContentStore.DigestOf(dropped));
        var removed = store.Sweep(new HashSet<string> { ContentStore.DigestOf(kept) });
        Assert.Equal([ContentStore.DigestOf(dropped)], removed);
        Assert.Equal([ContentStore.DigestOf(kept)], store.Digests());
    }

    [Theory]
    [InlineData("sha256:abc")]
    [InlineData("sha512:0000000000000000000000000000000000000000000000000000000000000000")]
    [InlineData("sha256:../../../../../../../../../../../../../../../../../../../../../etc/x")]
    public void Malformed_digests_never_become_paths(string digest)
        => Assert.Throws<ArgumentException>(() => new ContentStore(_dir.Path).PathOf(digest));

    private sealed class NonSeekable(byte[] data) : MemoryStream(data)
    {
        public override bool CanSeek => false;
    }
}

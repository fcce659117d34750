using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using Orchestrator.Client;
using Orchestrator.Api;

namespace Orchestrator.Fleet.Tests;

/// <summary>
/// FleetState.ReadAllAsync, the read under every scheduler pass and every `orchctl get`, against a
/// real nats-server while writers keep writing. It used to end at the watch's first "0 pending",
/// which nats-server says early when a key's last message is replaced before the consumer reaches
/// it: about 1 read in 100 came back with one key of five, and a scheduler that read its fleet
/// that way moved a live node's replicas away and deleted its key (a CI fault run, stop 33).
/// </summary>
[Trait("Category", "Integration")]
public sealed class ReadAllTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(Buckets.Nodes, 1)]
    [InlineData(Buckets.Deployments, 10)]
    public async Task A_read_of_the_whole_bucket_sees_every_key_while_writers_keep_writing(string name, int history)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var nats = await NatsServer.StartAsync();
        await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
        var kv = new NatsKVContext(new NatsJSContext(connection));
        var bucket = await FleetStore.OpenAsync(kv, name, history, ct);
        const int keys = 5;
        for (var k = 0; k < keys; k++)
        {
            await bucket.PutAsync($"n{k}", new byte[] { 1, 2, 3 }, cancellationToken: ct);
        }
        // Keys that are gone: a delete marker and a purge marker are in the stream, never in the read.
        await bucket.PutAsync("deleted", new byte[] { 1 }, cancellationToken: ct);
        await bucket.DeleteAsync("deleted", cancellationToken: ct);
        await bucket.PutAsync("purged", new byte[] { 1 }, cancellationToken: ct);
        await bucket.PurgeAsync("purged", cancellationToken: ct);

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var writes = 0;
        var writers = Enumerable.Range(0, keys).Select(k => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await bucket.PutAsync($"n{k}", new byte[] { 1, 2, 3 }, cancellationToken: stop.Token);
                Interlocked.Increment(ref writes);
                await Task.Delay(Random.Shared.Next(0, 3), stop.Token);
            }
        }, stop.Token)).ToList();
        var shortReads = new List<string>();
        for (var i = 0; i < 1500; i++)
        {
            var all = await FleetState.ReadAllAsync(bucket, ct);
            if (all.Count != keys || !all.Keys.All(k => k.StartsWith('n')))
            {
                shortReads.Add($"read {i}: {string.Join(",", all.Keys.Order(StringComparer.Ordinal))}");
            }
        }
        await stop.CancelAsync();
        try
        {
            await Task.WhenAll(writers);
        }
        catch (OperationCanceledException)
        {
        }
        output.WriteLine($"1500 reads beside {writes} writes");
        Assert.True(writes > 1000, $"only {writes} writes ran beside the reads: the test did not race them");
        Assert.True(shortReads.Count == 0, $"{shortReads.Count} of 1500 reads wrong:\n{string.Join("\n", shortReads.Take(20))}");
    }

    [Fact]
    public async Task An_empty_bucket_and_one_with_only_deleted_keys_read_as_empty()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var nats = await NatsServer.StartAsync();
        await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
        var kv = new NatsKVContext(new NatsJSContext(connection));
        var bucket = await FleetStore.OpenAsync(kv, Buckets.NodeSettings, 1, ct);
        Assert.Empty(await FleetState.ReadAllAsync(bucket, ct));
        await bucket.PutAsync("a", new byte[] { 1 }, cancellationToken: ct);
        await bucket.DeleteAsync("a", cancellationToken: ct);
        Assert.Empty(await FleetState.ReadAllAsync(bucket, ct));
    }
}

using System.Net.Sockets;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;

namespace Orchestrator.Testing.Tests;

[Trait("Category", "Integration")]
public sealed class NatsServerTests
{
    [Fact(Timeout = 90_000)]
    public async Task Serves_request_reply_and_jetstream_kv_then_cleans_up()
    {
        string store;
        int port;
        await using (var server = await NatsServer.StartAsync())
        {
            store = server.StoreDir;
            port = server.Port;
            await using var nats = new NatsConnection(new NatsOpts { Url = server.Url });
            await nats.ConnectAsync();

            await using var sub = await nats.SubscribeCoreAsync<string>("test.echo");
            var responder = Task.Run(async () =>
            {
                await foreach (var msg in sub.Msgs.ReadAllAsync())
                {
                    await msg.ReplyAsync("echo:" + msg.Data);
                    break;
                }
            });
            var reply = await nats.RequestAsync<string, string>("test.echo", "hi");
            Assert.Equal("echo:hi", reply.Data);
            await responder;

            var kv = new NatsKVContext(new NatsJSContext(nats));
            var bucket = await kv.CreateStoreAsync("fixture");
            await bucket.PutAsync("k", "v");
            var entry = await bucket.GetEntryAsync<string>("k");
            Assert.Equal("v", entry.Value);
            Assert.True(Directory.Exists(store));
        }

        Assert.False(Directory.Exists(store));
        using var client = new TcpClient();
        await Assert.ThrowsAnyAsync<SocketException>(() => client.ConnectAsync("127.0.0.1", port));
    }

    [Fact(Timeout = 90_000)]
    public async Task Restart_keeps_port_and_store()
    {
        await using var server = await NatsServer.StartAsync();
        await using var nats = new NatsConnection(new NatsOpts { Url = server.Url });
        var kv = new NatsKVContext(new NatsJSContext(nats));
        var bucket = await kv.CreateStoreAsync("durable");
        await bucket.PutAsync("k", "kept");

        await server.StopAsync();
        Assert.False(server.IsRunning);
        await server.StartAgainAsync();

        await using var again = new NatsConnection(new NatsOpts { Url = server.Url });
        var reopened = await new NatsKVContext(new NatsJSContext(again)).GetStoreAsync("durable");
        Assert.Equal("kept", (await reopened.GetEntryAsync<string>("k")).Value);
    }
}

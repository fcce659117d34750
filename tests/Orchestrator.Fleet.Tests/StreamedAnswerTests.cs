using System.Text;
using System.Text.Json;
using NATS.Client.Core;
using Orchestrator.Client;
using Orchestrator.Api;

namespace Orchestrator.Fleet.Tests;

/// <summary>
/// The client's side of streamed answers against a stand-in node on a real nats-server: a node
/// from before streaming (one buffered reply) still serves a streaming client, and an error comes
/// back as the client's exception.
/// </summary>
[Trait("Category", "Integration")]
public sealed class StreamedAnswerTests
{
    [Fact(Timeout = 60_000)]
    public async Task A_node_from_before_streaming_answers_exec_and_pull_once_and_the_client_takes_that()
    {
        await using var nats = await NatsServer.StartAsync();
        await using var node = new NatsConnection(new NatsOpts { Url = nats.Url });
        await using var client = new NatsConnection(new NatsOpts { Url = nats.Url });
        using var stop = new CancellationTokenSource();
        var sub = await node.SubscribeCoreAsync<byte[]>("orch.node.old.*", cancellationToken: stop.Token);
        var serving = Task.Run(async () =>
        {
            await foreach (var msg in sub.Msgs.ReadAllAsync(stop.Token))
            {
                // What an old node sends: unknown request fields ignored, one reply.
                byte[] reply = msg.Subject.EndsWith(".exec", StringComparison.Ordinal)
                    ? JsonSerializer.Deserialize(msg.Data!, FleetJsonContext.Default.ExecRequest)!.Name == "ghost"
                        ? JsonSerializer.SerializeToUtf8Bytes(new ErrorReply { Error = "no container 'ghost' on this node; `ps` lists the ones there are" }, FleetJsonContext.Default.ErrorReply)
                        : JsonSerializer.SerializeToUtf8Bytes(new ExecReply { ExitCode = 3, Stdout = "out\n", Stderr = "err\n" }, FleetJsonContext.Default.ExecReply)
                    : JsonSerializer.SerializeToUtf8Bytes(new Orchestrator.Api.ImageSummary { Name = "busybox:latest", ManifestDigest = "sha256:abc", Platform = "linux/amd64", Size = 42 },
                        FleetJsonContext.Default.ImageSummary);
                await msg.ReplyAsync(reply);
            }
        });
        await node.PingAsync();
        var api = new NodeClient(client, "old");

        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        var end = await api.ExecStreamAsync("box", ["sh", "-c", "echo out; echo err >&2; exit 3"], chunk =>
        {
            (chunk.Stream == "stderr" ? stderr : stdout).Append(Encoding.UTF8.GetString(chunk.Data));
            return ValueTask.CompletedTask;
        });
        Assert.Equal((3, false, "out\n", "err\n"), (end.ExitCode, end.TimedOut, stdout.ToString(), stderr.ToString()));

        var progressed = 0;
        var image = await api.PullAsync("busybox:latest", _ => progressed++);
        Assert.Equal(("busybox:latest", "sha256:abc", 0), (image.Name, image.ManifestDigest, progressed));

        // exec -it to an old node: it ran the command its old way and opened no session; the client says so.
        var old = await Assert.ThrowsAsync<NodeRequestException>(() => api.ExecInteractiveAsync("box", ["sh"], new MemoryStream(), tty: true, 24, 80, (_, _) => ValueTask.CompletedTask));
        Assert.Contains("predates exec -i/-t; upgrade it", old.Message, StringComparison.Ordinal);

        var error = await Assert.ThrowsAsync<NodeRequestException>(() => api.ExecStreamAsync("ghost", ["true"], _ => ValueTask.CompletedTask));
        Assert.Equal("no container 'ghost' on this node; `ps` lists the ones there are", error.Message);

        var nobody = await Assert.ThrowsAsync<NodeRequestException>(() => new NodeClient(client, "absent").ExecStreamAsync("box", ["true"], _ => ValueTask.CompletedTask));
        Assert.Equal("no node 'absent' is connected to the fleet; `orchctl get nodes` lists the nodes that are", nobody.Message);
        Assert.IsType<NatsNoRespondersException>(nobody.InnerException);

        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => serving);
    }
}

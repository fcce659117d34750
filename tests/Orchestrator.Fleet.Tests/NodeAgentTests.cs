using Microsoft.Extensions.Logging.Abstractions;
using NATS.Client.Core;
using Orchestrator.Fleet.Agent;
using Orchestrator.Client;
using Orchestrator.Api;

namespace Orchestrator.Fleet.Tests;

[Trait("Category", "Integration")]
public sealed class NodeAgentTests
{
    private static NodeAgent Agent(string name, string url, IReadOnlyDictionary<string, string>? labels = null) => new(
        new NodeIdentity { NodeName = name, NodeId = Guid.NewGuid().ToString("N"), Version = "test", Runtime = "native", Labels = labels ?? new Dictionary<string, string>() },
        new NatsSettings { Urls = [url], MaxBackoff = TimeSpan.FromSeconds(1) },
        NullLogger<NodeAgent>.Instance);

    private static Task WaitConnectedAsync(NodeAgent agent)
        => Eventually.TrueAsync("the agent connected to NATS", () => agent.IsConnected, TimeSpan.FromSeconds(6));

    [Fact(Timeout = 90_000)]
    public async Task Every_node_answers_discovery_and_its_own_subject()
    {
        await using var nats = await NatsServer.StartAsync();
        using var stop = new CancellationTokenSource();
        var agents = new[] { Agent("n1", nats.Url, new Dictionary<string, string> { ["zone"] = "a" }), Agent("n2", nats.Url), Agent("n3", nats.Url) };
        var runs = agents.Select(a => a.RunAsync(stop.Token)).ToArray();
        foreach (var agent in agents)
        {
            // "Connected" is announced only once the server has the node's subscriptions.
            await WaitConnectedAsync(agent);
        }

        await using var client = new NatsConnection(new NatsOpts { Url = nats.Url });
        var fleet = new FleetClient(client);
        var all = await fleet.DiscoverNodesAsync(TimeSpan.FromSeconds(3), TimeSpan.FromMilliseconds(300));
        Assert.Equal(["n1", "n2", "n3"], all.Select(n => n.Node));

        var one = await fleet.GetNodeInfoAsync("n1", TimeSpan.FromSeconds(3));
        Assert.NotNull(one);
        Assert.Equal("a", one.Labels["zone"]);
        Assert.Equal(1, one.SchemaVersion);
        Assert.Null(await fleet.GetNodeInfoAsync("nobody", TimeSpan.FromMilliseconds(500)));

        stop.Cancel();
        await Task.WhenAll(runs).WaitAsync(TimeSpan.FromSeconds(10));
        foreach (var agent in agents)
        {
            await agent.DisposeAsync();
        }
    }

    [Fact(Timeout = 90_000)]
    public async Task Comes_up_offline_and_connects_when_the_server_appears()
    {
        var port = FreePort.Next();
        var agent = Agent("late", $"nats://127.0.0.1:{port}");
        var statuses = new List<string>();
        agent.StatusChanged += s => { lock (statuses) { statuses.Add(s); } };
        using var stop = new CancellationTokenSource();
        var run = agent.RunAsync(stop.Token);
        await Eventually.TrueAsync("a first status line", () => { lock (statuses) { return statuses.Count > 0; } }, TimeSpan.FromSeconds(10));
        Assert.False(agent.IsConnected);
        Assert.False(run.IsCompleted);
        lock (statuses)
        {
            Assert.StartsWith("offline: cannot reach", statuses[0], StringComparison.Ordinal);
        }

        await using var nats = await NatsServer.StartAsync(port: port);
        await WaitConnectedAsync(agent);
        stop.Cancel();
        await run.WaitAsync(TimeSpan.FromSeconds(10));
        await agent.DisposeAsync();
    }

    [Fact(Timeout = 90_000)]
    public async Task Cancelling_while_offline_ends_promptly()
    {
        var agent = Agent("gone", $"nats://127.0.0.1:{FreePort.Next()}");
        var offline = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        agent.StatusChanged += s => { if (s.StartsWith("offline", StringComparison.Ordinal)) { offline.TrySetResult(); } };
        using var stop = new CancellationTokenSource();
        var run = agent.RunAsync(stop.Token);
        await offline.Task.WaitAsync(TimeSpan.FromSeconds(10)); // in its retry loop, not before it
        stop.Cancel();
        await run.WaitAsync(TimeSpan.FromSeconds(3));
        await agent.DisposeAsync();
    }

    [Theory]
    [InlineData("gw-01", true)]
    [InlineData("edge_7", true)]
    [InlineData("gw.01", false)]
    [InlineData("a*", false)]
    [InlineData("a>", false)]
    [InlineData("", false)]
    [InlineData("has space", false)]
    public void Node_names_must_be_single_subject_tokens(string name, bool valid)
        => Assert.Equal(valid, Subjects.IsValidToken(name));

    [Fact]
    public void Display_urls_hide_credentials()
        => Assert.Equal("nats://***@host:4222", new NatsSettings { Urls = ["nats://user:pw@host:4222"] }.DisplayUrls);
}

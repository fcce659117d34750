using NATS.Client.Core;
using Orchestrator.Client;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Fleet.Tests;

/// <summary>
/// A deployment's REVISION is its own count of writes (1, 2, 3, …), not the bucket's sequence,
/// which every other deployment's writes move on (the fault run saw 5 jump to 206).
/// </summary>
[Trait("Category", "Integration")]
public sealed class DeploymentRevisionTests
{
    private static Deployment Sleeper(string name, string version) => new()
    {
        Name = name, Replicas = 1,
        Template = new Workload { Image = "busybox:latest", Command = ["sleep", "1000"], Env = new() { ["V"] = version } },
    };

    [Fact]
    public async Task Revisions_count_the_deployments_own_writes_and_undo_takes_them()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var nats = await NatsServer.StartAsync();
        await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
        var fleet = new FleetClient(connection);

        Assert.Equal(1UL, (await fleet.ApplyAsync([Sleeper("web", "1")], cancellationToken: ct)).Single().Revision);
        for (var i = 0; i < 30; i++)
        {
            await fleet.ApplyAsync([Sleeper($"other{i % 3}", i.ToString(System.Globalization.CultureInfo.InvariantCulture))], cancellationToken: ct);
        }
        Assert.Equal(2UL, (await fleet.ApplyAsync([Sleeper("web", "2")], cancellationToken: ct)).Single().Revision);
        Assert.Equal(3UL, (await fleet.ScaleAsync("web", 3, ct)).ShownRevision()); // what orchctl scale prints: not the bucket's sequence
        Assert.Equal(4UL, await fleet.SetPausedAsync("web", paused: true, ct));

        var web = (await fleet.GetDeploymentsAsync(ct)).Single(d => d.Deployment.Name == "web").Deployment;
        Assert.Equal(4UL, web.ShownRevision());
        Assert.True(web.Revision > 30, $"the bucket's revision ({web.Revision}) is not what is shown");
        Assert.Equal([1UL, 2UL, 3UL, 4UL], (await fleet.HistoryAsync("web", ct)).Select(h => h.Deployment!.ShownRevision()));
        Assert.Equal(10UL, (await fleet.GetDeploymentsAsync(ct)).Single(d => d.Deployment.Name == "other0").Deployment.ShownRevision());

        // A paused deployment is not undone (the template would never roll out): resume first.
        var paused = await Assert.ThrowsAsync<NodeRequestException>(() => fleet.UndoAsync("web", toRevision: 1, cancellationToken: ct));
        Assert.Equal(Orchestrator.Api.ErrorKind.Conflict, paused.Kind);
        Assert.Equal(5UL, await fleet.SetPausedAsync("web", paused: false, ct));

        // undo --to-revision 1: revision 1's template, written as revision 6 with today's replica count.
        Assert.Equal(6UL, await fleet.UndoAsync("web", toRevision: 1, cancellationToken: ct));
        web = (await fleet.GetDeploymentsAsync(ct)).Single(d => d.Deployment.Name == "web").Deployment;
        Assert.Equal("1", web.Template.Env!["V"]);
        Assert.Equal(3, web.Replicas);
        Assert.Equal(6UL, web.ShownRevision());
        await Assert.ThrowsAsync<NodeRequestException>(() => fleet.UndoAsync("web", toRevision: 99, cancellationToken: ct));
    }
}

using NATS.Client.Core;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Fleet.Tests;

/// <summary>
/// Who owns an autoscaled deployment's replica count on apply (issue 26, item 4): the file when it
/// sets replicas (clamped to min/max), the fleet's count (the autoscaler's) when the file leaves it out.
/// </summary>
public sealed class ReplicaOwnershipTests
{
    private static Deployment FromFile(string yaml) => ManifestLoader.LoadFleetManifest(yaml, "web.yaml").Deployments.Single();

    private const string Autoscaled = "kind: Deployment\nname: web\ntemplate: {image: busybox, command: [sleep, \"3600\"]}\nautoscale: {min: 2, max: 6}\n";

    private static Deployment Stored(int replicas, bool autoscale = true) => new()
    {
        Name = "web", Replicas = replicas, Template = new Workload { Image = "busybox", Command = ["sleep", "3600"] },
        Autoscale = autoscale ? new AutoscaleSpec { Min = 2, Max = 6 } : null,
    };

    [Fact]
    public void The_loader_tells_a_left_out_replicas_from_one_that_is_written()
    {
        var omitted = FromFile(Autoscaled);
        Assert.True(omitted.ReplicasOmitted());
        Assert.Equal(1, omitted.Replicas);
        var one = FromFile(Autoscaled + "replicas: 1\n");
        Assert.False(one.ReplicasOmitted());
        Assert.Equal(1, one.Replicas);
        // Never on the wire, and not a field a manifest may set.
        Assert.DoesNotContain("replicasOmitted", System.Text.Json.JsonSerializer.Serialize(omitted, WorkloadJsonContext.Default.Deployment), StringComparison.OrdinalIgnoreCase);
        var e = Assert.Throws<ManifestException>(() => FromFile(Autoscaled + "replicasOmitted: true\n"));
        Assert.Contains("replicasOmitted: unknown field", e.Message, StringComparison.Ordinal);
        // An empty value keeps the default, as everywhere in a manifest: left out.
        Assert.True(FromFile(Autoscaled + "replicas:\n").ReplicasOmitted());
    }

    [Fact]
    public void Left_out_keeps_the_autoscalers_count_applied_once_or_twice()
    {
        var first = ReplicaOwnership.Decide(FromFile(Autoscaled), Stored(4));
        Assert.Equal(new ReplicaDecision(4, "replicas 4 kept (the autoscaler's count: the file leaves replicas out)"), first);
        var again = FromFile(Autoscaled);
        ReplicaOwnership.Apply(again, Stored(4));
        Assert.Equal(4, again.Replicas);
        Assert.Equal(4, ReplicaOwnership.Decide(again, Stored(4)).Replicas);
    }

    [Fact]
    public void Left_out_on_a_new_deployment_starts_at_the_default_within_min_and_max()
    {
        Assert.Equal(new ReplicaDecision(2, "replicas left out (1) is outside autoscale 2-6: 2 (autoscale.min 2)"), ReplicaOwnership.Decide(FromFile(Autoscaled), null));
        Assert.Equal(new ReplicaDecision(1, null), ReplicaOwnership.Decide(FromFile(Autoscaled.Replace("min: 2", "min: 1", StringComparison.Ordinal)), null));
    }

    [Fact]
    public void Left_out_with_new_bounds_clamps_the_kept_count()
    {
        var narrower = FromFile(Autoscaled.Replace("max: 6", "max: 3", StringComparison.Ordinal));
        Assert.Equal(new ReplicaDecision(3, "replicas 5 → 3: kept from the fleet (the autoscaler's count) and clamped to autoscale 2-3"), ReplicaOwnership.Decide(narrower, Stored(5)));
    }

    [Fact]
    public void Autoscale_added_to_a_deployment_takes_over_from_its_count()
    {
        Assert.Equal(new ReplicaDecision(3, "replicas 3 kept (the fleet's count; the autoscaler takes over from it: the file leaves replicas out)"),
            ReplicaOwnership.Decide(FromFile(Autoscaled), Stored(3, autoscale: false)));
    }

    [Theory]
    [InlineData(5, 5, "replicas 4 → 5: set in the file (the autoscaler carries on from there)")]
    [InlineData(4, 4, null)]
    [InlineData(20, 6, "replicas 20 in the file is outside autoscale 2-6: 6 (autoscale.max 6)")]
    [InlineData(0, 2, "replicas 0 in the file is outside autoscale 2-6: 2 (autoscale.min 2)")]
    public void Written_in_the_file_wins_within_min_and_max(int inFile, int stored, string? note)
    {
        var decision = ReplicaOwnership.Decide(FromFile(Autoscaled + $"replicas: {inFile}\n"), Stored(4));
        Assert.Equal(new ReplicaDecision(stored, note), decision);
    }

    [Fact]
    public void Autoscale_taken_out_of_the_file_gives_the_count_back_to_the_file()
    {
        var plain = FromFile("kind: Deployment\nname: web\ntemplate: {image: busybox, command: [sleep, \"3600\"]}\n");
        Assert.Equal(new ReplicaDecision(1, "replicas 4 → 1: autoscale is no longer in the file, so the file owns the count again (1 when replicas is left out; set replicas to keep another)"),
            ReplicaOwnership.Decide(plain, Stored(4)));
        var three = FromFile("kind: Deployment\nname: web\nreplicas: 3\ntemplate: {image: busybox, command: [sleep, \"3600\"]}\n");
        Assert.Equal(new ReplicaDecision(3, null), ReplicaOwnership.Decide(three, Stored(4)));
        // Without autoscale before or now, the file owns the count as it always did.
        Assert.Equal(new ReplicaDecision(1, null), ReplicaOwnership.Decide(plain, Stored(4, autoscale: false)));
    }

    [Fact]
    public void A_deployment_built_in_code_is_explicit()
    {
        var built = Stored(3);
        Assert.False(built.ReplicasOmitted());
        Assert.Equal(new ReplicaDecision(3, "replicas 5 → 3: set in the file (the autoscaler carries on from there)"), ReplicaOwnership.Decide(built, Stored(5)));
    }
}

/// <summary>FleetClient.ApplyAsync against a real nats-server: what is stored when an autoscaled deployment is applied again.</summary>
[Trait("Category", "Integration")]
public sealed class ApplyKeepsTheAutoscalersCountTests
{
    private const string Autoscaled = "kind: Deployment\nname: web\ntemplate: {image: busybox, command: [sleep, \"3600\"]}\nautoscale: {min: 1, max: 6}\n";

    private static Deployment FromFile(string yaml) => ManifestLoader.LoadFleetManifest(yaml, "web.yaml").Deployments.Single();

    [Fact]
    public async Task Apply_twice_explicit_out_of_bounds_autoscale_removed_and_deleted_then_applied()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var nats = await NatsServer.StartAsync();
        await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
        var fleet = new FleetClient(connection);
        async Task<int> ReplicasAsync() => (await fleet.GetDeploymentsAsync(ct)).Single().Deployment.Replicas;

        await fleet.ApplyAsync([FromFile(Autoscaled)], cancellationToken: ct);
        Assert.Equal(1, await ReplicasAsync());
        await fleet.ScaleAsync("web", 4, ct); // what the autoscaler writes

        // The same file, twice: the autoscaler's 4 stays.
        await fleet.ApplyAsync([FromFile(Autoscaled)], cancellationToken: ct);
        Assert.Equal(4, await ReplicasAsync());
        await fleet.ApplyAsync([FromFile(Autoscaled.Replace("3600", "3601", StringComparison.Ordinal))], cancellationToken: ct);
        Assert.Equal(4, await ReplicasAsync());
        Assert.Equal("3601", (await fleet.GetDeploymentsAsync(ct)).Single().Deployment.Template.Command![1]);

        // Set in the file: it wins, within min and max.
        await fleet.ApplyAsync([FromFile(Autoscaled + "replicas: 5\n")], cancellationToken: ct);
        Assert.Equal(5, await ReplicasAsync());
        await fleet.ApplyAsync([FromFile(Autoscaled + "replicas: 50\n")], cancellationToken: ct);
        Assert.Equal(6, await ReplicasAsync());
        await fleet.ApplyAsync([FromFile(Autoscaled)], cancellationToken: ct);
        Assert.Equal(6, await ReplicasAsync());

        // autoscale taken out, replicas left out: the file's default again.
        await fleet.ApplyAsync([FromFile(Autoscaled.Replace("autoscale: {min: 1, max: 6}\n", "", StringComparison.Ordinal))], cancellationToken: ct);
        Assert.Equal(1, await ReplicasAsync());

        // Deleted and applied again: a new deployment (create over the delete marker).
        await fleet.ScaleAsync("web", 3, ct);
        await fleet.DeleteDeploymentAsync("web", ct);
        await fleet.ApplyAsync([FromFile(Autoscaled)], cancellationToken: ct);
        Assert.Equal(1, await ReplicasAsync());
        Assert.Equal(1UL, (await fleet.GetDeploymentsAsync(ct)).Single().Deployment.Generation);
    }
}

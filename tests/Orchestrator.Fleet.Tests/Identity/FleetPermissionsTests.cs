using System.Text.RegularExpressions;
using Orchestrator.Api;
using Orchestrator.Client.Identity;

namespace Orchestrator.Fleet.Tests.Identity;

/// <summary>
/// The rights an enrolled node's JWT carries are the rights packaging/nats/gen-fleet-users.sh gives
/// a static nkey user of the same kind (plus renewing its own JWT): two ways to configure a fleet,
/// one set of permissions. A subject added to one and not the other fails here.
/// </summary>
public sealed partial class FleetPermissionsTests
{
    [Fact]
    public async Task Enrolled_nodes_and_operators_get_exactly_the_rights_of_the_static_configuration()
    {
        using var pair = NATS.NKeys.KeyPair.CreatePair(NATS.NKeys.PrefixByte.User);
        var key = pair.GetPublicKey();
        await using var script = DaemonProcess.Start("/bin/bash", [Path.Combine(Repo.Root, "packaging", "nats", "gen-fleet-users.sh"),
            "--operator", key, "--node", $"gw-1={key}", "--scheduler", $"gw-2={key}"]);
        Assert.Equal(0, await script.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        var blocks = script.Output.Split("# ", StringSplitOptions.RemoveEmptyEntries);
        (List<string> Publish, List<string> Subscribe) Rights(string heading)
        {
            var block = blocks.Single(b => b.StartsWith(heading, StringComparison.Ordinal));
            return (Subjects(PublishLine().Match(block).Groups[1].Value), Subjects(SubscribeLine().Match(block).Groups[1].Value));
        }

        var worker = Rights("worker node gw-1");
        var enrolledWorker = FleetPermissions.Node("gw-1");
        Assert.Equal(worker.Publish.Append(IdentitySubjects.Renew).Order(StringComparer.Ordinal), enrolledWorker.PublishAllow.Order(StringComparer.Ordinal));
        Assert.Equal(worker.Subscribe.Order(StringComparer.Ordinal), enrolledWorker.SubscribeAllow.Order(StringComparer.Ordinal));

        var scheduler = Rights("scheduler-eligible node gw-2");
        var enrolledScheduler = FleetPermissions.Scheduler("gw-2");
        Assert.Equal(scheduler.Publish.Append(IdentitySubjects.Renew).Order(StringComparer.Ordinal), enrolledScheduler.PublishAllow.Order(StringComparer.Ordinal));
        Assert.Equal(scheduler.Subscribe.Order(StringComparer.Ordinal), enrolledScheduler.SubscribeAllow.Order(StringComparer.Ordinal));

        var op = Rights("operator (orchctl)");
        var admin = FleetPermissions.Operator("admin");
        Assert.Equal(op.Publish, admin.PublishAllow);
        Assert.Equal(op.Subscribe, admin.SubscribeAllow);
    }

    [Fact]
    public void A_deployer_cannot_touch_nodes_or_identity_and_a_viewer_writes_nothing()
    {
        var deployer = FleetPermissions.Operator("deployer");
        Assert.Contains("$KV.orch-node-settings.>", deployer.PublishDeny);
        Assert.Contains("orch.identity.>", deployer.PublishDeny);
        var viewer = FleetPermissions.Operator("viewer");
        Assert.DoesNotContain(viewer.PublishAllow, s => s.StartsWith("$KV.", StringComparison.Ordinal) || s == "orch.>" || s.EndsWith(".exec", StringComparison.Ordinal));
        Assert.Throws<ArgumentException>(() => FleetPermissions.Operator("root"));
    }

    private static List<string> Subjects(string list) => [.. QuotedSubject().Matches(list).Select(m => m.Groups[1].Value)];

    [GeneratedRegex("publish: \\{ allow: \\[([^\\]]*)\\]")]
    private static partial Regex PublishLine();

    [GeneratedRegex("subscribe: \\{ allow: \\[([^\\]]*)\\]")]
    private static partial Regex SubscribeLine();

    [GeneratedRegex("\"([^\"]+)\"")]
    private static partial Regex QuotedSubject();
}

/// <summary>Identity records and replies read from JSON that leaves out the optional fields (an older writer, a hand-made request).</summary>
public sealed class IdentityWireTests
{
    [Fact]
    public void Missing_collections_read_as_empty()
    {
        var token = System.Text.Json.JsonSerializer.Deserialize("""{"id":"a","secretHash":"b"}""", IdentityJsonContext.Default.TokenRecord)!;
        Assert.NotNull(token.UsedBy);
        Assert.NotNull(token.Labels);
        var reply = System.Text.Json.JsonSerializer.Deserialize("""{"node":"n","jwt":"j"}""", IdentityJsonContext.Default.EnrollReply)!;
        Assert.NotNull(reply.Labels);
        Assert.NotNull(reply.TrustedKeys);
        Assert.Null(System.Text.Json.JsonSerializer.Deserialize("{}", IdentityJsonContext.Default.TokenCreateRequest)!.Uses);
    }
}

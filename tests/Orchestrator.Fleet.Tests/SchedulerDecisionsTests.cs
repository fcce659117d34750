using Orchestrator.Api.Workloads;
using Orchestrator.Client;

namespace Orchestrator.Fleet.Tests;

/// <summary>
/// The deployment the fleet runs = the operator's stored revision + the scheduler's decisions
/// about that revision, kept in its status (#17, item 3: a scheduler cannot write deployments).
/// </summary>
public sealed class SchedulerDecisionsTests
{
    private static Deployment Web(string image, ulong revision, ulong generation, AutoscaleSpec? autoscale = null) => new()
    {
        Name = "web", Replicas = 2, Revision = revision, Generation = generation, Selector = new() { ["site"] = "lab" },
        Rollout = new RolloutSpec { MaxUnavailable = 1, ProgressDeadlineSeconds = 30 },
        Autoscale = autoscale,
        Template = new Workload { Image = image, Command = ["sleep", "3600"] },
    };

    private static DeploymentStatus About(ulong revision, int? replicas = null, DeploymentRollback? to = null)
        => new() { Name = "web", Revision = revision, AutoscaledReplicas = replicas, RolledBackTo = to };

    [Fact]
    public void A_decision_about_an_earlier_revision_is_ignored()
    {
        var stored = Web("web:2", revision: 7, generation: 2, autoscale: new AutoscaleSpec { Min = 1, Max = 9 });
        var earlier = Web("web:1", revision: 3, generation: 1);
        var effective = SchedulerDecisions.Apply(stored, About(revision: 5, replicas: 8, to: SchedulerDecisions.RollbackTo(earlier)));
        Assert.Same(stored, effective);
        Assert.Same(stored, SchedulerDecisions.Apply(stored, null));
        Assert.Same(stored, SchedulerDecisions.Apply(stored, About(revision: 7)));
        // A deployment read without its revision is never matched by a status (revision 0 included).
        var unread = Web("web:2", revision: 0, generation: 2);
        unread.Revision = null;
        Assert.Same(unread, SchedulerDecisions.Apply(unread, About(revision: 0, replicas: 5)));
    }

    [Fact]
    public void A_rollback_takes_only_the_signed_part_and_the_signature_still_verifies()
    {
        var (seed, key) = ManifestSigning.CreateKey();
        var v1 = Web("web:1", revision: 3, generation: 1);
        v1.Selector = new() { ["site"] = "old" };
        ManifestSigning.Sign(v1, seed, serial: 100);
        var v2 = Web("web:2", revision: 7, generation: 2);
        v2.Replicas = 5;
        v2.Rollout!.ProgressDeadlineSeconds = 60;
        ManifestSigning.Sign(v2, seed, serial: 200);

        var effective = SchedulerDecisions.Apply(v2, About(revision: 7, to: SchedulerDecisions.RollbackTo(v1)));
        Assert.Equal("web:1", effective.Template.Image);
        Assert.Equal("old", effective.Selector!["site"]);
        Assert.Equal(100, effective.Signature!.Serial);
        Assert.Null(ManifestSigning.Verify(effective.Name, effective.Selector, effective.Template, effective.Signature, [key]));
        // What is not signed stays the operator's: the count, how to roll out, the revision.
        Assert.Equal(5, effective.Replicas);
        Assert.Equal(60, effective.Rollout!.ProgressDeadlineSeconds);
        Assert.Equal(7UL, effective.Revision);
        Assert.Equal(2UL, effective.Generation);
        // The stored deployment is not touched.
        Assert.Equal("web:2", v2.Template.Image);
        Assert.Equal(200, v2.Signature!.Serial);
        effective.Template.Command![0] = "changed";
        Assert.Equal("sleep", v1.Template.Command![0]);
    }

    [Fact]
    public void A_rollback_whose_template_was_altered_no_longer_verifies()
    {
        // A stolen scheduler seed writes a status that "rolls back" to a template of its own under
        // an old signature: the effective deployment carries that signature, which does not match.
        var (seed, key) = ManifestSigning.CreateKey();
        var v1 = Web("web:1", revision: 3, generation: 1);
        ManifestSigning.Sign(v1, seed, serial: 100);
        var forged = SchedulerDecisions.RollbackTo(v1) with { Template = new Workload { Image = "evil:latest", Command = ["sh"] } };
        var v2 = Web("web:2", revision: 7, generation: 2);
        ManifestSigning.Sign(v2, seed, serial: 200);
        var effective = SchedulerDecisions.Apply(v2, About(revision: 7, to: forged));
        Assert.Contains("does not match its content", ManifestSigning.Verify(effective.Name, effective.Selector, effective.Template, effective.Signature, [key]), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(4, 4)]
    [InlineData(50, 6)]  // a count beyond max (a forged status) is clamped
    [InlineData(0, 2)]   // and below min
    public void An_autoscaled_count_holds_within_min_and_max(int decided, int runs)
    {
        var stored = Web("web:1", revision: 7, generation: 2, autoscale: new AutoscaleSpec { Min = 2, Max = 6 });
        Assert.Equal(runs, SchedulerDecisions.Apply(stored, About(revision: 7, replicas: decided)).Replicas);
        Assert.Equal(2, stored.Replicas);
    }

    [Fact]
    public void An_autoscaled_count_is_ignored_for_a_deployment_that_no_longer_autoscales()
    {
        var stored = Web("web:1", revision: 7, generation: 2);
        Assert.Equal(2, SchedulerDecisions.Apply(stored, About(revision: 7, replicas: 5)).Replicas);
    }
}

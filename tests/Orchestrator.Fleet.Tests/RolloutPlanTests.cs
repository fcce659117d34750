using Orchestrator.Api;
using Orchestrator.Fleet.Scheduler;
using Orchestrator.Node.Reconcile;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Fleet.Tests;

/// <summary>The scheduler's rollout arithmetic (FleetScheduler.Plan), pass by pass, with the nodes' reports simulated.</summary>
public sealed class RolloutPlanTests
{
    private static readonly DateTimeOffset s_t0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private static Deployment Web(string version, int replicas, RolloutSpec? rollout, ulong revision) => new()
    {
        Name = "web", Replicas = replicas, Rollout = rollout, Revision = revision, AntiAffinity = false,
        Template = new Workload { Image = "busybox", Command = ["sleep", version] },
    };

    [Fact]
    public void Max_unavailable_keeps_enough_replicas_ready_through_a_rollout()
    {
        var fleet = new PlanFleet(("a", "x"), ("b", "x"), ("c", "x"));
        fleet.Pass(Web("v1", 3, null, 1), s_t0);
        fleet.Pass(Web("v1", 3, null, 1), s_t0);
        var v2 = Web("v2", 3, new RolloutSpec { MaxUnavailable = 1 }, 2);
        for (var i = 0; i < 10; i++)
        {
            var status = fleet.Pass(v2, s_t0.AddSeconds(i));
            // A pass replaces at most one ready replica: the other two still run v1 or v2, ready.
            Assert.True(fleet.Versions.Count(v => v == "v2") <= i + 1);
            if (status.Phase == RolloutPhase.Complete)
            {
                break;
            }
        }
        Assert.All(fleet.Versions, v => Assert.Equal("v2", v));
        Assert.Equal(RolloutPhase.Complete, fleet.Statuses["web"].Phase);
    }

    [Fact]
    public void Every_placed_replica_ready_but_one_without_a_node_is_degraded_not_complete()
    {
        // Anti-affinity: three replicas, two nodes: web-2 has nowhere to go.
        var fleet = new PlanFleet(("a", "x"), ("b", "x"));
        var web = Web("v1", 3, null, 1);
        web.AntiAffinity = true;
        fleet.Pass(web, s_t0);
        var status = fleet.Pass(web, s_t0.AddSeconds(1));
        Assert.Equal(2, status.UpdatedReady);
        Assert.Equal(2, status.Placed);
        Assert.Contains("already runs a replica (antiAffinity)", Assert.Single(status.Unschedulable), StringComparison.Ordinal);
        Assert.Equal(RolloutPhase.Degraded, status.Phase);
        Assert.Null(status.Wave);

        // A third node: the replica gets placed, and only then is the rollout complete.
        fleet.Nodes.Add(fleet.Nodes[0] with { Info = fleet.Nodes[0].Info with { Node = "c", NodeId = "c" } });
        fleet.Pass(web, s_t0.AddSeconds(2));
        status = fleet.Pass(web, s_t0.AddSeconds(3));
        Assert.Empty(status.Unschedulable);
        Assert.Equal(3, status.UpdatedReady);
        Assert.Equal(RolloutPhase.Complete, status.Phase);
    }

    [Fact]
    public void A_rollout_that_does_not_get_ready_stops_counting_as_progress()
    {
        var fleet = new PlanFleet(("a", "x"), ("b", "x"), ("c", "x"));
        fleet.Pass(Web("v1", 3, null, 1), s_t0);
        fleet.NeverReady.Add("bad");
        DeploymentStatus status = null!;
        for (var i = 0; i < 30; i++)
        {
            status = fleet.Pass(Web("bad", 3, new RolloutSpec { MaxUnavailable = 1 }, 2), s_t0.AddSeconds(i));
        }
        Assert.Equal(RolloutPhase.Progressing, status.Phase);
        Assert.Equal(s_t0, status.LastProgressAt);
        Assert.True(status.Updated > status.UpdatedReady);
        Assert.Single(fleet.EverRan, r => r.Version == "bad"); // one at a time: the first one never got ready
    }

    [Fact]
    public void Max_surge_adds_a_new_replica_before_replacing_any_and_removes_it_at_the_end()
    {
        var fleet = new PlanFleet(("a", "x"), ("b", "x"), ("c", "x"));
        fleet.Pass(Web("v1", 3, null, 1), s_t0);
        var v2 = Web("v2", 3, new RolloutSpec { MaxUnavailable = 0, MaxSurge = 1 }, 2);
        var first = fleet.Pass(v2, s_t0);
        Assert.Equal(4, fleet.Assigned.Count); // web-3 on v2, the three others untouched
        Assert.Equal(1, first.Surge);
        Assert.Equal(3, fleet.Versions.Count(v => v == "v1"));
        for (var i = 1; i < 12 && fleet.Statuses["web"].Phase != RolloutPhase.Complete; i++)
        {
            fleet.Pass(v2, s_t0.AddSeconds(i));
            Assert.True(fleet.Assigned.Count <= 4);
        }
        Assert.Equal(RolloutPhase.Complete, fleet.Statuses["web"].Phase);
        Assert.Equal(3, fleet.Assigned.Count); // the surge replica is gone
        Assert.All(fleet.Versions, v => Assert.Equal("v2", v));
    }

    [Fact]
    public void A_canary_by_label_goes_first_and_the_rest_waits_for_its_hold()
    {
        var fleet = new PlanFleet(("a", "canary"), ("b", "main"), ("c", "main"));
        fleet.Pass(Web("v1", 3, null, 1), s_t0);
        var rollout = new RolloutSpec { MaxUnavailable = 1, Canary = new WaveSpec { Selector = new() { ["ring"] = "canary" }, HoldSeconds = 30 } };
        var v2 = Web("v2", 3, rollout, 2);
        var status = fleet.Pass(v2, s_t0);
        Assert.Equal("canary", status.Wave);
        fleet.Pass(v2, s_t0.AddSeconds(1));
        fleet.Pass(v2, s_t0.AddSeconds(10));
        Assert.Equal(["a"], fleet.EverRan.Where(r => r.Version == "v2").Select(r => r.Node).Distinct());
        fleet.Pass(v2, s_t0.AddSeconds(40)); // the canary has held 30 s
        for (var i = 41; i < 60 && fleet.Statuses["web"].Phase != RolloutPhase.Complete; i++)
        {
            fleet.Pass(v2, s_t0.AddSeconds(i));
        }
        Assert.Equal(RolloutPhase.Complete, fleet.Statuses["web"].Phase);
        Assert.All(fleet.Versions, v => Assert.Equal("v2", v));
    }

    [Fact]
    public void A_failing_canary_never_reaches_the_other_nodes()
    {
        var fleet = new PlanFleet(("a", "main"), ("b", "main"), ("c", "main"), ("d", "main"));
        fleet.Pass(Web("v1", 4, null, 1), s_t0);
        fleet.NeverReady.Add("bad");
        var rollout = new RolloutSpec { MaxUnavailable = 2, Canary = new WaveSpec { Percent = 25, HoldSeconds = 5 } };
        for (var i = 0; i < 200; i++)
        {
            var status = fleet.Pass(Web("bad", 4, rollout, 2), s_t0.AddSeconds(i));
            Assert.Equal("canary", status.Wave);
            Assert.Equal(RolloutPhase.Progressing, status.Phase);
        }
        Assert.Single(fleet.EverRan, r => r.Version == "bad"); // web-0 only; the deadline's rollback is the caller's
        Assert.Equal(s_t0, fleet.Statuses["web"].LastProgressAt); // stuck since the first pass: the deadline runs
        // A replica added meanwhile (scale to 5) gets the template the rest runs, not the one on trial.
        fleet.Pass(Web("bad", 5, rollout, 3), s_t0.AddSeconds(300));
        Assert.Equal("v1", Assignment.Parse(fleet.Assigned.Single(a => a.Key.EndsWith(".web-4", StringComparison.Ordinal)).Value).Template.Command![1]);
    }
}

using Orchestrator.Api;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Fleet.Tests;

/// <summary>
/// Global deployments (one copy per matching node) and rollouts in waves, through the scheduler's
/// arithmetic (FleetScheduler.Plan) pass by pass, with nodes joining, leaving, going offline and
/// failing in the middle.
/// </summary>
public sealed class GlobalDeploymentPlanTests
{
    private static readonly DateTimeOffset s_t0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private static Deployment Sensor(string version, ulong revision, RolloutSpec? rollout = null, Dictionary<string, string>? selector = null) => new()
    {
        Name = "sensor", Mode = DeploymentMode.Global, Revision = revision, Rollout = rollout,
        Selector = selector ?? new() { ["fleet"] = "sensors" },
        Template = new Workload { Image = "busybox", Command = ["sleep", version] },
    };

    private static PlanFleet Devices(int count, Func<int, Dictionary<string, string>>? labels = null)
    {
        var fleet = new PlanFleet();
        for (var i = 0; i < count; i++)
        {
            fleet.Add($"gw-{i:D3}", labels?.Invoke(i) ?? new() { ["fleet"] = "sensors" });
        }
        return fleet;
    }

    /// <summary>Passes one second apart until the rollout completes (or the limit); the last status.</summary>
    private static DeploymentStatus Until(PlanFleet fleet, Deployment deployment, ref DateTimeOffset now, Func<DeploymentStatus, bool> done, int limit = 600)
    {
        var status = fleet.Pass(deployment, now);
        for (var i = 0; i < limit && !done(status); i++)
        {
            now = now.AddSeconds(1);
            status = fleet.Pass(deployment, now);
        }
        return status;
    }

    [Fact]
    public void One_copy_on_every_matching_node_follows_the_labels_and_never_moves_off_a_lost_node()
    {
        var fleet = Devices(4, i => i < 3 ? new() { ["fleet"] = "sensors" } : new() { ["fleet"] = "cameras" });
        var now = s_t0;
        var status = fleet.Pass(Sensor("v1", 1), now);
        Assert.Equal(["gw-000", "gw-001", "gw-002"], status.Replicas.Values.Order(StringComparer.Ordinal));
        Assert.Equal(3, status.Desired);
        var names = status.Replicas.ToDictionary(r => r.Value, r => r.Key, StringComparer.Ordinal);

        // gw-003 gains the label: its copy comes at the next pass; the others keep their names.
        fleet.Set("gw-003", n => n with { Info = n.Info with { Labels = new Dictionary<string, string> { ["fleet"] = "sensors" } } });
        status = fleet.Pass(Sensor("v1", 1), now = now.AddSeconds(1));
        Assert.Equal(4, status.Placed);
        Assert.All(names, kv => Assert.Equal(kv.Value, status.Replicas.Single(r => r.Value == kv.Key).Key));
        status = fleet.Pass(Sensor("v1", 1), now = now.AddSeconds(1));
        Assert.Equal(RolloutPhase.Complete, status.Phase);
        Assert.Equal(4, status.UpdatedReady);

        // gw-001 leaves the selector: its copy goes. gw-002 is lost: its copy stays assigned to it
        // (never moved anywhere, no second copy), counted as pending. gw-000 drains: its copy goes.
        fleet.Set("gw-001", n => n with { Info = n.Info with { Labels = new Dictionary<string, string> { ["fleet"] = "cameras" } } });
        fleet.Offline("gw-002", NodeCondition.Lost);
        fleet.Set("gw-000", n => n with { Draining = true });
        status = fleet.Pass(Sensor("v1", 1), now = now.AddSeconds(1));
        Assert.Equal(["gw-002", "gw-003"], status.Replicas.Values.Order(StringComparer.Ordinal));
        Assert.Equal(1, status.Pending);
        Assert.Equal(RolloutPhase.Complete, status.Phase); // an offline device does not hold a global deployment up
        Assert.DoesNotContain(fleet.Assigned.Keys, k => k.StartsWith("gw-001.", StringComparison.Ordinal) || k.StartsWith("gw-000.", StringComparison.Ordinal));

        // A cordoned node keeps its copy but a new matching cordoned node gets none; a revoked node loses it.
        fleet.Set("gw-003", n => n with { Cordoned = true });
        fleet.Add("gw-004", new() { ["fleet"] = "sensors" });
        fleet.Set("gw-004", n => n with { Cordoned = true });
        status = fleet.Pass(Sensor("v1", 1), now = now.AddSeconds(1));
        Assert.Equal(["gw-002", "gw-003"], status.Replicas.Values.Order(StringComparer.Ordinal));
        fleet.Set("gw-002", n => n with { Revoked = true });
        status = fleet.Pass(Sensor("v1", 1), now = now.AddSeconds(1));
        Assert.Equal(["gw-003"], status.Replicas.Values);

        // The lost device comes back (unrevoked in this story): it gets a copy again, under a free name.
        fleet.Set("gw-002", n => n with { Revoked = false });
        fleet.Online("gw-002");
        status = fleet.Pass(Sensor("v1", 1), now.AddSeconds(1));
        Assert.Equal(["gw-002", "gw-003"], status.Replicas.Values.Order(StringComparer.Ordinal));
        Assert.Equal(status.Replicas.Count, status.Replicas.Keys.Distinct().Count());
    }

    [Fact]
    public void Waves_by_percent_open_one_after_the_other_each_after_its_hold()
    {
        var fleet = Devices(20);
        var now = s_t0;
        Until(fleet, Sensor("v1", 1), ref now, s => s.Phase == RolloutPhase.Complete);
        var rollout = new RolloutSpec
        {
            MaxUnavailablePercent = 100, ProgressDeadlineSeconds = 600,
            Waves = [new WaveSpec { Percent = 5, HoldSeconds = 60 }, new WaveSpec { Percent = 50, HoldSeconds = 60 }],
        };
        var v2 = Sensor("v2", 2, rollout);
        var start = now = now.AddSeconds(1);
        var status = fleet.Pass(v2, now);
        Assert.Equal("5%", status.Wave);
        Assert.Equal(["5%", "50%", "rest"], status.Waves!.Select(w => w.Name));
        Assert.Equal([1, 9, 10], status.Waves!.Select(w => w.Replicas));
        Assert.Equal(1, fleet.Versions.Count(v => v == "v2"));

        // Held: one device on v2 for 60 s; nothing else moves meanwhile.
        status = Until(fleet, v2, ref now, s => s.Waves![0].State == "held");
        status = Until(fleet, v2, ref now, s => s.Wave != "5%");
        Assert.True(now - start >= TimeSpan.FromSeconds(60), $"the first wave passed after {(now - start).TotalSeconds} s");
        Assert.Equal("50%", status.Wave);
        int RanV2() => fleet.EverRan.Where(r => r.Version == "v2").Select(r => r.Node).Distinct().Count();
        Assert.Equal(1, RanV2()); // the second wave opens at the next pass
        status = Until(fleet, v2, ref now, s => s.Wave == "rest");
        Assert.True(now - start >= TimeSpan.FromSeconds(120));
        Assert.Equal(10, RanV2()); // 50% of 20, cumulative
        status = Until(fleet, v2, ref now, s => s.Phase == RolloutPhase.Complete);
        Assert.Equal(RolloutPhase.Complete, status.Phase);
        Assert.All(fleet.Versions, v => Assert.Equal("v2", v));
        Assert.All(status.Waves!, w => Assert.Equal("passed", w.State));
    }

    [Fact]
    public void A_label_wave_goes_first_and_no_other_device_runs_the_release_before_its_hold()
    {
        var fleet = Devices(6, i => new() { ["fleet"] = "sensors", ["site"] = i < 2 ? "lab" : "field" });
        var now = s_t0;
        Until(fleet, Sensor("v1", 1), ref now, s => s.Phase == RolloutPhase.Complete);
        var v2 = Sensor("v2", 2, new RolloutSpec { MaxUnavailable = 6, Waves = [new WaveSpec { Selector = new() { ["site"] = "lab" }, HoldSeconds = 30 }] });
        var start = now = now.AddSeconds(1);
        var status = Until(fleet, v2, ref now, s => s.Wave == "rest");
        Assert.True(now - start >= TimeSpan.FromSeconds(30));
        Assert.Equal(["gw-000", "gw-001"], fleet.EverRan.Where(r => r.Version == "v2").Select(r => r.Node).Distinct().Order(StringComparer.Ordinal));
        status = Until(fleet, v2, ref now, s => s.Phase == RolloutPhase.Complete);
        Assert.All(fleet.Versions, v => Assert.Equal("v2", v));
    }

    [Fact]
    public void Max_failed_tolerates_dead_devices_and_one_more_holds_the_wave()
    {
        var fleet = Devices(10);
        var now = s_t0;
        Until(fleet, Sensor("v1", 1), ref now, s => s.Phase == RolloutPhase.Complete);
        fleet.BrokenNodes.Add("gw-002");
        fleet.BrokenNodes.Add("gw-007");
        var waves = new List<WaveSpec> { new() { Percent = 50, HoldSeconds = 10 } };

        // maxFailed 2: both dead devices are tolerated; the rollout completes with them not ready.
        var v2 = Sensor("v2", 2, new RolloutSpec { MaxUnavailable = 2, MaxFailed = 2, Waves = waves });
        var status = Until(fleet, v2, ref now, s => s.Phase == RolloutPhase.Complete);
        Assert.Equal(RolloutPhase.Complete, status.Phase);
        Assert.Equal(2, status.NotReady);
        Assert.Equal(8, status.UpdatedReady);
        Assert.All(fleet.Versions, v => Assert.Equal("v2", v));

        // maxFailed 0: the first dead device (in the first half) holds the first wave; the second
        // half never runs v3, and the rollout stops counting progress (the deadline's rollback is the caller's).
        var v3 = Sensor("v3", 3, new RolloutSpec { MaxUnavailable = 2, MaxFailed = 0, Waves = waves });
        status = Until(fleet, v3, ref now, s => false, limit: 120);
        Assert.Equal(RolloutPhase.Progressing, status.Phase);
        Assert.Equal("50%", status.Wave);
        Assert.Equal("open", status.Waves![0].State);
        Assert.Equal(1, status.Waves![0].NotReady);
        Assert.True(now - status.LastProgressAt >= TimeSpan.FromSeconds(100), $"last progress {status.LastProgressAt:O}, now {now:O}");
        Assert.DoesNotContain(fleet.EverRan, r => r.Version == "v3" && string.CompareOrdinal(r.Node, "gw-005") >= 0);
    }

    [Fact]
    public void An_offline_device_takes_the_release_on_its_return_in_its_waves_order()
    {
        var fleet = Devices(10);
        var now = s_t0;
        Until(fleet, Sensor("v1", 1), ref now, s => s.Phase == RolloutPhase.Complete);
        var rollout = new RolloutSpec { MaxUnavailablePercent = 100, Waves = [new WaveSpec { Percent = 20, HoldSeconds = 30 }, new WaveSpec { Percent = 60, HoldSeconds = 30 }] };
        var v2 = Sensor("v2", 2, rollout);
        // gw-001 (first wave) and gw-009 (the rest) are away when the rollout starts.
        fleet.Offline("gw-001");
        fleet.Offline("gw-009");
        var status = fleet.Pass(v2, now = now.AddSeconds(1));
        Assert.Equal(1, status.Waves![0].Pending);
        // The first wave's online device holds, the wave passes with gw-001 pending (its assignment
        // already says v2), and gw-009, back while the second wave holds, still gets v1.
        status = Until(fleet, v2, ref now, s => s.Wave == "60%");
        Assert.Equal("v2", fleet.VersionByNode("sensor")["gw-001"]);
        Assert.Equal("v1", fleet.VersionByNode("sensor")["gw-009"]);
        fleet.Online("gw-009");
        status = fleet.Pass(v2, now = now.AddSeconds(1));
        Assert.Equal("v1", fleet.VersionByNode("sensor")["gw-009"]);
        status = Until(fleet, v2, ref now, s => s.Phase == RolloutPhase.Complete);
        Assert.Equal("v2", fleet.VersionByNode("sensor")["gw-009"]);
        // Complete with gw-001 still away: pending, counted, and it runs v2 once it is back.
        Assert.Equal(1, status.Pending);
        Assert.DoesNotContain(fleet.EverRan, r => r.Node == "gw-001" && r.Version == "v2");
        fleet.Online("gw-001");
        status = fleet.Pass(v2, now = now.AddSeconds(1));
        status = fleet.Pass(v2, now = now.AddSeconds(1));
        Assert.Contains(fleet.EverRan, r => r.Node == "gw-001" && r.Version == "v2");
        Assert.Equal(0, status.Pending);
        Assert.Equal(10, status.UpdatedReady);
    }

    [Fact]
    public void A_device_that_joins_while_a_wave_is_on_trial_gets_the_release_the_rest_runs()
    {
        var fleet = Devices(10);
        var now = s_t0;
        Until(fleet, Sensor("v1", 1), ref now, s => s.Phase == RolloutPhase.Complete);
        var v2 = Sensor("v2", 2, new RolloutSpec { Waves = [new WaveSpec { Replicas = 1, HoldSeconds = 300 }] });
        fleet.Pass(v2, now = now.AddSeconds(1));
        fleet.Add("gw-100", new() { ["fleet"] = "sensors" });
        var status = fleet.Pass(v2, now = now.AddSeconds(1));
        Assert.Equal("1 replica", status.Wave);
        Assert.Equal("v1", fleet.VersionByNode("sensor")["gw-100"]);
        Assert.Equal(1, fleet.Versions.Count(v => v == "v2"));
    }
}

using System.Text.Json;
using Microsoft.Extensions.Logging;
using Orchestrator.Fleet.Agent;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Fleet.Scheduler;

/// <summary>The autoscaler's part of a pass: the replica count of autoscaled deployments (docs/protocol.md, "Autoscaling").</summary>
public sealed partial class FleetScheduler
{
    /// <summary>
    /// The autoscaler, once per cooldown and never during a rollout: on CPU, the ready replicas'
    /// average against the target; on a custom metric, the latest value over the per-replica target.
    /// The count it decides is kept in the status (<see cref="DeploymentStatus.AutoscaledReplicas"/>),
    /// not written into the deployment: the deployments bucket is the operator's (docs/nats-security.md).
    /// </summary>
    private DeploymentStatus Autoscale(Deployment deployment, IReadOnlyList<NodeEntry> nodes, DeploymentStatus report, DeploymentStatus? before)
    {
        report = report with { LastScaledAt = before?.LastScaledAt, LastScale = before?.LastScale };
        if (deployment.Autoscale is not { } auto || report.Phase is not (RolloutPhase.Complete or RolloutPhase.Degraded))
        {
            return report; // not while a rollout is under way: its replicas' CPU says little
        }
        var now = options.Clock.GetUtcNow();
        if (before?.LastScaledAt is { } last && now - last < TimeSpan.FromSeconds(auto.CooldownSeconds))
        {
            return report;
        }
        var current = deployment.Replicas;
        int wanted;
        string reason;
        if (auto.Metric is { } metric)
        {
            if (!Metrics.TryGetValue(metric.Subject, out var sample) || now - sample.At > TimeSpan.FromSeconds(metric.MaxAgeSeconds))
            {
                return report; // no fresh value: keep what runs
            }
            wanted = Math.Clamp((int)Math.Ceiling(sample.Value / metric.TargetPerReplica - 0.0001), auto.Min, auto.Max);
            reason = $"{metric.Subject} = {sample.Value:0.##}, target {metric.TargetPerReplica:0.##} per replica";
        }
        else
        {
            var (running, samples) = RunningReplicas(report, nodes);
            // The replicas that run carry the load: as many as run, at their average, against the
            // target. One that is unplaceable or pending (or runs with no figure yet) neither lowers
            // the average as a 0 nor counts as a replica that takes a share of the load; counting
            // the desired count instead scaled 4 → 3 → 4 with one replica that fitted nowhere.
            var average = samples.Count == 0 ? 0 : samples.Average();
            wanted = samples.Count == 0 ? Math.Clamp(current, auto.Min, auto.Max)
                : Math.Clamp((int)Math.Ceiling(running * average / auto.TargetCpuPercent - 0.0001), auto.Min, auto.Max);
            reason = $"average CPU {average:0.#}% of a CPU over {samples.Count} running replica{(samples.Count == 1 ? "" : "s")}, target {auto.TargetCpuPercent:0.#}%";
        }
        if (wanted == current)
        {
            return report;
        }
        var why = $"{current} → {wanted} replicas ({reason})";
        LogAutoscaled(logger, deployment.Name, why);
        emit("deployment.scaled", deployment.Name, why);
        return report with { LastScaledAt = now, LastScale = why, AutoscaledReplicas = wanted };
    }

    /// <summary>
    /// The deployment's replicas that run where the scheduler placed them, on a node whose heartbeats
    /// arrive, running and ready; and the CPU figures of those that have one. What a node last said
    /// about a replica it no longer hears from, or about one that has not started, is not a sample.
    /// </summary>
    private static (int Running, List<double> Samples) RunningReplicas(DeploymentStatus report, IReadOnlyList<NodeEntry> nodes)
    {
        var running = 0;
        var samples = new List<double>();
        foreach (var node in nodes.Where(n => n.State == NodeCondition.Ready))
        {
            foreach (var c in node.Info.Containers ?? [])
            {
                if (report.Replicas.TryGetValue(c.Name, out var on) && on == node.Info.Node && c is { State: ContainerState.Running, Ready: true })
                {
                    running++;
                    if (c.CpuPercent is { } cpu)
                    {
                        samples.Add(cpu);
                    }
                }
            }
        }
        return (running, samples);
    }

    [LoggerMessage(EventId = 4009, Level = LogLevel.Information, Message = "autoscaler: deployment {Name}: {Why}")]
    private static partial void LogAutoscaled(ILogger logger, string name, string why);
}

using Orchestrator.Api.Workloads;

namespace Orchestrator.Api;

/// <summary>
/// The deployment the fleet runs: the operator's stored revision with the scheduler's decisions
/// about that revision on top (an automatic rollback to an earlier template, the autoscaler's
/// replica count). The decisions live in the deployment's status (bucket orch-deployment-status),
/// never in the deployments bucket: a scheduler has no right to write there, so a stolen
/// scheduler seed cannot delete or rewrite the fleet's desired state (docs/nats-security.md).
/// A decision holds only for the revision it was made about; the operator's next write (apply,
/// scale, pause, undo) ends it, and orchctl writes the decision into that revision where it
/// should carry on (the autoscaled count, the rolled-back template).
/// </summary>
public static class SchedulerDecisions
{
    /// <summary>True when <paramref name="status"/> was written about <paramref name="stored"/>'s revision.</summary>
    public static bool IsAbout(DeploymentStatus? status, Deployment stored)
        => status is not null && stored.Revision is { } revision && status.Revision == revision;

    /// <summary>
    /// <paramref name="stored"/> as the fleet runs it: a copy with the decisions of
    /// <paramref name="status"/> applied when they are about its revision, or
    /// <paramref name="stored"/> itself when there are none. A rollback takes only the signed part
    /// of the earlier revision (template, selector, signature: nodes check that signature); the
    /// autoscaled count holds only while the deployment autoscales, and within its min and max.
    /// </summary>
    public static Deployment Apply(Deployment stored, DeploymentStatus? status)
    {
        if (!IsAbout(status, stored) || (status!.AutoscaledReplicas is null && status.RolledBackTo is null))
        {
            return stored;
        }
        var effective = Copy(stored);
        if (status.RolledBackTo is { } to)
        {
            effective.Template = to.Template.Copy();
            effective.Selector = to.Selector is null ? null : new Dictionary<string, string>(to.Selector, StringComparer.Ordinal);
            effective.Signature = to.Signature is null ? null : new ManifestSignature { Key = to.Signature.Key, Serial = to.Signature.Serial, Sig = to.Signature.Sig };
        }
        if (status.AutoscaledReplicas is { } replicas && stored.Autoscale is { } auto && auto.Min <= auto.Max)
        {
            effective.Replicas = Math.Clamp(replicas, auto.Min, auto.Max);
        }
        return effective;
    }

    /// <summary>The signed part of an earlier revision, as a rollback keeps it.</summary>
    public static DeploymentRollback RollbackTo(Deployment earlier) => new()
    {
        Revision = earlier.Revision ?? 0,
        Generation = earlier.Generation,
        Selector = earlier.Selector,
        Template = earlier.Template,
        Signature = earlier.Signature,
    };

    private static Deployment Copy(Deployment deployment)
    {
        var copy = System.Text.Json.JsonSerializer.Deserialize(
            System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(deployment, WorkloadJsonContext.Default.Deployment), WorkloadJsonContext.Default.Deployment)!;
        copy.Revision = deployment.Revision;
        copy.Generation = deployment.Generation;
        return copy;
    }
}

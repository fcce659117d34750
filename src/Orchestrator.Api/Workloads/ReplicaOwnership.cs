using System.Globalization;

namespace Orchestrator.Api.Workloads;

/// <summary>The replica count an apply writes, and the sentence that says why when it is not simply the file's.</summary>
/// <param name="Replicas">The count to store.</param>
/// <param name="Note">Why the count is what it is (kept, clamped, handed back to the file); null when it is the file's as written.</param>
public sealed record ReplicaDecision(int Replicas, string? Note);

/// <summary>
/// Who owns a deployment's replica count when it is applied again. With <c>autoscale</c> the
/// autoscaler does: a file that leaves <c>replicas</c> out keeps the fleet's count (as Kubernetes
/// leaves a field an autoscaler owns alone), and a new deployment starts at the default clamped to
/// [min, max]. A file that sets <c>replicas</c> wins, clamped to [min, max] like every count the
/// autoscaler writes. Without <c>autoscale</c> the file owns the count (1 when left out), also
/// right after autoscale was taken out of it. Used by <c>FleetClient.ApplyAsync</c> (what is
/// written) and by <c>orchctl apply</c> (what the diff and the output say).
/// </summary>
public static class ReplicaOwnership
{
    /// <param name="incoming">The deployment as read from the file (<see cref="Deployment.ReplicasOmitted"/> set by the loader).</param>
    /// <param name="stored">The deployment the fleet holds now; null when it is new.</param>
    public static ReplicaDecision Decide(Deployment incoming, Deployment? stored)
    {
        var fileSays = incoming.Replicas;
        if (incoming.Autoscale is not { } auto)
        {
            if (stored?.Autoscale is not null && incoming.ReplicasOmitted() && stored.Replicas != fileSays)
            {
                return new(fileSays, Invariant($"replicas {stored.Replicas} → {fileSays}: autoscale is no longer in the file, so the file owns the count again ({fileSays} when replicas is left out; set replicas to keep another)"));
            }
            return new(fileSays, null);
        }
        if (incoming.ReplicasOmitted() && stored is not null)
        {
            var kept = Math.Clamp(stored.Replicas, auto.Min, auto.Max);
            var owner = stored.Autoscale is null ? "the fleet's count; the autoscaler takes over from it" : "the autoscaler's count";
            return new(kept, kept == stored.Replicas
                ? Invariant($"replicas {kept} kept ({owner}: the file leaves replicas out)")
                : Invariant($"replicas {stored.Replicas} → {kept}: kept from the fleet ({owner}) and clamped to autoscale {auto.Min}-{auto.Max}"));
        }
        var clamped = Math.Clamp(fileSays, auto.Min, auto.Max);
        if (clamped != fileSays)
        {
            var given = incoming.ReplicasOmitted() ? Invariant($"replicas left out ({fileSays})") : Invariant($"replicas {fileSays} in the file");
            var bound = clamped < fileSays ? Invariant($"autoscale.max {auto.Max}") : Invariant($"autoscale.min {auto.Min}");
            return new(clamped, $"{given} is outside autoscale {auto.Min}-{auto.Max}: {clamped} ({bound})");
        }
        if (!incoming.ReplicasOmitted() && stored is not null && stored.Replicas != fileSays)
        {
            return new(fileSays, Invariant($"replicas {stored.Replicas} → {fileSays}: set in the file (the autoscaler carries on from there)"));
        }
        return new(fileSays, null);
    }

    /// <summary>Sets <paramref name="incoming"/>'s count to the decision and returns it.</summary>
    public static ReplicaDecision Apply(Deployment incoming, Deployment? stored)
    {
        var decision = Decide(incoming, stored);
        incoming.Replicas = decision.Replicas;
        return decision;
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}

using System.Globalization;
using Orchestrator.Syntax;

namespace Orchestrator.Api.Workloads;

/// <summary>
/// A field's allowed values: a numeric range or a set of words. One table serves the validator's
/// messages, the loader's type errors ("expected an integer from 0 to 10000, got 'three'") and the
/// JSON Schema (docs/manifest.schema.json), whose minimum/maximum/enum a test checks against it.
/// </summary>
public sealed record FieldRule(bool IsInteger, double? Minimum, double? Maximum, bool ExclusiveMinimum, IReadOnlyList<string>? Values)
{
    public static FieldRule Integral(long minimum, long? maximum = null) => new(true, minimum, maximum, false, null);
    public static FieldRule Number(double minimum, bool exclusive = false, double? maximum = null) => new(false, minimum, maximum, exclusive, null);
    public static FieldRule OneOf(params string[] values) => new(false, null, null, false, values);
    /// <summary>The wire names of a closed set (<see cref="WireNames"/>), Unknown left out.</summary>
    public static FieldRule OneOf<T>() where T : struct, Enum => OneOf([.. WireNames.KnownNames<T>()]);

    public bool Allows(double value)
        => (Minimum is not { } min || (ExclusiveMinimum ? value > min : value >= min)) && (Maximum is not { } max || value <= max);

    public bool Allows(string? value) => value is null || Values is null || Values.Contains(value, StringComparer.Ordinal);

    /// <summary>"an integer from 1 to 65535", "a number > 0", "one of always, on-failure, never".</summary>
    public string Describe()
    {
        if (Values is not null)
        {
            return "one of " + string.Join(", ", Values);
        }
        var what = IsInteger ? "an integer" : "a number";
        return (Minimum, Maximum) switch
        {
            ({ } min, { } max) when !ExclusiveMinimum => $"{what} from {Format(min)} to {Format(max)}",
            ({ } min, { } max) => $"{what} > {Format(min)} and ≤ {Format(max)}",
            ({ } min, null) => $"{what} {(ExclusiveMinimum ? ">" : "≥")} {Format(min)}",
            (null, { } max) => $"{what} ≤ {Format(max)}",
            _ => what,
        };
    }

    internal static string Format(double value) => value.ToString("R", CultureInfo.InvariantCulture);
}

/// <summary>The ranges and words of the manifest's fields, by "<c>ModelType.jsonName</c>".</summary>
public static class ManifestRules
{
    public const int MaxReplicas = 10_000;

    public static IReadOnlyDictionary<string, FieldRule> Fields { get; } = new Dictionary<string, FieldRule>(StringComparer.Ordinal)
    {
        ["Workload.network"] = FieldRule.OneOf<NetworkMode>(),
        ["Workload.runtime"] = FieldRule.OneOf<WorkloadRuntime>(),
        ["Workload.seccomp"] = FieldRule.OneOf("default", "unconfined"),
        ["Workload.stopGracePeriodSeconds"] = FieldRule.Integral(0, 3600),
        ["Resources.pids"] = FieldRule.Integral(1),
        ["RestartPolicy.policy"] = FieldRule.OneOf<RestartPolicyKind>(),
        ["Dependency.condition"] = FieldRule.OneOf<DependencyCondition>(),
        ["RestartPolicy.maxRetries"] = FieldRule.Integral(0),
        ["JobSpec.retries"] = FieldRule.Integral(0, 100),
        ["SecretMount.uid"] = FieldRule.Integral(0, 4294967294),
        ["SecretMount.gid"] = FieldRule.Integral(0, 4294967294),
        ["SecretMount.version"] = FieldRule.Integral(1),
        ["JobSpec.deadlineSeconds"] = FieldRule.Integral(1),
        ["JobSpec.history"] = FieldRule.Integral(1, 100),
        ["Probe.initialDelaySeconds"] = FieldRule.Number(0),
        ["Probe.periodSeconds"] = FieldRule.Number(0, exclusive: true),
        ["Probe.timeoutSeconds"] = FieldRule.Number(0, exclusive: true),
        ["Probe.failureThreshold"] = FieldRule.Integral(1),
        ["Probe.successThreshold"] = FieldRule.Integral(1),
        ["HttpGetAction.port"] = FieldRule.Integral(1, 65535),
        ["TcpSocketAction.port"] = FieldRule.Integral(1, 65535),
        ["PortMapping.containerPort"] = FieldRule.Integral(1, 65535),
        ["PortMapping.hostPort"] = FieldRule.Integral(1, 65535),
        ["PortMapping.protocol"] = FieldRule.OneOf("tcp", "udp"),
        ["Deployment.replicas"] = FieldRule.Integral(0, MaxReplicas),
        ["Deployment.strategy"] = FieldRule.OneOf("spread", "binpack"),
        ["Deployment.mode"] = FieldRule.OneOf<DeploymentMode>(),
        ["RolloutSpec.maxUnavailable"] = FieldRule.Integral(0),
        ["RolloutSpec.maxSurge"] = FieldRule.Integral(0),
        ["RolloutSpec.progressDeadlineSeconds"] = FieldRule.Integral(1),
        ["RolloutSpec.maxFailed"] = FieldRule.Integral(0),
        ["RolloutSpec.maxUnavailablePercent"] = FieldRule.Integral(1, 100),
        ["WaveSpec.replicas"] = FieldRule.Integral(1),
        ["WaveSpec.percent"] = FieldRule.Integral(1, 100),
        ["WaveSpec.holdSeconds"] = FieldRule.Integral(0),
        ["AutoscaleSpec.min"] = FieldRule.Integral(0, MaxReplicas),
        ["AutoscaleSpec.max"] = FieldRule.Integral(0, MaxReplicas),
        ["AutoscaleSpec.targetCpuPercent"] = FieldRule.Number(0, exclusive: true),
        ["AutoscaleSpec.cooldownSeconds"] = FieldRule.Integral(0),
        ["MetricSpec.targetPerReplica"] = FieldRule.Number(0, exclusive: true),
        ["MetricSpec.maxAgeSeconds"] = FieldRule.Integral(1),
    };

    public static FieldRule? Find(string type, string field) => Fields.GetValueOrDefault(type + "." + field);

    /// <summary>Adds "path: expected …, got value" when a number is outside its rule.</summary>
    internal static void Check(List<string> errors, string path, string rule, double? value)
    {
        var r = Fields[rule];
        if (value is { } v && !r.Allows(v))
        {
            errors.Add($"{path}: expected {r.Describe()}, got {FieldRule.Format(v)}");
        }
    }

    /// <summary>Adds "path: expected one of …, got 'value'" when a word is not among its rule's.</summary>
    internal static void Check(List<string> errors, string path, string rule, string? value)
    {
        var r = Fields[rule];
        if (!r.Allows(value))
        {
            errors.Add($"{path}: expected {r.Describe()}, got '{value}'");
        }
    }

    /// <summary>
    /// Adds "path: expected one of …" when a closed set's value is Unknown: a name this version does
    /// not know came over the wire (a manifest's is refused by name before: ManifestReader).
    /// </summary>
    internal static void Check<T>(List<string> errors, string path, string rule, T? value) where T : struct, Enum
    {
        if (value is { } v && EqualityComparer<T>.Default.Equals(v, default))
        {
            errors.Add($"{path}: expected {Fields[rule].Describe()}, got a value this version does not know");
        }
    }

    internal static void Check<T>(List<string> errors, string path, string rule, T value) where T : struct, Enum
        => Check(errors, path, rule, (T?)value);

    /// <summary>The known name closest to a mistyped one (case, '_' and '-' aside, or a few edits away); null when none is close.</summary>
    public static string? Closest(string name, IEnumerable<string> known)
    {
        static string Fold(string s) => new([.. s.Where(c => c is not ('_' or '-')).Select(char.ToLowerInvariant)]);
        string? best = null;
        var bestDistance = int.MaxValue;
        foreach (var candidate in known)
        {
            if (Fold(candidate) == Fold(name))
            {
                return candidate;
            }
            var distance = EditDistance.Between(name.ToLowerInvariant(), candidate.ToLowerInvariant());
            if (distance < bestDistance)
            {
                (best, bestDistance) = (candidate, distance);
            }
        }
        return bestDistance <= Math.Max(1, Math.Min(name.Length, best?.Length ?? 0) / 3) ? best : null;
    }
}

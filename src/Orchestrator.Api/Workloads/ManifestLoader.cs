using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Orchestrator.Api.Workloads;

/// <summary>A manifest file could not be used; the message names the file, the place and the fix.</summary>
public sealed class ManifestException : OrchestratorException
{
    public ManifestException() : base(ErrorKind.Invalid, "manifest error") { }
    public ManifestException(string message) : base(ErrorKind.Invalid, message) { }
    public ManifestException(string message, Exception inner) : base(ErrorKind.Invalid, message, inner) { }

    /// <summary>What the loader would have warned about had the file been accepted (compose keys that do not map, …), to show with the errors.</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];
}

/// <summary>
/// Reads workloads from YAML or JSON manifests (several documents per file, `---` between):
/// the YAML is turned into JSON node by node (no reflection, so it works under AOT) and read by
/// the source-generated <see cref="WorkloadJsonContext"/>, so both formats mean the same.
/// </summary>
public static class ManifestLoader
{
    public static IReadOnlyList<Workload> LoadFile(string path) => [.. LoadFileWithPlaces(path).Select(w => w.Workload)];

    private static List<(Workload Workload, string Where)> LoadFileWithPlaces(string path)
    {
        string text;
        try
        {
            if (new FileInfo(path).Length > YamlLimits.MaxBytes)
            {
                throw new ManifestException($"{path}: refused: it is larger than the {YamlLimits.MaxBytes >> 20} MiB a manifest may be; split it");
            }
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ManifestException($"{path}: cannot read it: {e.Message}", e);
        }
        return ParseWorkloads(text, path);
    }

    /// <summary>
    /// Every .yaml, .yml and .json file in a directory, in name order, each workload with the file
    /// it came from; errors are collected, and <c>BrokenFiles</c> names the files they are in.
    /// </summary>
    public static (IReadOnlyList<(Workload Workload, string File)> Workloads, IReadOnlyList<string> Errors, IReadOnlySet<string> BrokenFiles) LoadDirectory(string dir)
    {
        var workloads = new List<(Workload, string)>();
        var errors = new List<string>();
        var broken = new HashSet<string>(StringComparer.Ordinal);
        if (!Directory.Exists(dir))
        {
            return (workloads, errors, broken);
        }
        var files = Directory.EnumerateFiles(dir)
            .Where(f => f.EndsWith(".yaml", StringComparison.Ordinal) || f.EndsWith(".yml", StringComparison.Ordinal) || f.EndsWith(".json", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal);
        var seen = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var file in files)
        {
            try
            {
                foreach (var (workload, where) in LoadFileWithPlaces(file))
                {
                    if (seen.TryGetValue(workload.Name, out var first))
                    {
                        errors.Add($"{where}: name: '{workload.Name}' is already defined at {first}; workload names must be unique on a node");
                        broken.Add(file);
                        continue;
                    }
                    seen[workload.Name] = where;
                    workloads.Add((workload, file));
                }
            }
            catch (ManifestException e)
            {
                errors.Add(e.Message);
                broken.Add(file);
            }
        }
        return (workloads, errors, broken);
    }

    /// <summary>Deployments (kind: Deployment) from a manifest, for the fleet; workloads are refused with the fix.</summary>
    public static IReadOnlyList<Deployment> ParseDeployments(string text, string source)
    {
        var errors = new List<string>();
        var deployments = ReadDeployments(LoadYaml(text, source).Documents, source, errors);
        return errors.Count > 0 ? throw new ManifestException(string.Join("\n", errors)) : deployments;
    }

    /// <summary>
    /// What <c>orchctl apply -f</c> reads: <c>kind: Deployment</c> documents, or a docker-compose file
    /// (a top-level <c>services:</c> mapping), each service becoming a deployment. Every error is
    /// thrown at once as a <see cref="ManifestException"/>; the compose keys that have no meaning here
    /// come back as <see cref="FleetManifest.Warnings"/> ("file:line:col: services.web.networks: ignored (…)").
    /// </summary>
    public static FleetManifest LoadFleetManifest(string text, string source) => LoadFleetManifest(text, source, ComposeShape.Stack);

    /// <param name="compose">How a compose file is read: one app, or a deployment per service (<see cref="ComposeShape"/>).</param>
    public static FleetManifest LoadFleetManifest(string text, string source, ComposeShape compose)
    {
        var stream = LoadYaml(text, source);
        var documents = stream.Documents.Where(d => d.RootNode is not YamlScalarNode { Value: null or "" }).ToList();
        if (documents.FirstOrDefault()?.RootNode is YamlMappingNode first && ComposeImporter.IsCompose(first))
        {
            if (documents.Count > 1)
            {
                var extra = documents[1].RootNode.Start;
                throw new ManifestException($"{source}:{extra.Line}:{extra.Column}: a docker-compose file is one document; put deployments in a file of their own");
            }
            return ComposeImporter.Import(first, source, compose);
        }
        var errors = new List<string>();
        var deployments = ReadDeployments(documents, source, errors);
        return errors.Count > 0 ? throw new ManifestException(string.Join("\n", errors)) : new FleetManifest(deployments, [], fromCompose: false);
    }

    private static List<Deployment> ReadDeployments(IEnumerable<YamlDocument> documents, string source, List<string> errors)
    {
        var deployments = new List<Deployment>();
        var names = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var document in documents)
        {
            if (document.RootNode is YamlScalarNode { Value: null or "" })
            {
                continue;
            }
            var where = $"{source}:{document.RootNode.Start.Line}:{document.RootNode.Start.Column}";
            if (document.RootNode is not YamlMappingNode root)
            {
                errors.Add($"{where}: a deployment must be a mapping (kind: Deployment, name: …, template: …)");
                continue;
            }
            if (!root.Children.TryGetValue(new YamlScalarNode("kind"), out var kind) || kind is not YamlScalarNode { Value: "Deployment" })
            {
                var at = kind?.Start ?? root.Start;
                errors.Add(kind is null
                    ? $"{where}: kind: missing; the fleet takes kind: Deployment documents (a single node's workloads go to `orchctl run -n NODE`)"
                    : $"{source}:{at.Line}:{at.Column}: kind: expected Deployment, got {ManifestReader.Describe(kind)}; the fleet takes deployments (a single node's workloads go to `orchctl run -n NODE`)");
                continue;
            }
            var (deployment, reader, ok) = Read(root, source, LenientWorkloadJson.Default.Deployment, "a deployment", ValidateDeployment, errors);
            if (deployment is not null && CheckUnique(deployment.Name, reader, names, "deployment names must be unique in the fleet", errors) && ok)
            {
                // Left out is not "1": with autoscale the fleet's count stays (ReplicaOwnership).
                // An empty `replicas:` keeps the default like any empty value (ManifestReader): left out too.
                deployment.MarkReplicasOmitted(!root.Children.TryGetValue(new YamlScalarNode("replicas"), out var replicas) || ManifestReader.IsNull(replicas));
                if (deployment.IsGlobal() && !deployment.ReplicasOmitted())
                {
                    errors.Add($"{source}:{replicas!.Start.Line}:{replicas.Start.Column}: replicas: a global deployment runs one copy on every node that matches its selector, so it has no count; take replicas out (or use mode: replicated)");
                    continue;
                }
                deployments.Add(deployment);
            }
        }
        return deployments;
    }

    /// <summary>
    /// One document into the model: every type error and unknown field from the reader, then every
    /// problem the validator finds (placed at its field), except where a field's type was already wrong.
    /// </summary>
    private static (T? Value, ManifestReader Reader, bool Valid) Read<T>(YamlMappingNode root, string source, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, string noun, Func<T, IReadOnlyList<string>> validate, List<string> errors)
        where T : class
    {
        var reader = new ManifestReader(source, LenientWorkloadJson.Default);
        var json = reader.Read(root, typeof(T), noun, "kind");
        var found = new List<string>(reader.Errors);
        T? value = null;
        try
        {
            value = JsonSerializer.Deserialize(json, type);
        }
        catch (JsonException e)
        {
            found.Add($"{reader.Where(root.Start)}: {(e.Path ?? "$").TrimStart('$', '.')}: {e.Message}");
        }
        var wrongPaths = reader.Errors.Select(e => e[(source.Length + 1)..].Split(": ", 3)[1]).ToList();
        foreach (var problem in value is null ? [] : validate(value))
        {
            var path = problem.Split(": ", 2)[0];
            if (!wrongPaths.Any(w => path == w || path.StartsWith(w + ".", StringComparison.Ordinal) || path.StartsWith(w + "[", StringComparison.Ordinal)))
            {
                found.Add(reader.Place(problem));
            }
        }
        // In reading order: line, then column.
        errors.AddRange(found.OrderBy(e => Position(e, source)));
        return (value, reader, found.Count == 0);
    }

    private static (int Line, int Column) Position(string message, string source)
    {
        var parts = message[(source.Length + 1)..].Split(':', 3);
        return (int.Parse(parts[0], CultureInfo.InvariantCulture), int.Parse(parts[1], CultureInfo.InvariantCulture));
    }

    private static bool CheckUnique(string name, ManifestReader reader, Dictionary<string, string> names, string rule, List<string> errors)
    {
        var where = reader.Where(reader.Positions.GetValueOrDefault("name", reader.Positions[""]));
        if (string.IsNullOrEmpty(name))
        {
            return true; // the validator has reported it
        }
        if (names.TryGetValue(name, out var first))
        {
            errors.Add($"{where}: name: '{name}' is already defined at {first}; {rule}");
            return false;
        }
        names[name] = where;
        return true;
    }

    /// <summary>Every problem with a deployment (and its template) at once, each "path: expected …, got …".</summary>
    public static IReadOnlyList<string> ValidateDeployment(Deployment deployment)
    {
        var errors = new List<string>();
        if (deployment.Name is null || !WorkloadValidator.IsValidName(deployment.Name) || deployment.Name.Length > 56)
        {
            errors.Add($"name: expected 1-56 letters, digits, '-' or '_' starting with a letter or digit, got '{deployment.Name}'");
        }
        ManifestRules.Check(errors, "replicas", "Deployment.replicas", deployment.Replicas);
        ManifestRules.Check(errors, "strategy", "Deployment.strategy", deployment.Strategy);
        if (deployment.Rollout is { } rollout)
        {
            ManifestRules.Check(errors, "rollout.maxUnavailable", "RolloutSpec.maxUnavailable", rollout.MaxUnavailable);
            ManifestRules.Check(errors, "rollout.maxSurge", "RolloutSpec.maxSurge", rollout.MaxSurge);
            if (rollout.MaxUnavailable == 0 && rollout.MaxSurge == 0)
            {
                errors.Add("rollout: maxUnavailable and maxSurge are both 0, so no replica could ever be updated; set maxUnavailable: 1 or maxSurge: 1");
            }
            ManifestRules.Check(errors, "rollout.progressDeadlineSeconds", "RolloutSpec.progressDeadlineSeconds", rollout.ProgressDeadlineSeconds);
            ManifestRules.Check(errors, "rollout.maxFailed", "RolloutSpec.maxFailed", rollout.MaxFailed);
            ManifestRules.Check(errors, "rollout.maxUnavailablePercent", "RolloutSpec.maxUnavailablePercent", rollout.MaxUnavailablePercent);
            if (rollout.Canary is { } canary)
            {
                CheckWave(errors, "rollout.canary", canary);
                if (rollout.Waves is { Count: > 0 })
                {
                    errors.Add("rollout.canary: give waves or canary, not both (a canary is a first wave: put it first in waves)");
                }
            }
            int? lastPercent = null;
            for (var i = 0; i < (rollout.Waves?.Count ?? 0); i++)
            {
                var wave = rollout.Waves![i];
                var path = string.Create(CultureInfo.InvariantCulture, $"rollout.waves[{i}]");
                if (wave is null)
                {
                    errors.Add($"{path}: expected a wave (selector, replicas or percent), got nothing");
                    continue;
                }
                CheckWave(errors, path, wave);
                if (wave.Percent is { } percent)
                {
                    if (lastPercent is { } before && percent <= before)
                    {
                        errors.Add(string.Create(CultureInfo.InvariantCulture, $"{path}.percent: expected more than the wave before it ({before}), got {percent}; percentages are cumulative (1, 10, 50 opens 1%, then 10% in all, then half)"));
                    }
                    lastPercent = percent;
                }
            }
            if (deployment.IsGlobal() && rollout.MaxSurge > 0)
            {
                errors.Add("rollout.maxSurge: a global deployment runs one copy per node, so there is no room for an extra one; use maxUnavailable (or maxUnavailablePercent)");
            }
        }
        ManifestRules.Check(errors, "mode", "Deployment.mode", deployment.Mode);
        if (deployment.IsGlobal())
        {
            if (deployment.Autoscale is not null)
            {
                errors.Add("autoscale: a global deployment runs one copy on every matching node, so there is no count to scale; take autoscale out (or use mode: replicated)");
            }
            if (deployment.Strategy is not null || deployment.SpreadBy is not null)
            {
                errors.Add($"{(deployment.Strategy is not null ? "strategy" : "spreadBy")}: a global deployment places one copy on every matching node, so there is nothing to spread or pack; take it out");
            }
        }
        if (deployment.Autoscale is not null && deployment.Template?.Job is not null)
        {
            errors.Add("autoscale: a job's replicas run to completion, so their load says nothing about how many there should be; take autoscale out (or job)");
        }
        if (deployment.Autoscale is { } a)
        {
            ManifestRules.Check(errors, "autoscale.min", "AutoscaleSpec.min", a.Min);
            ManifestRules.Check(errors, "autoscale.max", "AutoscaleSpec.max", a.Max);
            if (a.Max < a.Min)
            {
                errors.Add($"autoscale.max: expected an integer ≥ min ({a.Min}), got {a.Max}");
            }
            ManifestRules.Check(errors, "autoscale.targetCpuPercent", "AutoscaleSpec.targetCpuPercent", a.TargetCpuPercent);
            ManifestRules.Check(errors, "autoscale.cooldownSeconds", "AutoscaleSpec.cooldownSeconds", a.CooldownSeconds);
            if (a.Metric is { } m)
            {
                if (m.Subject is null || !m.Subject.StartsWith(MetricPrefix, StringComparison.Ordinal) || m.Subject.Length <= MetricPrefix.Length
                    || m.Subject.Any(c => c is ' ' or '*' or '>' or '\t'))
                {
                    errors.Add($"autoscale.metric.subject: expected a literal subject under {MetricPrefix} (no spaces or wildcards), got '{m.Subject}'");
                }
                ManifestRules.Check(errors, "autoscale.metric.targetPerReplica", "MetricSpec.targetPerReplica", m.TargetPerReplica);
                ManifestRules.Check(errors, "autoscale.metric.maxAgeSeconds", "MetricSpec.maxAgeSeconds", m.MaxAgeSeconds);
            }
        }
        var template = deployment.Template ?? new Workload();
        var name = template.Name;
        template.Name = deployment.Name is not null && WorkloadValidator.IsValidName(deployment.Name) ? deployment.Name + "-0" : "x";
        errors.AddRange(WorkloadValidator.Validate(template).Select(e => "template." + e));
        template.Name = name;
        return errors;
    }

    private static void CheckWave(List<string> errors, string path, WaveSpec wave)
    {
        var ways = (wave.Selector is { Count: > 0 } ? 1 : 0) + (wave.Replicas is null ? 0 : 1) + (wave.Percent is null ? 0 : 1);
        if (ways != 1)
        {
            errors.Add($"{path}: give exactly one of selector (node labels), replicas or percent, not {(ways == 0 ? "none" : ways.ToString(CultureInfo.InvariantCulture))}");
        }
        ManifestRules.Check(errors, path + ".replicas", "WaveSpec.replicas", wave.Replicas);
        ManifestRules.Check(errors, path + ".percent", "WaveSpec.percent", wave.Percent);
        ManifestRules.Check(errors, path + ".holdSeconds", "WaveSpec.holdSeconds", wave.HoldSeconds);
    }

    private const string MetricPrefix = "orch.metrics.";

    public static IReadOnlyList<Workload> Parse(string text, string source) => [.. ParseWorkloads(text, source).Select(w => w.Workload)];

    /// <summary>The workloads of a manifest, each with where its name stands ("file:line:col").</summary>
    internal static List<(Workload Workload, string Where)> ParseWorkloads(string text, string source)
    {
        var stream = LoadYaml(text, source);
        var workloads = new List<(Workload, string)>();
        var errors = new List<string>();
        var names = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var document in stream.Documents)
        {
            if (document.RootNode is YamlScalarNode { Value: null or "" })
            {
                continue; // an empty document (a trailing ---)
            }
            if (document.RootNode is not YamlMappingNode root)
            {
                errors.Add($"{source}:{document.RootNode.Start.Line}:{document.RootNode.Start.Column}: a workload must be a mapping (name: …, image: …)");
                continue;
            }
            if (root.Children.TryGetValue(new YamlScalarNode("kind"), out var kind) && kind is not YamlScalarNode { Value: "Workload" })
            {
                errors.Add($"{source}:{kind.Start.Line}:{kind.Start.Column}: kind: expected Workload, got {ManifestReader.Describe(kind)}; a node's manifest directory holds workloads (deployments go to the fleet with orchctl apply)");
                continue;
            }
            var (workload, reader, ok) = Read(root, source, LenientWorkloadJson.Default.Workload, "a workload", WorkloadValidator.Validate, errors);
            if (workload is not null && CheckUnique(workload.Name, reader, names, "workload names must be unique on a node", errors) && ok)
            {
                workloads.Add((workload, reader.Where(reader.Positions.GetValueOrDefault("name", root.Start))));
            }
        }
        if (errors.Count > 0)
        {
            throw new ManifestException(string.Join("\n", errors));
        }
        return workloads;
    }

    internal static YamlStream LoadYaml(string text, string source)
    {
        if (YamlLimits.Check(text) is { } tooBig)
        {
            throw new ManifestException($"{source}: refused: {tooBig}; split or simplify the manifest");
        }
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text));
        }
        catch (YamlException e)
        {
            throw new ManifestException($"{source}:{e.Start.Line}:{e.Start.Column}: not valid YAML: {YamlErrors.Explain(e)}", e);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or FormatException or OverflowException or IndexOutOfRangeException)
        {
            throw new ManifestException($"{source}: not valid YAML ({e.Message})", e);
        }
        return stream;
    }
}

/// <summary>A string field written as a number or boolean in YAML (cpu: 0.5, env: {PORT: 8080}) is read as its text.</summary>
public sealed class LenientStringConverter : JsonConverter<string>
{
    public override string? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => reader.TokenType switch
    {
        JsonTokenType.String => reader.GetString(),
        JsonTokenType.Number => Encoding.UTF8.GetString(reader.ValueSpan),
        JsonTokenType.True => "true",
        JsonTokenType.False => "false",
        JsonTokenType.Null => null,
        _ => throw new JsonException("expected a string"),
    };

    public override void Write(Utf8JsonWriter writer, string value, JsonSerializerOptions options) => writer.WriteStringValue(value);

    public override string ReadAsPropertyName(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => reader.GetString()!;

    public override void WriteAsPropertyName(Utf8JsonWriter writer, string value, JsonSerializerOptions options) => writer.WritePropertyName(value);
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    Converters = [typeof(LenientStringConverter)])]
[JsonSerializable(typeof(Workload))]
[JsonSerializable(typeof(Deployment))]
[JsonSerializable(typeof(string))]
internal sealed partial class LenientWorkloadJson : JsonSerializerContext;

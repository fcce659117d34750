using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Orchestrator.Node.Workloads;

/// <summary>A manifest file could not be used; the message names the file, the place and the fix.</summary>
public sealed class ManifestException : Exception
{
    public ManifestException() { }
    public ManifestException(string message) : base(message) { }
    public ManifestException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>
/// Reads workloads from YAML or JSON manifests (several documents per file, `---` between):
/// the YAML is turned into JSON node by node (no reflection, so it works under AOT) and read by
/// the source-generated <see cref="WorkloadJsonContext"/>, so both formats mean the same.
/// </summary>
public static class ManifestLoader
{
    public static IReadOnlyList<Workload> LoadFile(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ManifestException($"{path}: cannot read it: {e.Message}", e);
        }
        return Parse(text, path);
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
                foreach (var workload in LoadFile(file))
                {
                    if (seen.TryGetValue(workload.Name, out var first))
                    {
                        errors.Add($"{file}: workload '{workload.Name}' is already defined in {first}; names must be unique on a node");
                        broken.Add(file);
                        continue;
                    }
                    seen[workload.Name] = file;
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
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text));
        }
        catch (YamlException e)
        {
            throw new ManifestException($"{source}:{e.Start.Line}:{e.Start.Column}: not valid YAML: {e.Message}", e);
        }
        var deployments = new List<Deployment>();
        var errors = new List<string>();
        foreach (var document in stream.Documents)
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
                errors.Add($"{where}: kind must be Deployment for the fleet (a single node's workloads go to `orchctl run -n NODE`)");
                continue;
            }
            root.Children.Remove(new YamlScalarNode("kind"));
            var json = new StringBuilder();
            ToJson(root, json);
            Deployment? deployment;
            try
            {
                deployment = JsonSerializer.Deserialize(json.ToString(), LenientWorkloadJson.Default.Deployment);
            }
            catch (JsonException e)
            {
                var path = e.Path is { Length: > 1 } p ? p.TrimStart('$', '.') : "the document";
                errors.Add($"{where}: {path} {(e.Message.Contains("could not be mapped", StringComparison.Ordinal) ? "is not a deployment field" : "has the wrong type")} (see docs/manifest.md)");
                continue;
            }
            if (deployment is null)
            {
                continue;
            }
            var problems = ValidateDeployment(deployment);
            if (problems.Count > 0)
            {
                errors.AddRange(problems.Select(problem => $"{where}: deployment '{deployment.Name}': {problem}"));
                continue;
            }
            deployments.Add(deployment);
        }
        if (errors.Count > 0)
        {
            throw new ManifestException(string.Join("\n", errors));
        }
        return deployments;
    }

    public static IReadOnlyList<string> ValidateDeployment(Deployment deployment)
    {
        var errors = new List<string>();
        if (!WorkloadValidator.IsValidName(deployment.Name) || deployment.Name.Length > 56)
        {
            errors.Add($"name: '{deployment.Name}' is not a valid deployment name; use 1-56 letters, digits, '-' or '_'");
        }
        if (deployment.Replicas is < 0 or > 10_000)
        {
            errors.Add($"replicas: expected an integer from 0 to 10000, got {deployment.Replicas}");
        }
        if (deployment.Rollout is { } rollout)
        {
            if (rollout.MaxUnavailable < 0 || rollout.MaxSurge < 0 || rollout.MaxUnavailable + rollout.MaxSurge < 1)
            {
                errors.Add($"rollout: maxUnavailable ({rollout.MaxUnavailable}) and maxSurge ({rollout.MaxSurge}) must be ≥ 0 and not both 0, or no replica could ever be updated");
            }
            if (rollout.ProgressDeadlineSeconds < 1)
            {
                errors.Add($"rollout.progressDeadlineSeconds: expected an integer ≥ 1, got {rollout.ProgressDeadlineSeconds}");
            }
            if (rollout.Canary is { } canary)
            {
                var ways = (canary.Selector is { Count: > 0 } ? 1 : 0) + (canary.Replicas is null ? 0 : 1) + (canary.Percent is null ? 0 : 1);
                if (ways != 1)
                {
                    errors.Add("rollout.canary: give exactly one of selector (node labels), replicas or percent");
                }
                if (canary.Replicas is < 1 || canary.Percent is < 1 or > 100 || canary.HoldSeconds < 0)
                {
                    errors.Add("rollout.canary: replicas ≥ 1, percent from 1 to 100 and holdSeconds ≥ 0");
                }
            }
        }
        if (deployment.Autoscale is { } a)
        {
            if (a.Min < 0 || a.Max < a.Min || a.Max > 10_000 || a.TargetCpuPercent <= 0 || a.CooldownSeconds < 0)
            {
                errors.Add("autoscale: needs 0 ≤ min ≤ max ≤ 10000, targetCpuPercent > 0 and cooldownSeconds ≥ 0");
            }
            if (a.Metric is { } m && (!m.Subject.StartsWith("orch.metrics.", StringComparison.Ordinal) || m.Subject.Length <= "orch.metrics.".Length
                || m.Subject.Any(c => c is ' ' or '*' or '>' or '\t') || m.TargetPerReplica <= 0 || m.MaxAgeSeconds < 1))
            {
                errors.Add($"autoscale.metric: subject must be a literal subject under orch.metrics. (got '{m.Subject}'), targetPerReplica > 0 and maxAgeSeconds ≥ 1");
            }
        }
        if (deployment.Strategy is not (null or "spread" or "binpack"))
        {
            errors.Add($"strategy: '{deployment.Strategy}' is not spread or binpack");
        }
        var template = deployment.Template;
        var name = template.Name;
        template.Name = WorkloadValidator.IsValidName(deployment.Name) ? deployment.Name + "-0" : "x";
        errors.AddRange(WorkloadValidator.Validate(template).Select(e => "template." + e));
        template.Name = name;
        return errors;
    }

    public static IReadOnlyList<Workload> Parse(string text, string source)
    {
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text));
        }
        catch (YamlException e)
        {
            throw new ManifestException($"{source}:{e.Start.Line}:{e.Start.Column}: not valid YAML: {e.Message}", e);
        }
        var workloads = new List<Workload>();
        var errors = new List<string>();
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
            var where = $"{source}:{root.Start.Line}:{root.Start.Column}";
            if (root.Children.TryGetValue(new YamlScalarNode("kind"), out var kind))
            {
                if (kind is not YamlScalarNode { Value: "Workload" })
                {
                    errors.Add($"{where}: kind '{kind}' is not Workload; a node's manifest directory holds workloads (deployments go to the fleet with orchctl apply)");
                    continue;
                }
                root.Children.Remove(new YamlScalarNode("kind"));
            }
            var json = new StringBuilder();
            ToJson(root, json);
            Workload? workload;
            try
            {
                workload = JsonSerializer.Deserialize(json.ToString(), LenientWorkloadJson.Default.Workload);
            }
            catch (JsonException e)
            {
                var path = e.Path is { Length: > 1 } p ? p.TrimStart('$', '.') : "the document";
                var reason = e.Message.Contains("could not be mapped", StringComparison.Ordinal)
                    ? "is not a workload field (see docs/manifest.md)"
                    : "has the wrong type (see docs/manifest.md)";
                errors.Add($"{where}: {path} {reason}");
                continue;
            }
            if (workload is null)
            {
                continue;
            }
            var problems = WorkloadValidator.Validate(workload);
            if (problems.Count > 0)
            {
                errors.AddRange(problems.Select(problem => $"{where}: workload '{workload.Name}': {problem}"));
                continue;
            }
            workloads.Add(workload);
        }
        if (errors.Count > 0)
        {
            throw new ManifestException(string.Join("\n", errors));
        }
        return workloads;
    }

    private static void ToJson(YamlNode node, StringBuilder json)
    {
        switch (node)
        {
            case YamlMappingNode map:
                json.Append('{');
                var first = true;
                foreach (var (key, value) in map.Children)
                {
                    if (!first)
                    {
                        json.Append(',');
                    }
                    first = false;
                    json.Append(JsonSerializer.Serialize(((YamlScalarNode)key).Value ?? "", LenientWorkloadJson.Default.String));
                    json.Append(':');
                    ToJson(value, json);
                }
                json.Append('}');
                break;
            case YamlSequenceNode sequence:
                json.Append('[');
                for (var i = 0; i < sequence.Children.Count; i++)
                {
                    if (i > 0)
                    {
                        json.Append(',');
                    }
                    ToJson(sequence.Children[i], json);
                }
                json.Append(']');
                break;
            case YamlScalarNode scalar:
                json.Append(Scalar(scalar));
                break;
            default:
                throw new ManifestException($"line {node.Start.Line}: YAML aliases are not supported; write the value out");
        }
    }

    /// <summary>Plain scalars become JSON numbers, booleans or null as YAML 1.2's core schema says; quoted ones stay strings.</summary>
    private static string Scalar(YamlScalarNode scalar)
    {
        var value = scalar.Value ?? "";
        if (scalar.Style is ScalarStyle.Plain)
        {
            if (value is "" or "~" or "null" or "Null" or "NULL")
            {
                return "null";
            }
            if (value is "true" or "True" or "TRUE")
            {
                return "true";
            }
            if (value is "false" or "False" or "FALSE")
            {
                return "false";
            }
            if (long.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var integer))
            {
                return integer.ToString(CultureInfo.InvariantCulture);
            }
            if (double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var number) && double.IsFinite(number))
            {
                return number.ToString("R", CultureInfo.InvariantCulture);
            }
        }
        return JsonSerializer.Serialize(value, LenientWorkloadJson.Default.String);
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

using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Orchestrator.Api.Workloads;

/// <summary>
/// One YAML document read against the model's shape (taken from the source-generated JSON
/// metadata, so it works under AOT and cannot drift from the model): it writes the JSON the
/// model is read from, records where each field's value stands (JSON path → line:column) and
/// collects every type error and unknown field at once, each at its own node.
/// </summary>
internal sealed class ManifestReader
{
    private readonly string _source;
    private readonly JsonSerializerContext _context;

    public ManifestReader(string source, JsonSerializerContext context)
    {
        _source = source;
        _context = context;
    }

    /// <summary>Where each field's value is: "replicas", "template.ports[0].hostPort", "env.PORT".</summary>
    public Dictionary<string, Mark> Positions { get; } = new(StringComparer.Ordinal);

    /// <summary>Complete messages: "file:line:col: path: what is wrong and the fix".</summary>
    public List<string> Errors { get; } = [];

    /// <summary>The document as JSON for <paramref name="type"/>; fields named in <paramref name="skipAtRoot"/> (kind) are left out.</summary>
    public string Read(YamlMappingNode root, Type type, string noun, params string[] skipAtRoot)
    {
        var json = new StringBuilder();
        Positions[""] = root.Start;
        ReadObject(root, type, "", noun, json, skipAtRoot);
        return json.ToString();
    }

    public string Where(Mark mark) => $"{_source}:{mark.Line}:{mark.Column}";

    /// <summary>
    /// A validator's message ("template.ports[1].hostPort: …") placed at its field's value, or the
    /// nearest enclosing field given (a missing field is reported where its parent is).
    /// </summary>
    public string Place(string message, string prefix = "")
    {
        var colon = message.IndexOf(": ", StringComparison.Ordinal);
        var path = colon > 0 ? prefix + message[..colon] : "";
        while (path.Length > 0 && !Positions.ContainsKey(path))
        {
            var cut = Math.Max(path.LastIndexOf('.'), path.LastIndexOf('['));
            path = cut > 0 ? path[..cut] : "";
        }
        return $"{Where(Positions[path])}: {prefix}{message}";
    }

    private void Error(YamlNode node, string path, string text) => Errors.Add($"{Where(node.Start)}: {path}: {text}");

    private void ReadObject(YamlMappingNode map, Type type, string path, string noun, StringBuilder json, string[]? skip = null)
    {
        var info = _context.GetTypeInfo(type) ?? throw new InvalidOperationException($"{type.Name} is not in the manifest's JSON context");
        var properties = info.Properties.ToDictionary(p => p.Name, StringComparer.Ordinal);
        json.Append('{');
        var first = true;
        foreach (var (keyNode, value) in map.Children)
        {
            var key = keyNode is YamlScalarNode scalarKey ? scalarKey.Value ?? "" : "";
            var fieldPath = path.Length == 0 ? key : path + "." + key;
            if (skip is not null && skip.Contains(key, StringComparer.Ordinal))
            {
                continue;
            }
            if (!properties.TryGetValue(key, out var property))
            {
                Error(keyNode, fieldPath, UnknownField(key, type, noun, properties.Keys));
                continue;
            }
            Positions[fieldPath] = value.Start;
            if (IsNull(value))
            {
                continue; // an empty value keeps the default
            }
            var valueJson = new StringBuilder();
            ReadValue(value, property.PropertyType, fieldPath, ManifestRules.Find(type.Name, key), valueJson);
            if (valueJson.Length > 0)
            {
                json.Append(first ? "" : ",").Append(JsonString(key)).Append(':').Append(valueJson);
                first = false;
            }
        }
        json.Append('}');
    }

    private static string UnknownField(string key, Type type, string noun, IEnumerable<string> known)
    {
        if (type == typeof(Workload) && key is "replicas" or "selector" or "template" or "strategy" or "rollout" or "autoscale")
        {
            return $"unknown field in {noun}; '{key}' belongs to a fleet deployment (kind: Deployment, with the workload under template:)";
        }
        if (type == typeof(Deployment) && ManifestRules.Closest(key, known) is null
            && LenientWorkloadJson.Default.Workload.Properties.Any(p => p.Name == key))
        {
            return $"unknown field in {noun}; '{key}' is a workload field: move it under template:";
        }
        return ManifestRules.Closest(key, known) is { } suggestion
            ? $"unknown field; did you mean '{suggestion}'?"
            : $"unknown field in {noun}; its fields are {string.Join(", ", known)}";
    }

    /// <summary>
    /// Writes the value's JSON; false (with an error recorded) when its type is wrong. A wrong scalar
    /// writes nothing (the field keeps its default); a list or mapping is always written, without its
    /// wrong parts, so the validator still sees the rest (a list keeps its indices).
    /// </summary>
    private bool ReadValue(YamlNode node, Type type, string path, FieldRule? rule, StringBuilder json)
    {
        var plain = Nullable.GetUnderlyingType(type) ?? type;
        if (plain == typeof(string))
        {
            if (node is not YamlScalarNode scalar || IsNull(node))
            {
                return Wrong(node, path, rule is { Values: not null } ? rule.Describe() : "a string");
            }
            json.Append(JsonString(scalar.Value ?? ""));
            return true;
        }
        if (plain.IsEnum)
        {
            // A closed set (WireNames): written by its name, checked here against the names this
            // version knows, so the error names the value written (the model would read it as Unknown).
            var names = rule is { Values: not null } ? rule : throw new InvalidOperationException($"{path}: a closed set needs its names in ManifestRules");
            if (node is not YamlScalarNode word || IsNull(node))
            {
                return Wrong(node, path, names.Describe());
            }
            if (!names.Allows(word.Value ?? ""))
            {
                Error(node, path, $"expected {names.Describe()}, got '{word.Value}'");
                return false;
            }
            json.Append(JsonString(word.Value ?? ""));
            return true;
        }
        if (plain == typeof(int) || plain == typeof(long) || plain == typeof(ulong))
        {
            var text = node is YamlScalarNode { Style: ScalarStyle.Plain } s ? s.Value ?? "" : null;
            var ok = plain == typeof(ulong)
                ? ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out _)
                : long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n) && (plain == typeof(long) || n is >= int.MinValue and <= int.MaxValue);
            if (!ok)
            {
                return Wrong(node, path, rule?.Describe() ?? "an integer", Quoted(node));
            }
            json.Append(text);
            return true;
        }
        if (plain == typeof(double))
        {
            var text = node is YamlScalarNode { Style: ScalarStyle.Plain } s ? s.Value ?? "" : null;
            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var number) || !double.IsFinite(number))
            {
                return Wrong(node, path, rule?.Describe() ?? "a number", Quoted(node));
            }
            json.Append(number.ToString("R", CultureInfo.InvariantCulture));
            return true;
        }
        if (plain == typeof(bool))
        {
            var text = node is YamlScalarNode { Style: ScalarStyle.Plain } s ? s.Value : null;
            if (text is not ("true" or "True" or "TRUE" or "false" or "False" or "FALSE"))
            {
                return Wrong(node, path, "true or false", Quoted(node));
            }
            json.Append(text.Equals("true", StringComparison.OrdinalIgnoreCase) ? "true" : "false");
            return true;
        }
        var info = _context.GetTypeInfo(plain) ?? throw new InvalidOperationException($"{plain.Name} is not in the manifest's JSON context");
        switch (info.Kind)
        {
            case JsonTypeInfoKind.Enumerable:
                if (node is not YamlSequenceNode sequence)
                {
                    return Wrong(node, path, Describe(info), node is YamlScalarNode && info.ElementType == typeof(string) ? $" (write a list: [{((YamlScalarNode)node).Value?.Replace(" ", ", ", StringComparison.Ordinal)}])" : "");
                }
                json.Append('[');
                var good = true;
                for (var i = 0; i < sequence.Children.Count; i++)
                {
                    var item = sequence.Children[i];
                    var itemPath = $"{path}[{i}]";
                    Positions[itemPath] = item.Start;
                    json.Append(i > 0 ? "," : "");
                    var length = json.Length;
                    good &= ReadValue(item, info.ElementType!, itemPath, null, json);
                    if (json.Length == length)
                    {
                        json.Append(info.ElementType == typeof(string) ? "\"\"" : "{}"); // keeps the indices of the items after it
                    }
                }
                json.Append(']');
                return good;
            case JsonTypeInfoKind.Dictionary:
                if (node is not YamlMappingNode dictionary)
                {
                    return Wrong(node, path, Describe(info));
                }
                json.Append('{');
                var ok = true;
                var firstEntry = true;
                foreach (var (key, value) in dictionary.Children)
                {
                    var name = key is YamlScalarNode k ? k.Value ?? "" : "";
                    var entryPath = path + "." + name;
                    Positions[entryPath] = value.Start;
                    if (IsNull(value))
                    {
                        Error(value, entryPath, "expected a string, got nothing; write '' for an empty value");
                        ok = false;
                        continue;
                    }
                    var entry = new StringBuilder();
                    if (ReadValue(value, info.ElementType!, entryPath, null, entry))
                    {
                        json.Append(firstEntry ? "" : ",").Append(JsonString(name)).Append(':').Append(entry);
                        firstEntry = false;
                    }
                    else
                    {
                        ok = false;
                    }
                }
                json.Append('}');
                return ok;
            case JsonTypeInfoKind.Object:
                if (node is not YamlMappingNode map)
                {
                    return Wrong(node, path, "a mapping (" + string.Join(", ", info.Properties.Select(p => p.Name + ":")) + ")");
                }
                var before = Errors.Count;
                ReadObject(map, plain, path, path, json);
                return Errors.Count == before;
            default:
                throw new InvalidOperationException($"no YAML reading for {plain.Name}");
        }
    }

    /// <summary>A number or boolean written in quotes is a string in YAML: say so.</summary>
    private static string Quoted(YamlNode node)
        => node is YamlScalarNode { Style: not ScalarStyle.Plain, Value: { Length: > 0 } v }
           && (double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out _) || v is "true" or "false")
            ? " (quoted, so a string: write it without quotes)" : "";

    private bool Wrong(YamlNode node, string path, string expected, string hint = "")
    {
        Error(node, path, $"expected {expected}, got {Describe(node)}{hint}");
        return false;
    }

    private string Describe(JsonTypeInfo info)
    {
        if (info.Kind is JsonTypeInfoKind.Dictionary)
        {
            return "a mapping of names to strings (NAME: value)";
        }
        return info.ElementType == typeof(string) ? "a list of strings"
            : "a list of mappings (" + string.Join(", ", _context.GetTypeInfo(info.ElementType!)!.Properties.Select(p => p.Name + ":")) + ")";
    }

    /// <summary>How a node reads in a message: 'three', nothing, a mapping, a list.</summary>
    internal static string Describe(YamlNode node) => node switch
    {
        YamlScalarNode scalar when IsNull(scalar) => "nothing",
        YamlScalarNode { Value: { Length: > 60 } v } => $"'{v[..57]}...'",
        YamlScalarNode scalar => $"'{scalar.Value}'",
        YamlSequenceNode => "a list",
        YamlMappingNode => "a mapping",
        _ => "an alias",
    };

    internal static bool IsNull(YamlNode node)
        => node is YamlScalarNode { Style: ScalarStyle.Plain, Value: null or "" or "~" or "null" or "Null" or "NULL" };

    internal static string JsonString(string value) => JsonSerializer.Serialize(value, LenientWorkloadJson.Default.String);
}

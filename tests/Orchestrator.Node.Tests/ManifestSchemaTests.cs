using System.Reflection;
using System.Text.Json;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Node.Tests;

/// <summary>
/// docs/manifest.schema.json cannot drift from the model: every public property of the model's
/// types (camelCase, as the JSON context names them) is in the schema with a description and the
/// matching type, the schema names no property the model lacks, and its minimum/maximum/enum are
/// exactly the validator's (<see cref="ManifestRules"/>).
/// </summary>
public sealed class ManifestSchemaTests
{
    private static readonly string SchemaPath = Path.Combine(RepoRoot.Path, "docs", "manifest.schema.json");

    [Fact]
    public void The_schema_covers_exactly_the_models_properties_with_their_types_and_rules()
    {
        using var document = JsonDocument.Parse(File.ReadAllText(SchemaPath));
        var root = document.RootElement;
        Assert.Equal("https://json-schema.org/draft/2020-12/schema", root.GetProperty("$schema").GetString());
        var defs = root.GetProperty("$defs");
        var problems = new List<string>();
        var visited = new Dictionary<string, Type>(StringComparer.Ordinal);
        var rulesSeen = new HashSet<string>(StringComparer.Ordinal);

        void CheckType(Type type, string defName)
        {
            if (!visited.TryAdd(defName, type))
            {
                if (visited[defName] != type)
                {
                    problems.Add($"$defs/{defName} stands for both {visited[defName].Name} and {type.Name}");
                }
                return;
            }
            if (!defs.TryGetProperty(defName, out var def))
            {
                problems.Add($"$defs/{defName} ({type.Name}) is missing");
                return;
            }
            if (!def.TryGetProperty("additionalProperties", out var additional) || additional.ValueKind != JsonValueKind.False)
            {
                problems.Add($"$defs/{defName}: additionalProperties must be false (unknown fields are errors)");
            }
            var properties = def.GetProperty("properties");
            var model = type.GetProperties(BindingFlags.Public | BindingFlags.Instance).ToDictionary(p => JsonNamingPolicy.CamelCase.ConvertName(p.Name), StringComparer.Ordinal);
            foreach (var name in properties.EnumerateObject().Select(p => p.Name))
            {
                if (!model.ContainsKey(name) && !(name == "kind" && (type == typeof(Workload) || type == typeof(Deployment))))
                {
                    problems.Add($"$defs/{defName}.{name}: {type.Name} has no such property");
                }
            }
            foreach (var (name, property) in model)
            {
                if (!properties.TryGetProperty(name, out var schema))
                {
                    problems.Add($"$defs/{defName}.{name}: missing ({type.Name}.{property.Name})");
                    continue;
                }
                if (!schema.TryGetProperty("description", out var description) || string.IsNullOrWhiteSpace(description.GetString()))
                {
                    problems.Add($"$defs/{defName}.{name}: no description");
                }
                CheckProperty(type, name, property.PropertyType, schema, $"$defs/{defName}.{name}");
            }
        }

        void CheckProperty(Type owner, string name, Type clrType, JsonElement schema, string at)
        {
            var type = Nullable.GetUnderlyingType(clrType) ?? clrType;
            var reference = schema.TryGetProperty("$ref", out var r) ? r.GetString()!.Replace("#/$defs/", "", StringComparison.Ordinal) : null;
            string[] types = !schema.TryGetProperty("type", out var t) ? [] : t.ValueKind == JsonValueKind.Array ? [.. t.EnumerateArray().Select(x => x.GetString()!)] : [t.GetString()!];
            string? expected = null;
            if (type == typeof(string) || type.IsEnum) // a closed set is its wire names (strings); its enum is checked against the rule below
            {
                expected = types.Contains("string") ? null : "type string";
            }
            else if (type == typeof(int) || type == typeof(long) || type == typeof(ulong))
            {
                expected = types.SequenceEqual(["integer"]) ? null : "type integer";
            }
            else if (type == typeof(DateTimeOffset))
            {
                expected = types.Contains("string") && schema.TryGetProperty("format", out var f) && f.GetString() == "date-time" ? null : "type string, format date-time";
            }
            else if (type == typeof(double))
            {
                expected = types.SequenceEqual(["number"]) ? null : "type number";
            }
            else if (type == typeof(bool))
            {
                expected = types.SequenceEqual(["boolean"]) ? null : "type boolean";
            }
            else if (type == typeof(List<string>) && owner.GetProperty(name, System.Reflection.BindingFlags.IgnoreCase | System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Instance)?.GetCustomAttributes(typeof(System.Text.Json.Serialization.JsonConverterAttribute), false).Length > 0)
            {
                // groups: ids or names, read by its own converter
                expected = types.SequenceEqual(["array"]) && schema.TryGetProperty("items", out var gi) && gi.TryGetProperty("type", out var gt) && gt.ValueKind == JsonValueKind.Array
                    && gt.EnumerateArray().Select(x => x.GetString()).Order().SequenceEqual(["integer", "string"]) ? null : "type array with items: {type: [integer, string]}";
            }
            else if (type == typeof(List<string>))
            {
                expected = reference == "stringList" ? null : "$ref #/$defs/stringList";
            }
            else if (type == typeof(Dictionary<string, string>))
            {
                expected = reference == "stringMap" ? null : "$ref #/$defs/stringMap";
            }
            else if (type == typeof(List<long>))
            {
                expected = types.SequenceEqual(["array"]) && schema.TryGetProperty("items", out var li) && li.TryGetProperty("type", out var lt) && lt.GetString() == "integer"
                    ? null : "type array with items: {type: integer}";
            }
            else if (type.IsGenericType && type.GetGenericTypeDefinition() == typeof(Dictionary<,>) && type.GetGenericArguments()[0] == typeof(string))
            {
                var values = schema.TryGetProperty("additionalProperties", out var ap) && ap.ValueKind == JsonValueKind.Object && ap.TryGetProperty("$ref", out var ar)
                    ? ar.GetString()!.Replace("#/$defs/", "", StringComparison.Ordinal) : null;
                if (!types.SequenceEqual(["object"]) || values is null)
                {
                    expected = "type object with additionalProperties: {$ref: …}";
                }
                else
                {
                    CheckType(type.GetGenericArguments()[1], values);
                }
            }
            else if (type.IsGenericType && type.GetGenericTypeDefinition() == typeof(List<>))
            {
                var items = schema.TryGetProperty("items", out var i) && i.TryGetProperty("$ref", out var ir) ? ir.GetString()!.Replace("#/$defs/", "", StringComparison.Ordinal) : null;
                if (!types.SequenceEqual(["array"]) || items is null)
                {
                    expected = "type array with items: {$ref: …}";
                }
                else
                {
                    CheckType(type.GetGenericArguments()[0], items);
                }
            }
            else if (type.IsClass)
            {
                if (reference is null)
                {
                    expected = $"$ref to the definition of {type.Name}";
                }
                else
                {
                    CheckType(type, reference);
                }
            }
            else
            {
                expected = $"a mapping for {type.Name} in this test";
            }
            if (expected is not null)
            {
                problems.Add($"{at}: expected {expected} for {owner.Name}.{name} ({type.Name})");
            }

            var ruleKey = $"{owner.Name}.{name}";
            var rule = ManifestRules.Find(owner.Name, name);
            if (rule is not null)
            {
                rulesSeen.Add(ruleKey);
            }
            double? Number(string keyword) => schema.TryGetProperty(keyword, out var n) ? n.GetDouble() : null;
            var schemaEnum = schema.TryGetProperty("enum", out var e) ? e.EnumerateArray().Select(x => x.GetString()!).ToList() : null;
            var exclusive = Number("exclusiveMinimum");
            var minimum = Number("minimum") ?? exclusive;
            if (rule is null && (minimum is not null || Number("maximum") is not null || schemaEnum is not null))
            {
                problems.Add($"{at}: has minimum/maximum/enum but the validator has no rule {ruleKey} (ManifestRules)");
            }
            else if (rule is not null)
            {
                if (rule.Minimum != minimum || rule.Maximum != Number("maximum") || rule.ExclusiveMinimum != (exclusive is not null))
                {
                    problems.Add($"{at}: range {(exclusive is null ? "minimum" : "exclusiveMinimum")} {minimum} maximum {Number("maximum")} differs from the validator's: {rule.Describe()}");
                }
                if (!(rule.Values ?? []).SequenceEqual(schemaEnum ?? []))
                {
                    problems.Add($"{at}: enum [{string.Join(", ", schemaEnum ?? [])}] differs from the validator's: {rule.Describe()}");
                }
            }
        }

        CheckType(typeof(Workload), "workload");
        CheckType(typeof(Deployment), "deployment");
        foreach (var unused in defs.EnumerateObject().Select(d => d.Name).Where(d => !visited.ContainsKey(d) && d is not ("stringList" or "stringMap")))
        {
            problems.Add($"$defs/{unused}: no model type uses it");
        }
        foreach (var rule in ManifestRules.Fields.Keys.Where(k => !rulesSeen.Contains(k)))
        {
            problems.Add($"ManifestRules has {rule}, which is no property of the model");
        }
        Assert.True(problems.Count == 0, "docs/manifest.schema.json has drifted from the model:\n" + string.Join("\n", problems));
    }

    [Fact]
    public void Every_property_of_the_schema_has_a_description()
    {
        using var document = JsonDocument.Parse(File.ReadAllText(SchemaPath));
        var missing = new List<string>();
        void Walk(JsonElement element, string at)
        {
            if (element.ValueKind != JsonValueKind.Object)
            {
                return;
            }
            if (element.TryGetProperty("properties", out var properties))
            {
                foreach (var property in properties.EnumerateObject())
                {
                    if (!property.Value.TryGetProperty("description", out _) && at.StartsWith("$defs", StringComparison.Ordinal))
                    {
                        missing.Add($"{at}.{property.Name}");
                    }
                }
            }
            foreach (var child in element.EnumerateObject())
            {
                Walk(child.Value, at.Length == 0 ? child.Name : $"{at}/{child.Name}");
            }
        }
        Walk(document.RootElement, "");
        Assert.Empty(missing);
        Assert.All(document.RootElement.GetProperty("$defs").EnumerateObject(), d => Assert.True(d.Value.TryGetProperty("description", out _), d.Name));
    }

    [Fact]
    public void The_docs_tell_editors_where_the_schema_is()
    {
        var docs = File.ReadAllText(Path.Combine(RepoRoot.Path, "docs", "manifest.md"));
        Assert.Contains("# yaml-language-server: $schema=", docs, StringComparison.Ordinal);
        Assert.Contains("manifest.schema.json", docs, StringComparison.Ordinal);
    }
}

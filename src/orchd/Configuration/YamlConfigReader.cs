using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Orchestrator.Daemon.Configuration;

/// <summary>
/// Reads orchd.yaml through YamlDotNet's representation model (no reflection, so safe under
/// AOT) and applies each key through <see cref="ConfigSchema"/>, so that every error can name
/// the file, line, column and key.
/// </summary>
internal static class YamlConfigReader
{
    public static void Apply(ConfigBuilder builder, string path, string text)
    {
        if (Orchestrator.Api.Workloads.YamlLimits.Check(text) is { } tooBig)
        {
            throw new ConfigException($"{path}: refused: {tooBig}; fix the file");
        }
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text));
        }
        catch (YamlException e)
        {
            throw new ConfigException($"{Where(path, e.Start)}: {Reason(e)}; fix the YAML syntax");
        }
        catch (ArgumentException e)
        {
            throw new ConfigException($"{path}: {e.Message}; fix the YAML syntax");
        }

        if (stream.Documents.Count == 0)
        {
            return;
        }
        if (stream.Documents.Count > 1)
        {
            throw new ConfigException($"{Where(path, stream.Documents[1].RootNode.Start)}: the file holds {stream.Documents.Count} YAML documents; keep one");
        }
        var root = stream.Documents[0].RootNode;
        if (IsEmpty(root))
        {
            return;
        }
        if (root is not YamlMappingNode mapping)
        {
            throw new ConfigException($"{Where(path, root.Start)}: expected a mapping of settings (key: value), found {Kind(root)}");
        }
        Walk(builder, path, mapping, prefix: "");
    }

    private static void Walk(ConfigBuilder builder, string path, YamlMappingNode mapping, string prefix)
    {
        foreach (var (keyNode, valueNode) in mapping.Children)
        {
            if (keyNode is not YamlScalarNode { Value: { } key })
            {
                throw new ConfigException($"{Where(path, keyNode.Start)}: a key must be a plain name, found {Kind(keyNode)}");
            }
            var fullKey = prefix + key;
            if (prefix.Length == 0 && ConfigSchema.Sections.Contains(key))
            {
                if (IsEmpty(valueNode))
                {
                    continue;
                }
                if (valueNode is not YamlMappingNode section)
                {
                    throw new ConfigException($"{Where(path, valueNode.Start)}: {fullKey}: expected a mapping of {key} settings, found {Kind(valueNode)}");
                }
                Walk(builder, path, section, key + ".");
                continue;
            }

            var setting = ConfigSchema.ByKey(fullKey) ?? throw Unknown(path, keyNode, fullKey);
            try
            {
                ApplyValue(builder, path, setting, valueNode);
            }
            catch (ConfigValueException e)
            {
                throw new ConfigException($"{Where(path, valueNode.Start)}: {fullKey}: {e.Message}");
            }
        }
    }

    private static void ApplyValue(ConfigBuilder builder, string path, Setting setting, YamlNode value)
    {
        if (IsEmpty(value))
        {
            return; // "key:" with nothing keeps the default, as an absent key would
        }
        switch (setting.Shape, value)
        {
            case (SettingShape.Scalar, YamlScalarNode scalar):
                setting.Apply(builder, scalar.Value!);
                break;
            case (SettingShape.List, YamlScalarNode scalar):
                setting.Reset?.Invoke(builder);
                foreach (var item in scalar.Value!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                {
                    setting.Apply(builder, item);
                }
                break;
            case (SettingShape.List, YamlSequenceNode sequence):
                setting.Reset?.Invoke(builder);
                foreach (var item in sequence.Children)
                {
                    if (item is not YamlScalarNode { Value: { } text })
                    {
                        throw new ConfigException($"{Where(path, item.Start)}: {setting.Key}: each entry must be a single value, found {Kind(item)}");
                    }
                    try
                    {
                        setting.Apply(builder, text);
                    }
                    catch (ConfigValueException e)
                    {
                        throw new ConfigException($"{Where(path, item.Start)}: {setting.Key}: {e.Message}");
                    }
                }
                break;
            case (SettingShape.Map, YamlMappingNode map):
                foreach (var (k, v) in map.Children)
                {
                    if (k is not YamlScalarNode { Value: { } labelKey } || v is not YamlScalarNode { Value: var labelValue })
                    {
                        throw new ConfigException($"{Where(path, k.Start)}: {setting.Key}: each entry must be key: value");
                    }
                    try
                    {
                        var (key, val) = ConfigValues.Label(labelKey, labelValue ?? "");
                        builder.Labels[key] = val;
                    }
                    catch (ConfigValueException e)
                    {
                        throw new ConfigException($"{Where(path, k.Start)}: {setting.Key}: {e.Message}");
                    }
                }
                break;
            default:
                var wanted = setting.Shape switch
                {
                    SettingShape.Scalar => "a single value",
                    SettingShape.List => "a value or a list of values",
                    _ => "a mapping of key: value",
                };
                throw new ConfigValueException($"expected {wanted}, found {Kind(value)}");
        }
    }

    private static ConfigException Unknown(string path, YamlNode keyNode, string key)
    {
        var known = ConfigSchema.All.Select(s => s.Key).Concat(ConfigSchema.Sections);
        var hint = ConfigSchema.Suggest(key, known) is { } close ? $"did you mean '{close}'?" : "see `orchd --help` for the keys";
        return new ConfigException($"{Where(path, keyNode.Start)}: unknown key '{key}'; {hint}");
    }

    private static bool IsEmpty(YamlNode node)
        => node is YamlScalarNode { Value: null or "" } scalar && scalar.Style is ScalarStyle.Plain or ScalarStyle.Any;

    private static string Where(string path, Mark mark) => $"{path}:{mark.Line}:{mark.Column}";

    private static string Kind(YamlNode node) => node switch
    {
        YamlMappingNode => "a mapping",
        YamlSequenceNode => "a list",
        YamlScalarNode s => $"'{s.Value}'",
        _ => "an alias",
    };

    private static string Reason(YamlException e)
    {
        // YamlDotNet prefixes "(Line: 3, Col: 1, Idx: 20) - (…): " to its messages; the location is already in front.
        var message = e.InnerException?.Message ?? e.Message;
        var cut = message.LastIndexOf("): ", StringComparison.Ordinal);
        message = cut >= 0 ? message[(cut + 3)..] : message;
        message = message.TrimEnd('.');
        return message.Length > 0 ? char.ToLowerInvariant(message[0]) + message[1..] : "invalid YAML";
    }
}

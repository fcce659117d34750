using System.Text;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Orchestrator.Ctl;

/// <summary>
/// ~/.config/orchestrator/config.yaml (ORCH_CONFIG or $XDG_CONFIG_HOME to move it): named
/// contexts (servers, credentials, TLS files, default node, timeout, signing key) and the current
/// one. Read through YamlDotNet's representation model (no reflection, AOT-safe); a bad file is one
/// error with its line, column and the fix.
/// <code>
/// current-context: lab
/// contexts:
///   lab:
///     server: nats://127.0.0.1:4222
///     node: demo-1
///   prod:
///     servers: [tls://nats-1.example:4222, tls://nats-2.example:4222]
///     nkey: ~/.config/orchestrator/prod.nk
///     tls-ca: ~/.config/orchestrator/prod-ca.pem
/// </code>
/// </summary>
internal sealed partial class ContextConfig
{
    public static readonly ContextConfig Empty = new("", null, new Dictionary<string, IReadOnlyDictionary<string, string>>(), exists: false);

    private ContextConfig(string path, string? current, IReadOnlyDictionary<string, IReadOnlyDictionary<string, string>> contexts, bool exists)
    {
        Path = path;
        CurrentContext = current;
        Contexts = contexts;
        Exists = exists;
    }

    public string Path { get; }
    public string? CurrentContext { get; }
    /// <summary>Name → setting key → value (file paths already absolute).</summary>
    public IReadOnlyDictionary<string, IReadOnlyDictionary<string, string>> Contexts { get; }
    public bool Exists { get; }

    private static readonly string[] s_keys = ["server", "servers", "creds", "nkey", "tls-ca", "tls-cert", "tls-key", "node", "timeout", "sign-key"];

    public static string DefaultPath()
    {
        if (Environment.GetEnvironmentVariable("ORCH_CONFIG") is { Length: > 0 } explicitPath)
        {
            return explicitPath;
        }
        var home = Environment.GetEnvironmentVariable("HOME") is { Length: > 0 } h ? h : Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        var configHome = Environment.GetEnvironmentVariable("XDG_CONFIG_HOME") is { Length: > 0 } x ? x : System.IO.Path.Combine(home, ".config");
        return System.IO.Path.Combine(configHome, "orchestrator", "config.yaml");
    }

    /// <summary>The file's contexts; a missing file is no contexts (defaults), a broken one a usage error.</summary>
    public static ContextConfig Load(string path)
    {
        if (!File.Exists(path))
        {
            return new ContextConfig(path, null, new Dictionary<string, IReadOnlyDictionary<string, string>>(), exists: false);
        }
        var root = ReadRoot(path);
        string? current = null;
        var contexts = new Dictionary<string, IReadOnlyDictionary<string, string>>(StringComparer.Ordinal);
        if (root is null)
        {
            return new ContextConfig(path, null, contexts, exists: true);
        }
        foreach (var (keyNode, value) in root.Children)
        {
            var key = (keyNode as YamlScalarNode)?.Value;
            switch (key)
            {
                case "current-context":
                    current = Scalar(path, "current-context", value);
                    break;
                case "contexts" when value is YamlMappingNode byName:
                    foreach (var (nameNode, body) in byName.Children)
                    {
                        var name = Scalar(path, "a context name", nameNode);
                        contexts[name] = ReadContext(path, name, body);
                    }
                    break;
                case "contexts" when value is YamlSequenceNode list:
                    foreach (var item in list.Children)
                    {
                        if (item is not YamlMappingNode m || !m.Children.TryGetValue(new YamlScalarNode("name"), out var nameNode))
                        {
                            throw Error(path, item.Start, "each item of contexts needs a name: (or write contexts as a mapping of name → settings)");
                        }
                        var name = Scalar(path, "name", nameNode);
                        m.Children.Remove(new YamlScalarNode("name"));
                        contexts[name] = ReadContext(path, name, m);
                    }
                    break;
                case "contexts" when value is YamlScalarNode { Value: null or "" }:
                    break;
                case "contexts":
                    throw Error(path, value.Start, "contexts: expected a mapping of context name → settings");
                default:
                    throw Error(path, keyNode.Start, $"unknown key '{key}'{Suggest(key ?? "", ["current-context", "contexts"])}; the file has current-context and contexts");
            }
        }
        return new ContextConfig(path, current, contexts, exists: true);
    }

    private static YamlMappingNode? ReadRoot(string path)
    {
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(File.ReadAllText(path)));
        }
        catch (YamlException e)
        {
            throw Error(path, e.Start, $"not valid YAML: {Orchestrator.Api.Workloads.YamlErrors.Explain(e)}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"{path}: cannot read it: {e.Message}");
        }
        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is YamlScalarNode { Value: null or "" })
        {
            return null;
        }
        return stream.Documents[0].RootNode as YamlMappingNode
            ?? throw Error(path, stream.Documents[0].RootNode.Start, "expected a mapping with current-context and contexts");
    }

    private static Dictionary<string, string> ReadContext(string path, string name, YamlNode body)
    {
        var settings = new Dictionary<string, string>(StringComparer.Ordinal);
        if (body is YamlScalarNode { Value: null or "" })
        {
            return settings;
        }
        if (body is not YamlMappingNode mapping)
        {
            throw Error(path, body.Start, $"context '{name}': expected a mapping of settings (server, creds, node, …)");
        }
        foreach (var (keyNode, value) in mapping.Children)
        {
            var key = (keyNode as YamlScalarNode)?.Value ?? "";
            if (!s_keys.Contains(key))
            {
                throw Error(path, keyNode.Start, $"context '{name}': unknown key '{key}'{Suggest(key, s_keys)}; the keys are {string.Join(", ", s_keys)}");
            }
            if (key == "servers")
            {
                var urls = value is YamlSequenceNode seq ? seq.Children.Select(c => Scalar(path, "servers", c)).ToList() : [Scalar(path, "servers", value)];
                settings["server"] = string.Join(",", urls);
                continue;
            }
            var text = Scalar(path, key, value);
            settings[key] = key is "creds" or "nkey" or "tls-ca" or "tls-cert" or "tls-key" or "sign-key" ? ExpandPath(path, text) : text;
        }
        return settings;
    }

    /// <summary>~/ is the home directory; a relative path is relative to the config file's directory.</summary>
    private static string ExpandPath(string configPath, string path)
    {
        if (path.StartsWith("~/", StringComparison.Ordinal))
        {
            var home = Environment.GetEnvironmentVariable("HOME") is { Length: > 0 } h ? h : Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            return System.IO.Path.Combine(home, path[2..]);
        }
        return System.IO.Path.IsPathRooted(path) ? path : System.IO.Path.GetFullPath(System.IO.Path.Combine(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(configPath)) ?? "/", path));
    }

    private static string Scalar(string path, string what, YamlNode node)
        => node is YamlScalarNode { Value: { Length: > 0 } value } ? value : throw Error(path, node.Start, $"{what}: expected a single value");

    private static UsageException Error(string path, Mark at, string message) => new($"{path}:{at.Line}:{at.Column}: {message}");

    private static string Suggest(string key, IEnumerable<string> known)
        => EditDistance.Closest(key, known, maxDistance: 2) is { } best ? $"; did you mean '{best}'?" : "";

    [GeneratedRegex(@"^current-context:.*$", RegexOptions.Multiline)]
    private static partial Regex CurrentContextLine();

    /// <summary>Sets current-context in the file, keeping everything else (comments too) as it is.</summary>
    public void UseContext(string name)
    {
        if (!Contexts.ContainsKey(name))
        {
            throw new UsageException(Contexts.Count == 0
                ? $"{Path} has no contexts; add one with `orchctl config set-context {name} --server URL`"
                : $"no context '{name}' in {Path}; use one of {string.Join(", ", Contexts.Keys)}");
        }
        var text = File.ReadAllText(Path);
        var line = $"current-context: {name}";
        text = CurrentContextLine().IsMatch(text) ? CurrentContextLine().Replace(text, line, 1) : line + "\n" + text;
        File.WriteAllText(Path, text);
    }

    /// <summary>Creates or updates a context (and the file); the file is written again from its YAML model (comments are not kept).</summary>
    public static void SetContext(string path, string name, IReadOnlyDictionary<string, string> settings, bool makeCurrent)
    {
        var stream = new YamlStream();
        if (File.Exists(path))
        {
            Load(path); // any error in it first, with its line
            stream.Load(new StringReader(File.ReadAllText(path)));
        }
        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is not YamlMappingNode)
        {
            stream = new YamlStream(new YamlDocument(new YamlMappingNode()));
        }
        var root = (YamlMappingNode)stream.Documents[0].RootNode;
        if (!root.Children.TryGetValue(new YamlScalarNode("contexts"), out var contextsNode) || contextsNode is not (YamlMappingNode or YamlSequenceNode))
        {
            contextsNode = new YamlMappingNode();
            root.Children[new YamlScalarNode("contexts")] = contextsNode;
        }
        YamlMappingNode? target = null;
        if (contextsNode is YamlMappingNode byName)
        {
            if (!byName.Children.TryGetValue(new YamlScalarNode(name), out var existing) || existing is not YamlMappingNode found)
            {
                found = new YamlMappingNode();
                byName.Children[new YamlScalarNode(name)] = found;
            }
            target = found;
        }
        else if (contextsNode is YamlSequenceNode list)
        {
            target = list.Children.OfType<YamlMappingNode>().FirstOrDefault(m => m.Children.TryGetValue(new YamlScalarNode("name"), out var n) && n is YamlScalarNode { Value: var v } && v == name);
            if (target is null)
            {
                target = new YamlMappingNode { { "name", name } };
                list.Children.Add(target);
            }
        }
        foreach (var (key, value) in settings)
        {
            if (key == "server")
            {
                target!.Children.Remove(new YamlScalarNode("servers"));
            }
            target!.Children[new YamlScalarNode(key)] = new YamlScalarNode(value);
        }
        if (makeCurrent || !root.Children.ContainsKey(new YamlScalarNode("current-context")))
        {
            root.Children.Remove(new YamlScalarNode("current-context"));
            var ordered = new YamlMappingNode { { "current-context", name } };
            foreach (var child in root.Children)
            {
                ordered.Children.Add(child);
            }
            stream = new YamlStream(new YamlDocument(ordered));
        }
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
        var text = new StringBuilder();
        using (var writer = new StringWriter(text))
        {
            stream.Save(writer, assignAnchors: false);
        }
        var yaml = text.ToString().Replace("\n...\n", "\n", StringComparison.Ordinal);
        if (yaml.EndsWith("...\n", StringComparison.Ordinal))
        {
            yaml = yaml[..^4];
        }
        File.WriteAllText(path, yaml);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }
}

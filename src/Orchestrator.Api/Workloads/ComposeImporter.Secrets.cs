using System.Globalization;
using YamlDotNet.RepresentationModel;

namespace Orchestrator.Api.Workloads;

/// <summary>Where a compose file's secret or config comes from: a file beside it, a variable of the shell that applies it, inline content, or the fleet (external).</summary>
/// <param name="Name">Its name in the fleet (the top-level key, or its <c>name:</c>).</param>
/// <param name="File">A path as written (relative to the compose file's directory).</param>
/// <param name="Environment">A variable of orchctl's environment.</param>
/// <param name="Content">A config's inline content.</param>
/// <param name="Where">"file:line:col: secrets.NAME", for messages.</param>
public sealed record SecretSource(SecretKind Kind, string Name, string? File, string? Environment, string? Content, bool External, string Where);

internal static partial class ComposeImporter
{
    private sealed partial class Importer
    {
        private readonly Dictionary<(SecretKind, string), SecretSource> _declared = [];

        /// <summary>The top-level secrets and configs the services may use.</summary>
        public List<SecretSource> Sources { get; } = [];

        /// <summary>A top-level <c>secrets:</c> or <c>configs:</c> mapping: each entry's source (file, environment, content, external) and fleet name.</summary>
        public void Declare(SecretKind kind, YamlNode node, string path)
        {
            if (node is not YamlMappingNode entries)
            {
                Error(node, path, $"expected a mapping of {path} by name, got {ManifestReader.Describe(node)}");
                return;
            }
            foreach (var (key, value) in Entries(entries))
            {
                var name = KeyName(key);
                var at = $"{path}.{name}";
                string? file = null, environment = null, content = null, fleetName = null;
                var external = false;
                foreach (var (optionKey, option) in value is YamlMappingNode options ? Entries(options) : [])
                {
                    var field = KeyName(optionKey);
                    switch (field)
                    {
                        case "file":
                            file = Text(option, $"{at}.file");
                            break;
                        case "environment":
                            environment = Text(option, $"{at}.environment");
                            break;
                        case "content" when kind == SecretKind.Config:
                            content = Text(option, $"{at}.content");
                            break;
                        case "external":
                            external = Flag(option, $"{at}.external") == true;
                            break;
                        case "name":
                            fleetName = Text(option, $"{at}.name");
                            break;
                        default:
                            Ignored(optionKey, $"{at}.{field}", "only file, environment, content (configs), external and name are read");
                            break;
                    }
                }
                fleetName ??= name;
                if (SecretMounts.NameProblem(fleetName) is { } bad)
                {
                    Error(key, at, $"{bad} (the fleet's {SecretMounts.Noun(kind)} names); give it another name with name:");
                    continue;
                }
                var sources = (file is null ? 0 : 1) + (environment is null ? 0 : 1) + (content is null ? 0 : 1) + (external ? 1 : 0);
                if (sources != 1)
                {
                    Error(key, at, $"expected exactly one of file:, environment:{(kind == SecretKind.Config ? ", content:" : "")} or external: true, got {sources}");
                    continue;
                }
                var source = new SecretSource(kind, fleetName, file, environment, content, external, $"{Where(key)}: {at}");
                _declared[(kind, name)] = source;
                Sources.Add(source);
            }
        }

        /// <summary>A service's <c>secrets:</c> or <c>configs:</c>: short (the name) or long (source, target, uid, gid, mode) entries of the top-level ones.</summary>
        private void SecretMountsOf(SecretKind kind, YamlNode value, string path, Workload template)
        {
            if (value is not YamlSequenceNode items)
            {
                Error(value, path, $"expected a list of {(kind == SecretKind.Secret ? "secrets" : "configs")} by name, got {ManifestReader.Describe(value)}");
                return;
            }
            var field = kind == SecretKind.Secret ? "secrets" : "configs";
            for (var i = 0; i < items.Children.Count; i++)
            {
                var item = items.Children[i];
                var at = $"{path}[{i}]";
                string? sourceName = null;
                var mount = new SecretMount();
                if (item is YamlMappingNode longForm)
                {
                    foreach (var (k, v) in Entries(longForm))
                    {
                        var option = KeyName(k);
                        switch (option)
                        {
                            case "source":
                                sourceName = Text(v, $"{at}.source");
                                break;
                            case "target":
                                mount.Target = Text(v, $"{at}.target");
                                break;
                            case "uid":
                                mount.Uid = Integer(v, $"{at}.uid");
                                break;
                            case "gid":
                                mount.Gid = Integer(v, $"{at}.gid");
                                break;
                            case "mode":
                                mount.Mode = Mode(v, $"{at}.mode");
                                break;
                            default:
                                Ignored(k, $"{at}.{option}", "only source, target, uid, gid and mode are read");
                                break;
                        }
                    }
                }
                else
                {
                    sourceName = Text(item, at);
                }
                if (sourceName is null)
                {
                    if (item is YamlMappingNode)
                    {
                        Error(item, at, "expected source: (the name of a top-level entry)");
                    }
                    continue;
                }
                if (!_declared.TryGetValue((kind, sourceName), out var declared))
                {
                    Error(item, at, $"'{sourceName}' is not declared under the top-level {field}: (with file:, environment:{(kind == SecretKind.Config ? ", content:" : "")} or external: true)");
                    continue;
                }
                mount.Name = declared.Name;
                if (kind == SecretKind.Secret && mount.Target is null && declared.Name != sourceName)
                {
                    mount.Target = sourceName; // compose mounts it under the service's name for it: /run/secrets/<source>
                }
                if (kind == SecretKind.Config && mount.Target is null)
                {
                    mount.Target = "/" + sourceName;
                }
                var list = kind == SecretKind.Secret ? (template.Secrets ??= []) : (template.Configs ??= []);
                Place($"template.{field}[{list.Count}]", at, item);
                list.Add(mount);
            }
            Place($"template.{field}", path, value);
        }

        /// <summary>A file mode as compose writes it: 0440 (YAML 1.1 octal, as written) or a decimal number (288).</summary>
        private string? Mode(YamlNode node, string path)
        {
            if (Text(node, path) is not { } text)
            {
                return null;
            }
            if (text.StartsWith("0o", StringComparison.Ordinal))
            {
                return "0" + text[2..];
            }
            if (text.StartsWith('0') || !int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n))
            {
                return text;
            }
            return "0" + Convert.ToString(n, 8);
        }
    }
}

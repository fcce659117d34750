using YamlDotNet.RepresentationModel;

namespace Orchestrator.Api.Workloads;

internal static partial class ComposeImporter
{
    /// <summary>Compose volumes, short and long form: named volumes, binds, tmpfs; paths no node can know are errors.</summary>
    private sealed partial class Importer
    {
        private void Volumes(YamlNode node, string path, Workload template, string service)
        {
            if (node is not YamlSequenceNode list)
            {
                Error(node, path, $"expected a list of volumes (\"data:/data\", \"/srv:/srv:ro\"), got {ManifestReader.Describe(node)}");
                return;
            }
            template.Volumes ??= [];
            for (var i = 0; i < list.Children.Count; i++)
            {
                var item = list.Children[i];
                var itemPath = $"{path}[{i}]";
                var volume = item is YamlMappingNode map ? LongVolume(map, itemPath, service, template) : ShortVolume(item, itemPath, service);
                if (volume is not null)
                {
                    Place($"template.volumes[{template.Volumes.Count}]", itemPath, item);
                    template.Volumes.Add(volume);
                }
            }
        }

        /// <summary>"data:/data", "/srv/www:/www:ro", "./conf:/conf", "/scratch" (anonymous).</summary>
        private Volume? ShortVolume(YamlNode node, string path, string service)
        {
            if (Text(node, path) is not { } text)
            {
                return null;
            }
            var parts = text.Split(':');
            if (parts.Length == 1)
            {
                return Anonymous(node, path, service, text, readOnly: false);
            }
            if (parts.Length > 3)
            {
                Error(node, path, $"expected source:target[:ro], got '{text}'");
                return null;
            }
            var readOnly = false;
            if (parts.Length == 3)
            {
                foreach (var option in parts[2].Split(','))
                {
                    if (option == "ro")
                    {
                        readOnly = true;
                    }
                    else if (option != "rw")
                    {
                        Ignored(node, path, $"option '{option}' is not supported, only ro and rw");
                    }
                }
            }
            return Bind(node, path, parts[0], parts[1], readOnly);
        }

        private Volume? LongVolume(YamlMappingNode map, string path, string service, Workload template)
        {
            string? type = null, from = null, target = null, tmpfsSize = null, tmpfsMode = null;
            var readOnly = false;
            foreach (var (key, value) in Entries(map))
            {
                var field = KeyName(key);
                switch (field)
                {
                    case "type":
                        type = Text(value, $"{path}.type");
                        break;
                    case "source":
                        from = Text(value, $"{path}.source");
                        break;
                    case "target":
                        target = Text(value, $"{path}.target");
                        break;
                    case "read_only":
                        readOnly = value is YamlScalarNode { Value: "true" or "True" or "TRUE" };
                        break;
                    case "tmpfs" when value is YamlMappingNode tmpfsOptions:
                        foreach (var (ok, ov) in Entries(tmpfsOptions))
                        {
                            switch (KeyName(ok))
                            {
                                case "size": tmpfsSize = ov is YamlScalarNode { Value: { } n } && long.TryParse(n, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out _) ? n : Memory(ov, $"{path}.tmpfs.size"); break;
                                case "mode": tmpfsMode = ov is YamlScalarNode { Value: { } m } ? m : null; break;
                                default: Ignored(ok, $"{path}.tmpfs.{KeyName(ok)}", "not supported (size and mode are)"); break;
                            }
                        }
                        break;
                    default:
                        Ignored(key, $"{path}.{field}", field is "bind" or "volume" or "consistency" or "tmpfs" or "image"
                            ? "not supported; host paths must exist and named volumes are plain directories"
                            : Unknown(field, ["type", "source", "target", "read_only", "bind", "volume", "tmpfs", "consistency"]));
                        break;
                }
            }
            if (type == "tmpfs" && target is not null)
            {
                // A tmpfs mount (compose's long form): memory, never the node's disk.
                (template.Tmpfs ??= []).Add(new TmpfsMount { Target = target, Size = tmpfsSize, Mode = tmpfsMode });
                Place("template.tmpfs", path, map);
                return null;
            }
            if (type is not (null or "volume" or "bind"))
            {
                Ignored(map, path, $"type {type} is not supported, only volume, bind and tmpfs");
                return null;
            }
            if (target is null)
            {
                Error(map, path, "target: required; the path inside the container");
                return null;
            }
            if (string.IsNullOrEmpty(from))
            {
                return Anonymous(map, path, service, target, readOnly);
            }
            return Bind(map, path, from, target, readOnly, type);
        }

        /// <summary>
        /// An anonymous volume ("/app/node_modules"), as Docker mounts one: a volume of the container's
        /// own, first filled from the image's files at that path, mounted over whatever it is under
        /// (the node_modules pattern: the image's modules over a bind of the source). Here it is a
        /// named volume of the service's, so it outlives a restart and a rollout as compose keeps it.
        /// </summary>
        private Volume? Anonymous(YamlNode node, string path, string service, string target, bool readOnly)
        {
            var slug = new System.Text.StringBuilder();
            foreach (var c in target.Trim('/'))
            {
                slug.Append(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '-');
            }
            var name = $"{service}-{slug}";
            if (name.Length > 40)
            {
                var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(target)))[..8];
                name = $"{name[..31].TrimEnd('-')}-{hash}";
            }
            Warn(node, path, $"an anonymous volume: {target} is the node's volume '{name}'{(AsApp ? " of the app" : "")}, filled from the image on first use as Docker does; it is kept when the container is replaced");
            return new Volume { Name = name, Target = target, ReadOnly = readOnly };
        }

        private Volume? Bind(YamlNode node, string path, string from, string target, bool readOnly, string? type = null)
        {
            if (type == "bind" || from.StartsWith('/') || from.StartsWith('.') || from.StartsWith('~'))
            {
                if (from.StartsWith('~'))
                {
                    Error(node, path, $"'{from}' is under the home of whoever runs orchctl, which the nodes do not know; give an absolute path on the nodes");
                    return null;
                }
                if (!from.StartsWith('/'))
                {
                    if (source is "-" or "" || Path.GetDirectoryName(Path.GetFullPath(source)) is not { } dir)
                    {
                        Error(node, path, $"'{from}' is relative to the compose file, and this one was read from stdin; give an absolute path on the nodes");
                        return null;
                    }
                    var absolute = Path.GetFullPath(Path.Combine(dir, from));
                    Warn(node, path, $"'{from}' is bound from {absolute}, which must exist on every node that runs this service");
                    from = absolute;
                }
                return new Volume { HostPath = from, Target = target, ReadOnly = readOnly };
            }
            return new Volume { Name = from, Target = target, ReadOnly = readOnly };
        }
    }
}

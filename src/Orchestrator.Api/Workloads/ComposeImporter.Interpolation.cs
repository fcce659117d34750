using YamlDotNet.RepresentationModel;

namespace Orchestrator.Api.Workloads;

internal static partial class ComposeImporter
{
    /// <summary>What compose does on the client before the file means anything: interpolation, env_file, build:.</summary>
    private sealed partial class Importer
    {
        /// <summary>The variables (shell over .env); null: not interpolated (<see cref="ComposeShape.Environment"/>).</summary>
        public IReadOnlyDictionary<string, string>? Environment { get; init; }

        public IReadOnlyDictionary<string, string>? ImageMap { get; init; }

        /// <summary>
        /// Every scalar value of the file (not the keys, as compose) with its variables replaced, in
        /// place; a variable not set warned about once per place (it reads as empty, as in compose),
        /// a template that does not parse or a <c>${VAR:?…}</c> not set an error at its line.
        /// An anchor's node is interpolated once, however often it is merged.
        /// </summary>
        public void Interpolate(YamlNode node, string path, HashSet<YamlNode> seen)
        {
            if (!seen.Add(node))
            {
                return;
            }
            switch (node)
            {
                case YamlMappingNode map:
                    foreach (var (key, value) in map.Children)
                    {
                        var name = KeyName(key);
                        Interpolate(value, name == "<<" ? path : path.Length == 0 ? name : $"{path}.{name}", seen);
                    }
                    break;
                case YamlSequenceNode list:
                    for (var i = 0; i < list.Children.Count; i++)
                    {
                        Interpolate(list.Children[i], $"{path}[{i}]", seen);
                    }
                    break;
                case YamlScalarNode { Value: { } text } scalar when text.Contains('$', StringComparison.Ordinal):
                    var unset = new List<string>();
                    try
                    {
                        scalar.Value = ComposeEnvironment.Interpolate(text, name => Environment!.TryGetValue(name, out var v) ? v : null, unset);
                    }
                    catch (FormatException e)
                    {
                        Error(node, path, $"'{text}': {e.Message}");
                        return;
                    }
                    foreach (var name in unset)
                    {
                        Warn(node, path, $"{name} is not set (in the shell or the project's .env), so '{text}' reads it as empty; set it, or give a default: ${{{name}:-value}}");
                    }
                    break;
            }
        }

        /// <summary>--image-map names services of the file.</summary>
        public void CheckImageMap(YamlMappingNode root)
        {
            if (ImageMap is null || ImageMap.Count == 0)
            {
                return;
            }
            var services = root.Children.TryGetValue(new YamlScalarNode("services"), out var node) && node is YamlMappingNode map
                ? Entries(map).Select(e => KeyName(e.Key)).ToList() : [];
            foreach (var service in ImageMap.Keys.Where(s => !services.Contains(s, StringComparer.Ordinal)))
            {
                Error(node ?? root, "services", $"--image-map {service}=…: the file has no service '{service}'{(ManifestRules.Closest(service, services) is { } close ? $" (did you mean '{close}'?)" : "")}; its services are {string.Join(", ", services)}");
            }
        }

        /// <summary>
        /// build: orchd runs images and does not build them. With an image (image: or --image-map) the
        /// build is what made it, a warning; without one, an error saying how to make and give one.
        /// </summary>
        private void Build(YamlNode node, string path, string service, Workload template)
        {
            var context = node switch
            {
                YamlScalarNode { Value: { } text } => text,
                YamlMappingNode map when map.Children.TryGetValue(new YamlScalarNode("context"), out var c) && c is YamlScalarNode { Value: { } text } => text,
                _ => ".",
            };
            if (!string.IsNullOrEmpty(template.Image))
            {
                Ignored(node, path, $"orchd runs images and does not build them: {template.Image} must be built and pushed where nodes pull from (docker compose build {service} && docker compose push {service}) before you apply");
                return;
            }
            Error(node, path, $"service {service} builds its image ({context}) and names none; orchd runs images and does not build them: build and push it "
                + $"(docker build -t REGISTRY/{service}:TAG {context} && docker push REGISTRY/{service}:TAG, podman and buildah alike; or docker save it, then on a node "
                + $"orchd image import FILE --name {service}:TAG && orchd image push {service}:TAG --nats, for image nats:{service}:TAG), "
                + $"then give image: or apply the file unchanged with --image-map {service}=REGISTRY/{service}:TAG");
        }

        /// <summary>
        /// env_file: a file, a list of files, or of {path, required, format}: read here (on the client)
        /// as compose reads them, relative to the project's directory, later files over earlier ones.
        /// </summary>
        private List<(string Key, string Value)>? EnvFiles(YamlNode node, string path)
        {
            var items = node is YamlSequenceNode list ? list.Children.Select((n, i) => (n, $"{path}[{i}]")).ToList() : [(node, path)];
            var pairs = new List<(string Key, string Value)>();
            foreach (var (item, itemPath) in items)
            {
                string? file = null;
                var required = true;
                if (item is YamlMappingNode map)
                {
                    foreach (var (key, value) in Entries(map))
                    {
                        switch (KeyName(key))
                        {
                            case "path": file = Text(value, $"{itemPath}.path"); break;
                            case "required": required = Flag(value, $"{itemPath}.required") ?? true; break;
                            case "format": Ignored(key, $"{itemPath}.format", "env files are read as KEY=VALUE lines"); break;
                            default: Ignored(key, $"{itemPath}.{KeyName(key)}", Unknown(KeyName(key), ["path", "required", "format"])); break;
                        }
                    }
                    if (file is null)
                    {
                        Error(item, itemPath, "path: required; the env file to read");
                        continue;
                    }
                }
                else if (Text(item, itemPath) is not { } text)
                {
                    continue;
                }
                else
                {
                    file = text;
                }
                var full = Path.IsPathRooted(file) ? file : ProjectDirectory is { } dir ? Path.GetFullPath(Path.Combine(dir, file)) : null;
                if (full is null)
                {
                    Error(item, itemPath, $"'{file}' is relative to the compose file's directory, which is not known here; give an absolute path");
                    continue;
                }
                if (!File.Exists(full))
                {
                    if (required)
                    {
                        Error(item, itemPath, $"{full}: no such file; create it, or say required: false in the long form (- path: {file}, required: false)");
                    }
                    continue;
                }
                try
                {
                    pairs.AddRange(ComposeEnvironment.ReadEnvFile(File.ReadAllText(full), full, name => Environment is not null && Environment.TryGetValue(name, out var v) ? v : null));
                }
                catch (ManifestException e)
                {
                    Error(item, itemPath, e.Message);
                }
            }
            return pairs;
        }
    }
}

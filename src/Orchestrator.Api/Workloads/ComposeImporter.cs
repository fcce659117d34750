using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Orchestrator.Api.Workloads;

/// <summary>
/// The part of a docker-compose file that maps cleanly onto the fleet: each service becomes a
/// deployment (image, entrypoint/command, environment, ports, volumes, deploy.replicas and
/// limits, healthcheck, restart, labels, …). Every other key is reported by path as ignored,
/// with the reason (docs/manifest.md, "docker-compose files"). Problems that would change what
/// runs (a port that does not parse, a volume on a path no node can know) are errors.
/// Split by concern: this file reads a service; ComposeImporter.Ports, .Volumes and .Deploy read
/// those keys.
/// </summary>
internal static partial class ComposeImporter
{
    /// <summary>A compose file: a top-level <c>services:</c> mapping and no <c>kind</c>.</summary>
    public static bool IsCompose(YamlMappingNode root)
        => root.Children.TryGetValue(new YamlScalarNode("services"), out var services) && services is YamlMappingNode
           && !root.Children.ContainsKey(new YamlScalarNode("kind"));

    public static FleetManifest Import(YamlMappingNode root, string source, ComposeShape shape)
    {
        var import = new Importer(source)
        {
            AsApp = shape.AsApp, ProjectDirectory = shape.ProjectDirectory, Environment = shape.Environment ?? shape.LoadEnvironment?.Invoke(), ImageMap = shape.ImageMap,
        };
        if (import.Environment is not null)
        {
            import.Interpolate(root, "", new HashSet<YamlNode>(ReferenceEqualityComparer.Instance));
        }
        import.CheckImageMap(root);
        // The secrets and configs first: services name them, wherever they stand in the file.
        foreach (var (key, value) in Entries(root))
        {
            if (KeyName(key) is "secrets" or "configs")
            {
                import.Declare(KeyName(key) == "secrets" ? SecretKind.Secret : SecretKind.Config, value, KeyName(key));
            }
        }
        foreach (var (key, value) in Entries(root))
        {
            var name = KeyName(key);
            switch (name)
            {
                case "secrets" or "configs":
                    break;
                case "name" when shape.AsApp:
                    break; // the app's name (Combine)
                case "services":
                    foreach (var (serviceKey, service) in Entries((YamlMappingNode)value))
                    {
                        if (import.Service(serviceKey, service) is { } deployment)
                        {
                            import.Deployments.Add(deployment);
                        }
                    }
                    break;
                case "volumes" when value is YamlMappingNode volumes:
                    foreach (var (volumeKey, volume) in Entries(volumes))
                    {
                        foreach (var (optionKey, _) in volume is YamlMappingNode options ? Entries(options) : [])
                        {
                            import.Ignored(optionKey, $"volumes.{KeyName(volumeKey)}.{KeyName(optionKey)}", "a named volume is a directory under each node's state dir");
                        }
                    }
                    break;
                default:
                    import.Ignored(key, name, TopLevelReasons.GetValueOrDefault(name)
                        ?? (name.StartsWith("x-", StringComparison.Ordinal) ? "an extension field; its anchors still apply where they are merged"
                            : Unknown(name, TopLevelReasons.Keys)));
                    break;
            }
        }
        // In reading order: line, then column.
        List<string> Sorted(List<string> messages) => [.. messages.OrderBy(m => m.Length > source.Length && m[(source.Length + 1)..].Split(':', 3) is [var l, var c, _]
            && int.TryParse(l, CultureInfo.InvariantCulture, out var line) && int.TryParse(c, CultureInfo.InvariantCulture, out var column) ? (line, column) : (0, 0))];
        var deployments = import.Deployments;
        if (shape.AsApp && import.Errors.Count == 0 && import.Combine(root) is { } app)
        {
            deployments = [app];
        }
        if (import.Errors.Count > 0)
        {
            // The warnings too: fixing the errors should not reveal a second batch of news.
            throw new ManifestException(string.Join("\n", Sorted(import.Errors))) { Warnings = Sorted(import.Warnings) };
        }
        return new FleetManifest(deployments, Sorted(import.Warnings), fromCompose: true) { Sources = import.Sources };
    }

    private static readonly Dictionary<string, string> TopLevelReasons = new(StringComparer.Ordinal)
    {
        ["version"] = "obsolete in compose too; only the services are read",
        ["name"] = "each deployment is named after its service",
        ["networks"] = "orchd gives every container its node's bridge",
        ["include"] = "other files are not read; apply them one by one",
        ["models"] = "not supported",
        ["services"] = "",
        ["volumes"] = "",
    };

    /// <summary>Why a service key that orchd does not map is ignored.</summary>
    private static readonly Dictionary<string, string> ServiceReasons = new(StringComparer.Ordinal)
    {
        ["container_name"] = "replicas are named <service>-0, <service>-1, …",
        ["depends_on"] = "every deployment starts at once and failed containers are restarted; make the service retry what it depends on",
        ["links"] = "a deployment is reached by its own name on the node; no other aliases are made",
        ["external_links"] = "a deployment is reached by its own name on the node; no other aliases are made",
        ["networks"] = "orchd gives every container its node's bridge",
        ["expose"] = "every port of a container is reachable on its node's bridge; ports: publishes on the host",
        ["logging"] = "orchd keeps every container's log; read it with orchctl logs",
        ["profiles"] = "every service in the file is deployed",
        ["platform"] = "each node pulls the image for its own architecture",
        ["pull_policy"] = "a node pulls an image it does not have",
        ["extra_hosts"] = "not supported; /etc/hosts names the node's containers and deployments",
        ["dns"] = "the container uses its node's resolver",
        ["dns_search"] = "the container uses its node's resolver",
        ["dns_opt"] = "the container uses its node's resolver",
        ["security_opt"] = "orchd's default seccomp profile applies (seccomp: unconfined in a manifest opts out)",
        ["mem_reservation"] = "orchd places replicas by their limits",
        ["ipc"] = "every container has its own IPC namespace",
        ["pid"] = "every container has its own pid namespace",
        ["extends"] = "other files are not read; write the service out",
        ["domainname"] = "not supported",
        ["mac_address"] = "addresses come from the node's bridge",
        ["runtime"] = "orchd's own runtime runs every container",
    };

    /// <summary>Compose keys orchd knows of (mapped, or ignored with the generic reason), for "did you mean" on typos.</summary>
    private static readonly string[] ServiceKeys =
    [
        "image", "command", "entrypoint", "environment", "ports", "volumes", "deploy", "healthcheck", "restart", "labels",
        "hostname", "working_dir", "user", "network_mode", "stop_grace_period", "cpus", "mem_limit", "pids_limit", "scale",
        "annotations", "attach", "blkio_config", "cgroup", "cgroup_parent", "cpu_count", "cpu_percent", "cpu_period", "cpu_quota",
        "cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpuset", "credential_spec", "develop", "device_cgroup_rules", "gpus",
        "group_add", "isolation", "label_file", "mem_swappiness", "memswap_limit", "oom_kill_disable", "oom_score_adj",
        "post_start", "pre_stop", "storage_opt", "uts", "userns_mode", "volumes_from", "models", "provider", "use_api_socket",
        "stop_signal", "init", "device_cgroup_rules", "tty", "stdin_open",
    ];

    internal static List<string>? ShellWordsForTest(string line) => Importer.ShellWords(line);

    private static string Unknown(string key, IEnumerable<string> known)
        => ManifestRules.Closest(key, known) is { } suggestion ? $"not a compose key; did you mean '{suggestion}'?" : "not a compose key";

    private static string KeyName(YamlNode key) => key is YamlScalarNode { Value: { } v } ? v : key.ToString();

    /// <summary>A mapping's entries with YAML merge keys (<c>&lt;&lt;: *defaults</c>) applied, as compose does.</summary>
    private static List<(YamlNode Key, YamlNode Value)> Entries(YamlMappingNode map)
    {
        var own = map.Children.Where(e => KeyName(e.Key) != "<<").Select(e => (e.Key, e.Value)).ToList();
        if (!map.Children.TryGetValue(new YamlScalarNode("<<"), out var merge))
        {
            return own;
        }
        var present = own.Select(e => KeyName(e.Key)).ToHashSet(StringComparer.Ordinal);
        var sources = merge is YamlSequenceNode list ? list.Children.ToList() : [merge];
        foreach (var source in sources.OfType<YamlMappingNode>())
        {
            foreach (var entry in Entries(source))
            {
                if (present.Add(KeyName(entry.Key)))
                {
                    own.Add(entry);
                }
            }
        }
        return own;
    }

    private sealed partial class Importer(string source)
    {
        public List<Deployment> Deployments { get; } = [];
        public List<string> Errors { get; } = [];
        public List<string> Warnings { get; } = [];

        /// <summary>Model path ("template.ports[0]") → the compose node it came from, for the validator's messages.</summary>
        private Dictionary<string, (string Path, Mark Mark)> _places = new(StringComparer.Ordinal);

        private string Where(YamlNode node) => $"{source}:{node.Start.Line}:{node.Start.Column}";

        public void Ignored(YamlNode node, string path, string reason)
            => Warnings.Add($"{Where(node)}: {path}: ignored ({reason})");

        private void Warn(YamlNode node, string path, string text) => Warnings.Add($"{Where(node)}: {path}: {text}");

        private void Error(YamlNode node, string path, string text) => Errors.Add($"{Where(node)}: {path}: {text}");

        private void Place(string modelPath, string composePath, YamlNode node) => _places[modelPath] = (composePath, node.Start);

        public Deployment? Service(YamlNode key, YamlNode node)
        {
            var name = KeyName(key);
            var at = "services." + name;
            if (node is not YamlMappingNode service)
            {
                Error(node, at, $"expected a mapping (image:, command:, …), got {ManifestReader.Describe(node)}");
                return null;
            }
            _places = new(StringComparer.Ordinal);
            Remember(name, key);
            Place("", at, key);
            Place("name", at, key);
            var deployment = new Deployment { Name = name, Template = new Workload() };
            var template = deployment.Template;
            var errorsBefore = Errors.Count;
            YamlNode? healthcheck = null, build = null, labels = null;
            List<(string Key, string Value)>? envFile = null;
            foreach (var (k, value) in Entries(service))
            {
                var field = KeyName(k);
                var path = at + "." + field;
                switch (field)
                {
                    case "image":
                        template.Image = Text(value, path) ?? "";
                        Place("template.image", path, value);
                        break;
                    case "build":
                        build = value;
                        break;
                    case "env_file":
                        envFile = EnvFiles(value, path);
                        Place("template.env", path, value);
                        break;
                    case "command":
                        template.Args = Command(value, path);
                        Place("template.args", path, value);
                        break;
                    case "entrypoint":
                        template.Command = Command(value, path);
                        Place("template.command", path, value);
                        break;
                    case "environment":
                        template.Env = Pairs(value, path, "environment", fromShell: true);
                        Place("template.env", path, value);
                        break;
                    case "labels":
                        template.Labels = Pairs(value, path, "labels", fromShell: false);
                        Place("template.labels", path, value);
                        labels = value;
                        break;
                    case "ports":
                        Ports(value, path, template);
                        break;
                    case "volumes":
                        Volumes(value, path, template, name);
                        break;
                    case "deploy":
                        Deploy(value, path, deployment);
                        break;
                    case "healthcheck":
                        healthcheck = value;
                        break;
                    case "restart":
                        template.Restart = Restart(value, path);
                        Place("template.restart", path, value);
                        break;
                    case "hostname":
                        template.Hostname = Text(value, path);
                        Place("template.hostname", path, value);
                        break;
                    case "working_dir":
                        template.WorkingDir = Text(value, path);
                        Place("template.workingDir", path, value);
                        break;
                    case "user":
                        template.User = Text(value, path);
                        Place("template.user", path, value);
                        break;
                    case "network_mode":
                        var mode = Text(value, path);
                        NetworkMode? network = mode switch
                        {
                            "host" => NetworkMode.Host,
                            "none" => NetworkMode.None,
                            "bridge" => NetworkMode.Bridge,
                            _ => null,
                        };
                        if (network is not null)
                        {
                            template.Network = network;
                            Place("template.network", path, value);
                        }
                        else
                        {
                            Ignored(value, path, $"'{mode}' has no counterpart; a container has its node's bridge, host or none");
                        }
                        break;
                    case "stop_grace_period":
                        if (Duration(value, path) is { } grace)
                        {
                            template.StopGracePeriodSeconds = (int)Math.Ceiling(grace.TotalSeconds);
                            Place("template.stopGracePeriodSeconds", path, value);
                        }
                        break;
                    case "tty":
                        if (Flag(value, path) is { } tty)
                        {
                            template.Tty = tty ? true : null;
                            Place("template.tty", path, value);
                        }
                        break;
                    case "stdin_open":
                        if (Flag(value, path) is { } stdin)
                        {
                            template.Stdin = stdin ? true : null;
                            Place("template.stdin", path, value);
                        }
                        break;
                    case "cpus":
                        (template.Resources ??= new()).Cpu = Text(value, path);
                        Place("template.resources.cpu", path, value);
                        break;
                    case "mem_limit":
                        (template.Resources ??= new()).Memory = Memory(value, path);
                        Place("template.resources.memory", path, value);
                        break;
                    case "pids_limit":
                        (template.Resources ??= new()).Pids = Integer(value, path);
                        Place("template.resources.pids", path, value);
                        break;
                    case "scale":
                        deployment.Replicas = (int?)Integer(value, path) ?? 1;
                        Place("replicas", path, value);
                        break;
                    case "secrets":
                        SecretMountsOf(SecretKind.Secret, value, path, template);
                        break;
                    case "depends_on" when AsApp:
                        DependsOn(value, path, name);
                        break;
                    case "links" when AsApp:
                        Ignored(k, path, "the app's containers reach each other by service name; no other aliases are made");
                        break;
                    case "configs":
                        SecretMountsOf(SecretKind.Config, value, path, template);
                        break;
                    case var linux when LinuxSetting(linux, value, path, template):
                        break;
                    default:
                        Ignored(k, path, ServiceReasons.GetValueOrDefault(field)
                            ?? (ServiceKeys.Contains(field, StringComparer.Ordinal) ? "not supported by orchd" : Unknown(field, ServiceKeys)));
                        break;
                }
            }
            if (healthcheck is not null)
            {
                HealthCheck(healthcheck, at + ".healthcheck", template);
            }
            if (envFile is not null)
            {
                // environment: wins over env_file:, as in compose.
                var env = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var (envKey, envValue) in envFile)
                {
                    env[envKey] = envValue;
                }
                foreach (var (envKey, envValue) in template.Env ?? [])
                {
                    env[envKey] = envValue;
                }
                template.Env = env;
            }
            if (labels is not null)
            {
                BalenaFeatures(labels, at + ".labels", template);
            }
            if (ImageMap is not null && ImageMap.TryGetValue(name, out var mapped))
            {
                template.Image = mapped;
            }
            if (build is not null)
            {
                Build(build, at + ".build", name, template);
            }
            if (string.IsNullOrEmpty(template.Image))
            {
                if (build is null)
                {
                    Error(key, at + ".image", "required; name an image such as busybox:latest");
                }
                return null;
            }
            foreach (var problem in ManifestLoader.ValidateDeployment(deployment))
            {
                Errors.Add(Locate(problem));
            }
            return Errors.Count == errorsBefore ? deployment : null;
        }

        /// <summary>A validator message ("template.ports[0].hostPort: …") at the compose node the field came from.</summary>
        private string Locate(string problem)
        {
            var colon = problem.IndexOf(": ", StringComparison.Ordinal);
            var path = colon > 0 ? problem[..colon] : "";
            var probe = path;
            while (probe.Length > 0 && !_places.ContainsKey(probe))
            {
                var cut = Math.Max(probe.LastIndexOf('.'), probe.LastIndexOf('['));
                probe = cut > 0 ? probe[..cut] : "";
            }
            var (composePath, mark) = _places[probe];
            if (probe.Length > 0 && path.StartsWith(probe, StringComparison.Ordinal) && path.Length > probe.Length && path[probe.Length] is '.' or '[')
            {
                // Deeper than the compose key placed (template.capAdd[0] under services.gw.cap_add): the same step below it.
                return $"{source}:{mark.Line}:{mark.Column}: {composePath}{path[probe.Length..]}: {problem[(colon + 2)..]}";
            }
            var text = probe.Length > 0 && probe == path ? problem[(colon + 2)..] : problem;
            return $"{source}:{mark.Line}:{mark.Column}: {composePath}: {text}";
        }

        // ---- values ----

        /// <summary>
        /// A scalar's text. Interpolated already when the shape gave variables (<see cref="Interpolate"/>);
        /// without them, compose's <c>$$</c> is unescaped and a <c>${VAR}</c> kept as written and warned about.
        /// </summary>
        private string? Text(YamlNode node, string path)
        {
            if (node is not YamlScalarNode scalar || ManifestReader.IsNull(node))
            {
                Error(node, path, $"expected a string, got {ManifestReader.Describe(node)}");
                return null;
            }
            var value = scalar.Value ?? "";
            if (Environment is not null)
            {
                return value;
            }
            if (Interpolation().IsMatch(value.Replace("$$", "", StringComparison.Ordinal)))
            {
                Warn(node, path, $"'{value}' is not interpolated (orchd reads no .env and no shell variables); write the value out");
                return value;
            }
            return value.Replace("$$", "$", StringComparison.Ordinal);
        }

        private long? Integer(YamlNode node, string path)
        {
            if (node is YamlScalarNode { Value: { } v } && long.TryParse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n))
            {
                return n;
            }
            Error(node, path, $"expected an integer, got {ManifestReader.Describe(node)}");
            return null;
        }

        /// <summary>A compose boolean (YAML 1.1's spellings, as docker compose reads them).</summary>
        private bool? Flag(YamlNode node, string path)
        {
            switch ((node as YamlScalarNode)?.Value?.ToLowerInvariant())
            {
                case "true" or "yes" or "on" or "y":
                    return true;
                case "false" or "no" or "off" or "n":
                    return false;
                default:
                    Error(node, path, $"expected true or false, got {ManifestReader.Describe(node)}");
                    return null;
            }
        }

        private List<string>? Command(YamlNode node, string path)
        {
            if (node is YamlSequenceNode list)
            {
                return [.. list.Children.Select((item, i) => Text(item, $"{path}[{i}]") ?? "")];
            }
            if (Text(node, path) is not { } line)
            {
                return null;
            }
            var words = ShellWords(line);
            if (words is null)
            {
                Error(node, path, $"'{line}' has an unclosed quote; close it or write a list: [prog, arg]");
            }
            return words;
        }

        /// <summary>A command line split as compose splits it: blanks separate, quotes and backslashes group (no variables, no globbing).</summary>
        internal static List<string>? ShellWords(string line)
        {
            var words = new List<string>();
            var word = new StringBuilder();
            var inWord = false;
            for (var i = 0; i < line.Length; i++)
            {
                var c = line[i];
                if (c is ' ' or '\t' or '\n')
                {
                    if (inWord)
                    {
                        words.Add(word.ToString());
                        word.Clear();
                        inWord = false;
                    }
                    continue;
                }
                inWord = true;
                if (c == '\'')
                {
                    var end = line.IndexOf('\'', i + 1);
                    if (end < 0)
                    {
                        return null;
                    }
                    word.Append(line, i + 1, end - i - 1);
                    i = end;
                }
                else if (c == '"')
                {
                    for (i++; ; i++)
                    {
                        if (i >= line.Length)
                        {
                            return null;
                        }
                        if (line[i] == '"')
                        {
                            break;
                        }
                        if (line[i] == '\\' && i + 1 < line.Length && line[i + 1] is '"' or '\\' or '$' or '`')
                        {
                            i++;
                        }
                        word.Append(line[i]);
                    }
                }
                else if (c == '\\' && i + 1 < line.Length)
                {
                    word.Append(line[++i]);
                }
                else
                {
                    word.Append(c);
                }
            }
            if (inWord)
            {
                words.Add(word.ToString());
            }
            return words;
        }

        /// <summary>environment/labels: a list of KEY=value or a mapping.</summary>
        private Dictionary<string, string>? Pairs(YamlNode node, string path, string what, bool fromShell)
        {
            var pairs = new Dictionary<string, string>(StringComparer.Ordinal);
            void Unset(YamlNode at, string itemPath, string key)
            {
                if (fromShell && Environment is not null)
                {
                    // "- KEY" alone: compose passes the shell's (or .env's) value, and nothing when it has none.
                    if (Environment.TryGetValue(key, out var fromEnvironment))
                    {
                        pairs[key] = fromEnvironment;
                    }
                    else
                    {
                        Warn(at, itemPath, $"'{key}' is not set in the shell or .env, so the container does not get it (as in compose); write {key}=value to give one");
                    }
                }
                else if (fromShell)
                {
                    Ignored(at, itemPath, $"'{key}' has no value here; compose takes it from its shell: write {key}=value");
                }
                else
                {
                    pairs[key] = "";
                }
            }
            switch (node)
            {
                case YamlSequenceNode list:
                    for (var i = 0; i < list.Children.Count; i++)
                    {
                        if (Text(list.Children[i], $"{path}[{i}]") is not { } item)
                        {
                            continue;
                        }
                        var eq = item.IndexOf('=', StringComparison.Ordinal);
                        if (eq < 0)
                        {
                            Unset(list.Children[i], $"{path}[{i}]", item);
                        }
                        else
                        {
                            pairs[item[..eq]] = item[(eq + 1)..];
                        }
                    }
                    return pairs;
                case YamlMappingNode map:
                    foreach (var (key, value) in Entries(map))
                    {
                        var name = KeyName(key);
                        if (ManifestReader.IsNull(value))
                        {
                            Unset(key, $"{path}.{name}", name);
                        }
                        else if (Text(value, $"{path}.{name}") is { } text)
                        {
                            pairs[name] = text;
                        }
                    }
                    return pairs;
                default:
                    Error(node, path, $"expected a list of KEY=value or a mapping of {what}, got {ManifestReader.Describe(node)}");
                    return null;
            }
        }

    }

    [GeneratedRegex(@"\$(\{|[A-Za-z_])")]
    private static partial Regex Interpolation();

    [GeneratedRegex(@"^([0-9]+(?:\.[0-9]+)?)\s*([bkmgtBKMGT])?[bB]?$")]
    private static partial Regex SizePattern();

    [GeneratedRegex(@"^\s*node\.labels\.([A-Za-z0-9_.\-/]+)\s*==\s*(\S+)\s*$")]
    private static partial Regex LabelConstraint();
}

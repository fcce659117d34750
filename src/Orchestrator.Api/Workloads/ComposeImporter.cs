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
/// </summary>
internal static partial class ComposeImporter
{
    /// <summary>A compose file: a top-level <c>services:</c> mapping and no <c>kind</c>.</summary>
    public static bool IsCompose(YamlMappingNode root)
        => root.Children.TryGetValue(new YamlScalarNode("services"), out var services) && services is YamlMappingNode
           && !root.Children.ContainsKey(new YamlScalarNode("kind"));

    public static FleetManifest Import(YamlMappingNode root, string source)
    {
        var import = new Importer(source);
        foreach (var (key, value) in Entries(root))
        {
            var name = KeyName(key);
            switch (name)
            {
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
        List<string> Sorted(List<string> messages) => [.. messages.OrderBy(m => m[(source.Length + 1)..].Split(':', 3) is var p
            ? (int.Parse(p[0], CultureInfo.InvariantCulture), int.Parse(p[1], CultureInfo.InvariantCulture)) : default)];
        if (import.Errors.Count > 0)
        {
            throw new ManifestException(string.Join("\n", Sorted(import.Errors)));
        }
        return new FleetManifest(import.Deployments, Sorted(import.Warnings), fromCompose: true);
    }

    private static readonly Dictionary<string, string> TopLevelReasons = new(StringComparer.Ordinal)
    {
        ["version"] = "obsolete in compose too; only the services are read",
        ["name"] = "each deployment is named after its service",
        ["networks"] = "orchd gives every container its node's bridge",
        ["secrets"] = "not supported; bind-mount a file the nodes have, or use environment",
        ["configs"] = "not supported; bind-mount a file the nodes have",
        ["include"] = "other files are not read; apply them one by one",
        ["models"] = "not supported",
        ["services"] = "",
        ["volumes"] = "",
    };

    /// <summary>Why a service key that orchd does not map is ignored.</summary>
    private static readonly Dictionary<string, string> ServiceReasons = new(StringComparer.Ordinal)
    {
        ["build"] = "orchd runs images; build and push the image, then give image:",
        ["container_name"] = "replicas are named <service>-0, <service>-1, …",
        ["depends_on"] = "every deployment starts at once and failed containers are restarted; make the service retry what it depends on",
        ["links"] = "there are no service names on the node's bridge; reach other services by address",
        ["external_links"] = "there are no service names on the node's bridge",
        ["networks"] = "orchd gives every container its node's bridge",
        ["expose"] = "every port of a container is reachable on its node's bridge; ports: publishes on the host",
        ["env_file"] = "files are not read (the manifest is sent, not your directory); list the variables under environment:",
        ["tmpfs"] = "not supported; the container's own writable layer holds temporary files",
        ["logging"] = "orchd keeps every container's log; read it with orchctl logs",
        ["stop_signal"] = "orchd stops containers with SIGTERM, then SIGKILL after stop_grace_period",
        ["profiles"] = "every service in the file is deployed",
        ["platform"] = "each node pulls the image for its own architecture",
        ["pull_policy"] = "a node pulls an image it does not have",
        ["init"] = "no init process is added; the command runs as pid 1",
        ["extra_hosts"] = "the container's /etc/hosts holds its own name only",
        ["dns"] = "the container uses its node's resolver",
        ["dns_search"] = "the container uses its node's resolver",
        ["dns_opt"] = "the container uses its node's resolver",
        ["tty"] = "no terminal is attached; orchctl exec runs commands",
        ["stdin_open"] = "no terminal is attached; orchctl exec runs commands",
        ["privileged"] = "containers never run privileged",
        ["cap_add"] = "capabilities are orchd's default set",
        ["cap_drop"] = "capabilities are orchd's default set",
        ["security_opt"] = "orchd's default seccomp profile applies (seccomp: unconfined in a manifest opts out)",
        ["devices"] = "devices are not passed through",
        ["read_only"] = "the root filesystem is writable (an overlay per container)",
        ["mem_reservation"] = "orchd places replicas by their limits",
        ["ulimits"] = "rlimits are the node's",
        ["sysctls"] = "sysctls are the node's defaults",
        ["shm_size"] = "/dev/shm has the runtime's default size",
        ["ipc"] = "every container has its own IPC namespace",
        ["pid"] = "every container has its own pid namespace",
        ["extends"] = "other files are not read; write the service out",
        ["secrets"] = "not supported; bind-mount a file the nodes have, or use environment",
        ["configs"] = "not supported; bind-mount a file the nodes have",
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
        "stop_signal", "init", "device_cgroup_rules",
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

    private sealed class Importer(string source)
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
            Place("", at, key);
            Place("name", at, key);
            var deployment = new Deployment { Name = name, Template = new Workload() };
            var template = deployment.Template;
            var errorsBefore = Errors.Count;
            YamlNode? healthcheck = null;
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
            if (string.IsNullOrEmpty(template.Image))
            {
                Error(key, at + ".image", service.Children.ContainsKey(new YamlScalarNode("build"))
                    ? "required; orchd runs images, not builds: build and push the image, then give image:"
                    : "required; name an image such as busybox:latest");
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
            var text = probe.Length > 0 && probe == path ? problem[(colon + 2)..] : problem;
            return $"{source}:{mark.Line}:{mark.Column}: {composePath}: {text}";
        }

        // ---- values ----

        /// <summary>A scalar's text, with compose's <c>$$</c> unescaped; a <c>${VAR}</c> is kept as written and warned about.</summary>
        private string? Text(YamlNode node, string path)
        {
            if (node is not YamlScalarNode scalar || ManifestReader.IsNull(node))
            {
                Error(node, path, $"expected a string, got {ManifestReader.Describe(node)}");
                return null;
            }
            var value = scalar.Value ?? "";
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
                if (fromShell)
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

        private void Ports(YamlNode node, string path, Workload template)
        {
            if (node is not YamlSequenceNode list)
            {
                Error(node, path, $"expected a list of ports (\"8080:80\", or target:/published: mappings), got {ManifestReader.Describe(node)}");
                return;
            }
            template.Ports ??= [];
            for (var i = 0; i < list.Children.Count; i++)
            {
                var item = list.Children[i];
                var itemPath = $"{path}[{i}]";
                var mappings = item is YamlMappingNode map ? LongPort(map, itemPath) : ShortPort(item, itemPath);
                foreach (var mapping in mappings)
                {
                    Place($"template.ports[{template.Ports.Count}]", itemPath, item);
                    template.Ports.Add(mapping);
                }
            }
        }

        /// <summary>"80", "8080:80", "127.0.0.1:8080:80", "8080:80/udp", "8000-8001:80-81".</summary>
        private List<PortMapping> ShortPort(YamlNode node, string path)
        {
            if (Text(node, path) is not { } text)
            {
                return [];
            }
            var spec = text;
            var protocol = "tcp";
            if (spec.LastIndexOf('/') is var slash and >= 0)
            {
                protocol = spec[(slash + 1)..];
                spec = spec[..slash];
            }
            string? hostIp = null;
            if (spec.StartsWith('[') && spec.IndexOf("]:", StringComparison.Ordinal) is var close and > 0)
            {
                hostIp = spec[1..close];
                spec = spec[(close + 2)..];
            }
            var parts = spec.Split(':');
            if (parts.Length == 3 && hostIp is null)
            {
                hostIp = parts[0];
                parts = parts[1..];
            }
            if (parts.Length is < 1 or > 2 || Range(parts[^1]) is not { } container
                || (parts.Length == 2 && parts[0].Length > 0 ? Range(parts[0]) : (0, -1)) is not { } host
                || (host.Last >= 0 && host.Last - host.First != container.Last - container.First))
            {
                Error(node, path, $"expected [host_ip:][host:]container[/protocol] with ports or equal ranges (\"8080:80\", \"127.0.0.1:53:53/udp\"), got '{text}'");
                return [];
            }
            if (host.Last < 0)
            {
                Warn(node, path, $"'{text}' publishes no host port in compose terms (a random one); orchd publishes it on host port {container.First} (write \"{container.First}:{container.First}\" to say so)");
            }
            var result = new List<PortMapping>();
            for (var p = container.First; p <= container.Last; p++)
            {
                result.Add(new PortMapping
                {
                    ContainerPort = p,
                    HostPort = host.Last >= 0 ? host.First + (p - container.First) : null,
                    Protocol = protocol,
                    HostIp = hostIp is null or "" or "0.0.0.0" ? null : hostIp,
                });
            }
            return result;
        }

        private static (int First, int Last)? Range(string text)
        {
            var dash = text.IndexOf('-', StringComparison.Ordinal);
            var first = dash < 0 ? text : text[..dash];
            var last = dash < 0 ? text : text[(dash + 1)..];
            return int.TryParse(first, NumberStyles.None, CultureInfo.InvariantCulture, out var a) && int.TryParse(last, NumberStyles.None, CultureInfo.InvariantCulture, out var b) && a <= b && b - a < 1000
                ? (a, b) : null;
        }

        private List<PortMapping> LongPort(YamlMappingNode map, string path)
        {
            var mapping = new PortMapping();
            var ok = true;
            foreach (var (key, value) in Entries(map))
            {
                var field = KeyName(key);
                switch (field)
                {
                    case "target":
                        mapping.ContainerPort = (int)(Integer(value, $"{path}.target") ?? 0);
                        break;
                    case "published":
                        if (Text(value, $"{path}.published") is { } published && Range(published) is { } range && range.First == range.Last)
                        {
                            mapping.HostPort = range.First;
                        }
                        else
                        {
                            Error(value, $"{path}.published", $"expected a port, got {ManifestReader.Describe(value)} (ranges only in the short form)");
                            ok = false;
                        }
                        break;
                    case "protocol":
                        mapping.Protocol = Text(value, $"{path}.protocol") ?? "tcp";
                        break;
                    case "host_ip":
                        var ip = Text(value, $"{path}.host_ip");
                        mapping.HostIp = ip is null or "0.0.0.0" ? null : ip;
                        break;
                    case "mode":
                        Ignored(key, $"{path}.mode", "a port is published on the node that runs the replica, as mode: host");
                        break;
                    default:
                        Ignored(key, $"{path}.{field}", field is "name" or "app_protocol" ? "not used by orchd" : Unknown(field, ["target", "published", "protocol", "host_ip", "mode", "name", "app_protocol"]));
                        break;
                }
            }
            if (mapping.ContainerPort == 0 && ok)
            {
                Error(map, path, "target: required; the container's port");
                ok = false;
            }
            return ok ? [mapping] : [];
        }

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
                var volume = item is YamlMappingNode map ? LongVolume(map, itemPath, service) : ShortVolume(item, itemPath, service);
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
                Ignored(node, path, $"an anonymous volume; {text} stays in the container's own writable layer: name it, e.g. \"{service}-data:{text}\", to keep it");
                return null;
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

        private Volume? LongVolume(YamlMappingNode map, string path, string service)
        {
            string? type = null, from = null, target = null;
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
                    default:
                        Ignored(key, $"{path}.{field}", field is "bind" or "volume" or "consistency" or "tmpfs" or "image"
                            ? "not supported; host paths must exist and named volumes are plain directories"
                            : Unknown(field, ["type", "source", "target", "read_only", "bind", "volume", "tmpfs", "consistency"]));
                        break;
                }
            }
            if (type is not (null or "volume" or "bind"))
            {
                Ignored(map, path, $"type {type} is not supported, only volume and bind");
                return null;
            }
            if (target is null)
            {
                Error(map, path, "target: required; the path inside the container");
                return null;
            }
            if (string.IsNullOrEmpty(from))
            {
                Ignored(map, path, $"an anonymous volume; {target} stays in the container's own writable layer: give source: to keep it");
                return null;
            }
            return Bind(map, path, from, target, readOnly, type);
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

        private void Deploy(YamlNode node, string path, Deployment deployment)
        {
            if (node is not YamlMappingNode deploy)
            {
                Error(node, path, $"expected a mapping (replicas:, resources:, …), got {ManifestReader.Describe(node)}");
                return;
            }
            foreach (var (key, value) in Entries(deploy))
            {
                var field = KeyName(key);
                var at = $"{path}.{field}";
                switch (field)
                {
                    case "replicas":
                        deployment.Replicas = (int?)Integer(value, at) ?? 1;
                        Place("replicas", at, value);
                        break;
                    case "mode" when value is YamlScalarNode { Value: "replicated" }:
                        break;
                    case "mode":
                        Ignored(value, at, $"'{ManifestReader.Describe(value).Trim('\'')}' has no counterpart; the deployment runs replicas: copies, and antiAffinity: true puts at most one on a node");
                        break;
                    case "resources" when value is YamlMappingNode resources:
                        foreach (var (rk, rv) in Entries(resources))
                        {
                            var kind = KeyName(rk);
                            if (kind == "limits" && rv is YamlMappingNode limits)
                            {
                                Limits(limits, $"{at}.limits", deployment.Template);
                            }
                            else
                            {
                                Ignored(rk, $"{at}.{kind}", kind == "reservations" ? "orchd places replicas by their limits" : Unknown(kind, ["limits", "reservations"]));
                            }
                        }
                        break;
                    case "restart_policy" when value is YamlMappingNode policy:
                        RestartPolicy(policy, at, deployment.Template);
                        break;
                    case "placement" when value is YamlMappingNode placement:
                        Placement(placement, at, deployment);
                        break;
                    case "update_config" when value is YamlMappingNode update:
                        UpdateConfig(update, at, deployment);
                        break;
                    default:
                        Ignored(key, at, field switch
                        {
                            "labels" => "these label the swarm service; the containers' labels are the service's labels:",
                            "rollback_config" => "a rollback goes back to the previous template the way the update came",
                            "endpoint_mode" => "there is no virtual IP or DNS round robin; ports are published on each node",
                            _ => Unknown(field, ["replicas", "mode", "resources", "restart_policy", "placement", "update_config", "labels", "rollback_config", "endpoint_mode"]),
                        });
                        break;
                }
            }
        }

        private void Limits(YamlMappingNode limits, string path, Workload template)
        {
            foreach (var (key, value) in Entries(limits))
            {
                var field = KeyName(key);
                switch (field)
                {
                    case "cpus":
                        (template.Resources ??= new()).Cpu = Text(value, $"{path}.cpus");
                        Place("template.resources.cpu", $"{path}.cpus", value);
                        break;
                    case "memory":
                        (template.Resources ??= new()).Memory = Memory(value, $"{path}.memory");
                        Place("template.resources.memory", $"{path}.memory", value);
                        break;
                    case "pids":
                        (template.Resources ??= new()).Pids = Integer(value, $"{path}.pids");
                        Place("template.resources.pids", $"{path}.pids", value);
                        break;
                    default:
                        Ignored(key, $"{path}.{field}", field is "devices" or "generic_resources" ? "devices are not passed through" : Unknown(field, ["cpus", "memory", "pids"]));
                        break;
                }
            }
        }

        /// <summary>Compose sizes ("512m", "1g", "1gb", "100k", "1024") are powers of 1024: 512m is 512Mi.</summary>
        private string? Memory(YamlNode node, string path)
        {
            if (Text(node, path) is not { } text)
            {
                return null;
            }
            var match = SizePattern().Match(text.Trim());
            if (!match.Success)
            {
                Error(node, path, $"expected a size such as 512m or 1g, got '{text}'");
                return null;
            }
            var unit = match.Groups[2].Value.ToLowerInvariant() switch { "k" => "Ki", "m" => "Mi", "g" => "Gi", "t" => "Ti", _ => "" };
            return match.Groups[1].Value + unit;
        }

        private TimeSpan? Duration(YamlNode node, string path)
        {
            if (Text(node, path) is not { } text)
            {
                return null;
            }
            if (!Orchestrator.Syntax.Duration.TryParse(text, out var duration))
            {
                Error(node, path, $"expected a duration such as 10s, 1m30s or 500ms, got '{text}'");
                return null;
            }
            return duration;
        }

        /// <summary>no, always, on-failure[:N], unless-stopped.</summary>
        private RestartPolicy? Restart(YamlNode node, string path)
        {
            var text = Text(node, path);
            switch (text)
            {
                case null:
                    return null;
                case "no" or "false":
                    return new RestartPolicy { Policy = RestartPolicyKind.Never };
                case "always" or "unless-stopped":
                    return new RestartPolicy { Policy = RestartPolicyKind.Always };
                case "on-failure":
                    return new RestartPolicy { Policy = RestartPolicyKind.OnFailure };
                default:
                    if (text.StartsWith("on-failure:", StringComparison.Ordinal)
                        && int.TryParse(text.AsSpan("on-failure:".Length), NumberStyles.None, CultureInfo.InvariantCulture, out var retries))
                    {
                        return new RestartPolicy { Policy = RestartPolicyKind.OnFailure, MaxRetries = retries };
                    }
                    Error(node, path, $"expected one of no, always, on-failure[:N], unless-stopped, got '{text}'");
                    return null;
            }
        }

        private void RestartPolicy(YamlMappingNode policy, string path, Workload template)
        {
            var restart = template.Restart ??= new RestartPolicy();
            foreach (var (key, value) in Entries(policy))
            {
                var field = KeyName(key);
                var at = $"{path}.{field}";
                switch (field)
                {
                    case "condition":
                        var condition = Text(value, at);
                        restart.Policy = condition switch
                        {
                            "any" => RestartPolicyKind.Always,
                            "on-failure" => RestartPolicyKind.OnFailure,
                            "none" => RestartPolicyKind.Never,
                            _ => restart.Policy,
                        };
                        if (condition is not ("any" or "on-failure" or "none"))
                        {
                            Error(value, at, $"expected one of none, on-failure, any, got '{condition}'");
                        }
                        Place("template.restart.policy", at, value);
                        break;
                    case "max_attempts":
                        restart.MaxRetries = (int)(Integer(value, at) ?? 0);
                        Place("template.restart.maxRetries", at, value);
                        break;
                    case "delay":
                        if (Duration(value, at) is { } delay)
                        {
                            restart.Backoff = $"{(long)delay.TotalMilliseconds}ms";
                        }
                        Place("template.restart.backoff", at, value);
                        break;
                    case "window":
                        if (Duration(value, at) is { } window)
                        {
                            restart.ResetAfter = $"{(long)window.TotalMilliseconds}ms";
                        }
                        Place("template.restart.resetAfter", at, value);
                        break;
                    default:
                        Ignored(key, at, Unknown(field, ["condition", "max_attempts", "delay", "window"]));
                        break;
                }
            }
        }

        /// <summary>node.labels.KEY == VALUE constraints become the selector; max_replicas_per_node: 1 is antiAffinity.</summary>
        private void Placement(YamlMappingNode placement, string path, Deployment deployment)
        {
            foreach (var (key, value) in Entries(placement))
            {
                var field = KeyName(key);
                var at = $"{path}.{field}";
                if (field == "constraints" && value is YamlSequenceNode constraints)
                {
                    for (var i = 0; i < constraints.Children.Count; i++)
                    {
                        var item = constraints.Children[i];
                        var match = Text(item, $"{at}[{i}]") is { } text ? LabelConstraint().Match(text) : Match.Empty;
                        if (match.Success)
                        {
                            (deployment.Selector ??= new(StringComparer.Ordinal))[match.Groups[1].Value] = match.Groups[2].Value;
                            Place("selector", $"{at}[{i}]", item);
                        }
                        else
                        {
                            Ignored(item, $"{at}[{i}]", "only node.labels.KEY == VALUE maps: to selector:, matched against the labels nodes get from orchd --label");
                        }
                    }
                }
                else if (field == "max_replicas_per_node" && value is YamlScalarNode { Value: "1" })
                {
                    deployment.AntiAffinity = true;
                }
                else
                {
                    Ignored(key, at, field switch
                    {
                        "max_replicas_per_node" => "only 1 maps (antiAffinity: true)",
                        "preferences" => "replicas are spread over nodes by the scheduler (spreadBy: a label in a manifest)",
                        _ => Unknown(field, ["constraints", "preferences", "max_replicas_per_node"]),
                    });
                }
            }
        }

        /// <summary>parallelism → maxUnavailable (or maxSurge with order: start-first); failure_action rollback/pause → autoRollback.</summary>
        private void UpdateConfig(YamlMappingNode update, string path, Deployment deployment)
        {
            var rollout = deployment.Rollout ??= new RolloutSpec();
            var parallelism = 1;
            var startFirst = false;
            foreach (var (key, value) in Entries(update))
            {
                var field = KeyName(key);
                var at = $"{path}.{field}";
                switch (field)
                {
                    case "parallelism":
                        parallelism = (int)(Integer(value, at) ?? 1);
                        Place("rollout", at, value);
                        break;
                    case "order":
                        startFirst = Text(value, at) == "start-first";
                        break;
                    case "failure_action":
                        var action = Text(value, at);
                        rollout.AutoRollback = action == "rollback";
                        if (action == "continue")
                        {
                            Ignored(value, at, "continue has no counterpart; a rollout past its deadline stops (pause) or rolls back");
                        }
                        break;
                    default:
                        Ignored(key, at, field switch
                        {
                            "delay" or "monitor" => "a replica moves on when the previous one is ready (readiness probe)",
                            "max_failure_ratio" => "any replica not ready within the progress deadline fails the rollout",
                            _ => Unknown(field, ["parallelism", "order", "failure_action", "delay", "monitor", "max_failure_ratio"]),
                        });
                        break;
                }
            }
            // parallelism: 0 means all at once in swarm.
            var step = parallelism <= 0 ? Math.Max(1, deployment.Replicas) : parallelism;
            (rollout.MaxUnavailable, rollout.MaxSurge) = startFirst ? (0, step) : (step, 0);
        }

        /// <summary>test (CMD, CMD-SHELL, a string, NONE), interval, timeout, retries, start_period → liveness and readiness exec probes.</summary>
        private void HealthCheck(YamlNode node, string path, Workload template)
        {
            if (node is not YamlMappingNode check)
            {
                Error(node, path, $"expected a mapping (test:, interval:, …), got {ManifestReader.Describe(node)}");
                return;
            }
            List<string>? command = null;
            double period = 30, timeout = 30, startPeriod = 0;
            var retries = 3;
            var disabled = false;
            foreach (var (key, value) in Entries(check))
            {
                var field = KeyName(key);
                var at = $"{path}.{field}";
                switch (field)
                {
                    case "test":
                        var words = value is YamlSequenceNode list ? [.. list.Children.Select((w, i) => Text(w, $"{at}[{i}]") ?? "")] : Text(value, at) is { } shell ? ["CMD-SHELL", shell] : new List<string>();
                        switch (words)
                        {
                            case ["NONE", ..]:
                                disabled = true;
                                break;
                            case ["CMD", _, ..]:
                                command = words[1..];
                                break;
                            case ["CMD-SHELL", _, ..]:
                                command = ["/bin/sh", "-c", string.Join(' ', words[1..])];
                                break;
                            default:
                                Error(value, at, $"expected [CMD, prog, args…], [CMD-SHELL, \"command\"], a command string or [NONE], got {ManifestReader.Describe(value)}");
                                break;
                        }
                        Place("template.probes", at, value);
                        break;
                    case "interval":
                        period = Duration(value, at)?.TotalSeconds ?? period;
                        Place("template.probes.liveness.periodSeconds", at, value);
                        break;
                    case "timeout":
                        timeout = Duration(value, at)?.TotalSeconds ?? timeout;
                        Place("template.probes.liveness.timeoutSeconds", at, value);
                        break;
                    case "start_period":
                        startPeriod = Duration(value, at)?.TotalSeconds ?? startPeriod;
                        Place("template.probes.liveness.initialDelaySeconds", at, value);
                        break;
                    case "retries":
                        retries = (int)(Integer(value, at) ?? retries);
                        Place("template.probes.liveness.failureThreshold", at, value);
                        break;
                    case "disable":
                        disabled = value is YamlScalarNode { Value: "true" or "True" or "TRUE" };
                        break;
                    default:
                        Ignored(key, at, field == "start_interval" ? "probes keep their interval during start_period" : Unknown(field, ["test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"]));
                        break;
                }
            }
            if (disabled)
            {
                return;
            }
            if (command is null)
            {
                Ignored(node, path, "no test:, and the image's HEALTHCHECK is not read; the container has no probes");
                return;
            }
            Probe Make() => new()
            {
                Exec = new ExecAction { Command = [.. command] },
                PeriodSeconds = period,
                TimeoutSeconds = timeout,
                InitialDelaySeconds = startPeriod,
                FailureThreshold = retries,
            };
            template.Probes = new Probes { Liveness = Make(), Readiness = Make() };
            foreach (var field in new[] { "periodSeconds", "timeoutSeconds", "initialDelaySeconds", "failureThreshold" })
            {
                if (_places.TryGetValue($"template.probes.liveness.{field}", out var place))
                {
                    _places[$"template.probes.readiness.{field}"] = place;
                }
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

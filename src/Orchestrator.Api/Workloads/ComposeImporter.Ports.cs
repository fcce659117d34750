using System.Globalization;
using YamlDotNet.RepresentationModel;

namespace Orchestrator.Api.Workloads;

internal static partial class ComposeImporter
{
    /// <summary>Compose ports, short ("8080:80/udp", ranges) and long form, into the workload's port mappings.</summary>
    private sealed partial class Importer
    {
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
    }
}

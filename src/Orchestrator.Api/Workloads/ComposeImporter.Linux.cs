using System.Globalization;
using YamlDotNet.RepresentationModel;

namespace Orchestrator.Api.Workloads;

internal static partial class ComposeImporter
{
    private sealed partial class Importer
    {
        /// <summary>
        /// A service's Linux settings (privileged, cap_add, cap_drop, read_only, tmpfs, group_add,
        /// devices, device_cgroup_rules, sysctls, ulimits, shm_size, init, stop_signal) into the workload's; false for any other key.
        /// Whether a node allows them is the node's policy, said when it refuses.
        /// </summary>
        /// <summary>
        /// A compose device: "HOST[:CONTAINER[:PERMISSIONS]]" (docker's --device; the host path may be
        /// a glob here), or the long form {source, target, permissions}. A CDI name
        /// (vendor.com/class=name) has no meaning on a node without CDI and is ignored with a warning.
        /// </summary>
        private DeviceMapping? Device(YamlNode item, string path)
        {
            if (item is YamlMappingNode map)
            {
                var device = new DeviceMapping();
                foreach (var (key, v) in map.Children)
                {
                    var name = KeyName(key);
                    var text = Text(v, $"{path}.{name}");
                    switch (name)
                    {
                        case "source":
                            device.HostPath = text ?? "";
                            break;
                        case "target":
                            device.ContainerPath = text;
                            break;
                        case "permissions":
                            device.Permissions = text;
                            break;
                        default:
                            Ignored(key, $"{path}.{name}", Unknown(name, ["source", "target", "permissions"]));
                            break;
                    }
                }
                return device;
            }
            if (Text(item, path) is not { } spec)
            {
                return null;
            }
            if (!spec.StartsWith('/') && spec.Contains('=', StringComparison.Ordinal))
            {
                Ignored(item, path, $"'{spec}' is a CDI device name, which needs a CDI registry nodes do not have; map the device nodes by path (/dev/…)");
                return null;
            }
            var parts = spec.Split(':');
            var mapping = new DeviceMapping { HostPath = parts[0] };
            if (parts.Length == 2 && LinuxSettings.IsAccess(parts[1]))
            {
                mapping.Permissions = parts[1]; // "/dev/x:rw": docker reads a last part of r, w and m as permissions
            }
            else if (parts.Length >= 2)
            {
                mapping.ContainerPath = parts[1] == parts[0] ? null : parts[1];
                mapping.Permissions = parts.Length >= 3 ? string.Join(':', parts[2..]) : null;
            }
            return mapping;
        }

        private bool LinuxSetting(string field, YamlNode value, string path, Workload template)
        {
            switch (field)
            {
                case "privileged":
                    template.Privileged = Flag(value, path) == true ? true : null;
                    Place("template.privileged", path, value);
                    return true;
                case "init":
                    template.Init = Flag(value, path) == true ? true : null;
                    Place("template.init", path, value);
                    return true;
                case "read_only":
                    template.ReadOnlyRootfs = Flag(value, path) == true ? true : null;
                    Place("template.readOnlyRootfs", path, value);
                    return true;
                case "cap_add":
                    template.CapAdd = Strings(value, path);
                    Place("template.capAdd", path, value);
                    return true;
                case "cap_drop":
                    template.CapDrop = Strings(value, path);
                    Place("template.capDrop", path, value);
                    return true;
                case "stop_signal":
                    template.StopSignal = Text(value, path);
                    Place("template.stopSignal", path, value);
                    return true;
                case "shm_size":
                    template.ShmSize = Memory(value, path);
                    Place("template.shmSize", path, value);
                    return true;
                case "sysctls":
                    template.Sysctls = Pairs(value, path, "sysctls", fromShell: false);
                    Place("template.sysctls", path, value);
                    return true;
                case "tmpfs":
                    foreach (var (item, itemPath) in value is YamlSequenceNode items ? items.Children.Select((n, i) => (n, $"{path}[{i}]")) : [(value, path)])
                    {
                        if (Tmpfs(item, itemPath) is { } mount)
                        {
                            (template.Tmpfs ??= []).Add(mount);
                        }
                    }
                    Place("template.tmpfs", path, value);
                    return true;
                case "group_add":
                    foreach (var (item, itemPath) in value is YamlSequenceNode groups ? groups.Children.Select((n, i) => (n, $"{path}[{i}]")) : [(value, path)])
                    {
                        if (Text(item, itemPath) is { } group)
                        {
                            (template.Groups ??= []).Add(group); // a name: the image's /etc/group numbers it on the node, as docker does
                        }
                    }
                    Place("template.groups", path, value);
                    return true;
                case "devices":
                    foreach (var (item, itemPath) in value is YamlSequenceNode devices ? devices.Children.Select((n, i) => (n, $"{path}[{i}]")) : [(value, path)])
                    {
                        if (Device(item, itemPath) is { } device)
                        {
                            Place($"template.devices[{template.Devices?.Count ?? 0}]", itemPath, item);
                            (template.Devices ??= []).Add(device);
                        }
                    }
                    Place("template.devices", path, value);
                    return true;
                case "device_cgroup_rules":
                    template.DeviceCgroupRules = Strings(value, path);
                    Place("template.deviceCgroupRules", path, value);
                    return true;
                case "ulimits":
                    Ulimits(value, path, template);
                    Place("template.ulimits", path, value);
                    return true;
                default:
                    return false;
            }
        }

        /// <summary>
        /// balena's io.balena.features.* labels (set to 1 or true), which ask balena's supervisor for a
        /// piece of the host. Those that are a host path are honoured as the same binds (the node's
        /// policy.host_paths decides, as for any bind); the others are said to have no effect here.
        /// </summary>
        private void BalenaFeatures(YamlNode labels, string path, Workload template)
        {
            const string Prefix = "io.balena.features.";
            foreach (var (key, value) in template.Labels ?? [])
            {
                if (!key.StartsWith(Prefix, StringComparison.Ordinal))
                {
                    continue;
                }
                var feature = key[Prefix.Length..];
                if (value.Trim().ToLowerInvariant() is not ("1" or "true"))
                {
                    continue;
                }
                void Bind(string host, string target, bool readOnly)
                {
                    if (!(template.Volumes ?? []).Any(v => v.Target == target))
                    {
                        (template.Volumes ??= []).Add(new Volume { HostPath = host, Target = target, ReadOnly = readOnly });
                    }
                }
                switch (feature)
                {
                    case "dbus":
                        Bind("/run/dbus", "/host/run/dbus", readOnly: false);
                        (template.Env ??= new Dictionary<string, string>(StringComparer.Ordinal)).TryAdd("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/host/run/dbus/system_bus_socket");
                        Warn(labels, $"{path}.{key}", "honoured: the node's /run/dbus is bound at /host/run/dbus and DBUS_SYSTEM_BUS_ADDRESS set, as balena does (the node's policy.host_paths must allow /run/dbus)");
                        break;
                    case "kernel-modules":
                        Bind("/lib/modules", "/lib/modules", readOnly: true);
                        Warn(labels, $"{path}.{key}", "honoured: the node's /lib/modules is bound read-only (the node's policy.host_paths must allow it; loading a module also needs cap_add: [SYS_MODULE])");
                        break;
                    case "firmware":
                        Bind("/lib/firmware", "/lib/firmware", readOnly: true);
                        Warn(labels, $"{path}.{key}", "honoured: the node's /lib/firmware is bound read-only (the node's policy.host_paths must allow it)");
                        break;
                    case "sysfs":
                        Bind("/sys", "/sys", readOnly: false);
                        Warn(labels, $"{path}.{key}", "honoured: the node's /sys is bound (the node's policy.host_paths must allow it)");
                        break;
                    case "journal-logs":
                        Bind("/var/log/journal", "/var/log/journal", readOnly: true);
                        Bind("/etc/machine-id", "/etc/machine-id", readOnly: true);
                        Warn(labels, $"{path}.{key}", "honoured: the node's /var/log/journal and /etc/machine-id are bound read-only (the node must keep a persistent journal; policy.host_paths must allow both)");
                        break;
                    case "balena-socket":
                        Warn(labels, $"{path}.{key}", "has no effect: orchd has no Docker engine socket to give; a container that manages containers talks to the fleet over NATS (orchctl)");
                        break;
                    case "supervisor-api" or "balena-api":
                        Warn(labels, $"{path}.{key}", "has no effect: there is no balena supervisor or cloud API here; orchd's node API and the fleet's are NATS subjects (docs/protocol.md)");
                        break;
                    case "gpu":
                        Warn(labels, $"{path}.{key}", "has no effect: map the GPU's device nodes with devices: (the node's policy.devices must allow them)");
                        break;
                    case "procfs":
                        Warn(labels, $"{path}.{key}", "has no effect: the host's /proc is not bound over the container's own (pid: host is not supported)");
                        break;
                    default:
                        Warn(labels, $"{path}.{key}", "has no effect: orchd does not know this balena feature");
                        break;
                }
            }
        }

        private List<string>? Strings(YamlNode node, string path)
            => node is YamlSequenceNode list
                ? [.. list.Children.Select((item, i) => Text(item, $"{path}[{i}]") ?? "")]
                : Text(node, path) is { } one ? [one] : null;

        /// <summary>"/run" or "/run:size=64m,mode=1777" (docker's --tmpfs form).</summary>
        private TmpfsMount? Tmpfs(YamlNode node, string path)
        {
            if (Text(node, path) is not { } text)
            {
                return null;
            }
            var colon = text.IndexOf(':', StringComparison.Ordinal);
            var mount = new TmpfsMount { Target = colon < 0 ? text : text[..colon] };
            foreach (var option in colon < 0 ? [] : text[(colon + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                var (name, value) = option.IndexOf('=', StringComparison.Ordinal) is var eq and > 0 ? (option[..eq], option[(eq + 1)..]) : (option, "");
                switch (name)
                {
                    case "size":
                        var size = SizePattern().Match(value);
                        mount.Size = size.Success ? size.Groups[1].Value + size.Groups[2].Value.ToLowerInvariant() switch { "k" => "Ki", "m" => "Mi", "g" => "Gi", _ => "" } : value;
                        break;
                    case "mode":
                        mount.Mode = value;
                        break;
                    case "rw" or "nosuid" or "nodev" or "exec":
                        break; // what orchd mounts anyway (nosuid, nodev, writable, executable)
                    default:
                        Ignored(node, path, $"option '{option}' is not supported (size= and mode= are)");
                        break;
                }
            }
            return mount;
        }

        /// <summary>compose's ulimits: name: N (soft and hard) or name: {soft: N, hard: M}.</summary>
        private void Ulimits(YamlNode node, string path, Workload template)
        {
            if (node is not YamlMappingNode map)
            {
                Error(node, path, $"expected a mapping (nofile: {{soft: 1024, hard: 4096}}), got {ManifestReader.Describe(node)}");
                return;
            }
            foreach (var (key, value) in Entries(map))
            {
                var name = KeyName(key);
                var itemPath = $"{path}.{name}";
                Ulimit? limit = null;
                if (value is YamlScalarNode)
                {
                    limit = Integer(value, itemPath) is { } both ? new Ulimit { Soft = both, Hard = both } : null;
                }
                else if (value is YamlMappingNode pair)
                {
                    long? soft = null, hard = null;
                    foreach (var (k, v) in Entries(pair))
                    {
                        switch (KeyName(k))
                        {
                            case "soft": soft = Integer(v, $"{itemPath}.soft"); break;
                            case "hard": hard = Integer(v, $"{itemPath}.hard"); break;
                            default: Ignored(k, $"{itemPath}.{KeyName(k)}", "not a compose key; a ulimit has soft and hard"); break;
                        }
                    }
                    limit = soft is { } s && hard is { } h ? new Ulimit { Soft = s, Hard = h } : null;
                    if (limit is null)
                    {
                        Error(value, itemPath, "give both soft and hard (or one number for both)");
                    }
                }
                else
                {
                    Error(value, itemPath, $"expected a number or {{soft:, hard:}}, got {ManifestReader.Describe(value)}");
                }
                if (limit is not null)
                {
                    (template.Ulimits ??= new Dictionary<string, Ulimit>(StringComparer.Ordinal))[name] = limit;
                }
            }
        }
    }
}

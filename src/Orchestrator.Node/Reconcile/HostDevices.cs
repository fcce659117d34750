using System.Globalization;
using Orchestrator.Api.Workloads;
using Orchestrator.Runtime.Spec;

namespace Orchestrator.Node.Reconcile;

/// <summary>A device of the node a workload maps: the path it was found at, where the container sees it, its node and the access allowed.</summary>
public sealed record MappedDevice(string HostPath, string ContainerPath, DeviceSpec Node, string Access);

/// <summary>
/// The node's character and block devices: all of them under /dev as OCI device entries (what
/// docker's --privileged creates in the container's own /dev), those a workload's devices: name
/// (paths and globs, symlinks followed to the node), what the node has for its hw.* labels, and
/// orchd's own capabilities.
/// </summary>
public static class HostDevices
{
    /// <summary>What the container's /dev has of its own (its pts, shm, mqueue) or the runtime makes anyway.</summary>
    private static readonly HashSet<string> s_skipped = new(StringComparer.Ordinal)
    {
        "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/fd", "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty",
        "/dev/console", "/dev/ptmx",
    };

    /// <summary>Every device node under <paramref name="root"/> (symlinks not followed), with its numbers, mode and owner.</summary>
    public static unsafe List<DeviceSpec> Scan(string root = "/dev")
    {
        var devices = new List<DeviceSpec>();
        var pending = new Stack<string>([root]);
        while (pending.Count > 0)
        {
            var dir = pending.Pop();
            IEnumerable<string> entries;
            try
            {
                entries = Directory.EnumerateFileSystemEntries(dir).Order(StringComparer.Ordinal).ToList();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }
            foreach (var path in entries)
            {
                if (s_skipped.Contains(path))
                {
                    continue;
                }
                if (Node(path, follow: false) is { } device)
                {
                    devices.Add(device);
                }
                else if (IsDirectory(path))
                {
                    pending.Push(path);
                }
            }
        }
        return devices;
    }

    private static unsafe bool IsDirectory(string path)
    {
        Tmds.Linux.stat st;
        var bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
        {
            return Tmds.Linux.LibC.lstat(p, &st) == 0 && ((uint)st.st_mode & 0xF000) == 0x4000;
        }
    }

    /// <summary>The device node at <paramref name="path"/> (through symlinks when <paramref name="follow"/>) with its numbers, mode and owner; null when there is none.</summary>
    public static unsafe DeviceSpec? Node(string path, bool follow)
    {
        Tmds.Linux.stat st;
        var bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
        {
            if ((follow ? Tmds.Linux.LibC.stat(p, &st) : Tmds.Linux.LibC.lstat(p, &st)) != 0)
            {
                return null;
            }
        }
        var format = (uint)st.st_mode & 0xF000;
        if (format is not (0x2000 or 0x6000))
        {
            return null;
        }
        var rdev = (ulong)st.st_rdev;
        return new DeviceSpec
        {
            Path = path, Type = format == 0x2000 ? "c" : "b",
            Major = (long)(((rdev >> 8) & 0xfff) | ((rdev >> 32) & ~0xfffUL)),
            Minor = (long)((rdev & 0xff) | ((rdev >> 12) & ~0xffUL)),
            FileMode = (uint)st.st_mode & 0xFFF, Uid = (uint)st.st_uid, Gid = (uint)st.st_gid,
        };
    }

    /// <summary>
    /// The paths a device glob names now, in order: each component with a glob character matched
    /// against its directory's entries (dot files only by a pattern that starts with a dot).
    /// </summary>
    public static List<string> Expand(string pattern)
    {
        var current = new List<string> { "" };
        foreach (var part in pattern.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            var next = new List<string>();
            foreach (var prefix in current)
            {
                if (!DeviceGlob.IsGlob(part))
                {
                    next.Add(prefix + "/" + part);
                    continue;
                }
                try
                {
                    foreach (var entry in Directory.EnumerateFileSystemEntries(prefix.Length == 0 ? "/" : prefix))
                    {
                        var name = Path.GetFileName(entry);
                        if ((part.StartsWith('.') || !name.StartsWith('.')) && DeviceGlob.MatchesComponent(part, name))
                        {
                            next.Add(prefix + "/" + name);
                        }
                    }
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    // A directory that is not there (no USB serial adapter yet) matches nothing.
                }
            }
            current = next;
        }
        current.Sort(StringComparer.Ordinal);
        return current;
    }

    /// <summary>
    /// The devices a workload's devices: name on this node now, each where the container sees it
    /// (the first mapping of a container path wins). A path that is not a device node here is an
    /// error that names it (the start is retried, so plugging it in starts the container); a glob
    /// may match nothing. A match the node's policy does not allow (a symlink out of the allowed
    /// ones) is left out.
    /// </summary>
    public static List<MappedDevice> Map(Workload workload, NodePolicy policy)
    {
        var mapped = new List<MappedDevice>();
        var taken = new HashSet<string>(StringComparer.Ordinal);
        foreach (var mapping in workload.Devices ?? [])
        {
            var access = mapping.Permissions ?? "rwm";
            if (!policy.DeviceAllowed(mapping.HostPath))
            {
                throw new SpecException($"workload '{workload.Name}': device '{mapping.HostPath}' is not in this node's policy.devices; an operator of the node can allow it (--allow-device)");
            }
            if (!DeviceGlob.IsGlob(mapping.HostPath))
            {
                var node = Node(mapping.HostPath, follow: true)
                    ?? throw new SpecException(Path.Exists(mapping.HostPath)
                        ? $"workload '{workload.Name}': '{mapping.HostPath}' is not a device node (a character or block device); map the device itself"
                        : $"workload '{workload.Name}': device '{mapping.HostPath}' is not on this node; plug it in (the start is retried) or map a glob (/dev/ttyUSB*) that may match nothing");
                var target = mapping.ContainerPath ?? mapping.HostPath;
                if (taken.Add(target))
                {
                    node.Path = target;
                    mapped.Add(new MappedDevice(mapping.HostPath, target, node, access));
                }
                continue;
            }
            foreach (var match in Expand(mapping.HostPath))
            {
                if (!policy.DeviceAllowed(match) || Node(match, follow: true) is not { } node)
                {
                    continue;
                }
                var target = mapping.ContainerPath is { } dir ? dir.TrimEnd('/') + "/" + Path.GetFileName(match) : match;
                if (taken.Add(target))
                {
                    node.Path = target;
                    mapped.Add(new MappedDevice(match, target, node, access));
                }
            }
        }
        return mapped;
    }

    /// <summary>Device kinds a node labels itself with (hw.KIND=count), by the names the kernel gives their nodes.</summary>
    private static readonly (string Label, string[] Patterns)[] s_kinds =
    [
        ("hw.serial", ["ttyUSB*", "ttyACM*", "ttyAMA*", "ttymxc*", "ttyTHS*", "rfcomm*"]),
        ("hw.video", ["video*"]),
        ("hw.gpio", ["gpiochip*"]),
        ("hw.i2c", ["i2c-*"]),
        ("hw.spi", ["spidev*"]),
        ("hw.sound", ["snd/pcmC*"]),
    ];

    /// <summary>
    /// What the node has, as labels a selector can target: hw.serial, hw.video, hw.gpio, hw.i2c,
    /// hw.spi and hw.sound with the number of such devices under <paramref name="devRoot"/> (a kind
    /// with none is left out, so `hw.video` in a selector means "has a camera"), hw.cpus, and
    /// hw.memory (the RAM rounded up to a power of two: 512Mi, 1Gi, 2Gi).
    /// </summary>
    public static SortedDictionary<string, string> Labels(string devRoot = "/dev", string meminfo = "/proc/meminfo")
    {
        var labels = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (label, patterns) in s_kinds)
        {
            var count = patterns.Sum(p => Expand(devRoot.TrimEnd('/') + "/" + p).Count(path => Node(path, follow: false) is not null));
            if (count > 0)
            {
                labels[label] = count.ToString(CultureInfo.InvariantCulture);
            }
        }
        labels["hw.cpus"] = Environment.ProcessorCount.ToString(CultureInfo.InvariantCulture);
        if (MemoryClass(meminfo) is { } memory)
        {
            labels["hw.memory"] = memory;
        }
        return labels;
    }

    /// <summary>MemTotal rounded up to a power of two, as 512Mi or 2Gi (what a device is sold as), or null when unreadable.</summary>
    internal static string? MemoryClass(string meminfo)
    {
        try
        {
            foreach (var line in File.ReadLines(meminfo))
            {
                if (line.StartsWith("MemTotal:", StringComparison.Ordinal)
                    && long.TryParse(line["MemTotal:".Length..].Trim().Split(' ')[0], NumberStyles.None, CultureInfo.InvariantCulture, out var kib) && kib > 0)
                {
                    var mib = 1L;
                    while (mib * 1024 < kib)
                    {
                        mib *= 2;
                    }
                    return mib >= 1024 ? $"{mib / 1024}Gi" : $"{mib}Mi";
                }
            }
        }
        catch (IOException)
        {
        }
        return null;
    }

    /// <summary>The capabilities in orchd's own bounding set (a container cannot be given one orchd lacks).</summary>
    public static IReadOnlyList<string> OwnCapabilities()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("CapBnd:", StringComparison.Ordinal))
                {
                    var mask = Convert.ToUInt64(line["CapBnd:".Length..].Trim(), 16);
                    var all = Orchestrator.Api.Workloads.LinuxSettings.Capabilities;
                    return [.. all.Where((_, bit) => (mask & (1UL << bit)) != 0)];
                }
            }
        }
        catch (Exception e) when (e is IOException or FormatException)
        {
        }
        return Orchestrator.Api.Workloads.LinuxSettings.Capabilities;
    }
}

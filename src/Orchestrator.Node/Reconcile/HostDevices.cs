using Orchestrator.Runtime.Spec;

namespace Orchestrator.Node.Reconcile;

/// <summary>
/// The node's character and block devices under /dev as OCI device entries (what docker's
/// --privileged creates in the container's own /dev), and orchd's own capabilities.
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
                Tmds.Linux.stat st;
                var bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
                fixed (byte* p = bytes)
                {
                    if (Tmds.Linux.LibC.lstat(p, &st) != 0)
                    {
                        continue;
                    }
                }
                var format = (uint)st.st_mode & 0xF000;
                if (format == 0x4000)
                {
                    pending.Push(path);
                    continue;
                }
                if (format is not (0x2000 or 0x6000))
                {
                    continue;
                }
                var rdev = (ulong)st.st_rdev;
                devices.Add(new DeviceSpec
                {
                    Path = path, Type = format == 0x2000 ? "c" : "b",
                    Major = (long)(((rdev >> 8) & 0xfff) | ((rdev >> 32) & ~0xfffUL)),
                    Minor = (long)((rdev & 0xff) | ((rdev >> 12) & ~0xffUL)),
                    FileMode = (uint)st.st_mode & 0xFFF, Uid = (uint)st.st_uid, Gid = (uint)st.st_gid,
                });
            }
        }
        return devices;
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

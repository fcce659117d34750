using Microsoft.Win32.SafeHandles;
using Orchestrator.Linux;

namespace Orchestrator.Node.Reconcile;

/// <summary>
/// A running container's device nodes kept in step with the node's: a device that appears under a
/// glob the workload mapped (a USB serial adapter plugged in) gets its node in the container and
/// its access in the container's devices cgroup; one that goes away loses both. Works the same
/// for both backends: the container is reached through /proc/PID/root (its own mounts, its own
/// /dev) and its cgroup through /proc/PID/cgroup. Paths in the container are resolved by the
/// kernel inside its root (openat2 RESOLVE_IN_ROOT), so a symlink the container made cannot send
/// a node to the host's file system.
/// </summary>
internal static class DeviceHotplug
{
    private const int O_PATH = 0x200000, O_DIRECTORY = 0x10000, O_CLOEXEC = 0x80000, EEXIST = 17;

    /// <summary>What one sync did: the container paths added and removed, and why one could not be (one sentence each).</summary>
    public sealed record Outcome(List<string> Added, List<string> Removed, List<string> Problems);

    /// <summary>Adds what is in <paramref name="now"/> and not <paramref name="before"/>, removes the reverse (a device whose numbers changed is both).</summary>
    public static Outcome Sync(int pid, IReadOnlyList<MappedDevice> before, IReadOnlyList<MappedDevice> now, string cgroupRoot = "/sys/fs/cgroup")
    {
        var outcome = new Outcome([], [], []);
        var was = before.ToDictionary(d => d.ContainerPath, StringComparer.Ordinal);
        var becomes = now.ToDictionary(d => d.ContainerPath, StringComparer.Ordinal);
        var removed = before.Where(d => !becomes.TryGetValue(d.ContainerPath, out var n) || !Same(n, d)).ToList();
        var added = now.Where(d => !was.TryGetValue(d.ContainerPath, out var b) || !Same(b, d)).ToList();
        if (removed.Count == 0 && added.Count == 0)
        {
            return outcome;
        }
        var devicesCgroup = DevicesCgroup(pid, cgroupRoot);
        var root = Libc.open($"/proc/{pid}/root", O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
        if (root < 0)
        {
            outcome.Problems.Add($"the container's root (/proc/{pid}/root) cannot be opened: {Errno.Describe(System.Runtime.InteropServices.Marshal.GetLastPInvokeError())}");
            return outcome;
        }
        using var rootHandle = new SafeFileHandle(root, ownsHandle: true);
        foreach (var device in removed)
        {
            Write(devicesCgroup, "devices.deny", Rule(device, "rwm"), outcome);
            if (RemoveNode(root, device) is { } problem)
            {
                outcome.Problems.Add(problem);
            }
            else
            {
                outcome.Removed.Add(device.ContainerPath);
            }
        }
        foreach (var device in added)
        {
            if (devicesCgroup is null)
            {
                outcome.Problems.Add($"{device.HostPath}: the container's devices cgroup (cgroup v1) is not found; on a cgroup v2 node a device plugged in after start reaches the container when it restarts");
                continue;
            }
            if (!Write(devicesCgroup, "devices.allow", Rule(device, device.Access), outcome))
            {
                continue;
            }
            if (MakeNode(root, device) is { } problem)
            {
                outcome.Problems.Add(problem);
            }
            else
            {
                outcome.Added.Add(device.ContainerPath);
            }
        }
        return outcome;
    }

    private static bool Same(MappedDevice a, MappedDevice b)
        => a.Node.Type == b.Node.Type && a.Node.Major == b.Node.Major && a.Node.Minor == b.Node.Minor && a.Access == b.Access;

    private static string Rule(MappedDevice device, string access)
        => $"{device.Node.Type} {device.Node.Major}:{device.Node.Minor} {access}";

    /// <summary>The container's directory in the devices hierarchy (cgroup v1), from /proc/PID/cgroup; null on cgroup v2 or when it has none.</summary>
    internal static string? DevicesCgroup(int pid, string cgroupRoot)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/cgroup"))
            {
                var fields = line.Split(':', 3);
                if (fields.Length == 3 && fields[1].Split(',').Contains("devices"))
                {
                    var dir = Path.Combine(cgroupRoot, "devices") + fields[2];
                    return Directory.Exists(dir) ? dir : null;
                }
            }
        }
        catch (IOException)
        {
        }
        return null;
    }

    private static bool Write(string? cgroup, string file, string rule, Outcome outcome)
    {
        if (cgroup is null)
        {
            return false;
        }
        try
        {
            File.WriteAllText(Path.Combine(cgroup, file), rule);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            outcome.Problems.Add($"'{rule}' into {file} of {cgroup}: {e.Message}");
            return false;
        }
    }

    /// <summary>The node at its path in the container, with the host node's mode and owner; its directories made (0755) as needed.</summary>
    private static string? MakeNode(int root, MappedDevice device)
    {
        var (parent, name) = (Path.GetDirectoryName(device.ContainerPath)!, Path.GetFileName(device.ContainerPath));
        var dir = OpenDirectory(root, parent, create: true, out var problem);
        if (dir is null)
        {
            return $"{device.ContainerPath}: {problem}";
        }
        using (dir)
        {
            var fd = (int)dir.DangerousGetHandle();
            var format = device.Node.Type == "b" ? 0x6000u : 0x2000u;
            var dev = Libc.makedev((ulong)device.Node.Major, (ulong)device.Node.Minor);
            if (Libc.mknodat(fd, name, format | (device.Node.FileMode ?? 0x1B6 /* 0666 */), dev) != 0)
            {
                var errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
                if (errno != EEXIST)
                {
                    return $"{device.ContainerPath}: mknod: {Errno.Describe(errno)}";
                }
                // Something is there already: the same node (made at start) is fine; anything else stays the container's.
                if (HostDevices.Node($"/proc/self/fd/{fd}/{name}", follow: false) is not { } there || there.Major != device.Node.Major || there.Minor != device.Node.Minor || there.Type != device.Node.Type)
                {
                    return $"{device.ContainerPath}: the container has a file of its own there; the device is not put over it";
                }
                return null;
            }
            Libc.fchownat(fd, name, device.Node.Uid ?? 0, device.Node.Gid ?? 0, 0x100 /* AT_SYMLINK_NOFOLLOW */);
            Libc.fchmodat(fd, name, device.Node.FileMode ?? 0x1B6 /* 0666 */, 0); // mknod's mode went through orchd's umask
        }
        return null;
    }

    /// <summary>Removes the node at its path in the container if it is still this device (a file the container put there instead stays).</summary>
    private static string? RemoveNode(int root, MappedDevice device)
    {
        var (parent, name) = (Path.GetDirectoryName(device.ContainerPath)!, Path.GetFileName(device.ContainerPath));
        using var dir = OpenDirectory(root, parent, create: false, out _);
        if (dir is null)
        {
            return null; // the directory went: so did the node
        }
        var fd = (int)dir.DangerousGetHandle();
        if (HostDevices.Node($"/proc/self/fd/{fd}/{name}", follow: false) is { } there && there.Major == device.Node.Major && there.Minor == device.Node.Minor && there.Type == device.Node.Type
            && Libc.unlinkat(fd, name, 0) != 0)
        {
            return $"{device.ContainerPath}: unlink: {Errno.Describe(System.Runtime.InteropServices.Marshal.GetLastPInvokeError())}";
        }
        return null;
    }

    /// <summary>A directory of the container (an O_PATH handle), resolved in its root; made, component by component, when <paramref name="create"/>.</summary>
    private static SafeFileHandle? OpenDirectory(int root, string path, bool create, out string? problem)
    {
        problem = null;
        const ulong resolve = Libc.RESOLVE_IN_ROOT | Libc.RESOLVE_NO_MAGICLINKS;
        var fd = Libc.openat2(root, path, O_PATH | O_DIRECTORY | O_CLOEXEC, 0, resolve);
        if (fd >= 0)
        {
            return new SafeFileHandle(fd, ownsHandle: true);
        }
        if (!create)
        {
            return null;
        }
        var current = "/";
        foreach (var part in path.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            var dir = Libc.openat2(root, current, O_PATH | O_DIRECTORY | O_CLOEXEC, 0, resolve);
            if (dir < 0)
            {
                problem = $"'{current}' is not a directory in the container ({Errno.Describe(System.Runtime.InteropServices.Marshal.GetLastPInvokeError())})";
                return null;
            }
            var made = Libc.mkdirat(dir, part, 0x1ED /* 0755 */);
            var errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            Libc.close(dir);
            if (made != 0 && errno != EEXIST)
            {
                problem = $"mkdir '{part}' in '{current}': {Errno.Describe(errno)}";
                return null;
            }
            current = current.TrimEnd('/') + "/" + part;
        }
        fd = Libc.openat2(root, path, O_PATH | O_DIRECTORY | O_CLOEXEC, 0, resolve);
        if (fd < 0)
        {
            problem = $"'{path}' is not a directory in the container";
            return null;
        }
        return new SafeFileHandle(fd, ownsHandle: true);
    }
}

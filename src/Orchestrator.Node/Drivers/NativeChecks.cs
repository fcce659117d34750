using Orchestrator.Runtime.Cgroups;

namespace Orchestrator.Node.Drivers;

/// <summary>
/// Whether orchd's own runtime can run containers on this host: root, the namespaces it makes,
/// a writable cgroup hierarchy and overlayfs. Each failed check is one sentence naming what is
/// missing, for the log and node status when <c>runtime: auto</c> falls back to containerd.
/// </summary>
public static partial class NativeChecks
{
    private static readonly string[] s_namespaces = ["mnt", "pid", "net", "ipc", "uts", "cgroup"];
    private static readonly string[] s_v1Controllers = ["memory", "cpu", "pids", "freezer"];

    /// <summary>The checks that failed; empty when the native runtime can run here.</summary>
    public static IReadOnlyList<string> Run(string? cgroupRoot = null, string procRoot = "/proc")
    {
        var failures = new List<string>();
        if (!Environment.IsPrivilegedProcess)
        {
            failures.Add("orchd is not running as root");
        }
        foreach (var ns in s_namespaces)
        {
            if (!File.Exists(Path.Combine(procRoot, "self", "ns", ns)))
            {
                failures.Add($"the kernel has no {ns} namespaces ({procRoot}/self/ns/{ns} is missing)");
            }
        }
        foreach (var (ns, file) in new[] { ("user", "max_user_namespaces"), ("mount", "max_mnt_namespaces"), ("pid", "max_pid_namespaces"), ("network", "max_net_namespaces") })
        {
            var limit = Path.Combine(procRoot, "sys", "user", file);
            if (ReadLong(limit) == 0 && ns != "user")
            {
                failures.Add($"{ns} namespaces are switched off ({limit} is 0)");
            }
        }
        failures.AddRange(CgroupFailures(cgroupRoot ?? CgroupFactory.DefaultRoot));
        var filesystems = Path.Combine(procRoot, "filesystems");
        if (!HasOverlay(filesystems) && !(procRoot == "/proc" && LoadOverlay() && HasOverlay(filesystems)))
        {
            failures.Add("the kernel has no overlayfs (modprobe overlay)");
        }
        return failures;
    }

    private static bool HasOverlay(string filesystems)
        => File.Exists(filesystems) && File.ReadAllText(filesystems).Contains("\toverlay\n", StringComparison.Ordinal);

    /// <summary>
    /// overlayfs is a module on most distribution kernels (Debian's arm64 and amd64 included), and
    /// nothing loads it before its first mount: on a fresh boot /proc/filesystems lacks it. The
    /// kernel loads a file system's module when mount(2) names its type (request_module
    /// "fs-overlay"), so an overlay mount with no layers, which then fails with EINVAL and mounts
    /// nothing, loads it without modprobe. Found booting the arm64 .deb in a fresh VM (issue #27).
    /// </summary>
    private static bool LoadOverlay()
    {
        if (!Environment.IsPrivilegedProcess)
        {
            return false;
        }
        var dir = Directory.CreateTempSubdirectory("orchd-overlay-check-");
        try
        {
            if (Orchestrator.Linux.Libc.mount("overlay", dir.FullName, "overlay", 0, null) == 0)
            {
                Orchestrator.Linux.Libc.umount2(dir.FullName, Orchestrator.Linux.Libc.MNT_DETACH); // not expected without lowerdir
            }
            return true;
        }
        finally
        {
            dir.Delete();
        }
    }

    private static IEnumerable<string> CgroupFailures(string root)
    {
        if (File.Exists(Path.Combine(root, "cgroup.controllers")))
        {
            if (!Writable(root))
            {
                yield return $"the cgroup v2 hierarchy at {root} is not writable";
            }
            yield break;
        }
        var missing = s_v1Controllers.Where(c => !Directory.Exists(Path.Combine(root, c))).ToList();
        if (missing.Count == s_v1Controllers.Length)
        {
            yield return $"no cgroup hierarchy at {root} (neither cgroup v2 nor the v1 controllers {string.Join(", ", s_v1Controllers)})";
            yield break;
        }
        if (missing.Count > 0)
        {
            yield return $"cgroup v1 controllers missing at {root}: {string.Join(", ", missing)}";
        }
        foreach (var controller in s_v1Controllers.Except(missing).Where(c => !Writable(Path.Combine(root, c))))
        {
            yield return $"the cgroup v1 hierarchy {Path.Combine(root, controller)} is not writable";
        }
    }

    /// <summary>access(W_OK): false on a read-only mount (EROFS) even for root.</summary>
    private static bool Writable(string dir) => access(dir, 2 /* W_OK */) == 0;

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "access", SetLastError = true, StringMarshalling = System.Runtime.InteropServices.StringMarshalling.Utf8)]
    private static partial int access(string pathname, int mode);

    private static long ReadLong(string file)
    {
        try
        {
            return long.TryParse(File.ReadAllText(file).Trim(), System.Globalization.CultureInfo.InvariantCulture, out var v) ? v : -1;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return -1;
        }
    }
}

namespace Orchestrator.Linux;

/// <summary>What /proc/self/mountinfo says of this process's mounts.</summary>
public static class MountInfo
{
    /// <summary>Whether something is mounted at <paramref name="path"/> (field 5 of a mountinfo line is the mount point).</summary>
    public static bool IsMountPoint(string path)
    {
        var full = Path.GetFullPath(path).TrimEnd('/');
        return File.Exists("/proc/self/mountinfo") && File.ReadLines("/proc/self/mountinfo").Any(l => l.Split(' ')[4] == full);
    }

    /// <summary>
    /// The file system type (tmpfs, ext4, …) of the mount that holds <paramref name="path"/> (which
    /// must exist): the longest mount point above it, the last one mounted there; null when
    /// /proc/self/mountinfo cannot be read.
    /// </summary>
    public static string? FileSystemOf(string path)
    {
        var full = new DirectoryInfo(path).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? Path.GetFullPath(path);
        full = full.TrimEnd('/');
        if (!File.Exists("/proc/self/mountinfo"))
        {
            return null;
        }
        string? best = null;
        var bestLength = -1;
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            var fields = line.Split(' ');
            var dash = Array.IndexOf(fields, "-");
            if (fields.Length < 5 || dash < 0 || dash + 1 >= fields.Length)
            {
                continue;
            }
            var point = fields[4].Replace("\\040", " ", StringComparison.Ordinal).TrimEnd('/');
            var under = point.Length == 0 || full == point || full.StartsWith(point + "/", StringComparison.Ordinal);
            if (under && point.Length >= bestLength)
            {
                best = fields[dash + 1];
                bestLength = point.Length;
            }
        }
        return best;
    }
}

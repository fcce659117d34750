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
}

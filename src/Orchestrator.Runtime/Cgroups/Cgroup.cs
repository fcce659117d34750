using Orchestrator.Api;
using Orchestrator.Runtime.Spec;

namespace Orchestrator.Runtime.Cgroups;

/// <summary>Usage figures of one cgroup.</summary>
public sealed record CgroupStats(long MemoryBytes, long MemoryMaxBytes, long CpuNanoseconds, long Pids, long OomKills);

/// <summary>
/// A container's cgroup, whichever hierarchy the host has (v1 here, v2 on most edge
/// distributions). Paths are relative to the hierarchy root, like "/orchestrator/web-1".
/// </summary>
public interface ICgroup
{
    string Path { get; }

    /// <summary>The cgroup's directory on a cgroup v2 hierarchy (for clone3(CLONE_INTO_CGROUP)); null on v1.</summary>
    string? UnifiedDirectory { get; }

    /// <summary>What Create or Update could not apply on this host, one sentence each (the caller logs them).</summary>
    IReadOnlyList<string> Warnings { get; }

    /// <summary>Creates the cgroup (and its parents) and applies the limits.</summary>
    void Create(ResourcesSpec? resources);

    /// <summary>Changes limits of an existing cgroup (`update`).</summary>
    void Update(ResourcesSpec resources);

    void Attach(int pid);

    IReadOnlyList<int> Pids();

    CgroupStats Stats();

    void Freeze();

    void Thaw();

    /// <summary>Removes the cgroup; every process in it must be gone.</summary>
    void Remove();
}

/// <summary>A cgroup operation failed; the message names the file and the value.</summary>
public sealed class CgroupException : OrchestratorException
{
    public CgroupException() : base(ErrorKind.Internal, "cgroup error") { }
    public CgroupException(string message) : base(ErrorKind.Internal, message) { }
    public CgroupException(string message, Exception inner) : base(ErrorKind.Internal, message, inner) { }
}

public static class CgroupFactory
{
    /// <summary>Where cgroupfs is mounted: /sys/fs/cgroup, or ORCH_CGROUP_ROOT for a host that mounts it elsewhere.</summary>
    public static string DefaultRoot => Environment.GetEnvironmentVariable("ORCH_CGROUP_ROOT") is { Length: > 0 } root ? root : "/sys/fs/cgroup";

    /// <summary>Opens a container's cgroup on this host's hierarchy.</summary>
    public static ICgroup Open(string path, string? mountRoot = null)
    {
        mountRoot ??= DefaultRoot;
        if (!path.StartsWith('/'))
        {
            path = "/" + path;
        }
        return File.Exists(System.IO.Path.Combine(mountRoot, "cgroup.controllers"))
            ? new CgroupV2(mountRoot, path)
            : new CgroupV1(mountRoot, path);
    }

    internal static void Write(string file, string value)
    {
        try
        {
            File.WriteAllText(file, value);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CgroupException($"write '{value}' to '{file}': {e.Message}", e);
        }
    }

    internal static string? Read(string file)
    {
        try
        {
            return File.ReadAllText(file).Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    internal static long ReadLong(string file) => long.TryParse(Read(file), System.Globalization.CultureInfo.InvariantCulture, out var v) ? v : 0;

    internal static long KeyedValue(string file, string key)
    {
        foreach (var line in (Read(file) ?? "").Split('\n'))
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 2 && parts[0] == key && long.TryParse(parts[1], System.Globalization.CultureInfo.InvariantCulture, out var v))
            {
                return v;
            }
        }
        return 0;
    }

    internal static IReadOnlyList<int> ReadPids(string file)
        => (Read(file) ?? "").Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => int.Parse(l, System.Globalization.CultureInfo.InvariantCulture)).ToArray();

    /// <summary>rmdir, retrying briefly: the kernel frees a cgroup a moment after its last task exits.</summary>
    internal static void RemoveDirectory(string dir)
    {
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                if (Directory.Exists(dir))
                {
                    Directory.Delete(dir); // rmdir(2): cgroupfs directories hold only virtual files
                }
                return;
            }
            catch (IOException) when (attempt < 50)
            {
                Thread.Sleep(10);
            }
            catch (IOException e)
            {
                throw new CgroupException($"remove '{dir}': {e.Message}; a process is still in it", e);
            }
        }
    }
}

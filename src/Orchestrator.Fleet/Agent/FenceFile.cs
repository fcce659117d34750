using System.Text.Json;
using Orchestrator.Api;

namespace Orchestrator.Fleet.Agent;

/// <summary>
/// What the fence keeper (<c>orchd fence-keeper</c>, a small process of its own that outlives a
/// crashed orchd) needs to fence for it: who orchd is, when it last had contact with the fleet,
/// and the fenced replicas' processes. orchd rewrites it in its run directory (a tmpfs: no flash
/// wear) every time it renews its presence.
/// </summary>
public sealed record FenceFile
{
    public const string Name = "fence.json";
    public const string KeeperPidName = "fence-keeper.pid";

    public int SchemaVersion { get; init; } = 1;
    public int OrchdPid { get; init; }
    public ulong OrchdStartTime { get; init; }
    public DateTimeOffset ContactAt { get; init; }
    public double FenceAfterSeconds { get; init; }
    /// <summary>orchd's state directory: the keeper writes the stop markers (workloads/NAME.stopped) there.</summary>
    public string StateDir { get; init; } = "";
    /// <summary>
    /// The cgroup under which each replica runs as <c>CGROUP_PARENT/NAME</c>: the keeper kills every
    /// process in a fenced replica's cgroup, so one orchd had not yet recorded (it died between
    /// the start and the record) is fenced too. Empty in files of an older orchd.
    /// </summary>
    public string CgroupParent { get; init; } = "";
    public IReadOnlyList<FencedProcess> Replicas { get; init; } = [];
    /// <summary>
    /// Every fenced replica by name, also one about to start: the keeper finds its process in
    /// orchd's record of it (STATE_DIR/containers/NAME.json: pid and start time) when it fences.
    /// </summary>
    public IReadOnlyList<string> Names { get; init; } = [];

    public DateTimeOffset Deadline => ContactAt + TimeSpan.FromSeconds(FenceAfterSeconds);

    public static FenceFile? Read(string path)
    {
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllBytes(path), AgentFilesJsonContext.Default.FenceFile);
        }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    public void Write(string path)
    {
        var temp = path + ".tmp";
        File.WriteAllBytes(temp, JsonSerializer.SerializeToUtf8Bytes(this, AgentFilesJsonContext.Default.FenceFile));
        File.Move(temp, path, overwrite: true);
    }
}

/// <summary>A fenced replica's first process, and its start time (so a reused pid is never killed).</summary>
public sealed record FencedProcess(string Name, int Pid, ulong StartTime);

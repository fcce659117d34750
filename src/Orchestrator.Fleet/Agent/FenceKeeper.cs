using System.Globalization;
using Orchestrator.Linux;
using Orchestrator.Runtime.Cgroups;

namespace Orchestrator.Fleet.Agent;

/// <summary>
/// Starts the node's fence keeper (<c>orchd fence-keeper RUN_DIR</c>, see FenceFile) when none
/// runs, and puts it into the node's cgroup subtree (<c>PARENT/.keeper</c>, see NodeCgroup), out of
/// orchd.service's: it outlives orchd, so in the unit's cgroup systemd would report it as a
/// left-over process on every restart. It runs while fenced replicas do. One keeper per node:
/// the pid file in the run directory names the one at work.
/// </summary>
public sealed class FenceKeeper(string binary, string runDir, string nodeId, string cgroupParent)
{
    private System.Diagnostics.Process? _process;
    private readonly Lock _lock = new();

    /// <summary>The keeper at work for RUN_DIR (its pid file names a live process with the same start time), or null.</summary>
    public static int? Running(string runDir) => ProcessStat.ReadPidFile(Path.Combine(runDir, FenceFile.KeeperPidName));

    /// <summary>
    /// A keeper runs after this, in its cgroup. Returns null, or the one sentence saying what could
    /// not be done (the keeper could not start, or stays in orchd's cgroup).
    /// </summary>
    public string? Ensure()
    {
        lock (_lock)
        {
            var running = _process is { HasExited: false } ? _process.Id : Running(runDir);
            if (running is { } pid)
            {
                // Ours, or one an earlier orchd started: placed already, unless an older orchd
                // (before the keeper had a cgroup of its own) started it.
                return NodeCgroup.IsInKeeper(pid, cgroupParent) ? null : Place(pid);
            }
            _process?.Dispose();
            // A keeper that cannot be placed still keeps the fence: it stays, in orchd's cgroup.
            var started = NodeCgroup.StartKeeper(binary, ["fence-keeper", runDir], nodeId, cgroupParent, stopIfUnplaced: false);
            _process = started.Process;
            return started.Problem;
        }
    }

    private string? Place(int pid)
    {
        try
        {
            NodeCgroup.PlaceKeeper(nodeId, cgroupParent, pid);
            return null;
        }
        catch (Exception e) when (e is CgroupException or IOException or UnauthorizedAccessException)
        {
            return $"the fence keeper (pid {pid}) stays in orchd's own cgroup: {e.Message}";
        }
    }
}

using System.Globalization;
using Orchestrator.Fleet.Agent;
using Orchestrator.Linux;
using Orchestrator.Runtime.Cgroups;

namespace Orchestrator.Daemon;

/// <summary>
/// <c>orchd fence-keeper RUN_DIR</c>: fences for an orchd that is down. orchd starts it while
/// replicas of <c>fence: true</c> deployments run and keeps <c>RUN_DIR/fence.json</c> current;
/// while that orchd process lives the keeper does nothing (orchd fences itself). Once it is gone
/// and the last contact with the fleet is older than fence_after, the keeper marks each fenced
/// replica stopped (the marker orchd reads when it comes back, so it does not start them again
/// without contact) and kills its process. It ends when the file is gone (no fenced replica runs).
/// A few MB of memory, one read of a small file a second.
/// </summary>
internal static class FenceKeeperCommand
{
    public static int Run(string[] args)
    {
        if (args.Length != 1 || !Directory.Exists(args[0]))
        {
            Console.Error.WriteLine("usage: orchd fence-keeper RUN_DIR (started by orchd while fenced replicas run; RUN_DIR is orchd's run directory)");
            return ExitCodes.Usage;
        }
        var runDir = args[0];
        var path = Path.Combine(runDir, FenceFile.Name);
        var pidFile = Path.Combine(runDir, FenceFile.KeeperPidName);
        ProcessStat.WritePidFile(pidFile, Environment.ProcessId);
        _ = Libc.setsid(); // not in orchd's session: a signal to orchd's process group does not end the keeper
        try
        {
            while (true)
            {
                var fence = FenceFile.Read(path);
                if (fence is null && !File.Exists(path))
                {
                    return ExitCodes.Ok; // no fenced replica runs any more
                }
                if (fence is not null && !ProcessStat.IsSame(fence.OrchdPid, fence.OrchdStartTime) && DateTimeOffset.UtcNow > fence.Deadline)
                {
                    Fence(fence, path);
                }
                Thread.Sleep(1000);
            }
        }
        finally
        {
            try
            {
                File.Delete(pidFile);
            }
            catch (IOException)
            {
            }
        }
    }

    private static void Fence(FenceFile fence, string path)
    {
        var left = new List<FencedProcess>();
        // The processes orchd recorded, and those of replicas named only (armed before they
        // started): their pid and start time from orchd's record of the container. Whatever
        // else runs in a fenced replica's cgroup is killed too: orchd may have died after the
        // container's first process started and before it wrote the record.
        var targets = fence.Replicas.ToList();
        foreach (var name in fence.Names.Where(n => targets.All(t => t.Name != n)))
        {
            targets.Add(Recorded(fence.StateDir, name) ?? new FencedProcess(name, 0, 0));
        }
        foreach (var replica in targets)
        {
            var recorded = replica.Pid > 0 && ProcessStat.IsSame(replica.Pid, replica.StartTime);
            var cgroup = CgroupOf(fence.CgroupParent, replica.Name);
            var inCgroup = cgroup is null ? [] : CgroupProcesses.Live(cgroup);
            if (!recorded && inCgroup.Count == 0)
            {
                continue; // gone already (or never started), or its pid is another process's now
            }
            var why = $"{FleetMember.FencedPrefix} no contact with the fleet since {fence.ContactAt:u} and orchd was down (fence_after {fence.FenceAfterSeconds:0}s); stopped by the fence keeper";
            try
            {
                var marker = Path.Combine(fence.StateDir, "workloads", replica.Name + ".stopped");
                File.WriteAllText(marker + ".tmp", why + "\n");
                File.Move(marker + ".tmp", marker, overwrite: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"orchd fence-keeper: cannot mark {replica.Name} stopped ({e.Message}); killing it anyway");
            }
            var failed = recorded && Libc.kill(replica.Pid, 9) != 0 && ProcessStat.IsSame(replica.Pid, replica.StartTime);
            failed |= cgroup is not null && !CgroupProcesses.KillAll(cgroup);
            if (failed)
            {
                left.Add(replica);
                continue;
            }
            var pids = string.Join(",", (recorded ? [replica.Pid] : Array.Empty<int>()).Concat(inCgroup).Distinct());
            Console.Error.WriteLine($"orchd fence-keeper: fenced {replica.Name} (pids {pids}): {why}");
        }
        (fence with { Replicas = left, Names = left.Select(r => r.Name).ToList() }).Write(path);
    }

    /// <summary>A replica's cgroup, or null when the fence file names no cgroup parent (an older orchd's).</summary>
    private static ICgroup? CgroupOf(string parent, string name) => parent.Length == 0 ? null : CgroupFactory.Open($"{parent}/{name}");

    /// <summary>The process orchd recorded for a container (its record in STATE_DIR/containers), or null.</summary>
    private static FencedProcess? Recorded(string stateDir, string name)
    {
        try
        {
            using var record = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(Path.Combine(stateDir, "containers", name + ".json")));
            var root = record.RootElement;
            return root.TryGetProperty("pid", out var pid) && pid.GetInt32() > 0 && root.TryGetProperty("pidStartTime", out var start)
                ? new FencedProcess(name, pid.GetInt32(), start.GetUInt64()) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Text.Json.JsonException or InvalidOperationException or FormatException)
        {
            return null;
        }
    }
}

using System.Globalization;
using Orchestrator.Linux;

namespace Orchestrator.Runtime.Cgroups;

/// <summary>
/// The live processes of a cgroup and signals to all of them: what the fence keeper and
/// <c>orchd teardown</c> do to a container they find by its cgroup, without its runtime record.
/// </summary>
public static class CgroupProcesses
{
    /// <summary>Processes in the cgroup that are alive: a zombie (killed, not yet reaped) stays listed on some kernels.</summary>
    public static List<int> Live(ICgroup cgroup)
    {
        try
        {
            return cgroup.Pids().Where(p => ProcessStat.StartTime(p) is not null && !IsZombie(p)).ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or CgroupException)
        {
            return []; // the cgroup is gone (or was never made)
        }
    }

    public static void Signal(ICgroup cgroup, int signal)
    {
        foreach (var pid in Live(cgroup))
        {
            _ = Libc.kill(pid, signal);
        }
    }

    /// <summary>
    /// SIGKILL to every process in the cgroup until it is empty (a process may fork between the
    /// read and the kill; a few rounds catch its children). False if it is not empty after that.
    /// </summary>
    public static bool KillAll(ICgroup cgroup)
    {
        for (var round = 0; round < 40; round++)
        {
            if (Live(cgroup).Count == 0)
            {
                return true;
            }
            Signal(cgroup, 9);
            Thread.Sleep(50);
        }
        return Live(cgroup).Count == 0;
    }

    private static bool IsZombie(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");
            var close = stat.LastIndexOf(')');
            return close > 0 && close + 2 < stat.Length && stat[close + 2] == 'Z';
        }
        catch (IOException)
        {
            return true; // gone
        }
    }
}

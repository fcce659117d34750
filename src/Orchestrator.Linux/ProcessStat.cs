using System.Globalization;

namespace Orchestrator.Linux;

/// <summary>A process's identity beyond its pid (pids are reused): its start time in clock ticks since boot.</summary>
public static class ProcessStat
{
    /// <summary>The start time (field 22 of /proc/pid/stat), or null when the process is gone or a zombie.</summary>
    public static ulong? StartTime(int pid)
    {
        if (pid <= 0)
        {
            return null;
        }
        try
        {
            var stat = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");
            // Fields after the command (which may hold spaces and parentheses): state is field 3, starttime field 22.
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return fields[0] is "Z" or "X" ? null : ulong.Parse(fields[19], CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or FormatException or IndexOutOfRangeException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>True when <paramref name="pid"/> runs and is the process that started at <paramref name="startTime"/>.</summary>
    public static bool IsSame(int pid, ulong startTime) => StartTime(pid) == startTime;

    /// <summary>Writes a helper's pid file: "PID STARTTIME", whole (a temporary file renamed over it).</summary>
    public static void WritePidFile(string path, int pid)
    {
        var temp = path + ".tmp";
        File.WriteAllText(temp, $"{pid.ToString(CultureInfo.InvariantCulture)} {(StartTime(pid) ?? 0).ToString(CultureInfo.InvariantCulture)}");
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>The process a pid file (<see cref="WritePidFile"/>) names, if that very process still runs; else null.</summary>
    public static int? ReadPidFile(string path)
    {
        try
        {
            if (File.ReadAllText(path).Split(' ') is [var p, var t]
                && int.TryParse(p, CultureInfo.InvariantCulture, out var pid)
                && ulong.TryParse(t, CultureInfo.InvariantCulture, out var start)
                && IsSame(pid, start))
            {
                return pid;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return null;
    }
}

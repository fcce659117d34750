using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Orchestrator.Testing;

namespace Orchestrator.Bench;

/// <summary>
/// Start-to-exit latency (create + start + wait + delete of /bin/true in the same busybox bundle)
/// and peak RSS of orch-runc, crun and runc as whole commands, and of the runtime library in one
/// process (orchd's path), in interleaved rounds: every round runs each of them once, in a
/// rotating order, so that load from the rest of the machine falls on all of them alike. Four
/// phases: quiet and loaded (two busy loops started here), back to back and 250 ms apart.
/// Everything runs inside one private mount namespace where /sys/fs/cgroup/unified is
/// unmounted, because crun 1.8 refuses this machine's hybrid cgroups otherwise: all of them see
/// the same cgroup v1 setup. Times are wall clock from posix_spawn to wait4 of the runtime itself.
/// Peak RSS comes from a second run of each in the same round under /usr/bin/time -f %M (wait4's
/// ru_maxrss of its child): a child of this process would report this process's own RSS, because
/// posix_spawn's vfork-style child is charged the parent's high-water mark at its exec.
/// </summary>
internal static partial class RuntimeBench
{
    private sealed record Settings(string Bundle, string Work, int Runs, List<Runner> Runners);

    private sealed record Runner(string Label, string Path, bool InProcess);

    /// <param name="also">More CLIs to run alongside (label, path), e.g. an older orch-runc to compare with.</param>
    public static async Task<int> RunAsync(int runs, IReadOnlyList<(string Label, string Path)> also)
    {
        var orchRunc = Repo.Binary("orch-runc");
        var crun = Requires.Which("crun") ?? throw new InvalidOperationException("crun is not installed; apt-get install crun (make bench does)");
        var runc = Requires.Which("runc") ?? throw new InvalidOperationException("runc is not installed; apt-get install runc (make bench does)");
        using var bundle = OciBundle.CreateBusybox("/bin/true");
        using var work = new TempDir("bench-runtime");
        List<Runner> runners =
        [
            new("orch-runc run", orchRunc, false),
            new("crun run", crun, false),
            new("runc run", runc, false),
            new("in-process (orch-runc bench-inprocess)", orchRunc, true),
            .. also.Select(a => new Runner(a.Label, Path.GetFullPath(a.Path), false)),
        ];
        var settingsPath = work.Combine("settings.json");
        await File.WriteAllTextAsync(settingsPath, JsonSerializer.Serialize(new Settings(bundle.Path, work.Path, runs, runners), SettingsJson.Default.Settings));

        // This program again, inside the namespace: the apphost, or `dotnet Orchestrator.Bench.dll`.
        var self = Environment.ProcessPath!;
        List<string> selfArgs = Path.GetFileName(self) == "dotnet" ? [self, typeof(RuntimeBench).Assembly.Location] : [self];
        var psi = new ProcessStartInfo("unshare") { UseShellExecute = false };
        foreach (var a in (string[])["-m", "--propagation", "private", "sh", "-c", "umount /sys/fs/cgroup/unified 2>/dev/null; exec \"$@\"", "sh", .. selfArgs, "--runtime-inner", settingsPath])
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        await p.WaitForExitAsync();
        if (p.ExitCode != 0)
        {
            Console.Error.WriteLine($"runtime bench failed ({p.ExitCode}); logs in {work.Path} are removed with it: rerun with --only runtime to see them");
        }
        return p.ExitCode;
    }

    /// <summary>The rounds, inside the private mount namespace (Program.cs calls this for --runtime-inner).</summary>
    public static int Inner(string settingsPath)
    {
        var settings = JsonSerializer.Deserialize(File.ReadAllText(settingsPath), SettingsJson.Default.Settings)!;
        var runners = settings.Runners;
        Console.WriteLine($"## Runtime: /bin/true in a busybox bundle, interleaved rounds, {DateTime.UtcNow:yyyy-MM-dd HH:mm}Z, {Environment.ProcessorCount} cpus");
        Console.WriteLine();
        Console.WriteLine("Each round runs every runtime once, in rotating order. Times: spawn to reaped, wall clock. RSS: wait4's ru_maxrss.");
        Console.WriteLine($"crun: {Version(runners[1].Path)}; runc: {Version(runners[2].Path)}");
        Console.WriteLine();
        var round = 0;
        // Warm the page cache and the cgroup hierarchy first; not counted.
        for (var i = 0; i < 3; i++)
        {
            for (var k = 0; k < runners.Count; k++)
            {
                Measure(settings, k, runners[k], $"w{i}", withTime: false);
            }
        }
        var failed = false;
        foreach (var (name, load, gapMs, rounds) in new[]
                 {
                     ("quiet, back to back", 0, 0, settings.Runs),
                     ("quiet, 250 ms apart", 0, 250, Math.Min(settings.Runs, 20)),
                     ("loaded (2 busy loops), back to back", 2, 0, settings.Runs),
                     ("loaded (2 busy loops), 250 ms apart", 2, 250, Math.Min(settings.Runs, 20)),
                 })
        {
            var loops = Enumerable.Range(0, load).Select(_ => Spawn(["/bin/sh", "-c", "while :; do :; done"], "/dev/null")).ToList();
            var loadBefore = LoadAverage();
            var times = runners.Select(_ => new List<double>()).ToArray();
            var rss = runners.Select(_ => new List<long>()).ToArray();
            for (var n = 0; n < rounds; n++, round++)
            {
                for (var k = 0; k < runners.Count; k++)
                {
                    var i = (k + round) % runners.Count;
                    if (gapMs > 0)
                    {
                        Thread.Sleep(gapMs);
                    }
                    var tag = round.ToString(CultureInfo.InvariantCulture);
                    var (ms, _, ok) = Measure(settings, i, runners[i], tag, withTime: false);
                    var (_, maxRssKiB, rssOk) = Measure(settings, i, runners[i], tag + "m", withTime: true);
                    failed |= !ok || !rssOk;
                    times[i].Add(ms);
                    rss[i].Add(maxRssKiB);
                }
            }
            foreach (var pid in loops)
            {
                _ = kill(pid, 9);
                Reap(pid);
            }
            Print(name, rounds, loadBefore, LoadAverage(), runners, times, rss);
        }
        return failed ? 1 : 0;
    }

    private static void Print(string phase, int rounds, string loadBefore, string loadAfter, List<Runner> runners, List<double>[] times, List<long>[] rss)
    {
        Console.WriteLine($"### {phase}: {rounds} rounds, load average {loadBefore} → {loadAfter}");
        Console.WriteLine();
        Console.WriteLine("| runtime | median | p90 | vs crun (ratio of medians) | vs crun (median of per-round ratios) | peak RSS, median (max) |");
        Console.WriteLine("|---|---|---|---|---|---|");
        var crun = Median(times[1]);
        for (var i = 0; i < runners.Count; i++)
        {
            var paired = Median(times[i].Zip(times[1], (a, b) => a / b).ToList());
            var rssText = runners[i].InProcess
                ? $"{Mib(Median(rss[i]))} MiB (the whole process, 2 runs)"
                : $"{Mib(Median(rss[i]))} MiB = {Median(rss[i]) * 1024 / 1e6:F1} MB ({Mib(rss[i].Max())} MiB)";
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {runners[i].Label} | {Median(times[i]):F1} ms | {Percentile(times[i], 0.9):F1} ms | {Median(times[i]) / crun:F2}× | {paired:F2}× | {rssText} |"));
        }
        Console.WriteLine();
        var orch = Median(times[0]) / crun;
        var inproc = Median(times[3]) / crun;
        var orchRss = rss[0].Max() * 1024;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"targets: orch-runc ≤ 1.5× crun: {(orch <= 1.5 ? "met" : "MISSED")} ({orch:F2}×); orch-runc peak RSS ≤ 8 MB: {(orchRss <= 8_000_000 ? "met" : "MISSED")} (max of the phase {orchRss / 1e6:F2} MB); in-process ≤ 0.5× crun: {(inproc <= 0.5 ? "met" : "MISSED")} ({inproc:F2}×)"));
        Console.WriteLine();
    }

    private static string Mib(double kib) => (kib / 1024).ToString("F1", CultureInfo.InvariantCulture);

    /// <summary>One run of one runtime: milliseconds, peak RSS in KiB, and whether it exited 0.</summary>
    private static (double Ms, long MaxRssKiB, bool Ok) Measure(Settings s, int index, Runner r, string tag, bool withTime)
    {
        var id = $"b{index}r{tag}";
        var log = Path.Combine(s.Work, id + ".log");
        var rssFile = Path.Combine(s.Work, id + ".rss");
        var root = Path.Combine(s.Work, $"root{index}");
        string[] argv = r.InProcess
            ? [r.Path, "--root", root, "bench-inprocess", "--bundle", s.Bundle, "--runs", "1"]
            : [r.Path, "--root", root, "run", "--bundle", s.Bundle, id];
        if (withTime)
        {
            argv = ["/usr/bin/time", "-f", "%M", "-o", rssFile, .. argv];
        }
        var started = Stopwatch.GetTimestamp();
        var pid = Spawn(argv, log);
        var (status, maxRss) = Reap(pid);
        var ms = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        if (withTime)
        {
            maxRss = status == 0 ? long.Parse(File.ReadAllText(rssFile).Trim(), CultureInfo.InvariantCulture) : 0;
            File.Delete(rssFile);
        }
        var ok = status == 0;
        if (!ok)
        {
            Console.Error.WriteLine($"{r.Label} exited with wait status {status}: {File.ReadAllText(log).Trim()}");
        }
        if (r.InProcess && ok)
        {
            // bench-inprocess prints the runtime's own timing of the run after its warm-up: orchd's case.
            var line = File.ReadAllLines(log).First(l => l.StartsWith('['));
            ms = double.Parse(line.Trim('[', ']'), CultureInfo.InvariantCulture);
        }
        File.Delete(log);
        return (ms, maxRss, ok);
    }

    private static string LoadAverage() => string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));

    private static string Version(string path)
    {
        var log = Path.GetTempFileName();
        var pid = Spawn([path, "--version"], log);
        Reap(pid);
        var text = File.ReadLines(log).FirstOrDefault() ?? "?";
        File.Delete(log);
        return text;
    }

    private static double Median(List<double> values) => Percentile(values, 0.5);

    private static double Median(List<long> values) => Percentile(values.Select(v => (double)v).ToList(), 0.5);

    private static double Percentile(List<double> values, double p)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0)
        {
            return double.NaN;
        }
        var rank = p * (sorted.Length - 1);
        var lo = (int)Math.Floor(rank);
        var hi = (int)Math.Ceiling(rank);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
    }

    // posix_spawn + wait4 rather than Process: wait4 hands back the child's rusage (peak RSS), and
    // the runtime under test is started as directly as hyperfine -N or a shim would start it.
    private static unsafe int Spawn(string[] argv, string outputFile)
    {
        var env = Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>().Select(e => $"{e.Key}={e.Value}").ToArray();
        var strings = new List<IntPtr>();
        var fileActions = Marshal.AllocHGlobal(256); // posix_spawn_file_actions_t is 80 bytes on glibc
        try
        {
            var argvPtr = stackalloc byte*[argv.Length + 1];
            for (var i = 0; i < argv.Length; i++)
            {
                strings.Add(Marshal.StringToCoTaskMemUTF8(argv[i]));
                argvPtr[i] = (byte*)strings[^1];
            }
            argvPtr[argv.Length] = null;
            var envPtr = stackalloc byte*[env.Length + 1];
            for (var i = 0; i < env.Length; i++)
            {
                strings.Add(Marshal.StringToCoTaskMemUTF8(env[i]));
                envPtr[i] = (byte*)strings[^1];
            }
            envPtr[env.Length] = null;
            Check(posix_spawn_file_actions_init(fileActions), "posix_spawn_file_actions_init");
            const int WriteCreateTruncate = 0x1 | 0x40 | 0x200; // O_WRONLY | O_CREAT | O_TRUNC
            Check(posix_spawn_file_actions_addopen(fileActions, 1, outputFile, WriteCreateTruncate, 0x1a4), "addopen");
            Check(posix_spawn_file_actions_adddup2(fileActions, 1, 2), "adddup2");
            Check(posix_spawn_file_actions_addopen(fileActions, 0, "/dev/null", 0, 0), "addopen");
            Check(posix_spawn(out var pid, argvPtr[0], fileActions, IntPtr.Zero, argvPtr, envPtr), $"posix_spawn {argv[0]}");
            return pid;
        }
        finally
        {
            _ = posix_spawn_file_actions_destroy(fileActions);
            Marshal.FreeHGlobal(fileActions);
            foreach (var s in strings)
            {
                Marshal.FreeCoTaskMem(s);
            }
        }
    }

    private static void Check(int result, string call)
    {
        if (result != 0)
        {
            throw new InvalidOperationException($"{call} failed: error {result}");
        }
    }

    private static unsafe (int Status, long MaxRssKiB) Reap(int pid)
    {
        var rusage = stackalloc long[18]; // struct rusage: two timevals, then ru_maxrss (in KiB)
        int status;
        while (wait4(pid, &status, 0, rusage) < 0)
        {
            if (Marshal.GetLastPInvokeError() != 4) // EINTR
            {
                throw new InvalidOperationException($"wait4 {pid} failed: errno {Marshal.GetLastPInvokeError()}");
            }
        }
        return (status, rusage[4]);
    }

    [LibraryImport("libc")]
    private static unsafe partial int posix_spawn(out int pid, byte* path, IntPtr fileActions, IntPtr attributes, byte** argv, byte** envp);

    [LibraryImport("libc")]
    private static partial int posix_spawn_file_actions_init(IntPtr fileActions);

    [LibraryImport("libc")]
    private static partial int posix_spawn_file_actions_destroy(IntPtr fileActions);

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int posix_spawn_file_actions_addopen(IntPtr fileActions, int fd, string path, int flags, int mode);

    [LibraryImport("libc")]
    private static partial int posix_spawn_file_actions_adddup2(IntPtr fileActions, int fd, int newFd);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int wait4(int pid, int* status, int options, long* rusage);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);

    [System.Text.Json.Serialization.JsonSerializable(typeof(Settings))]
    private sealed partial class SettingsJson : System.Text.Json.Serialization.JsonSerializerContext;
}

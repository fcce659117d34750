using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Orchestrator.Testing;

namespace Orchestrator.Bench;

/// <summary>
/// Start-to-exit latency (create + start + wait + delete of /bin/true in the same busybox
/// bundle) and peak RSS of orchd's in-process runtime, orch-runc, crun and runc, in one run.
/// Everything runs inside one private mount namespace where /sys/fs/cgroup/unified is
/// unmounted, because crun 1.8 refuses this machine's hybrid cgroups otherwise: all four see
/// the same cgroup v1 setup.
/// </summary>
internal static class RuntimeBench
{
    public static async Task<int> RunAsync(int runs)
    {
        var orchRunc = Repo.Binary("orch-runc");
        var crun = Requires.Which("crun") ?? throw new InvalidOperationException("crun is not installed; apt-get install crun (make bench does)");
        var runc = Requires.Which("runc") ?? throw new InvalidOperationException("runc is not installed; apt-get install runc (make bench does)");
        var hyperfine = Requires.Which("hyperfine") ?? throw new InvalidOperationException("hyperfine is not installed; apt-get install hyperfine");
        using var bundle = OciBundle.CreateBusybox("/bin/true");
        using var work = new TempDir("bench-runtime");
        var json = work.Combine("hyperfine.json");
        var commands = new (string Name, string Command)[]
        {
            ("orch-runc run", $"{orchRunc} --root {work.Combine("orch")} run --bundle {bundle.Path} b-orch"),
            ("crun run", $"{crun} --root {work.Combine("crun")} run --bundle {bundle.Path} b-crun"),
            ("runc run", $"{runc} --root {work.Combine("runc")} run --bundle {bundle.Path} b-runc"),
        };
        var script = new System.Text.StringBuilder();
        script.AppendLine("set -e; umount /sys/fs/cgroup/unified 2>/dev/null || true");
        script.AppendLine($"{hyperfine} -N --style none --warmup 3 --runs {runs} --export-json {json} " + string.Join(" ", commands.Select(c => $"'{c.Command}'")) + " >/dev/null");
        // The same, 250 ms apart: the kernel's cost of moving a task into a cgroup (an RCU grace
        // period) is paid in full only when no move happened just before; real starts are spread out.
        script.AppendLine($"{hyperfine} -N --style none --runs {Math.Min(runs, 20)} --prepare 'sleep 0.25' --export-json {work.Combine("cold.json")} " + string.Join(" ", commands.Select(c => $"'{c.Command}'")) + " >/dev/null");
        foreach (var (name, command) in commands)
        {
            script.AppendLine($"for i in 1 2 3 4 5 6 7 8 9 10; do /usr/bin/time -a -o {work.Combine(name.Split(' ')[0] + ".rss")} -f %M {command}; done");
        }
        script.AppendLine($"/usr/bin/time -o {work.Combine("inproc.rss")} -f %M {orchRunc} --root {work.Combine("inproc")} bench-inprocess --bundle {bundle.Path} --runs {runs} > {work.Combine("inproc.json")}");
        script.AppendLine($"{orchRunc} --root {work.Combine("inproc2")} bench-inprocess --bundle {bundle.Path} --runs {Math.Min(runs, 20)} --pause-ms 250 > {work.Combine("inproc-cold.json")}");
        var scriptPath = work.Combine("bench.sh");
        await File.WriteAllTextAsync(scriptPath, script.ToString());

        using (var p = Process.Start("unshare", ["-m", "--propagation", "private", "sh", scriptPath]))
        {
            await p.WaitForExitAsync();
            if (p.ExitCode != 0)
            {
                Console.Error.WriteLine($"runtime bench script failed ({p.ExitCode}); see {scriptPath}");
                return 1;
            }
        }

        using var doc = JsonDocument.Parse(await File.ReadAllTextAsync(json));
        var medians = doc.RootElement.GetProperty("results").EnumerateArray().Select(r => r.GetProperty("median").GetDouble() * 1000).ToArray();
        using var coldDoc = JsonDocument.Parse(await File.ReadAllTextAsync(work.Combine("cold.json")));
        var cold = coldDoc.RootElement.GetProperty("results").EnumerateArray().Select(r => r.GetProperty("median").GetDouble() * 1000).ToArray();
        var inproc = JsonSerializer.Deserialize(await File.ReadAllTextAsync(work.Combine("inproc.json")), BenchJson.Default.DoubleArray)!;
        var inprocCold = JsonSerializer.Deserialize(await File.ReadAllTextAsync(work.Combine("inproc-cold.json")), BenchJson.Default.DoubleArray)!;
        double Rss(string file) => Median(File.ReadAllLines(work.Combine(file)).Where(l => l.Length > 0).Select(l => double.Parse(l, CultureInfo.InvariantCulture) / 1024).ToArray());
        var crunMedian = medians[1];

        Console.WriteLine($"## Runtime: /bin/true in a busybox bundle, {runs} runs, medians");
        Console.WriteLine();
        var crunCold = cold[1];
        Console.WriteLine("| runtime | back to back | vs crun | 250 ms apart | vs crun | peak RSS |");
        Console.WriteLine("|---|---|---|---|---|---|");
        Console.WriteLine($"| orchd in-process | {Median(inproc):F1} ms | {Median(inproc) / crunMedian:F2}× | {Median(inprocCold):F1} ms | {Median(inprocCold) / crunCold:F2}× | {double.Parse(File.ReadAllText(work.Combine("inproc.rss")).Trim(), CultureInfo.InvariantCulture) / 1024:F1} MiB (the whole process over {runs} runs) |");
        Console.WriteLine($"| orch-runc run | {medians[0]:F1} ms | {medians[0] / crunMedian:F2}× | {cold[0]:F1} ms | {cold[0] / crunCold:F2}× | {Rss("orch-runc.rss"):F1} MiB |");
        Console.WriteLine($"| crun run | {medians[1]:F1} ms | 1.00× | {cold[1]:F1} ms | 1.00× | {Rss("crun.rss"):F1} MiB |");
        Console.WriteLine($"| runc run | {medians[2]:F1} ms | {medians[2] / crunMedian:F2}× | {cold[2]:F1} ms | {cold[2] / crunCold:F2}× | {Rss("runc.rss"):F1} MiB |");
        Console.WriteLine();
        return 0;
    }

    private static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }
}

[System.Text.Json.Serialization.JsonSerializable(typeof(double[]))]
internal sealed partial class BenchJson : System.Text.Json.Serialization.JsonSerializerContext;

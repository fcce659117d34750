using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Orchestrator.Testing;

namespace Orchestrator.Bench;

/// <summary>
/// Per-container overhead: orchd's RSS with 0, 10 and 50 idle busybox containers (its own
/// runtime, logs pumped, exits watched), beside containerd plus its shims running the same 50
/// (`ctr run -d`, one containerd-shim-runc-v2 per container; RSS summed). Same image, same
/// machine, same run.
/// </summary>
internal static class NodeBench
{
    public static async Task<int> RunAsync()
    {
        var orchd = Repo.Binary("orchd");
        var runc = Repo.Binary("orch-runc"); // the runtime's command line (list, delete) is orch-runc's
        using var work = new TempDir("bench-node");
        await using var nats = await NatsServer.StartAsync();
        var layout = work.Combine("layout");
        BusyboxImage.CreateLayout(layout);
        var state = work.Combine("state");
        var run = work.Combine("run");
        var manifests = work.Combine("manifests");
        Directory.CreateDirectory(manifests);
        await using (var import = DaemonProcess.Start(orchd, ["image", "import", layout, "--name", "busybox:latest", "--state-dir", state, "--config", "/dev/null"]))
        {
            if (await import.WaitForExitAsync(TimeSpan.FromSeconds(60)) != 0)
            {
                Console.Error.WriteLine($"orchd image import failed:\n{import.Output}");
                return 1;
            }
        }

        Console.WriteLine($"## Node: per-container overhead, {DateTime.UtcNow:yyyy-MM-dd HH:mm}Z, {Environment.ProcessorCount} cpus");
        Console.WriteLine();
        var orchdRss = new SortedDictionary<int, double>();
        double afterAll = 0, tenAgain = 0;
        (long StorageBytes, long WrittenBytes, TimeSpan Window) flash = default;
        // ORCH_BENCH_ORCHD_ENV="NAME=VALUE NAME=VALUE": environment for orchd (GC settings tried against the figures below).
        var env = (Environment.GetEnvironmentVariable("ORCH_BENCH_ORCHD_ENV") ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Select(kv => kv.Split('=', 2)).ToDictionary(kv => kv[0], kv => (string?)kv[1], StringComparer.Ordinal);
        if (env.Count > 0)
        {
            Console.WriteLine($"orchd's environment: {string.Join(" ", env.Select(kv => $"{kv.Key}={kv.Value}"))}");
        }
        var daemon = DaemonProcess.Start(orchd, ["--config", "/dev/null", "--node-name", "bench", "--state-dir", state, "--run-dir", run,
            "--manifest-dir", manifests, "--nats-url", nats.Url, "--bridge", "none", "--log-level", "warn"], env);
        var runtimeRoot = Path.Combine(run, "runtime");
        try
        {
            await Task.Delay(3000);
            foreach (var count in new[] { 0, 10, 50, 100 })
            {
                for (var i = 0; i < count; i++)
                {
                    File.WriteAllText(Path.Combine(manifests, $"idle{i:000}.yaml"),
                        $"name: idle{i:000}\nimage: busybox:latest\ncommand: [sleep, \"1000000\"]\nnetwork: none\n");
                }
                if (!await UntilRunningAsync(runc, runtimeRoot, daemon, n => n >= count, $"{count} containers running"))
                {
                    return 1;
                }
                await Task.Delay(5000); // settle: startup garbage collected, pages touched once
                orchdRss[count] = Median(Enumerable.Range(0, 5).Select(_ => { Thread.Sleep(200); return daemon.RssKiB() / 1024.0; }).ToList());
                Console.WriteLine($"{count} running: orchd {Breakdown(daemon.Pid)}");
            }

            // Issue 23, item 2: memory given back. The 100 go away, then 10 of them come back:
            // RSS should be within 2 MiB of the idle figure (0), and of the figure at 10.
            foreach (var file in Directory.GetFiles(manifests))
            {
                File.Delete(file);
            }
            if (!await UntilRunningAsync(runc, runtimeRoot, daemon, n => n == 0, "every container gone"))
            {
                return 1;
            }
            await Task.Delay(15000);
            afterAll = Median(Enumerable.Range(0, 5).Select(_ => { Thread.Sleep(200); return daemon.RssKiB() / 1024.0; }).ToList());
            Console.WriteLine($"0 running after 100 came and went: orchd {Breakdown(daemon.Pid)}");
            if (Environment.GetEnvironmentVariable("ORCH_BENCH_NODE_LOG") == "1")
            {
                Console.WriteLine(daemon.Output);
                Console.WriteLine(LargestMappings(daemon.Pid));
            }
            for (var i = 0; i < 10; i++)
            {
                File.WriteAllText(Path.Combine(manifests, $"back{i:00}.yaml"),
                    $"name: back{i:00}\nimage: busybox:latest\ncommand: [sleep, \"1000000\"]\nnetwork: none\n");
            }
            if (!await UntilRunningAsync(runc, runtimeRoot, daemon, n => n >= 10, "10 containers running again"))
            {
                return 1;
            }
            await Task.Delay(5000);
            tenAgain = Median(Enumerable.Range(0, 5).Select(_ => { Thread.Sleep(200); return daemon.RssKiB() / 1024.0; }).ToList());
            Console.WriteLine($"10 running again: orchd {Breakdown(daemon.Pid)}");

            // Issue 23, item 5: orchd's own writes while idle with 5 containers (state, records,
            // its logs; the containers write nothing), from /proc/PID/io over a quiet window.
            for (var i = 5; i < 10; i++)
            {
                File.Delete(Path.Combine(manifests, $"back{i:00}.yaml"));
            }
            if (!await UntilRunningAsync(runc, runtimeRoot, daemon, n => n == 5, "5 containers running"))
            {
                return 1;
            }
            await Task.Delay(5000);
            var window = TimeSpan.FromSeconds(int.TryParse(Environment.GetEnvironmentVariable("ORCH_BENCH_FLASH_SECONDS"), out var fs) ? fs : 120);
            var (writeBefore, wcharBefore) = Io(daemon.Pid);
            await Task.Delay(window);
            var (writeAfter, wcharAfter) = Io(daemon.Pid);
            flash = (writeAfter - writeBefore, wcharAfter - wcharBefore, window);
            foreach (var file in Directory.GetFiles(manifests))
            {
                File.Delete(file);
            }
            await UntilRunningAsync(runc, runtimeRoot, daemon, n => n == 0, "every container gone");
        }
        finally
        {
            await daemon.DisposeAsync();
            foreach (var id in Directory.Exists(runtimeRoot) ? Directory.GetDirectories(runtimeRoot).Select(Path.GetFileName) : [])
            {
                await RunAsync(runc, ["--root", runtimeRoot, "delete", "--force", id!]);
            }
            foreach (var mount in File.ReadAllLines("/proc/self/mountinfo").Select(l => l.Split(' ')[4]).Where(m => m.StartsWith(work.Path, StringComparison.Ordinal)))
            {
                await RunAsync("/usr/bin/umount", ["-l", mount]);
            }
        }

        // containerd with 50 of the same (ORCH_BENCH_NODE_ORCHD_ONLY=1 leaves it out: orchd's figures only).
        double containerdMiB = double.NaN, shimsMiB = double.NaN;
        if (Environment.GetEnvironmentVariable("ORCH_BENCH_NODE_ORCHD_ONLY") != "1")
        {
            await using (var containerd = await ContainerdServer.StartAsync())
            {
                var ns = $"bench-{Guid.NewGuid():N}"[..14];
                var archive = work.Combine("busybox.tar");
                BusyboxImage.CreateArchive(archive);
                await containerd.Ctr(ns, "image", "import", "--base-name", "docker.io/library/busybox", archive);
                for (var i = 0; i < 50; i++)
                {
                    var started = await containerd.Ctr(ns, "run", "-d", "docker.io/library/busybox:latest", $"idle{i:00}", "sleep", "1000000");
                    if (started.Code != 0)
                    {
                        Console.Error.WriteLine($"ctr run failed: {started.Stderr}");
                        return 1;
                    }
                }
                await Task.Delay(5000);
                var containerdPid = Process.GetProcessesByName("containerd").Select(p => p.Id).First(pid => CommandLine(pid).Contains(containerd.Socket.Replace("containerd.sock", "config.toml", StringComparison.Ordinal), StringComparison.Ordinal));
                containerdMiB = RssKiB(containerdPid) / 1024.0;
                var shims = Process.GetProcessesByName("containerd-shim-runc-v2").Select(p => p.Id).Where(pid => CommandLine(pid).Contains($"-namespace {ns}", StringComparison.Ordinal) || CommandLine(pid).Contains(ns, StringComparison.Ordinal)).ToList();
                shimsMiB = shims.Sum(pid => RssKiB(pid)) / 1024.0;
                Console.WriteLine($"containerd shims found: {shims.Count}");
                for (var i = 0; i < 50; i++)
                {
                    await containerd.Ctr(ns, "task", "kill", "-s", "SIGKILL", $"idle{i:00}");
                }
                await Task.Delay(1000);
                for (var i = 0; i < 50; i++)
                {
                    await containerd.Ctr(ns, "task", "delete", $"idle{i:00}");
                    await containerd.Ctr(ns, "container", "delete", $"idle{i:00}");
                }
            }
        }

        var perContainer = (orchdRss[50] - orchdRss[0]) / 50 * 1024;
        Console.WriteLine("| containers | orchd RSS | containerd + shims RSS |");
        Console.WriteLine("|---|---|---|");
        Console.WriteLine($"| 0 | {orchdRss[0]:F1} MiB | |");
        Console.WriteLine($"| 10 | {orchdRss[10]:F1} MiB | |");
        Console.WriteLine($"| 50 | {orchdRss[50]:F1} MiB | {containerdMiB + shimsMiB:F1} MiB (containerd {containerdMiB:F1} + 50 shims {shimsMiB:F1}) |");
        Console.WriteLine();
        Console.WriteLine($"orchd growth: {perContainer:F0} KiB per container (target ≤ 512); total at 50: {orchdRss[50] / (containerdMiB + shimsMiB):F3}× containerd's stack (target ≤ 0.1)");
        Console.WriteLine();
        Console.WriteLine("Memory given back (issue 23, item 2): 100 containers came and went, then 10 came back.");
        Console.WriteLine();
        Console.WriteLine("| state | orchd RSS | against the same count before | target |");
        Console.WriteLine("|---|---|---|---|");
        Console.WriteLine($"| 100 running | {orchdRss[100]:F1} MiB | | |");
        Console.WriteLine($"| 0 running, after the 100 | {afterAll:F1} MiB | {afterAll - orchdRss[0]:+0.0;-0.0} MiB against idle | ≤ +2 MiB: {(afterAll - orchdRss[0] <= 2 ? "met" : "**missed**")} |");
        Console.WriteLine($"| 10 running again | {tenAgain:F1} MiB | {tenAgain - orchdRss[10]:+0.0;-0.0} MiB against the first 10 | ≤ +2 MiB: {(tenAgain - orchdRss[10] <= 2 ? "met" : "**missed**")} |");
        Console.WriteLine();
        var perDay = TimeSpan.FromDays(1) / flash.Window;
        Console.WriteLine($"orchd's own writes, idle with 5 containers, over {flash.Window.TotalSeconds:0} s (issue 23, item 5): "
            + $"{flash.StorageBytes} bytes to storage (write_bytes), {flash.WrittenBytes} bytes written (wchar): "
            + $"{flash.StorageBytes * perDay / 1e6:F2} MB/day to storage (target ≤ 5: {(flash.StorageBytes * perDay / 1e6 <= 5 ? "met" : "**missed**")}), {flash.WrittenBytes * perDay / 1e6:F2} MB/day written");
        Console.WriteLine();
        return 0;
    }

    private static async Task<bool> UntilRunningAsync(string runc, string runtimeRoot, DaemonProcess daemon, Func<int, bool> done, string what)
    {
        var deadline = DateTime.UtcNow.AddMinutes(4);
        int running;
        while (!done(running = await RunningAsync(runc, runtimeRoot)))
        {
            if (DateTime.UtcNow > deadline || daemon.HasExited)
            {
                Console.Error.WriteLine($"orchd did not reach '{what}' ({running} running):\n{daemon.Output}");
                return false;
            }
            await Task.Delay(500);
        }
        return true;
    }

    /// <summary>/proc/PID/io: bytes the process caused to be sent to storage, and bytes it passed to write(2) and friends.</summary>
    private static (long WriteBytes, long Wchar) Io(int pid)
    {
        long Field(string name) => long.Parse(File.ReadLines($"/proc/{pid}/io").First(l => l.StartsWith(name + ":", StringComparison.Ordinal))[(name.Length + 1)..].Trim(), CultureInfo.InvariantCulture);
        return (Field("write_bytes"), Field("wchar"));
    }

    /// <summary>The ten mappings with the most resident memory (smaps): where the anonymous part lives.</summary>
    private static string LargestMappings(int pid)
    {
        var rows = new List<(string Head, long Rss)>();
        string? head = null;
        foreach (var line in File.ReadLines($"/proc/{pid}/smaps"))
        {
            if (line.Length > 0 && char.IsAsciiHexDigit(line[0]) && line.Contains('-', StringComparison.Ordinal) && !line.Contains(':', StringComparison.Ordinal) || (line.Length > 0 && char.IsAsciiHexDigit(line[0]) && line.IndexOf(' ') is > 0 and var sp && line[..sp].Contains('-', StringComparison.Ordinal)))
            {
                head = line;
            }
            else if (line.StartsWith("Rss:", StringComparison.Ordinal) && head is not null)
            {
                rows.Add((head, long.Parse(line["Rss:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture)));
            }
        }
        return string.Join("\n", rows.OrderByDescending(r => r.Rss).Take(10).Select(r => $"{r.Rss,8} KiB  {r.Head}"));
    }

    /// <summary>RSS and its anonymous and file parts (VmRSS, RssAnon, RssFile), in MiB.</summary>
    private static string Breakdown(int pid)
    {
        double Field(string name) => long.Parse(File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith(name + ":", StringComparison.Ordinal))[(name.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) / 1024.0;
        return $"{Field("VmRSS"):F1} MiB (anonymous {Field("RssAnon"):F1}, file {Field("RssFile"):F1}), {Directory.GetFiles($"/proc/{pid}/task").Length + Directory.GetDirectories($"/proc/{pid}/task").Length} threads";
    }

    private static async Task<int> RunningAsync(string runc, string root)
    {
        if (!Directory.Exists(root))
        {
            return 0;
        }
        await using var list = DaemonProcess.Start(runc, ["--root", root, "list", "--format", "json"]);
        await list.WaitForExitAsync(TimeSpan.FromSeconds(30));
        var text = string.Join("\n", list.Stdout);
        if (text.Length == 0 || text == "null")
        {
            return 0;
        }
        using var doc = JsonDocument.Parse(text);
        return doc.RootElement.EnumerateArray().Count(e => e.GetProperty("status").GetString() == "running");
    }

    private static async Task RunAsync(string binary, string[] args)
    {
        await using var process = DaemonProcess.Start(binary, args);
        await process.WaitForExitAsync(TimeSpan.FromSeconds(60));
    }

    private static string CommandLine(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ');
        }
        catch (IOException)
        {
            return "";
        }
    }

    private static long RssKiB(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
    }

    private static double Median(List<double> values)
    {
        values.Sort();
        return values[values.Count / 2];
    }
}

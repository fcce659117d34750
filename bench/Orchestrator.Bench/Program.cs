using System.Diagnostics;
using System.Globalization;
using Orchestrator.Testing;

// make bench: whole-process figures for the published binaries, each next to a competitor
// doing the same job in the same run, medians of several runs. Not a test: nothing here fails
// on a number; it prints them for docs/benchmarks.md.
if (args is ["--runtime-inner", var runtimeSettings])
{
    // The runtime section's rounds, started by RuntimeBench inside a private mount namespace.
    return Orchestrator.Bench.RuntimeBench.Inner(runtimeSettings);
}

var runs = 15;
var idleSeconds = 10;
var sections = new HashSet<string>(StringComparer.Ordinal) { "daemon", "runtime", "images", "node", "fleet", "global", "hub", "containerd", "forward", "names" };
var fleet = new Orchestrator.Bench.FleetBenchSettings();
var global = new Orchestrator.Bench.GlobalBenchSettings();
var hub = new Orchestrator.Bench.HubWritesSettings();
var runtimeAlso = new List<(string Label, string Path)>();
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--bin": Environment.SetEnvironmentVariable("ORCH_BIN_DIR", Path.GetFullPath(args[++i])); break;
        case "--runs": runs = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--idle-seconds": idleSeconds = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--only": sections = [args[++i]]; break;
        case "--fleet-nodes": fleet = fleet with { Nodes = int.Parse(args[++i], CultureInfo.InvariantCulture) }; break;
        case "--fleet-deployments": fleet = fleet with { Deployments = int.Parse(args[++i], CultureInfo.InvariantCulture) }; break;
        case "--fleet-replicas": fleet = fleet with { Replicas = int.Parse(args[++i], CultureInfo.InvariantCulture) }; break;
        case "--fleet-heartbeat": fleet = fleet with { HeartbeatSeconds = double.Parse(args[++i], CultureInfo.InvariantCulture) }; break;
        case "--fleet-requests": fleet = fleet with { Requests = int.Parse(args[++i], CultureInfo.InvariantCulture) }; break;
        case "--global-nodes": global = global with { Nodes = int.Parse(args[++i], CultureInfo.InvariantCulture) }; break;
        case "--global-hold": global = global with { HoldSeconds = int.Parse(args[++i], CultureInfo.InvariantCulture) }; break;
        case "--global-deployments": global = global with { Deployments = int.Parse(args[++i], CultureInfo.InvariantCulture) }; break;
        case "--global-cost-nodes": global = global with { CostNodes = int.Parse(args[++i], CultureInfo.InvariantCulture) }; break;
        case "--hub-nodes": hub = hub with { Nodes = int.Parse(args[++i], CultureInfo.InvariantCulture) }; break;
        case "--hub-containers": hub = hub with { ContainersPerNode = int.Parse(args[++i], CultureInfo.InvariantCulture) }; break;
        case "--hub-heartbeat": hub = hub with { HeartbeatSeconds = double.Parse(args[++i], CultureInfo.InvariantCulture) }; break;
        case "--hub-seconds": hub = hub with { Seconds = int.Parse(args[++i], CultureInfo.InvariantCulture) }; break;
        case "--hub-nodes-in-memory": hub = hub with { NodesInMemory = true }; break;
        case "--runtime-also": // LABEL=PATH: another runc-compatible CLI in the runtime rounds (an older orch-runc, say)
            var also = args[++i].Split('=', 2);
            runtimeAlso.Add((also[0], also[1]));
            break;
        default:
            Console.Error.WriteLine($"usage: bench [--bin DIR] [--runs N] [--idle-seconds S] [--only daemon|runtime|images|node|fleet|hub|containerd|forward]"
                + $" [--fleet-nodes N] [--fleet-deployments N] [--fleet-replicas N] [--fleet-heartbeat S] [--fleet-requests N]"
                + $" [--global-nodes N] [--global-hold S] [--global-deployments N] [--global-cost-nodes N] [--hub-nodes N] [--hub-containers N] [--hub-heartbeat S] [--hub-seconds S] [--hub-nodes-in-memory] [--runtime-also LABEL=PATH]; unknown '{args[i]}'");
            return 2;
    }
}

if (sections.Contains("fleet"))
{
    var rc = await Orchestrator.Bench.FleetBench.RunAsync(fleet);
    if (rc != 0 || sections.Count == 1)
    {
        return rc;
    }
}

if (sections.Contains("global"))
{
    var rc = Orchestrator.Bench.GlobalRolloutBench.Run(global);
    if (rc != 0 || sections.Count == 1)
    {
        return rc;
    }
}

if (sections.Contains("hub"))
{
    var rc = await Orchestrator.Bench.HubWritesBench.RunAsync(hub);
    if (rc != 0 || sections.Count == 1)
    {
        return rc;
    }
}

if (sections.Contains("containerd"))
{
    var rc = await Orchestrator.Bench.ContainerdBench.RunAsync(Math.Max(runs, 20));
    if (rc != 0 || sections.Count == 1)
    {
        return rc;
    }
}

if (sections.Contains("forward"))
{
    var rc = await Orchestrator.Bench.PortForwardBench.RunAsync(Math.Min(runs, 5));
    if (rc != 0 || sections.Count == 1)
    {
        return rc;
    }
}

if (sections.Contains("names"))
{
    var rc = await Orchestrator.Bench.ServiceNamesBench.RunAsync(Math.Min(runs, 5));
    if (rc != 0 || sections.Count == 1)
    {
        return rc;
    }
}

if (sections.Contains("node"))
{
    var rc = await Orchestrator.Bench.NodeBench.RunAsync();
    if (rc != 0 || sections.Count == 1)
    {
        return rc;
    }
}

if (sections.Contains("images"))
{
    var rc = await Orchestrator.Bench.ImageBench.RunAsync(3);
    if (rc != 0 || sections.Count == 1)
    {
        return rc;
    }
}

if (sections.Contains("runtime"))
{
    var rc = await Orchestrator.Bench.RuntimeBench.RunAsync(Math.Max(runs, 30), runtimeAlso);
    if (rc != 0 || !sections.Contains("daemon"))
    {
        return rc;
    }
}

var orchd = Repo.Binary("orchd");
var containerd = Requires.Which("containerd");
Console.WriteLine($"# orchd foundation benchmark, {DateTime.UtcNow:yyyy-MM-dd HH:mm}Z, {Environment.ProcessorCount} cpus, {runs} runs, medians");
Console.WriteLine($"# orchd: {orchd}");
Console.WriteLine($"# competitor: {(containerd is null ? "containerd not installed (apt-get install containerd)" : containerd + " " + Version(containerd, "--version"))}");
Console.WriteLine();

await using var nats = await NatsServer.StartAsync();

// 1. Cold start to READY=1: spawn to the sd_notify datagram, a fresh state dir every run.
var orchdStart = new List<double>();
var containerdStart = new List<double>();
for (var run = 0; run < runs; run++)
{
    using var dir = new TempDir("bench-orchd");
    orchdStart.Add(await StartToReadyAsync(orchd,
        ["--node-name", "bench", "--state-dir", dir.Combine("state"), "--run-dir", dir.Combine("run"), "--nats-url", nats.Url, "--config", WriteEmpty(dir), "--log-level", "warn"]));
    if (containerd is not null)
    {
        using var cdir = new TempDir("bench-containerd");
        containerdStart.Add(await StartToReadyAsync(containerd, ["--config", ContainerdConfig(cdir), "--log-level", "warn"]));
    }
}

// 2. Idle RSS after connecting to NATS and sitting idle: three instances side by side, the median.
const int Instances = 3;
var (orchdSamples, orchdBreakdown) = await IdleRssAsync(i =>
{
    var dir = new TempDir("bench-orchd-idle");
    return (dir, orchd, new[] { "--node-name", $"bench-{i}", "--state-dir", dir.Combine("state"), "--run-dir", dir.Combine("run"), "--nats-url", nats.Url, "--config", WriteEmpty(dir), "--log-level", "warn" },
        // "STATUS=0 containers, connected to nats://…" since the status names the containers (it once began "connected").
        (Func<string, bool>)(m => m.StartsWith("STATUS=", StringComparison.Ordinal) && m.Contains("connected to", StringComparison.Ordinal)));
}, Instances, idleSeconds);
var natsRss = RssOf(NatsPid(nats));
var containerdSamples = new List<double>();
if (containerd is not null)
{
    (containerdSamples, _) = await IdleRssAsync(i =>
    {
        var dir = new TempDir("bench-containerd-idle");
        return (dir, containerd, new[] { "--config", ContainerdConfig(dir), "--log-level", "warn" }, (Func<string, bool>)(m => m == "READY=1"));
    }, Instances, idleSeconds);
}
var orchdRss = Median(orchdSamples);
var containerdRss = containerdSamples.Count > 0 ? Median(containerdSamples) : 0;

// 3. Sizes of what we ship.
var sizes = new[] { "orchd", "orchctl", "orch-runc" }.Select(n => (Name: n, Bytes: new FileInfo(Repo.Binary(n)).Length)).ToArray();

Console.WriteLine("| measure | orchd | containerd | ratio (orchd / containerd) | target |");
Console.WriteLine("|---|---|---|---|---|");
var os = Median(orchdStart);
var cs = containerdStart.Count > 0 ? Median(containerdStart) : double.NaN;
Console.WriteLine($"| cold start to READY=1 (median of {runs}) | {os:F1} ms | {Show(cs, "ms")} | {Ratio(os, cs)} | ≤ 50 ms |");
Console.WriteLine($"| start to READY=1, min / max | {orchdStart.Min():F1} / {orchdStart.Max():F1} ms | {(containerdStart.Count > 0 ? $"{containerdStart.Min():F1} / {containerdStart.Max():F1} ms" : "-")} | | |");
Console.WriteLine($"| idle RSS after {idleSeconds} s (orchd connected to NATS), median of {Instances} | {orchdRss:F1} MiB | {Show(containerdRss, "MiB")} | {Ratio(orchdRss, containerdRss)} | ≤ 16 MiB |");
foreach (var (name, bytes) in sizes)
{
    Console.WriteLine($"| {name} binary size | {bytes / 1048576.0:F1} MiB | {(name == "orchd" && containerd is not null ? $"{new FileInfo(containerd).Length / 1048576.0:F1} MiB" : "-")} | {(name == "orchd" && containerd is not null ? Ratio(bytes, new FileInfo(containerd).Length) : "")} | {(name == "orchd" ? "≤ 20 MiB" : "")} |");
}
Console.WriteLine();
Console.WriteLine($"orchd RSS breakdown: {orchdBreakdown}");
Console.WriteLine($"nats-server idle RSS (reference, same run, {Instances} clients): {natsRss / 1024.0:F1} MiB");
return 0;

static async Task<(List<double> MiB, string Breakdown)> IdleRssAsync(Func<int, (TempDir Dir, string Binary, string[] Args, Func<string, bool> Ready)> make, int count, int idleSeconds)
{
    var setups = Enumerable.Range(0, count).Select(make).ToArray();
    var notifies = setups.Select(_ => new NotifySocket()).ToArray();
    var processes = setups.Select((s, i) => DaemonProcess.Start(s.Binary, s.Args, new Dictionary<string, string?> { ["NOTIFY_SOCKET"] = notifies[i].Path })).ToArray();
    try
    {
        for (var i = 0; i < count; i++)
        {
            await notifies[i].WaitForAsync(setups[i].Ready, TimeSpan.FromSeconds(10));
        }
        await Task.Delay(TimeSpan.FromSeconds(idleSeconds));
        return (processes.Select(p => p.RssKiB() / 1024.0).ToList(), Breakdown(processes[0].Pid));
    }
    finally
    {
        foreach (var p in processes)
        {
            p.Signal(Signals.SIGTERM);
            await p.WaitForExitAsync(TimeSpan.FromSeconds(20));
            await p.DisposeAsync();
        }
        foreach (var n in notifies)
        {
            n.Dispose();
        }
        foreach (var s in setups)
        {
            s.Dir.Dispose();
        }
    }
}

static async Task<double> StartToReadyAsync(string binary, string[] args)
{
    using var notify = new NotifySocket();
    var started = notify.Now;
    await using var process = DaemonProcess.Start(binary, args, new Dictionary<string, string?> { ["NOTIFY_SOCKET"] = notify.Path });
    var ready = await notify.WaitForAsync("READY=1", TimeSpan.FromSeconds(20));
    var ms = (ready - started).TotalMilliseconds;
    process.Signal(Signals.SIGTERM);
    await process.WaitForExitAsync(TimeSpan.FromSeconds(20));
    return ms;
}

static string WriteEmpty(TempDir dir)
{
    var path = dir.Combine("orchd.yaml");
    File.WriteAllText(path, "");
    return path;
}

static string ContainerdConfig(TempDir dir)
{
    var path = dir.Combine("config.toml");
    File.WriteAllText(path, $"""
        version = 2
        root = "{dir.Combine("root")}"
        state = "{dir.Combine("state")}"
        disabled_plugins = ["io.containerd.grpc.v1.cri"]
        [grpc]
          address = "{dir.Combine("containerd.sock")}"
        [ttrpc]
          address = "{dir.Combine("containerd.sock.ttrpc")}"
        """);
    return path;
}

static int NatsPid(NatsServer server)
{
    foreach (var dir in Directory.EnumerateDirectories("/proc"))
    {
        if (int.TryParse(Path.GetFileName(dir), out var pid))
        {
            try
            {
                var cmdline = File.ReadAllText(Path.Combine(dir, "cmdline"));
                if (cmdline.Contains("nats-server", StringComparison.Ordinal) && cmdline.Contains(server.StoreDir, StringComparison.Ordinal))
                {
                    return pid;
                }
            }
            catch (IOException)
            {
            }
        }
    }
    return 0;
}

static long RssOf(int pid) => pid == 0 ? 0 : long.Parse(File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal))["VmRSS:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);

static string Breakdown(int pid)
{
    // Which mappings the resident pages belong to: the binary, OpenSSL, libc, anonymous (heap, stacks).
    var byName = new Dictionary<string, long>();
    var name = "";
    foreach (var line in File.ReadLines($"/proc/{pid}/smaps"))
    {
        var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length >= 5 && parts[0].Contains('-', StringComparison.Ordinal) && !parts[0].EndsWith(':'))
        {
            name = parts.Length >= 6 ? Path.GetFileName(parts[5]) : "[anon]";
        }
        else if (parts.Length >= 2 && parts[0] == "Rss:")
        {
            byName[name] = byName.GetValueOrDefault(name) + long.Parse(parts[1], CultureInfo.InvariantCulture);
        }
    }
    return string.Join(", ", byName.Where(kv => kv.Value >= 256).OrderByDescending(kv => kv.Value).Select(kv => $"{kv.Key} {kv.Value / 1024.0:F1} MiB"));
}

static double Median(List<double> values)
{
    var sorted = values.Order().ToArray();
    return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
}

static string Show(double value, string unit) => double.IsNaN(value) || value == 0 ? "-" : $"{value:F1} {unit}";

static string Ratio(double ours, double theirs) => double.IsNaN(theirs) || theirs == 0 ? "-" : $"{ours / theirs:F2}×";

static string Version(string binary, string arg)
{
    using var p = Process.Start(new ProcessStartInfo(binary, arg) { RedirectStandardOutput = true })!;
    var text = p.StandardOutput.ReadToEnd().Trim();
    p.WaitForExit();
    return text;
}

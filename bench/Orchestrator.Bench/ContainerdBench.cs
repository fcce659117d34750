using System.Diagnostics;
using System.Globalization;
using NATS.Client.Core;
using Orchestrator.Client;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Testing;

namespace Orchestrator.Bench;

/// <summary>
/// Start-to-exit of /bin/true, same busybox image, one run: orchd with its native driver, orchd
/// with the containerd driver (a private containerd from Debian), and `ctr run --rm` on that
/// containerd. For orchd: from the node API's run request to the node reporting the container
/// exited, polled every millisecond (every path pays the same orchd overhead: image lookup, spec, log
/// FIFOs, NATS). The containerd driver runs twice: with its default rootfs, a containerd snapshot
/// per container (prepared, mounted, removed, like ctr's), and with orchd's own overlay rootfs
/// (containerd_images: orchd, as the native driver has it: their difference is the driver's). For
/// ctr: the whole command, which also makes and removes a snapshot and starts its own process.
/// </summary>
internal static class ContainerdBench
{
    private const string Image = "busybox:latest";

    public static async Task<int> RunAsync(int runs)
    {
        var orchd = Repo.Binary("orchd");
        using var work = new TempDir("bench-ctrd");
        await using var nats = await NatsServer.StartAsync();
        await using var containerd = await ContainerdServer.StartAsync();
        var layout = work.Combine("layout");
        BusyboxImage.CreateLayout(layout);
        var version = (await containerd.Ctr("default", "version")).Stdout.Split('\n').FirstOrDefault(l => l.TrimStart().StartsWith("Version:", StringComparison.Ordinal))?.Trim();

        Console.WriteLine($"## containerd: start-to-exit of /bin/true, {DateTime.UtcNow:yyyy-MM-dd HH:mm}Z, {Environment.ProcessorCount} cpus, {runs} runs after 3 warm-ups, medians");
        Console.WriteLine($"# containerd {version}, runc {(await Capture("runc", "--version")).Split('\n')[0]}");
        Console.WriteLine();

        var results = new List<(string Name, List<double> Ms)>();
        // containerd twice: from containerd's image store with a snapshot per container (the default),
        // and from orchd's own rootfs (containerd_images: orchd), which isolates the driver's cost.
        foreach (var (label, backend, images) in new[] { ("native driver", "native", "containerd"), ("containerd driver", "containerd", "containerd"), ("containerd driver on orchd's rootfs", "containerd", "orchd") })
        {
            var dir = label.Replace(' ', '-').Replace("'", "", StringComparison.Ordinal);
            var state = work.Combine(dir, "state");
            var run = work.Combine(dir, "run");
            await RunAsync(orchd, ["image", "import", layout, "--name", Image, "--state-dir", state, "--config", "/dev/null"]);
            var node = "bench-" + dir;
            string[] args = ["--config", "/dev/null", "--node-name", node, "--state-dir", state, "--run-dir", run, "--manifest-dir", "none",
                "--nats-url", nats.Url, "--bridge", "none", "--allow-host-network", "true", "--log-level", "warn", "--runtime", backend, "--containerd-socket", containerd.Socket, "--containerd-images", images];
            var daemon = DaemonProcess.Start(orchd, args);
            try
            {
                await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
                await connection.ConnectAsync();
                var client = new NodeClient(connection, node, TimeSpan.FromSeconds(60));
                await WaitForNodeAsync(client, daemon);
                var times = new List<double>();
                for (var i = 0; i < runs + 3; i++)
                {
                    var name = $"t{i:000}";
                    var clock = Stopwatch.StartNew();
                    await client.RunAsync(new Workload { Name = name, Image = Image, Command = ["/bin/true"], Network = NetworkMode.Host, Restart = new RestartPolicy { Policy = RestartPolicyKind.Never } });
                    while ((await client.InspectAsync(name)).State is not (ContainerState.Exited or ContainerState.Failed))
                    {
                        await Task.Delay(1); // ~1 ms resolution without a busy loop taking a core from orchd
                    }
                    var elapsed = clock.Elapsed.TotalMilliseconds;
                    if (i >= 3)
                    {
                        times.Add(elapsed);
                    }
                    await client.RemoveAsync(name);
                }
                results.Add(($"orchd, {label}", times));
            }
            finally
            {
                await daemon.DisposeAsync();
                foreach (var mount in File.ReadAllLines("/proc/self/mountinfo").Select(l => l.Split(' ')[4]).Where(m => m.StartsWith(work.Path, StringComparison.Ordinal)))
                {
                    await RunAsync("/usr/bin/umount", ["-l", mount]);
                }
            }
        }

        var ns = "bench";
        var archive = work.Combine("busybox.tar");
        BusyboxImage.CreateArchive(archive);
        await containerd.Ctr(ns, "image", "import", "--base-name", "docker.io/library/busybox", archive);
        var ctr = new List<double>();
        for (var i = 0; i < runs + 3; i++)
        {
            var clock = Stopwatch.StartNew();
            var (code, _, stderr) = await containerd.Ctr(ns, "run", "--rm", "--net-host", "docker.io/library/busybox:latest", $"c{i:000}", "/bin/true");
            var elapsed = clock.Elapsed.TotalMilliseconds;
            if (code != 0)
            {
                Console.Error.WriteLine($"ctr run failed: {stderr}");
                return 1;
            }
            if (i >= 3)
            {
                ctr.Add(elapsed);
            }
        }
        results.Add(("ctr run --rm", ctr));

        var calls = await CallBreakdownAsync(containerd, runs);

        var native = Median(results[0].Ms);
        Console.WriteLine("| path | median | p90 | ratio to orchd native |");
        Console.WriteLine("|---|---|---|---|");
        foreach (var (name, ms) in results)
        {
            Console.WriteLine($"| {name} | {Median(ms):F1} ms | {Percentile(ms, 0.9):F1} ms | {Median(ms) / native:F2}× |");
        }
        Console.WriteLine();
        Console.WriteLine($"containerd driver / native driver: {Median(results[1].Ms) / native:F2}× (on orchd's rootfs: {Median(results[2].Ms) / native:F2}×); "
            + $"containerd driver / ctr run --rm: {Median(results[1].Ms) / Median(ctr):F2}×");
        Console.WriteLine();
        Console.WriteLine("Where the containerd driver's time goes (the same calls, made directly with ContainerdClient on a busybox bundle, medians):");
        Console.WriteLine();
        Console.WriteLine("| call | median |");
        Console.WriteLine("|---|---|");
        foreach (var (call, ms) in calls)
        {
            Console.WriteLine($"| {call} | {Median(ms):F1} ms |");
        }
        Console.WriteLine();
        return 0;
    }

    /// <summary>The driver's calls one by one: create container, create task (shim + runc create), start, wait, delete task, delete container.</summary>
    private static async Task<List<(string Call, List<double> Ms)>> CallBreakdownAsync(ContainerdServer containerd, int runs)
    {
        using var bundle = OciBundle.CreateBusybox("/bin/true");
        var spec = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(bundle.ConfigPath))!;
        spec["root"]!["path"] = bundle.Rootfs;
        spec["process"]!["terminal"] = false;
        var json = System.Text.Encoding.UTF8.GetBytes(spec.ToJsonString());
        using var client = new Orchestrator.Containerd.ContainerdClient(containerd.Socket, "bench-calls");
        await client.CheckAsync();
        var names = new[] { "create container", "create task (shim start + runc create)", "start", "wait (to exit)", "delete task", "delete container", "total" };
        var times = names.Select(n => (n, new List<double>())).ToList();
        var output = Path.Combine(bundle.Path, "out");
        File.WriteAllText(output, "");
        for (var i = 0; i < runs + 3; i++)
        {
            var id = $"b{i:000}";
            var laps = new double[names.Length];
            var clock = Stopwatch.StartNew();
            var last = 0.0;
            void Lap(int k)
            {
                laps[k] = clock.Elapsed.TotalMilliseconds - last;
                last = clock.Elapsed.TotalMilliseconds;
            }
            client.CreateContainer(id, json);
            Lap(0);
            client.CreateTask(id, output, output);
            Lap(1);
            var wait = client.WaitAsync(id);
            client.StartTask(id);
            Lap(2);
            await wait;
            Lap(3);
            client.DeleteTask(id);
            Lap(4);
            client.DeleteContainer(id);
            Lap(5);
            laps[6] = clock.Elapsed.TotalMilliseconds;
            if (i >= 3)
            {
                for (var k = 0; k < names.Length; k++)
                {
                    times[k].Item2.Add(laps[k]);
                }
            }
        }
        return times;
    }

    private static async Task WaitForNodeAsync(NodeClient client, DaemonProcess daemon)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            try
            {
                await client.ListAsync();
                return;
            }
            catch (Exception) when (DateTime.UtcNow < deadline && !daemon.HasExited)
            {
                await Task.Delay(100);
            }
        }
    }

    private static async Task<string> Capture(string program, params string[] args)
    {
        await using var process = DaemonProcess.Start(Requires.Which(program) ?? program, args);
        await process.WaitForExitAsync(TimeSpan.FromSeconds(30));
        return string.Join("\n", process.Stdout);
    }

    private static async Task RunAsync(string binary, string[] args)
    {
        await using var process = DaemonProcess.Start(binary, args);
        await process.WaitForExitAsync(TimeSpan.FromSeconds(60));
    }

    private static double Median(List<double> values) => Percentile(values, 0.5);

    private static double Percentile(List<double> values, double p)
    {
        var sorted = values.Order().ToList();
        return sorted[Math.Min(sorted.Count - 1, (int)(p * sorted.Count))];
    }
}

using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Orchestrator.Testing;

namespace Orchestrator.Bench;

/// <summary>
/// orchctl port-forward against a direct connection to the same container, same run: download
/// throughput of a 100 MB file from the container's httpd, and the round trip of one byte to its
/// echo server (1,000 of them on one connection), direct to the container's bridge address and
/// through the tunnel (orchctl → NATS → orchd → the container). Targets (#22): ≥ 50 MB/s and
/// ≤ 2 ms added p50 on loopback.
/// </summary>
internal static class PortForwardBench
{
    public static async Task<int> RunAsync(int runs)
    {
        var orchd = Repo.Binary("orchd");
        var orchctl = Repo.Binary("orchctl");
        using var work = new TempDir("bench-forward");
        await using var nats = await NatsServer.StartAsync();
        var layout = work.Combine("layout");
        BusyboxImage.CreateLayout(layout);
        var (state, run, manifests) = (work.Combine("state"), work.Combine("run"), work.Combine("manifests"));
        Directory.CreateDirectory(manifests);
        await SocketMeasures.Run(orchd, ["image", "import", layout, "--name", "busybox:latest", "--state-dir", state, "--config", "/dev/null"]);
        File.WriteAllText(Path.Combine(manifests, "svc.yaml"), """
            name: svc
            image: busybox:latest
            command: [sh, -c, "mkdir -p /www && head -c 100000000 /dev/zero > /www/big && httpd -p 8080 -h /www && exec nc -ll -p 7000 -e cat"]
            stopGracePeriodSeconds: 0
            """);
        Console.WriteLine($"## port-forward: through NATS against direct, {DateTime.UtcNow:yyyy-MM-dd HH:mm}Z, {Environment.ProcessorCount} cpus");
        Console.WriteLine();
        await using var daemon = DaemonProcess.Start(orchd, ["--config", "/dev/null", "--node-name", "bench-pf", "--state-dir", state, "--run-dir", run,
            "--manifest-dir", manifests, "--nats-url", nats.Url, "--bridge", "orchpf0", "--bridge-cidr", "10.87.77.0/24", "--log-level", "warn"]);
        try
        {
            string? ip = null;
            var seen = "";
            var deadline = DateTime.UtcNow.AddMinutes(2);
            while (ip is null)
            {
                if (DateTime.UtcNow > deadline || daemon.HasExited)
                {
                    Console.Error.WriteLine($"svc did not start (orchctl inspect: {seen}):\n{daemon.Output}");
                    return 1;
                }
                await Task.Delay(500);
                await using var inspect = DaemonProcess.Start(orchctl, ["--server", nats.Url, "-n", "bench-pf", "inspect", "svc"]);
                var code = await inspect.WaitForExitAsync(TimeSpan.FromSeconds(30));
                seen = inspect.Output;
                if (code == 0)
                {
                    using var doc = JsonDocument.Parse(string.Join('\n', inspect.Stdout));
                    if (doc.RootElement.TryGetProperty("ip", out var found) && doc.RootElement.GetProperty("state").GetString() == "running")
                    {
                        ip = found.GetString();
                    }
                }
            }
            var direct = IPAddress.Parse(ip!);
            await WaitForAsync(direct, 8080);
            await WaitForAsync(direct, 7000);
            await using var forward = DaemonProcess.Start(orchctl, ["--server", nats.Url, "-n", "bench-pf", "port-forward", "svc", ":8080", ":7000"]);
            await forward.WaitForLineAsync(l => l.EndsWith("-> 7000", StringComparison.Ordinal), "port-forward listening");
            var locals = forward.Stdout.Where(l => l.StartsWith("Forwarding from 127.0.0.1:", StringComparison.Ordinal))
                .Select(l => int.Parse(l["Forwarding from 127.0.0.1:".Length..l.IndexOf(' ', "Forwarding from 127.0.0.1:".Length)], CultureInfo.InvariantCulture)).ToList();

            var directMBs = new List<double>();
            var tunnelMBs = new List<double>();
            for (var i = 0; i < runs; i++)
            {
                directMBs.Add(await DownloadAsync(direct, 8080));
                tunnelMBs.Add(await DownloadAsync(IPAddress.Loopback, locals[0]));
            }
            var directRtt = await RoundTripsAsync(direct, 7000, 1000);
            var tunnelRtt = await RoundTripsAsync(IPAddress.Loopback, locals[1], 1000);

            Console.WriteLine("| | direct to the container | through port-forward | ratio |");
            Console.WriteLine("|---|---|---|---|");
            Console.WriteLine($"| download, 100 MB (median of {runs}) | {SocketMeasures.Median(directMBs):F0} MB/s | {SocketMeasures.Median(tunnelMBs):F0} MB/s | {SocketMeasures.Median(tunnelMBs) / SocketMeasures.Median(directMBs):F3} |");
            Console.WriteLine($"| 1-byte round trip, p50 | {directRtt.P50:F0} µs | {tunnelRtt.P50:F0} µs | added {(tunnelRtt.P50 - directRtt.P50) / 1000:F2} ms |");
            Console.WriteLine($"| 1-byte round trip, p99 | {directRtt.P99:F0} µs | {tunnelRtt.P99:F0} µs | added {(tunnelRtt.P99 - directRtt.P99) / 1000:F2} ms |");
            Console.WriteLine();
            Console.WriteLine($"targets: ≥ 50 MB/s through the tunnel ({(SocketMeasures.Median(tunnelMBs) >= 50 ? "met" : "NOT met")}), ≤ 2 ms added p50 ({((tunnelRtt.P50 - directRtt.P50) / 1000 <= 2 ? "met" : "NOT met")})");
            Console.WriteLine();
            forward.Signal(2);
            await forward.WaitForExitAsync(TimeSpan.FromSeconds(30));
        }
        finally
        {
            await daemon.DisposeAsync();
            var runtimeRoot = Path.Combine(run, "runtime");
            foreach (var id in Directory.Exists(runtimeRoot) ? Directory.GetDirectories(runtimeRoot).Select(Path.GetFileName) : [])
            {
                await SocketMeasures.Run(Repo.Binary("orch-runc"), ["--root", runtimeRoot, "delete", "--force", id!]);
            }
            foreach (var mount in File.ReadAllLines("/proc/self/mountinfo").Select(l => l.Split(' ')[4]).Where(m => m.StartsWith(work.Path, StringComparison.Ordinal)).Reverse())
            {
                await SocketMeasures.Run("/usr/bin/umount", ["-l", mount]);
            }
            await SocketMeasures.Run("/usr/sbin/ip", ["link", "delete", "orchpf0"]);
        }
        return 0;
    }

    private static async Task WaitForAsync(IPAddress address, int port)
    {
        for (var i = 0; i < 100; i++)
        {
            try
            {
                using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await socket.ConnectAsync(address, port);
                return;
            }
            catch (SocketException)
            {
                await Task.Delay(200);
            }
        }
        throw new TimeoutException($"nothing listens on {address}:{port}");
    }

    private static async Task<double> DownloadAsync(IPAddress address, int port)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(address, port);
        return await SocketMeasures.DownloadAsync(socket, $"{address}:{port}");
    }

    private static async Task<(double P50, double P99)> RoundTripsAsync(IPAddress address, int port, int count)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(address, port);
        return await SocketMeasures.RoundTripsAsync(socket, count, $"{address}:{port}");
    }
}

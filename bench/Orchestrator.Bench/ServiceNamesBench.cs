using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text.Json;
using Orchestrator.Testing;

namespace Orchestrator.Bench;

/// <summary>
/// Deployment names across nodes (docs/node.md, "Names across nodes"): two orchd nodes on one
/// nats-server, a server deployment (100 MB over httpd, a byte echo over nc) on one, a client on
/// the other. From inside the client container's network namespace, the same work two ways in
/// the same run: straight to the server container's bridge address (what an overlay between
/// nodes would give at best: here the two bridges meet in the host's routing) and by the
/// deployment's name (the service address, orchd's proxy, the connect session over NATS, the
/// other orchd). Reported: download MB/s, and the 1-byte round trip p50/p99 with what the name
/// adds.
/// </summary>
internal static class ServiceNamesBench
{
    public static async Task<int> RunAsync(int runs)
    {
        var orchd = Repo.Binary("orchd");
        var orchctl = Repo.Binary("orchctl");
        using var work = new TempDir("bench-names");
        await using var nats = await NatsServer.StartAsync();
        var layout = work.Combine("layout");
        BusyboxImage.CreateLayout(layout);
        Console.WriteLine($"## names across nodes: by name (TCP over NATS) against direct, {DateTime.UtcNow:yyyy-MM-dd HH:mm}Z, {Environment.ProcessorCount} cpus");
        Console.WriteLine();
        var nodes = new[] { ("bench-sv", "orchsn1", "10.87.78.0/24", "role=server"), ("bench-cl", "orchsn2", "10.87.79.0/24", "role=client") };
        var daemons = new List<DaemonProcess>();
        try
        {
            foreach (var (name, bridge, cidr, label) in nodes)
            {
                var state = work.Combine(name, "state");
                Directory.CreateDirectory(work.Combine(name, "manifests"));
                await SocketMeasures.Run(orchd, ["image", "import", layout, "--name", "busybox:latest", "--state-dir", state, "--config", "/dev/null"]);
                daemons.Add(DaemonProcess.Start(orchd, ["--config", "/dev/null", "--node-name", name, "--state-dir", state, "--run-dir", work.Combine(name, "run"),
                    "--manifest-dir", work.Combine(name, "manifests"), "--nats-url", nats.Url, "--bridge", bridge, "--bridge-cidr", cidr, "--label", label,
                    "--heartbeat", "1s", "--log-level", "warn"]));
            }
            var manifest = work.Combine("names.yaml");
            File.WriteAllText(manifest, """
                kind: Deployment
                name: svc
                replicas: 1
                selector: {role: server}
                template:
                  image: busybox:latest
                  command: [sh, -c, "mkdir -p /www && head -c 100000000 /dev/zero > /www/big && httpd -p 8080 -h /www && exec nc -ll -p 7000 -e cat"]
                  stopGracePeriodSeconds: 0
                ---
                kind: Deployment
                name: client
                replicas: 1
                selector: {role: client}
                template:
                  image: busybox:latest
                  command: [sleep, "100000"]
                  stopGracePeriodSeconds: 0
                """);
            var deadline = DateTime.UtcNow.AddMinutes(2);
            while (true)
            {
                await using var apply = DaemonProcess.Start(orchctl, ["--server", nats.Url, "apply", "-f", manifest]);
                if (await apply.WaitForExitAsync(TimeSpan.FromSeconds(30)) == 0)
                {
                    break;
                }
                if (DateTime.UtcNow > deadline)
                {
                    Console.Error.WriteLine($"apply failed: {apply.Output}");
                    return 1;
                }
                await Task.Delay(500);
            }
            var server = await RunningAsync(orchctl, nats.Url, "bench-sv", "svc-0", daemons);
            var client = await RunningAsync(orchctl, nats.Url, "bench-cl", "client-0", daemons);
            if (server is null || client is null)
            {
                return 1;
            }
            var direct = IPAddress.Parse(server.Value.Ip);
            // The name's address in the client's /etc/hosts, once the endpoints reached its node.
            IPAddress? byName = null;
            while (byName is null)
            {
                if (DateTime.UtcNow > deadline)
                {
                    Console.Error.WriteLine("the client's /etc/hosts never named svc");
                    return 1;
                }
                var hosts = await File.ReadAllLinesAsync($"/proc/{client.Value.Pid}/root/etc/hosts");
                byName = hosts.Select(l => l.Split('\t')).Where(f => f.Length == 2 && f[1] == "svc").Select(f => IPAddress.Parse(f[0])).FirstOrDefault();
                await Task.Delay(byName is null ? 300 : 0);
            }
            await WaitForAsync(client.Value.Pid, direct, 8080);
            await WaitForAsync(client.Value.Pid, byName, 8080);
            await WaitForAsync(client.Value.Pid, byName, 7000);

            var directMBs = new List<double>();
            var namedMBs = new List<double>();
            for (var i = 0; i < runs; i++)
            {
                directMBs.Add(await DownloadAsync(client.Value.Pid, direct, 8080));
                namedMBs.Add(await DownloadAsync(client.Value.Pid, byName, 8080));
            }
            var directRtt = await RoundTripsAsync(client.Value.Pid, direct, 7000, 1000);
            var namedRtt = await RoundTripsAsync(client.Value.Pid, byName, 7000, 1000);
            var connectDirect = await ConnectTimesAsync(client.Value.Pid, direct, 7000, 50);
            var connectNamed = await ConnectTimesAsync(client.Value.Pid, byName, 7000, 50);

            Console.WriteLine($"| from a container on another node | direct to the replica's address | by the deployment's name ({byName}) | ratio |");
            Console.WriteLine("|---|---|---|---|");
            Console.WriteLine($"| download, 100 MB (median of {runs}) | {SocketMeasures.Median(directMBs):F0} MB/s | {SocketMeasures.Median(namedMBs):F0} MB/s | {SocketMeasures.Median(namedMBs) / SocketMeasures.Median(directMBs):F3} |");
            Console.WriteLine($"| 1-byte round trip, p50 | {directRtt.P50:F0} µs | {namedRtt.P50:F0} µs | added {(namedRtt.P50 - directRtt.P50) / 1000:F2} ms |");
            Console.WriteLine($"| 1-byte round trip, p99 | {directRtt.P99:F0} µs | {namedRtt.P99:F0} µs | added {(namedRtt.P99 - directRtt.P99) / 1000:F2} ms |");
            Console.WriteLine($"| connect + first byte back, p50 | {connectDirect:F0} µs | {connectNamed:F0} µs | added {(connectNamed - connectDirect) / 1000:F2} ms |");
            Console.WriteLine();
        }
        finally
        {
            foreach (var daemon in daemons)
            {
                await daemon.DisposeAsync();
            }
            foreach (var (name, _, _, _) in nodes)
            {
                var runtimeRoot = work.Combine(name, "run", "runtime");
                foreach (var id in Directory.Exists(runtimeRoot) ? Directory.GetDirectories(runtimeRoot).Select(Path.GetFileName) : [])
                {
                    await SocketMeasures.Run(Repo.Binary("orch-runc"), ["--root", runtimeRoot, "delete", "--force", id!]);
                }
            }
            foreach (var mount in File.ReadAllLines("/proc/self/mountinfo").Select(l => l.Split(' ')[4]).Where(m => m.StartsWith(work.Path, StringComparison.Ordinal)).Reverse())
            {
                await SocketMeasures.Run("/usr/bin/umount", ["-l", mount]);
            }
            foreach (var (name, bridge, _, _) in nodes)
            {
                await SocketMeasures.Run("/usr/sbin/ip", ["link", "delete", bridge]);
            }
        }
        return 0;
    }

    private static async Task<(string Ip, int Pid)?> RunningAsync(string orchctl, string url, string node, string name, List<DaemonProcess> daemons)
    {
        var deadline = DateTime.UtcNow.AddMinutes(2);
        var seen = "";
        while (DateTime.UtcNow < deadline && daemons.All(d => !d.HasExited))
        {
            await using var inspect = DaemonProcess.Start(orchctl, ["--server", url, "-n", node, "inspect", name]);
            if (await inspect.WaitForExitAsync(TimeSpan.FromSeconds(30)) == 0)
            {
                using var doc = JsonDocument.Parse(string.Join('\n', inspect.Stdout));
                var root = doc.RootElement;
                if (root.GetProperty("state").GetString() == "running" && root.TryGetProperty("ip", out var ip) && root.TryGetProperty("pid", out var pid))
                {
                    return (ip.GetString()!, pid.GetInt32());
                }
            }
            seen = inspect.Output;
            await Task.Delay(500);
        }
        Console.Error.WriteLine($"{name} on {node} did not start ({seen}):\n{string.Join("\n", daemons.Select(d => d.Output))}");
        return null;
    }

    /// <summary>A socket in the network namespace of <paramref name="pid"/> (made on a thread that enters it and comes back).</summary>
    private static Socket SocketIn(int pid)
    {
        Socket? socket = null;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var own = File.OpenHandle("/proc/thread-self/ns/net");
                using var target = File.OpenHandle($"/proc/{pid}/ns/net");
                if (Tmds.Linux.LibC.setns((int)target.DangerousGetHandle(), Tmds.Linux.LibC.CLONE_NEWNET) != 0)
                {
                    throw new InvalidOperationException($"setns into {pid}'s network: errno {Marshal.GetLastPInvokeError()}");
                }
                try
                {
                    socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                }
                finally
                {
                    // Back home; were that to fail, only this thread, which ends now, stays there.
                    _ = Tmds.Linux.LibC.setns((int)own.DangerousGetHandle(), Tmds.Linux.LibC.CLONE_NEWNET);
                }
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        thread.Start();
        thread.Join();
        return socket ?? throw new InvalidOperationException("no socket in the container's network", failure);
    }

    private static async Task WaitForAsync(int pid, IPAddress address, int port)
    {
        for (var i = 0; i < 100; i++)
        {
            try
            {
                using var socket = SocketIn(pid);
                await socket.ConnectAsync(address, port);
                if (port == 7000)
                {
                    // The name's proxy accepts first and connects after: the echo proves the far end.
                    await socket.SendAsync(new byte[] { 1 }, SocketFlags.None);
                    using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                    if (await socket.ReceiveAsync(new byte[1], SocketFlags.None, cts.Token) != 1)
                    {
                        throw new SocketException();
                    }
                }
                return;
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                await Task.Delay(200);
            }
        }
        throw new TimeoutException($"nothing answers on {address}:{port}");
    }

    private static async Task<double> DownloadAsync(int pid, IPAddress address, int port)
    {
        using var socket = SocketIn(pid);
        await socket.ConnectAsync(address, port);
        return await SocketMeasures.DownloadAsync(socket, $"{address}:{port}");
    }

    private static async Task<(double P50, double P99)> RoundTripsAsync(int pid, IPAddress address, int port, int count)
    {
        using var socket = SocketIn(pid);
        await socket.ConnectAsync(address, port);
        return await SocketMeasures.RoundTripsAsync(socket, count, $"{address}:{port}");
    }

    /// <summary>A new connection and one byte echoed on it, p50 in µs: what a client that connects per request pays.</summary>
    private static async Task<double> ConnectTimesAsync(int pid, IPAddress address, int port, int count)
    {
        var times = new List<double>(count);
        var one = new byte[1];
        for (var i = 0; i < count; i++)
        {
            using var socket = SocketIn(pid);
            var clock = Stopwatch.StartNew();
            await socket.ConnectAsync(address, port);
            await socket.SendAsync(one, SocketFlags.None);
            if (await socket.ReceiveAsync(one, SocketFlags.None) != 1)
            {
                throw new InvalidOperationException($"the echo on {address}:{port} closed");
            }
            times.Add(clock.Elapsed.TotalMicroseconds);
        }
        times.Sort();
        return times[count / 2];
    }
}

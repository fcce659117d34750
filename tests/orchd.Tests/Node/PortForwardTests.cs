using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// orchctl port-forward against a real orchd and real containers (both backends): several
/// connections at once, each byte for byte both ways (an echo server and a 20 MB download),
/// half-close, a port where nothing listens (that connection fails with one sentence, the
/// forward runs on), the node's own ports as its policy allows, and mistakes said up front.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed partial class PortForwardTests
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(60);

    [GeneratedRegex(@"^Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)$")]
    private static partial Regex Forwarding();

    /// <summary>Starts port-forward and returns it with the local port of each remote port, in order.</summary>
    private static async Task<(DaemonProcess Forward, List<int> Local)> ForwardAsync(NodeHost node, params string[] args)
    {
        var forward = Orchctl.Start(["--server", node.Nats!.Url, "-n", node.NodeName, "port-forward", .. args]);
        var remotes = args.Count(a => char.IsAsciiDigit(a[^1]) && a != args[0]);
        await forward.WaitForLineAsync(l => l.StartsWith("Forwarding from", StringComparison.Ordinal), "the first Forwarding line", skip: remotes - 1);
        var local = forward.Stdout.Select(l => Forwarding().Match(l)).Where(m => m.Success).Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        return (forward, local);
    }

    private static async Task<byte[]> EchoAsync(int port, byte[] payload)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, port);
        var sending = Task.Run(async () =>
        {
            await socket.SendAsync(payload, SocketFlags.None);
            socket.Shutdown(SocketShutdown.Send); // half-close: the echo ends when cat sees the end
        });
        using var received = new MemoryStream();
        var buffer = new byte[64 * 1024];
        int n;
        using var timeout = new CancellationTokenSource(s_wait);
        while ((n = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token)) > 0)
        {
            received.Write(buffer, 0, n);
        }
        await sending;
        return received.ToArray();
    }

    [Theory(Timeout = 240_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task Several_connections_go_through_byte_for_byte_and_a_failed_one_leaves_the_forward_running(string runtime)
    {
        await using var node = await NodeHost.StartAsync(runtime: runtime);
        await node.Client.RunAsync(NodeHost.Sh("svc", "mkdir -p /www && head -c 20000000 /dev/urandom > /www/big && sha256sum /www/big > /www/big.sha && httpd -p 8080 -h /www && exec nc -ll -p 7000 -e cat",
            w => w.StopGracePeriodSeconds = 0));
        await node.LogsUntilAsync("svc", _ => true, s_wait, "started");
        await Eventually.TrueAsync("svc's servers", async () => (await node.Client.ExecAsync("svc", ["sh", "-c", "test -s /www/big.sha && nc -w 1 127.0.0.1 8080 </dev/null"])).ExitCode == 0, s_wait);

        var (forward, local) = await ForwardAsync(node, "svc", ":7000", ":8080", ":7999");
        await using (forward)
        {
            Assert.Equal(3, local.Count);
            // Three echo connections at once, 1 MiB each way, and the download beside them.
            var payloads = Enumerable.Range(0, 3).Select(_ => RandomNumberGenerator.GetBytes(1 << 20)).ToList();
            using var http = new HttpClient { Timeout = s_wait };
            var download = http.GetByteArrayAsync($"http://127.0.0.1:{local[1]}/big");
            var echoes = await Task.WhenAll(payloads.Select(p => EchoAsync(local[0], p)));
            for (var i = 0; i < payloads.Count; i++)
            {
                Assert.True(payloads[i].AsSpan().SequenceEqual(echoes[i]), $"echo {i}: sent {payloads[i].Length} bytes, got {echoes[i].Length} back, not the same");
            }
            var big = await download;
            Assert.Equal(20_000_000, big.Length);
            var expected = (await node.Client.ExecAsync("svc", ["cat", "/www/big.sha"])).Stdout.Split(' ')[0];
            Assert.Equal(expected, Convert.ToHexStringLower(SHA256.HashData(big)));
            // A small exchange: one line there and back.
            Assert.Equal("ping\n"u8.ToArray(), await EchoAsync(local[0], "ping\n"u8.ToArray()));

            // Nothing listens on 7999 in the container: that connection closes, one sentence says
            // why, and the forward runs on.
            using (var dead = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
            {
                await dead.ConnectAsync(IPAddress.Loopback, local[2]);
                using var timeout = new CancellationTokenSource(s_wait);
                Assert.Equal(0, await dead.ReceiveAsync(new byte[16], SocketFlags.None, timeout.Token));
            }
            await Eventually.TrueAsync("the refused connection's error", () => forward.Stderr.Any(l => l.Contains("cannot connect to port 7999 of container 'svc'", StringComparison.Ordinal)
                && l.Contains("nothing listens there (connection refused)", StringComparison.Ordinal)), s_wait, () => forward.Output);
            Assert.Equal("again\n"u8.ToArray(), await EchoAsync(local[0], "again\n"u8.ToArray()));
            Assert.Contains(forward.Stdout, l => l == $"Handling connection for {local[0]}");

            forward.Signal(Signals.SIGINT);
            Assert.Equal(0, await forward.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        }

        // Mistakes are said before anything listens.
        async Task<Orchctl.Result> Pf(params string[] args) => await Orchctl.RunAsync(["--server", node.Nats!.Url, "-n", node.NodeName, "port-forward", .. args], null);
        Assert.Equal(2, (await Pf("svc", "80:99999")).Code);
        Assert.Equal(2, (await Pf("svc")).Code);
        Assert.Equal(2, (await Pf("svc", "80", "--address", "nowhere")).Code);
        var ghost = await Pf("ghost", "80");
        Assert.Equal(1, ghost.Code);
        Assert.Contains("no container 'ghost'", ghost.Err, StringComparison.Ordinal);
        await node.Client.StopAsync("svc");
        await node.WaitForAsync("svc", c => c.State == ContainerState.Stopped, s_wait, "stopped");
        var stopped = await Pf("svc", "80");
        Assert.Equal(1, stopped.Code);
        Assert.Contains("port-forward reaches a running container", stopped.Err, StringComparison.Ordinal);
    }

    [Fact(Timeout = 180_000)]
    public async Task A_target_that_does_not_read_and_a_client_that_does_not_read_hold_the_other_side_back_without_growing_memory()
    {
        await using var node = await NodeHost.StartAsync();
        // 7100 takes connections and never reads; 7101 sends as fast as it can.
        await node.Client.RunAsync(NodeHost.Sh("slow", "nc -ll -p 7100 -e sleep 100000 & exec nc -ll -p 7101 -e yes flood", w => w.StopGracePeriodSeconds = 0));
        await Eventually.TrueAsync("slow's listeners", async () => (await node.Client.ExecAsync("slow", ["sh", "-c", "netstat -ltn | grep -c ':710[01] '"])).Stdout.Trim() == "2", s_wait);
        var (forward, local) = await ForwardAsync(node, "slow", ":7100", ":7101");
        await using (forward)
        {
            var orchdBefore = node.Daemon.RssKiB();
            var forwardBefore = forward.RssKiB();

            // Upload into a target that never reads: after the kernel's buffers fill, the sender is held.
            using var up = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await up.ConnectAsync(IPAddress.Loopback, local[0]);
            long sent = 0;
            using var stopSending = new CancellationTokenSource();
            var sending = Task.Run(async () =>
            {
                var chunk = new byte[64 * 1024];
                try
                {
                    while (sent < 256L << 20)
                    {
                        sent += await up.SendAsync(chunk, SocketFlags.None, stopSending.Token);
                    }
                }
                catch (OperationCanceledException)
                {
                }
            });
            // Download from a flood, read by nobody here.
            using var down = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await down.ConnectAsync(IPAddress.Loopback, local[1]);

            await Task.Delay(TimeSpan.FromSeconds(8));
            var held = Interlocked.Read(ref sent);
            // Only kernel socket buffers (a few MiB at most on loopback and the bridge) and a frame or two in flight.
            Assert.True(held < 48L << 20, $"{held >> 20} MiB went into a target that reads nothing");
            Assert.False(sending.IsCompleted, "the sender was never held back");
            var orchdGrowth = node.Daemon.RssKiB() - orchdBefore;
            var forwardGrowth = forward.RssKiB() - forwardBefore;
            Assert.True(orchdGrowth < 48 * 1024, $"orchd grew by {orchdGrowth} KiB");
            Assert.True(forwardGrowth < 48 * 1024, $"orchctl port-forward grew by {forwardGrowth} KiB");

            // The flood is still there to read, from the start, and the forward still answers.
            var buffer = new byte[4096];
            var got = await down.ReceiveAsync(buffer, SocketFlags.None);
            Assert.StartsWith("flood\nflood\n", System.Text.Encoding.ASCII.GetString(buffer, 0, got), StringComparison.Ordinal);
            await stopSending.CancelAsync();
            up.Close();
            down.Close();
            forward.Signal(Signals.SIGINT);
            Assert.Equal(0, await forward.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        }
    }

    [Fact(Timeout = 180_000)]
    public async Task A_nodes_own_ports_are_reachable_only_where_a_container_publishes_them_unless_its_policy_says_all()
    {
        var hostPort = FreePort.Next();
        using var other = new TcpListener(IPAddress.Loopback, 0); // a service of the node's own, published by nothing
        other.Start();
        var otherPort = ((IPEndPoint)other.LocalEndpoint).Port;
        var accepting = Task.Run(async () =>
        {
            while (true)
            {
                using var socket = await other.AcceptSocketAsync();
                await socket.SendAsync("node service\n"u8.ToArray(), SocketFlags.None);
                socket.Shutdown(SocketShutdown.Both);
            }
        });

        await using (var node = await NodeHost.StartAsync())
        {
            await node.Client.RunAsync(NodeHost.Sh("pub", "mkdir -p /www && echo published > /www/index.html && exec httpd -f -p 80 -h /www", w =>
            {
                w.Ports = [new PortMapping { ContainerPort = 80, HostPort = hostPort }];
                w.StopGracePeriodSeconds = 0;
            }));
            await node.WaitForAsync("pub", c => c.State == ContainerState.Running, s_wait, "running");
            var (forward, local) = await ForwardAsync(node, $"node/{node.NodeName}", $":{hostPort}", $":{otherPort}");
            await using (forward)
            {
                using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(20) };
                await Eventually.TrueAsync("the published port through the node", async () =>
                {
                    try
                    {
                        return await http.GetStringAsync($"http://127.0.0.1:{local[0]}/") == "published\n";
                    }
                    catch (HttpRequestException)
                    {
                        return false;
                    }
                }, s_wait);
                using (var refused = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
                {
                    await refused.ConnectAsync(IPAddress.Loopback, local[1]);
                    using var timeout = new CancellationTokenSource(s_wait);
                    Assert.Equal(0, await refused.ReceiveAsync(new byte[16], SocketFlags.None, timeout.Token));
                }
                await Eventually.TrueAsync("the policy's refusal", () => forward.Stderr.Any(l => l.Contains($"port {otherPort} on this node is not published by a running container", StringComparison.Ordinal)
                    && l.Contains("--allow-forward-host-ports", StringComparison.Ordinal)), s_wait, () => forward.Output);
            }
        }

        await using (var open = await NodeHost.StartAsync(extraArgs: ["--allow-forward-host-ports", "true"]))
        {
            var (forward, local) = await ForwardAsync(open, $"node/{open.NodeName}", $":{otherPort}");
            await using (forward)
            {
                Assert.Equal("node service\n"u8.ToArray(), await EchoAsync(local[0], []));
            }
        }
        other.Stop();
        _ = accepting;
    }
}

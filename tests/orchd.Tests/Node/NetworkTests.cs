using System.Net.Sockets;
using System.Text;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// Bridge networking on private addresses the test makes: containers reach each other by name,
/// published TCP and UDP ports answer on the host's loopback, and traffic leaving the node is
/// masqueraded (proved with a network namespace of the test's own that has no route back).
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class NetworkTests
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);

    private static async Task<(int Code, string Output)> RunAsync(string program, params string[] args)
    {
        await using var process = DaemonProcess.Start(Requires.Which(program) ?? program, args);
        var code = await process.WaitForExitAsync(s_wait);
        return (code, process.Output);
    }

    [Theory(Timeout = 180_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task Containers_talk_by_name_ports_publish_and_outbound_traffic_is_masqueraded(string runtime)
    {
        // busybox has no UDP server: a 20-line static one, built now and mounted in (from a host
        // directory the node's policy allows, as an operator would allow it).
        using var toolsDir = new TempDir("tools");
        var tools = toolsDir.Path;
        await using var node = await NodeHost.StartAsync(runtime: runtime, extraArgs: ["--allow-host-path", tools]);
        var tcpPort = FreePort.Next();
        var udpPort = FreePort.Next();
        File.WriteAllText(Path.Combine(tools, "udpecho.c"), """
            #include <arpa/inet.h>
            #include <stdio.h>
            #include <string.h>
            #include <sys/socket.h>
            int main(void) {
                int s = socket(AF_INET, SOCK_DGRAM, 0);
                struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(9999) };
                if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); return 1; }
                for (;;) {
                    char buf[512]; struct sockaddr_in from; socklen_t len = sizeof from;
                    ssize_t n = recvfrom(s, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &len);
                    if (n <= 0) continue;
                    buf[n] = 0; printf("got %s", buf); fflush(stdout);
                    sendto(s, "pong\n", 5, 0, (struct sockaddr *)&from, len);
                }
            }
            """);
        var gcc = await RunAsync("gcc", "-static", "-O1", "-o", Path.Combine(tools, "udpecho"), Path.Combine(tools, "udpecho.c"));
        Assert.True(gcc.Code == 0, gcc.Output);
        await node.Client.RunAsync(NodeHost.Sh("server", "mkdir -p /www; echo hello-from-server > /www/index.html; httpd -p 80 -h /www; exec /tools/udpecho", w =>
        {
            w.Ports = [new PortMapping { ContainerPort = 80, HostPort = tcpPort }, new PortMapping { ContainerPort = 9999, HostPort = udpPort, Protocol = "udp" }];
            w.Volumes = [new Volume { HostPath = tools, Target = "/tools", ReadOnly = true }];
            w.StopGracePeriodSeconds = 1;
        }));
        await node.Client.RunAsync(NodeHost.Sh("client", "exec sleep 100000", w => w.StopGracePeriodSeconds = 1));
        var server = await node.Client.InspectAsync("server");
        Assert.True(server.State == ContainerState.Running, $"{server.State}: {server.Message}");

        // By name, across the bridge.
        // (busybox-static's wget crashes on this machine; nc speaks the HTTP as well.)
        var byName = await node.Client.ExecAsync("client", ["sh", "-c", "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 5 server 80"]);
        Assert.True(byName.ExitCode == 0, byName.Stderr);
        Assert.EndsWith("\r\n\r\nhello-from-server\n", byName.Stdout, StringComparison.Ordinal);
        var hosts = await node.Client.ExecAsync("client", ["cat", "/etc/hosts"]);
        Assert.Matches(@"\n10\.\d+\.\d+\.\d+\tserver\n", hosts.Stdout);

        // A published TCP port answers from the host.
        using (var http = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) })
        {
            Assert.Equal("hello-from-server\n", await http.GetStringAsync(new Uri($"http://127.0.0.1:{tcpPort}/index.html")));
        }
        // And a UDP one: the datagram lands in the container (its log says so) and the answer comes back.
        using (var udp = new UdpClient())
        {
            udp.Connect("127.0.0.1", udpPort);
            await udp.SendAsync(Encoding.ASCII.GetBytes("datagram-42\n"));
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var answer = await udp.ReceiveAsync(cts.Token);
            Assert.Equal("pong\n", Encoding.ASCII.GetString(answer.Buffer));
            var deadline = DateTime.UtcNow + s_wait;
            while (!(await node.Client.LogsAsync("server")).Any(l => l.Text == "got datagram-42"))
            {
                Assert.True(DateTime.UtcNow < deadline, "the datagram is not in the container's log");
                await Task.Delay(100);
            }
        }

        // Outbound: a namespace standing for "the world", reachable over a veth, with no route back
        // to the container subnet. Only masquerade makes the reply come back.
        var suffix = Guid.NewGuid().ToString("N")[..6];
        var ns = "ow" + suffix;
        var world = $"10.{Random.Shared.Next(100, 250)}.{Random.Shared.Next(0, 255)}";
        try
        {
            Assert.Equal(0, (await RunAsync("ip", "netns", "add", ns)).Code);
            Assert.Equal(0, (await RunAsync("ip", "link", "add", "oh" + suffix, "type", "veth", "peer", "name", "on" + suffix)).Code);
            Assert.Equal(0, (await RunAsync("ip", "link", "set", "on" + suffix, "netns", ns)).Code);
            Assert.Equal(0, (await RunAsync("ip", "addr", "add", $"{world}.1/24", "dev", "oh" + suffix)).Code);
            Assert.Equal(0, (await RunAsync("ip", "link", "set", "oh" + suffix, "up")).Code);
            Assert.Equal(0, (await RunAsync("ip", "-n", ns, "addr", "add", $"{world}.2/24", "dev", "on" + suffix)).Code);
            Assert.Equal(0, (await RunAsync("ip", "-n", ns, "link", "set", "on" + suffix, "up")).Code);
            using var www = new TempDir("orchd-world");
            File.WriteAllText(www.Combine("index.html"), "hello-from-the-world\n");
            await using var httpd = DaemonProcess.Start("/usr/bin/nsenter", [$"--net=/run/netns/{ns}", "busybox", "httpd", "-f", "-p", $"{world}.2:7000", "-h", www.Path]);
            await Task.Delay(300);
            var outbound = await node.Client.ExecAsync("client", ["sh", "-c", $"printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {world}.2 7000"]);
            Assert.True(outbound.ExitCode == 0, $"outbound failed: {outbound.Stderr}");
            Assert.EndsWith("\r\n\r\nhello-from-the-world\n", outbound.Stdout, StringComparison.Ordinal);
        }
        finally
        {
            await RunAsync("ip", "link", "del", "oh" + suffix);
            await RunAsync("ip", "netns", "del", ns);
        }

        // A second workload cannot take a published host port.
        var conflict = await Assert.ThrowsAsync<Orchestrator.Client.NodeRequestException>(() => node.Client.RunAsync(NodeHost.Sh("thief", "exec sleep 100000",
            w => w.Ports = [new PortMapping { ContainerPort = 80, HostPort = tcpPort }])));
        Assert.Equal($"host port {tcpPort}/tcp is already published by 'server' on this node; pick another hostPort", conflict.Message);

        // Changing the server's ports replaces it: the old port is withdrawn, the new one answers.
        var newPort = FreePort.Next();
        var changed = NodeHost.Sh("server", "mkdir -p /www; echo hello-again > /www/index.html; exec httpd -f -p 80 -h /www", w =>
        {
            w.Ports = [new PortMapping { ContainerPort = 80, HostPort = newPort }];
            w.StopGracePeriodSeconds = 1;
        });
        Assert.Equal(ContainerState.Running, (await node.Client.RunAsync(changed)).State);
        using (var http = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) })
        {
            // "running" means its program started, not that httpd listens yet.
            var deadline = DateTime.UtcNow + s_wait;
            while (true)
            {
                try
                {
                    Assert.Equal("hello-again\n", await http.GetStringAsync(new Uri($"http://127.0.0.1:{newPort}/index.html")));
                    break;
                }
                catch (HttpRequestException) when (DateTime.UtcNow < deadline)
                {
                    await Task.Delay(50);
                }
            }
        }
        using (var old = new TcpClient())
        {
            await Assert.ThrowsAnyAsync<SocketException>(() => old.ConnectAsync("127.0.0.1", tcpPort).WaitAsync(TimeSpan.FromSeconds(5)));
        }

        // Removing the server withdraws its ports and its name.
        await node.Client.RemoveAsync("server");
        using (var probe = new TcpClient())
        {
            await Assert.ThrowsAnyAsync<SocketException>(() => probe.ConnectAsync("127.0.0.1", newPort).WaitAsync(TimeSpan.FromSeconds(5)));
        }
        var after = await node.Client.ExecAsync("client", ["cat", "/etc/hosts"]);
        Assert.DoesNotContain("server", after.Stdout, StringComparison.Ordinal);
    }

    [Theory(Timeout = 60_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task Network_none_has_only_loopback_and_host_shares_the_hosts(string runtime)
    {
        await using var node = await NodeHost.StartAsync(runtime: runtime, extraArgs: ["--allow-host-network", "true"]);
        await node.Client.RunAsync(NodeHost.Sh("isolated", "exec sleep 100000", w => { w.Network = NetworkMode.None; w.StopGracePeriodSeconds = 1; }));
        var links = await node.Client.ExecAsync("isolated", ["ip", "-o", "link"]);
        Assert.Equal(["lo"], links.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(':')[1].Trim()));
        Assert.Contains("UP", links.Stdout, StringComparison.Ordinal);

        await node.Client.RunAsync(NodeHost.Sh("hosty", "exec sleep 100000", w => { w.Network = NetworkMode.Host; w.StopGracePeriodSeconds = 1; }));
        var hostLinks = await node.Client.ExecAsync("hosty", ["ip", "-o", "link"]);
        var hostNames = hostLinks.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(':')[1].Trim().Split('@')[0]).Order(StringComparer.Ordinal);
        Assert.Equal(Directory.GetDirectories("/sys/class/net").Select(Path.GetFileName).Order(StringComparer.Ordinal), hostNames);
    }
}

using NATS.Client.Core;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Client;
using Orchestrator.Testing;

using static Orchestrator.Daemon.Tests.Node.FleetHarness;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// Deployment names across nodes, for real: three orchd nodes on one nats-server, a web server
/// deployment (two replicas) on two of them and a client on the third. The client reaches the
/// server by its deployment's name through the service address its node gives it; connections
/// spread over both replicas; a 2.6 MB answer arrives whole; twenty at once all arrive; one quiet
/// for 14 s still works; of 300 held open at once 256 are carried and the rest closed; the
/// client node's orchd restarts and the name still works; `connect` refuses anything that is not
/// a ready replica of a fleet deployment; when one server node's orchd dies mid-run, connections
/// go to the other replica from the first one, and once the dead node is lost and its replica
/// placed again, both answer again.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class ServiceNamesTests
{
    private static Deployment Server() => new()
    {
        Name = "db",
        Replicas = 2,
        Selector = new() { ["role"] = "db" },
        Template = new Workload
        {
            Image = NodeHost.Image,
            Command = ["sh", "-c", "mkdir -p /www; echo db-on-$(hostname) > /www/index.html; seq 1 400000 > /www/big; exec httpd -f -p 8080 -h /www"],
            StopGracePeriodSeconds = 0,
        },
    };

    private static Deployment Client() => new()
    {
        Name = "web",
        Replicas = 1,
        Selector = new() { ["role"] = "web" },
        Template = new Workload { Image = NodeHost.Image, Command = ["sleep", "100000"], StopGracePeriodSeconds = 0 },
    };

    [Fact(Timeout = 300_000)]
    public async Task A_deployment_is_reached_by_name_from_another_node_balanced_over_its_replicas_and_past_a_dead_node()
    {
        await using var nats = await NatsServer.StartAsync();
        var hosts = new List<NodeHost>();
        try
        {
            string[] roles = ["db", "web", "db"];
            for (var i = 0; i < 3; i++)
            {
                hosts.Add(await NodeHost.StartAsync(sharedNats: nats, name: $"s{i}-{Guid.NewGuid().ToString("N")[..4]}", extraArgs: [.. Fast, "--label", "role=" + roles[i]]));
            }
            var web = hosts[1];
            await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
            await connection.ConnectAsync();
            var fleet = new FleetClient(connection);
            await fleet.ApplyAsync([Server(), Client()]);
            var servers = await WaitForRunningAsync(hosts, "db-", r => r.Values.Sum(l => l.Count) == 2, "two db replicas");
            Assert.Empty(servers[web.NodeName]);
            await WaitForRunningAsync([web], "web-", r => r[web.NodeName].Count == 1, "web-0 on its node");

            async Task<ExecReply> Get(string path)
                => await web.Client.ExecAsync("web-0", ["sh", "-c", $"printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | nc -w 10 db 8080"], 30);

            // The name is the service address on web's node, and a request by name is answered.
            var first = await Eventually.ValueAsync("db answers web-0 by name", () => Get("/index.html"),
                r => r.ExitCode == 0 && r.Stdout.Contains("db-on-db-", StringComparison.Ordinal), TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(300),
                r => $"exit {r.ExitCode}: {r.Stdout} {r.Stderr}");
            var hostsFile = (await web.Client.ExecAsync("web-0", ["cat", "/etc/hosts"])).Stdout;
            Assert.Matches(@"\n10\.89\.\d+\.\d+\tdb\n", hostsFile);
            Assert.StartsWith("HTTP/1.", first.Stdout, StringComparison.Ordinal);

            // Connections take the replicas in turn: once both nodes' endpoints are in (each writes
            // its own when it changes), six requests in a row reach both.
            async Task<string> Who()
            {
                var r = await Get("/index.html");
                Assert.True(r.ExitCode == 0, $"exit {r.ExitCode} {r.Stdout} {r.Stderr}");
                return r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1].Trim();
            }
            var seen = new HashSet<string>(StringComparer.Ordinal);
            await Eventually.ValueAsync("both replicas answer", async () => { seen.Add(await Who()); return seen.Count; }, n => n == 2,
                TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(100));
            var six = new List<string>();
            for (var i = 0; i < 6; i++)
            {
                six.Add(await Who());
            }
            Assert.Equal(["db-on-db-0", "db-on-db-1"], six.Distinct().Order(StringComparer.Ordinal));

            // A large answer arrives whole (2.6 MB through the session's flow control).
            var big = await web.Client.ExecAsync("web-0", ["sh", "-c", "printf 'GET /big HTTP/1.0\\r\\n\\r\\n' | nc -w 10 db 8080 | tail -n 400000 | md5sum"], 60);
            var serverNode = hosts.First(h => servers[h.NodeName].Count > 0);
            var want = await serverNode.Client.ExecAsync(servers[serverNode.NodeName][0], ["sh", "-c", "md5sum /www/big"]);
            Assert.Equal(want.Stdout.Split(' ')[0], big.Stdout.Split(' ')[0]);

            // Twenty connections at once, all answered.
            var many = await web.Client.ExecAsync("web-0", ["sh", "-c",
                "for i in $(seq 1 20); do (printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 10 db 8080 > /tmp/o$i) & done; wait; cat /tmp/o* | grep -c db-on-db-"], 60);
            Assert.Equal("20", many.Stdout.Trim());

            // A connection that stays quiet for longer than a session frame may wait (10 s) still carries
            // the request that comes after.
            var quiet = await web.Client.ExecAsync("web-0", ["sh", "-c", "(sleep 14; printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n'; sleep 2) | nc db 8080"], 60);
            Assert.True(quiet.Stdout.Contains("db-on-db-", StringComparison.Ordinal), $"after 14 s of quiet: exit {quiet.ExitCode} {quiet.Stdout} {quiet.Stderr}");

            // Three hundred connections held open at once: the node carries 256 and closes the rest at
            // once (a container cannot take the gateway's memory); afterwards, requests go through again.
            var held = await web.Client.ExecAsync("web-0", ["sh", "-c",
                "for i in $(seq 1 300); do (sleep 10 | nc db 8080 > /dev/null 2>&1) & done; sleep 5; pidof nc | wc -w"], 90);
            var open = int.Parse(held.Stdout.Trim(), System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(open is >= 240 and <= 256, $"{open} connections held open ({held.Stderr})\n"
                + string.Join("\n", web.Daemon.Output.Split('\n').Where(l => l.Contains("services", StringComparison.Ordinal)).Take(40)));
            await Eventually.ValueAsync("a request after the burst", () => Get("/index.html"),
                r => r.ExitCode == 0 && r.Stdout.Contains("db-on-db-", StringComparison.Ordinal), TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(300),
                r => $"exit {r.ExitCode}: {r.Stdout} {r.Stderr}");

            // An address of the range that names nothing: the connection is closed, nothing else happens.
            var nobody = await web.Client.ExecAsync("web-0", ["sh", "-c", "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 10.89.255.254 8080; echo exit=$?"], 30);
            Assert.DoesNotContain("HTTP/1.", nobody.Stdout, StringComparison.Ordinal);

            // web's orchd restarts (its proxy listens on another port then): the name still leads there.
            await web.KillOrchdAsync();
            await web.StartOrchdAsync([.. Fast, "--label", "role=web"]);
            await Eventually.ValueAsync("db answers by name after web's orchd restarted", () => Get("/index.html"),
                r => r.ExitCode == 0 && r.Stdout.Contains("db-on-db-", StringComparison.Ordinal), TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(300),
                r => $"exit {r.ExitCode}: {r.Stdout} {r.Stderr}\n{web.Daemon.Output}");

            // connect reaches ready fleet replicas only: not a container run by hand, not a name that is not there.
            await serverNode.Client.RunAsync(NodeHost.Sh("manual", "exec httpd -f -p 8080 -h /", w => w.StopGracePeriodSeconds = 0));
            var node = new NodeClient(connection, serverNode.NodeName);
            var refused = await Assert.ThrowsAsync<NodeRequestException>(() => node.OpenConnectAsync("manual", 8080));
            Assert.Equal(ErrorKind.NotFound, refused.Kind);
            Assert.Contains("not a ready replica of a fleet deployment", refused.Message, StringComparison.Ordinal);
            Assert.Equal(ErrorKind.Invalid, (await Assert.ThrowsAsync<NodeRequestException>(() => node.OpenConnectAsync(servers[serverNode.NodeName][0], 0))).Kind);

            // One server node's orchd dies (its replica runs on, out of reach): every request is
            // answered by the other replica, from the first one after the kill.
            var dead = hosts.Last(h => servers[h.NodeName].Count > 0);
            var alive = hosts.First(h => h != dead && servers[h.NodeName].Count > 0);
            await dead.KillOrchdAsync();
            for (var i = 0; i < 4; i++)
            {
                var r = await Get("/index.html");
                Assert.True(r.ExitCode == 0 && r.Stdout.Contains($"db-on-{servers[alive.NodeName][0]}", StringComparison.Ordinal), $"request {i}: exit {r.ExitCode} {r.Stdout} {r.Stderr}");
            }

            // The dead node is lost: its replica is placed on the live server node, whose endpoints
            // then carry both names, and every request is answered by one of them.
            await WaitForRunningAsync([alive], "db-", r => r[alive.NodeName].Count == 2, "both db replicas on the live node");
            var after = new HashSet<string>(StringComparer.Ordinal);
            await Eventually.ValueAsync("both replicas on the live node answer", async () =>
            {
                var r = await Get("/index.html");
                Assert.True(r.ExitCode == 0, $"exit {r.ExitCode} {r.Stdout} {r.Stderr}");
                after.Add(r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1].Trim());
                return after.Count;
            }, n => n == 2, TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(100));
        }
        finally
        {
            await DisposeAllAsync(hosts);
        }
    }

    [Fact(Timeout = 300_000)]
    public async Task A_compose_stack_on_two_nodes_reaches_its_services_by_name_with_its_variables_and_a_secret()
    {
        await using var nats = await NatsServer.StartAsync();
        using var dir = new TempDir("orch-names-compose");
        var keyFile = dir.Combine("op.nk");
        var key = await Orchctl.RunAsync("keys", "create", "-o", keyFile);
        Assert.True(key.Code == 0, key.All);
        var hosts = new List<NodeHost>();
        try
        {
            foreach (var role in (string[])["db", "web"])
            {
                hosts.Add(await NodeHost.StartAsync(sharedNats: nats, name: $"c{role}-{Guid.NewGuid().ToString("N")[..4]}",
                    extraArgs: [.. Fast, "--trusted-key", key.Out.Trim(), "--label", "role=" + role]));
            }
            await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
            await connection.ConnectAsync();
            var fleet = new FleetClient(connection);
            await Eventually.TrueAsync("both nodes' sealing keys", async () => (await fleet.GetNodesAsync()).Count(n => SecretSealing.IsNodeKey(n.Info.SealKey)) == 2,
                TimeSpan.FromSeconds(60), () => "", TimeSpan.FromMilliseconds(300));

            // As its author wrote it: ${VAR}s from the project's .env, a secret from a file beside it,
            // placement by node label; each service a deployment of its own, on its own node.
            var project = Directory.CreateDirectory(dir.Combine("plant")).FullName;
            File.WriteAllText(Path.Combine(project, ".env"), $"IMAGE={NodeHost.Image}\nGREETING=hello-from-env\nDB_PORT=8080\n");
            File.WriteAllText(Path.Combine(project, "token.txt"), "tok-1");
            var file = Path.Combine(project, "docker-compose.yml");
            File.WriteAllText(file, """
                services:
                  db:
                    image: ${IMAGE}
                    command: ["sh", "-c", "mkdir -p /www && echo \"${GREETING} token=$$(cat /run/secrets/token)\" > /www/index.html && exec httpd -f -p ${DB_PORT} -h /www"]
                    secrets: [token]
                    deploy:
                      placement:
                        constraints: ["node.labels.role == db"]
                  web:
                    image: ${IMAGE}
                    command: ["sh", "-c", "while true; do echo \"web got $$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 db ${DB_PORT} | tail -n 1)\"; sleep 0.5; done"]
                    deploy:
                      placement:
                        constraints: ["node.labels.role == web"]
                secrets:
                  token:
                    file: ./token.txt
                """);
            var applied = await Orchctl.RunAsync(["--server", nats.Url, "apply", "-f", file, "--stack", "--sign-key", keyFile]);
            Assert.True(applied.Code == 0, applied.All);
            Assert.Contains("secret token: created from ./token.txt", applied.Out, StringComparison.Ordinal);
            var (db, web) = (hosts[0], hosts[1]);
            await WaitForRunningAsync([db], "db-", r => r[db.NodeName].Count == 1, "db-0 on the db node");
            await WaitForRunningAsync([web], "web-", r => r[web.NodeName].Count == 1, "web-0 on the web node");
            await web.LogsUntilAsync("web-0", lines => lines.Any(l => l.Text == "web got hello-from-env token=tok-1"), TimeSpan.FromSeconds(60),
                "web reaching db on the other node by its service name");
            Assert.Matches(@"\n10\.89\.\d+\.\d+\tdb\n", (await web.Client.ExecAsync("web-0", ["cat", "/etc/hosts"])).Stdout);
            Assert.DoesNotContain(await db.Client.ListAsync(), c => c.Name.StartsWith("web-", StringComparison.Ordinal));
        }
        finally
        {
            await DisposeAllAsync(hosts);
        }
    }
}

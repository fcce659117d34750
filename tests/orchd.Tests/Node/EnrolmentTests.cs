using NATS.Client.Core;
using Orchestrator.Api;
using Orchestrator.Client;
using Orchestrator.Client.Identity;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// Device identity end to end (issue 20), with the real binaries and a real nats-server in operator
/// mode: `orchctl identity init` makes the hierarchy, `orchd identity serve` issues, `orchctl node
/// token create` makes one-time tokens, `orchd enroll` joins devices, orchd runs on what it got,
/// and `orchctl node revoke` fences a device out of the fleet.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class EnrolmentTests
{
    [Fact(Timeout = 240_000)]
    public async Task Devices_enrol_with_tokens_run_signed_replicas_and_a_revoked_one_is_cut_off_and_loses_them_at_once()
    {
        Requires.Root();
        using var dir = new TempDir("orch-enrol");
        var signKey = dir.Combine("op.nk");
        var keys = await Orchctl.RunAsync("keys", "create", "-o", signKey);
        Assert.True(keys.Code == 0, keys.All);
        await using var hub = await Hub.StartAsync(dir, "--name", "lab", "--trusted-key", keys.Out.Trim());
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(dir.Combine("id", "offline", "operator.nk")));
        await hub.StartServiceAsync();
        var admin = hub.Admin;
        var server = hub.Server;
        var adminConnection = hub.AdminConnection;

        var schedulerToken = await hub.TokenAsync("--labels", "site=lab,role=core", "--scheduler");
        var workerToken = await Orchctl.RunAsync([.. admin, "node", "token", "create", "--labels", "site=lab,role=edge", "--uses", "2", "--ttl", "1h"]);
        Assert.True(workerToken.Code == 0, workerToken.All);
        Assert.Contains("2 use(s)", workerToken.Err, StringComparison.Ordinal);

        var hosts = new List<NodeHost>();
        var lease = new[] { "--heartbeat", "1s", "--unreachable-after", "20s", "--lost-after", "60s", "--leader-lease", "3s" };
        try
        {
            foreach (var (name, token) in new[] { ("gw-1", schedulerToken), ("gw-2", workerToken.Out.Trim()), ("gw-3", workerToken.Out.Trim()) })
            {
                // No credentials, labels or trusted keys on the command line: all from the enrolment.
                hosts.Add(await hub.EnrolledNodeAsync(name, token, lease));
            }
            // The worker token's two uses are spent: a fourth device is refused, with the fix.
            using (var fourth = new TempDir("orch-enrol-4"))
            {
                await using var refused = DaemonProcess.Start(Repo.Binary("orchd"), ["enroll", server.Url, workerToken.Out.Trim(), "--state-dir", fourth.Path, "--node-name", "gw-4", "--config", "/dev/null"]);
                Assert.NotEqual(0, await refused.WaitForExitAsync(TimeSpan.FromSeconds(30)));
                Assert.Contains("has been used (gw-2, gw-3)", refused.Output, StringComparison.Ordinal);
                await using var garbage = DaemonProcess.Start(Repo.Binary("orchd"), ["enroll", server.Url, "K10::server:abc", "--state-dir", fourth.Path, "--config", "/dev/null"]);
                Assert.Equal(2, await garbage.WaitForExitAsync(TimeSpan.FromSeconds(30)));
                Assert.Contains("not an enrolment token", garbage.Output, StringComparison.Ordinal);
            }

            var nodes = await Orchctl.RunAsync([.. admin, "get", "nodes", "-o", "wide"]);
            Assert.True(nodes.Code == 0, nodes.All);
            foreach (var name in new[] { "gw-1", "gw-2", "gw-3" })
            {
                Assert.Contains(name, nodes.Out, StringComparison.Ordinal);
            }
            Assert.Contains("role=edge", nodes.Out, StringComparison.Ordinal);
            // Signed by the key `identity init` was given: every node got it as its trusted key.
            var fleet = new FleetClient(adminConnection);
            var manifest = dir.Combine("web.yaml");
            await File.WriteAllTextAsync(manifest, $$"""
                kind: Deployment
                name: web
                replicas: 2
                selector: { role: edge }
                template:
                  image: {{NodeHost.Image}}
                  command: [sleep, "100000"]
                  network: none
                  stopGracePeriodSeconds: 0
                """);
            var apply = await Orchctl.RunAsync([.. admin, "apply", "-f", manifest, "--sign-key", signKey]);
            Assert.True(apply.Code == 0, apply.All);
            await FleetHarness.WaitForRunningAsync(hosts, "web-", r => r["gw-2"].Count == 1 && r["gw-3"].Count == 1, "one web replica on each edge node");
            // The audit: who wrote the revision (admin.creds' user) and the key that signed it, in
            // rollout history and in the events stream.
            var history = await Orchctl.RunAsync([.. admin, "rollout", "history", "web"]);
            Assert.True(history.Code == 0, history.All);
            Assert.Contains("BY", history.Out, StringComparison.Ordinal);
            Assert.Contains("admin (U", history.Out, StringComparison.Ordinal);
            Assert.Contains($"yes ({keys.Out.Trim()[..12]}", history.Out, StringComparison.Ordinal);
            await Eventually.TrueAsync("a deployment.changed event naming the writer and the signer", async () =>
            {
                var events = await Orchctl.RunAsync([.. admin, "events", "--for", "web"]);
                return events.Out.Contains("written by admin (U", StringComparison.Ordinal) && events.Out.Contains($"signed by {keys.Out.Trim()}", StringComparison.Ordinal);
            }, TimeSpan.FromSeconds(20), () => "no such event", TimeSpan.FromMilliseconds(500));

            var revoked = hosts.Single(h => h.NodeName == "gw-3");
            var watch = System.Diagnostics.Stopwatch.StartNew();
            var revoke = await Orchctl.RunAsync([.. admin, "node", "revoke", "gw-3"]);
            Assert.True(revoke.Code == 0, revoke.All);
            // The fleet takes it for lost at once (lost_after is 60 s) and both replicas run on gw-2.
            await FleetHarness.WaitForRunningAsync(hosts, "web-", r => r["gw-2"].Count == 2, "both web replicas on gw-2 after gw-3 was revoked");
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"re-placed after {watch.Elapsed.TotalSeconds:0.0} s; lost_after is 60 s");
            TestContext.Current.SendDiagnosticMessage($"revoke -> replica running on gw-2: {watch.Elapsed.TotalSeconds:0.0} s");
            // The device itself was told, and removed the fleet's replicas (nothing runs twice).
            await revoked.Daemon.WaitForLogAsync("credentials were revoked", TimeSpan.FromSeconds(20));
            await Eventually.TrueAsync("gw-3's runtime to hold no container", () => Task.FromResult(Directory.GetDirectories(Path.Combine(revoked.RunDir, "runtime")).Length == 0),
                TimeSpan.FromSeconds(30), () => string.Join(",", Directory.GetDirectories(Path.Combine(revoked.RunDir, "runtime"))), TimeSpan.FromMilliseconds(200));
            var after = await Orchctl.RunAsync([.. admin, "get", "nodes"]);
            Assert.Matches(@"gw-3\s+lost,revoked", after.Out);
            // An uncordon cannot bring it back: the setting is the identity service's.
            var uncordon = await Orchctl.RunAsync([.. admin, "uncordon", "gw-3"]);
            Assert.NotEqual(0, uncordon.Code);
            Assert.Contains("node 'gw-3' is revoked", uncordon.Err, StringComparison.Ordinal);
            // It keeps trying and keeps being refused: still out after a while.
            await Task.Delay(3000);
            Assert.Null(await fleet.GetNodeInfoAsync("gw-3", TimeSpan.FromSeconds(1)));
        }
        finally
        {
            await FleetHarness.DisposeAllAsync(hosts);
        }
    }

    [Fact(Timeout = 180_000)]
    public async Task A_device_with_a_token_in_its_configuration_waits_for_the_hub_and_enrols_on_its_first_start()
    {
        Requires.Root();
        using var dir = new TempDir("orch-enrol");
        await using var hub = await Hub.StartAsync(dir);
        var hosts = new List<NodeHost>();
        try
        {
            // The token is made while a service runs; then the service goes away (the hub's side is down).
            await hub.StartServiceAsync();
            var token = await hub.TokenAsync("--labels", "site=factory", "--scheduler");
            await hub.StopServiceAsync();

            // A malformed token is a configuration error at once (78), before anything else.
            var host = await NodeHost.StartAsync(sharedNats: hub.Server, name: "fab-1", start: false);
            hosts.Add(host);
            await using (var bad = DaemonProcess.Start(Repo.Binary("orchd"), host.Args(["--nats-enroll-token", "orchtok1.garbage"])))
            {
                Assert.Equal(78, await bad.WaitForExitAsync(TimeSpan.FromSeconds(20)));
                Assert.Contains("nats.enroll_token", bad.Output, StringComparison.Ordinal);
            }
            host.ClientOpts = hub.AdminConnection.Opts with { };
            var start = host.StartOrchdAsync(["--nats-enroll-token", token, "--heartbeat", "1s"]);
            await Eventually.TrueAsync("orchd to say it waits to enrol", () => Task.FromResult(host.Daemon.Output.Contains("cannot enrol yet", StringComparison.Ordinal)),
                TimeSpan.FromSeconds(20), () => host.Daemon.Output, TimeSpan.FromMilliseconds(200));
            Assert.False(start.IsCompleted);
            await hub.StartServiceAsync();
            await start.WaitAsync(TimeSpan.FromSeconds(90));
            Assert.Contains("enrolled as fab-1 with nats.enroll_token", host.Daemon.Output, StringComparison.Ordinal);
            Assert.True(File.Exists(Path.Combine(host.StateDir, "identity", "node.creds")));
            var nodes = await Orchctl.RunAsync([.. hub.Admin, "get", "nodes", "-o", "wide"]);
            Assert.Matches(@"fab-1\s+ready", nodes.Out);
            Assert.Contains("site=factory", nodes.Out, StringComparison.Ordinal);

            // Started again with the same (now spent) token in its configuration: it does not enrol again.
            await host.KillOrchdAsync();
            await host.StartOrchdAsync(["--nats-enroll-token", token, "--heartbeat", "1s"]);
            Assert.DoesNotContain("enrolled as", host.Daemon.Output, StringComparison.Ordinal);
        }
        finally
        {
            await FleetHarness.DisposeAllAsync(hosts);
        }
    }

    [Fact(Timeout = 180_000)]
    public async Task A_device_revoked_while_it_was_away_removes_the_fleets_replicas_once_the_servers_keep_refusing_it()
    {
        Requires.Root();
        using var dir = new TempDir("orch-enrol");
        await using var hub = await Hub.StartAsync(dir);
        await hub.StartServiceAsync();
        var admin = hub.Admin;
        var adminConnection = hub.AdminConnection;
        var hosts = new List<NodeHost>();
        string[] fast = ["--heartbeat", "1s", "--unreachable-after", "20s", "--lost-after", "60s", "--leader-lease", "3s", "--fence-after", "6s"];
        try
        {
            hosts.Add(await hub.EnrolledNodeAsync("core-1", await hub.TokenAsync("--labels", "role=core", "--scheduler"), fast));
            hosts.Add(await hub.EnrolledNodeAsync("edge-1", await hub.TokenAsync("--labels", "role=edge"), fast));
            await new FleetClient(adminConnection).ApplyAsync([FleetHarness.Sleepers("job", 1, selector: new() { ["role"] = "edge" })]);
            var edge = hosts[1];
            await FleetHarness.WaitForRunningAsync(hosts, "job-", r => r["edge-1"].Count == 1, "job-0 on edge-1");

            // edge-1's orchd is away (its container runs on); meanwhile it is revoked.
            await edge.KillOrchdAsync();
            var revoke = await Orchctl.RunAsync([.. admin, "node", "revoke", "edge-1"]);
            Assert.True(revoke.Code == 0, revoke.All);
            Assert.Single(Directory.GetDirectories(Path.Combine(edge.RunDir, "runtime")));

            // Back, it is refused at every connect; after fence_after of refusals it removes the
            // replica the fleet took from it. (It never hears "revoked": the servers only refuse it.)
            var again = DaemonProcess.Start(Repo.Binary("orchd"), edge.Args(fast));
            await using (again)
            {
                await again.WaitForLogAsync("refused this node's credentials", TimeSpan.FromSeconds(60));
                await Eventually.TrueAsync("edge-1's runtime to hold no container", () => Task.FromResult(Directory.GetDirectories(Path.Combine(edge.RunDir, "runtime")).Length == 0),
                    TimeSpan.FromSeconds(30), () => again.Output, TimeSpan.FromMilliseconds(200));
                Assert.Contains("authorization violation", again.Output, StringComparison.OrdinalIgnoreCase);
                again.Signal(15);
                await again.WaitForExitAsync(TimeSpan.FromSeconds(30));
            }
        }
        finally
        {
            await FleetHarness.DisposeAllAsync(hosts);
        }
    }

    /// <summary>
    /// A hub in operator mode: `orchctl identity init` in DIR/id, nats-server with its
    /// configuration, the admin's flags and connection, and `orchd identity serve` on demand.
    /// </summary>
    private sealed class Hub : IAsyncDisposable
    {
        private DaemonProcess? _service;

        public required string Dir { get; init; }
        public required NatsServer Server { get; init; }
        public required NatsConnection AdminConnection { get; init; }
        public string[] Admin => ["--server", Server.Url, "--creds", Path.Combine(Dir, "admin.creds")];

        public static async Task<Hub> StartAsync(TempDir dir, params string[] initFlags)
        {
            var init = await Orchctl.RunAsync(["identity", "init", dir.Combine("id"), .. initFlags]);
            Assert.True(init.Code == 0, init.All);
            var server = await NatsServer.StartAsync(await File.ReadAllTextAsync(dir.Combine("id", "server", "nats-server.conf")));
            var admin = new NatsConnection(NatsOpts.Default with
            {
                Url = server.Url, AuthOpts = NatsAuthOpts.Default with { CredsFile = dir.Combine("id", "admin.creds") }, ConnectTimeout = TimeSpan.FromSeconds(5),
            });
            await admin.ConnectAsync();
            return new Hub { Dir = dir.Combine("id"), Server = server, AdminConnection = admin };
        }

        public async Task StartServiceAsync()
        {
            _service = DaemonProcess.Start(Repo.Binary("orchd"), ["identity", "serve", "--dir", Path.Combine(Dir, "service"), "--nats-url", Server.Url, "--config", "/dev/null"]);
            await _service.WaitForLogAsync("identity service for account", TimeSpan.FromSeconds(20));
        }

        public async Task StopServiceAsync()
        {
            if (_service is not null)
            {
                await _service.DisposeAsync();
                _service = null;
            }
        }

        /// <summary>`orchctl node token create FLAGS` as the admin: the token.</summary>
        public async Task<string> TokenAsync(params string[] flags)
        {
            var token = await Orchctl.RunAsync([.. Admin, "node", "token", "create", .. flags]);
            Assert.True(token.Code == 0, token.All);
            return token.Out.Trim();
        }

        /// <summary>A node host enrolled with `orchd enroll` and its orchd started with <paramref name="orchdArgs"/> (no credentials: the enrolment's).</summary>
        public async Task<NodeHost> EnrolledNodeAsync(string name, string token, string[] orchdArgs)
        {
            var host = await NodeHost.StartAsync(sharedNats: Server, name: name, start: false);
            await using (var enroll = DaemonProcess.Start(Repo.Binary("orchd"), ["enroll", Server.Url, token, "--state-dir", host.StateDir, "--node-name", name, "--config", "/dev/null"]))
            {
                Assert.True(await enroll.WaitForExitAsync(TimeSpan.FromSeconds(30)) == 0, enroll.Output);
                Assert.Contains($"enrolled as {name}", enroll.Output, StringComparison.Ordinal);
            }
            host.ClientOpts = AdminConnection.Opts with { };
            await host.StartOrchdAsync(orchdArgs);
            return host;
        }

        public async ValueTask DisposeAsync()
        {
            await StopServiceAsync();
            await AdminConnection.DisposeAsync();
            await Server.DisposeAsync();
        }
    }
}

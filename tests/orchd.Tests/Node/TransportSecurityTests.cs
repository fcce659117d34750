using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using Orchestrator.Fleet.Agent;
using Orchestrator.Client;
using Orchestrator.Api.Workloads;
using static Orchestrator.Daemon.Tests.Node.FleetHarness;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// The fleet's transport security against a real nats-server: TLS with a CA and client
/// certificates made here, nkey users with the permissions packaging/nats/gen-fleet-users.sh
/// writes (docs/nats-security.md). A node's credentials reach its own subjects and no other's.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class TransportSecurityTests
{
    private static readonly string[] s_fast = ["--heartbeat", "1s", "--unreachable-after", "3s", "--lost-after", "6s"];

    [Fact(Timeout = 180_000)]
    public async Task A_node_joins_over_tls_with_its_nkey_heartbeats_and_runs_what_it_is_assigned()
    {
        var suffix = Guid.NewGuid().ToString("N")[..4];
        string scheduler = $"sched-{suffix}", worker = $"edge-{suffix}";
        await using var fleet = await SecureFleet.StartAsync(workers: [worker], schedulers: [scheduler]);
        await fleet.CreateFleetStateAsync();
        var hosts = new List<NodeHost>();
        try
        {
            await fleet.StartNodesAsync(hosts, scheduler, worker);
            await using var operatorConnection = await fleet.ConnectAsync(fleet.OperatorSeed);
            var kv = new NatsKVContext(new NatsJSContext(operatorConnection));

            // Both heartbeat into orch-nodes, with their own keys.
            var heartbeats = await kv.GetStoreAsync("orch-nodes");
            foreach (var name in new[] { scheduler, worker })
            {
                await Eventually.TrueAsync($"a heartbeat of {name}", async () => (await heartbeats.TryGetEntryAsync<byte[]>(name)).Success, TimeSpan.FromSeconds(30),
                    () => $"none; server log:\n{fleet.Violations()}", TimeSpan.FromMilliseconds(200));
            }

            // A deployment for the edge: the scheduler places it on the worker, which runs it.
            var client = new FleetClient(operatorConnection);
            await client.ApplyAsync([new Deployment
            {
                Name = "secure",
                Replicas = 1,
                Selector = new() { ["role"] = "edge" },
                Template = new Workload { Image = NodeHost.Image, Command = ["sleep", "100000"], Network = NetworkMode.None, StopGracePeriodSeconds = 0 },
            }]);
            var edge = hosts[1];
            await Eventually.TrueAsync($"secure-0 running on {worker}", async () => (await edge.Client.ListAsync()).Any(c => c.Name == "secure-0" && c.State == ContainerState.Running),
                TimeSpan.FromSeconds(60), () => $"not running; violations:\n{fleet.Violations()}\n{edge.Daemon.Output}", TimeSpan.FromMilliseconds(250));

            // Its events reached the stream, on its own subjects.
            var js = new NatsJSContext(operatorConnection);
            await Eventually.TrueAsync($"an event from {worker} in ORCH_EVENTS",
                async () => (await js.GetStreamAsync("ORCH_EVENTS", new NATS.Client.JetStream.Models.StreamInfoRequest { SubjectsFilter = $"orch.events.{worker}.>" })).Info.State.Subjects is { Count: > 0 },
                TimeSpan.FromSeconds(20), () => $"none; violations:\n{fleet.Violations()}", TimeSpan.FromMilliseconds(250));

            // And neither node was refused anything: the permission sets are enough.
            var violations = fleet.Violations();
            Assert.True(violations.Length == 0, violations);
        }
        finally
        {
            foreach (var host in hosts)
            {
                await host.DisposeAsync();
            }
        }
    }

    [Fact(Timeout = 120_000)]
    public async Task A_nodes_credentials_cannot_publish_subscribe_or_read_as_another_node()
    {
        await using var fleet = await SecureFleet.StartAsync(workers: ["node-a", "node-b"], schedulers: []);
        await fleet.CreateFleetStateAsync();
        await using var operatorConnection = await fleet.ConnectAsync(fleet.OperatorSeed);
        var operatorKv = new NatsKVContext(new NatsJSContext(operatorConnection));
        var operatorAssignments = await operatorKv.GetStoreAsync("orch-assignments");
        await operatorAssignments.PutAsync("node-a", Encoding.UTF8.GetBytes("for a"));
        await operatorAssignments.PutAsync("node-b", Encoding.UTF8.GetBytes("for b"));

        var errors = new ConcurrentQueue<string>();
        await using var a = await fleet.ConnectAsync(fleet.Seed("node-a"), "_INBOX_node-a", errors);
        var js = new NatsJSContext(a);
        var kv = new NatsKVContext(js);
        var nodes = await kv.GetStoreAsync("orch-nodes");
        var assignments = await kv.GetStoreAsync("orch-assignments");

        // Its own heartbeat, events, requests and assignments: allowed.
        await nodes.PutAsync("node-a", Encoding.UTF8.GetBytes("{}"));
        (await js.PublishAsync("orch.events.node-a.test", Encoding.UTF8.GetBytes("{}"))).EnsureSuccess();
        await using (var own = await a.SubscribeCoreAsync<string>("orch.node.node-a.>"))
        {
            await a.PingAsync();
            await operatorConnection.PublishAsync("orch.node.node-a.ps", "hello a");
            using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            Assert.Equal("hello a", (await own.Msgs.ReadAsync(wait.Token)).Data);
        }
        await foreach (var entry in assignments.WatchAsync<byte[]>("node-a")) // as a node reads its own: one watch on its key
        {
            Assert.Equal("for a", Encoding.UTF8.GetString(entry.Value!));
            break;
        }
        Assert.Empty(errors);

        // Node b's heartbeat: the server refuses the publish (and the put never gets its ack).
        await RefusedAsync(errors, "Permissions Violation for Publish to \"$KV.orch-nodes.node-b\"",
            token => nodes.PutAsync("node-b", Encoding.UTF8.GetBytes("{\"node\":\"node-b\"}"), cancellationToken: token).AsTask());
        Assert.False((await (await operatorKv.GetStoreAsync("orch-nodes")).TryGetEntryAsync<byte[]>("node-b")).Success);

        // Node b's events.
        await RefusedAsync(errors, "Permissions Violation for Publish to \"orch.events.node-b.test\"",
            token => a.PublishAsync("orch.events.node-b.test", "forged", cancellationToken: token).AsTask());

        // Node b's requests: the subscription is refused and nothing reaches it.
        var stolen = await a.SubscribeCoreAsync<string>("orch.node.node-b.>");
        await RefusedAsync(errors, "Permissions Violation for Subscription to \"orch.node.node-b.>\"", token => a.PingAsync(token).AsTask());
        await operatorConnection.PublishAsync("orch.node.node-b.exec", "for b only");
        await Task.Delay(500);
        Assert.False(stolen.Msgs.TryRead(out _));
        await stolen.DisposeAsync();

        // Everyone's replies (the default inbox): refused as well.
        var inboxes = await a.SubscribeCoreAsync<string>("_INBOX.>");
        await RefusedAsync(errors, "Permissions Violation for Subscription to \"_INBOX.>\"", token => a.PingAsync(token).AsTask());
        await inboxes.DisposeAsync();

        // Node b's assignments: neither a consumer on its keys nor a direct get.
        await RefusedAsync(errors, ".$KV.orch-assignments.node-b\"", async token =>
        {
            await foreach (var _ in assignments.WatchAsync<byte[]>("node-b", cancellationToken: token))
            {
                Assert.Fail("node-a read one of node-b's assignments");
            }
        });
        Assert.Contains(errors, e => e.StartsWith("Permissions Violation for Publish to \"$JS.API.CONSUMER.CREATE.KV_orch-assignments.", StringComparison.Ordinal));
        await RefusedAsync(errors, "Permissions Violation for Publish to \"$JS.API.DIRECT.GET.KV_orch-assignments\"",
            token => assignments.TryGetEntryAsync<byte[]>("node-b", cancellationToken: token).AsTask());

        // The fleet's secrets: its own sealed copy, by the direct get a node makes; node-b's copy and
        // the operator's escrow copy (NAME.VERSION) are refused, as is the client's usual direct get.
        var operatorSecrets = await FleetStore.OpenAsync(operatorKv, "orch-secrets", 1, default);
        foreach (var (key, value) in new[] { ("db.1.node-a", "for a"), ("db.1.node-b", "for b"), ("db.1", "escrow") })
        {
            await operatorSecrets.PutAsync(key, Encoding.UTF8.GetBytes(value));
        }
        Assert.Equal("for a", Encoding.UTF8.GetString((await NodeSecrets.GetDirectAsync(a, "orch-secrets", "db.1.node-a", default))!));
        Assert.Null(await NodeSecrets.GetDirectAsync(a, "orch-secrets", "db.2.node-a", default)); // none: null, not an error
        await RefusedAsync(errors, "Permissions Violation for Publish to \"$JS.API.DIRECT.GET.KV_orch-secrets.$KV.orch-secrets.db.1.node-b\"",
            token => NodeSecrets.GetDirectAsync(a, "orch-secrets", "db.1.node-b", token));
        await RefusedAsync(errors, "Permissions Violation for Publish to \"$JS.API.DIRECT.GET.KV_orch-secrets.$KV.orch-secrets.db.1\"",
            token => NodeSecrets.GetDirectAsync(a, "orch-secrets", "db.1", token));
        await RefusedAsync(errors, "Permissions Violation for Publish to \"$JS.API.DIRECT.GET.KV_orch-secrets\"",
            async token => await (await kv.GetStoreAsync("orch-secrets", token)).TryGetEntryAsync<byte[]>("db.1.node-b", cancellationToken: token));

        // A consumer whose API subject names node-a's keys but whose body asks for node-b's: the
        // permission lets the request through, and JetStream refuses it for the mismatch.
        var body = """{"stream_name":"KV_orch-assignments","config":{"name":"sneaky","deliver_subject":"_INBOX_node-a.sneaky","filter_subject":"$KV.orch-assignments.node-b","ack_policy":"none","deliver_policy":"all"}}""";
        var reply = await a.RequestAsync<string, string>("$JS.API.CONSUMER.CREATE.KV_orch-assignments.sneaky.$KV.orch-assignments.node-a", body,
            replyOpts: new NatsSubOpts { Timeout = TimeSpan.FromSeconds(5) });
        Assert.Contains("\"error\"", reply.Data, StringComparison.Ordinal);
        Assert.Contains("did not match filtered subject", reply.Data, StringComparison.Ordinal);
    }

    [Fact(Timeout = 180_000)]
    public async Task Neither_a_scheduler_nor_a_nodes_credentials_can_alter_delete_or_purge_the_fleets_streams()
    {
        await using var fleet = await SecureFleet.StartAsync(workers: ["node-a"], schedulers: ["core-1"]);
        await fleet.CreateFleetStateAsync();
        await using var operatorConnection = await fleet.ConnectAsync(fleet.OperatorSeed);
        var operatorJs = new NatsJSContext(operatorConnection);
        var deployments = await new NatsKVContext(operatorJs).GetStoreAsync("orch-deployments");
        await deployments.PutAsync("web", Encoding.UTF8.GetBytes("{\"name\":\"web\"}"));

        // What the independent check sent with a scheduler's seed: max_age 1 s on the deployments' stream.
        const string shorten = """{"name":"KV_orch-deployments","subjects":["$KV.orch-deployments.>"],"retention":"limits","max_age":1000000000,"storage":"file","num_replicas":1,"max_msgs_per_subject":10,"allow_rollup_hdrs":true,"deny_delete":true,"allow_direct":true}""";
        foreach (var who in new[] { "core-1", "node-a" })
        {
            var errors = new ConcurrentQueue<string>();
            await using var connection = await fleet.ConnectAsync(fleet.Seed(who), $"_INBOX_{who}", errors);
            foreach (var (api, body) in new[]
            {
                ("$JS.API.STREAM.UPDATE.KV_orch-deployments", shorten),
                ("$JS.API.STREAM.DELETE.KV_orch-deployments", ""),
                ("$JS.API.STREAM.PURGE.KV_orch-deployments", ""),
                ("$JS.API.STREAM.UPDATE.ORCH_EVENTS", """{"name":"ORCH_EVENTS","subjects":["orch.events.>"],"max_age":1000000000}"""),
                ("$JS.API.STREAM.DELETE.ORCH_EVENTS", ""),
                ("$JS.API.STREAM.PURGE.ORCH_EVENTS", ""),
            })
            {
                await RefusedAsync(errors, $"Permissions Violation for Publish to \"{api}\"",
                    token => connection.RequestAsync<string, string>(api, body, replyOpts: new NatsSubOpts { Timeout = TimeSpan.FromSeconds(5) }, cancellationToken: token).AsTask());
            }
            if (who == "core-1")
            {
                // A scheduler may create a missing bucket; a create over an existing one with
                // other limits is refused by JetStream itself, so CREATE cannot alter one either.
                var reply = await connection.RequestAsync<string, string>("$JS.API.STREAM.CREATE.KV_orch-deployments", shorten,
                    replyOpts: new NatsSubOpts { Timeout = TimeSpan.FromSeconds(5) });
                Assert.Contains("\"error\"", reply.Data, StringComparison.Ordinal);
                Assert.Contains("already in use", reply.Data, StringComparison.Ordinal);
            }
        }

        // Nor a single deployment's key: a put, a delete or a purge (each a publish to
        // $KV.orch-deployments.web, the last two with a KV-Operation header) is refused by subject.
        // A scheduler's rollbacks and autoscaled counts go into the statuses instead.
        foreach (var who in new[] { "core-1", "node-a" })
        {
            var errors = new ConcurrentQueue<string>();
            await using var connection = await fleet.ConnectAsync(fleet.Seed(who), $"_INBOX_{who}", errors);
            var theirs = await new NatsKVContext(new NatsJSContext(connection)).GetStoreAsync("orch-deployments");
            foreach (var (what, write) in new (string, Func<CancellationToken, Task>)[]
            {
                ("put", token => theirs.PutAsync("web", Encoding.UTF8.GetBytes("{\"name\":\"web\",\"replicas\":0}"), cancellationToken: token).AsTask()),
                ("delete", token => theirs.DeleteAsync("web", cancellationToken: token).AsTask()),
                ("purge", token => theirs.PurgeAsync("web", cancellationToken: token).AsTask()),
            })
            {
                errors.Clear(); // each write must earn its own refusal
                await RefusedAsync(errors, "Permissions Violation for Publish to \"$KV.orch-deployments.web\"", write);
            }
        }

        // Nothing changed: the limits and the deployment are still there, seconds later.
        await Task.Delay(1500);
        var stream = await operatorJs.GetStreamAsync("KV_orch-deployments");
        Assert.Equal(TimeSpan.Zero, stream.Info.Config.MaxAge);
        Assert.Equal("{\"name\":\"web\"}", Encoding.UTF8.GetString((await deployments.GetEntryAsync<byte[]>("web")).Value!));
        var history = new List<NatsKVEntry<byte[]>>();
        await foreach (var entry in deployments.HistoryAsync<byte[]>("web"))
        {
            history.Add(entry);
        }
        Assert.Single(history);
        Assert.True((await operatorJs.GetStreamAsync(Orchestrator.Api.NodeEvent.Stream)).Info.Config.MaxAge > TimeSpan.FromDays(1));
    }

    /// <summary>
    /// #17, item 3: with the rights gen-fleet-users.sh gives (no write to the deployments bucket),
    /// the scheduler still rolls back a signed revision that never gets ready, to the earlier one
    /// with its signature, which the worker's trusted key and replay ledger accept; and it
    /// autoscales. Both decisions are in the statuses; the operator's deployments are as applied,
    /// and the server refused nothing.
    /// </summary>
    [Fact(Timeout = 240_000)]
    public async Task A_scheduler_with_the_documented_rights_rolls_back_and_autoscales_without_writing_a_deployment()
    {
        var suffix = Guid.NewGuid().ToString("N")[..4];
        string scheduler = $"sched-{suffix}", worker = $"edge-{suffix}";
        await using var fleet = await SecureFleet.StartAsync(workers: [worker], schedulers: [scheduler]);
        await fleet.CreateFleetStateAsync();
        var (signingSeed, signingKey) = ManifestSigning.CreateKey();
        var hosts = new List<NodeHost>();
        try
        {
            await fleet.StartNodesAsync(hosts, scheduler, worker, "--trusted-key", signingKey);
            var edge = hosts[1];
            await using var operatorConnection = await fleet.ConnectAsync(fleet.OperatorSeed);
            var client = new FleetClient(operatorConnection);
            var deployments = await new NatsKVContext(new NatsJSContext(operatorConnection)).GetStoreAsync("orch-deployments");
            Deployment Version(string version, bool healthy) => new()
            {
                Name = "roll",
                Replicas = 1,
                Selector = new() { ["role"] = "edge" },
                Rollout = new RolloutSpec { MaxUnavailable = 1, ProgressDeadlineSeconds = 6 },
                Template = ReadyWhenHealthy(version, healthy),
            };
            async Task<ContainerStatus?> RollAsync() => (await edge.Client.ListAsync()).Any(c => c.Name == "roll-0") ? await edge.Client.InspectAsync("roll-0") : null;
            async Task UntilVersionAsync(string version, string what) => await Eventually.TrueAsync(what, async () =>
                await RollAsync() is { State: ContainerState.Running, Ready: true } c && c.Spec!.Env!["VERSION"] == version,
                TimeSpan.FromSeconds(90), () => $"violations:\n{fleet.Violations()}\n{edge.Daemon.Output}", TimeSpan.FromMilliseconds(250));

            await client.ApplyAsync([Version("1", healthy: true)], signingSeed);
            await UntilVersionAsync("1", $"roll-0 v1 ready on {worker}");
            await client.ApplyAsync([Version("2", healthy: false)], signingSeed);
            var view = await Eventually.ValueAsync("the scheduler's rollback", async () => (await client.GetDeploymentsAsync()).Single(d => d.Deployment.Name == "roll"),
                v => v.RolledBackTo is not null, TimeSpan.FromSeconds(90), TimeSpan.FromMilliseconds(250),
                v => $"{v.Status?.Phase} {v.Status?.RolledBack}; violations:\n{fleet.Violations()}");
            Assert.Equal(1UL, view.RolledBackTo!.Generation);
            Assert.Equal("1", view.Deployment.Template.Env!["VERSION"]);
            Assert.Contains("not ready", view.Status!.RolledBack ?? view.Status.LastRollback, StringComparison.Ordinal);
            await UntilVersionAsync("1", $"roll-0 back on v1 on {worker} (v1's signature, accepted by the worker)");

            // The operator's revision 2 is what is stored, and nothing was written after it.
            var stored = await deployments.GetEntryAsync<byte[]>("roll");
            Assert.Equal("2", System.Text.Json.JsonSerializer.Deserialize(stored.Value!, WorkloadJsonContext.Default.Deployment)!.Template.Env!["VERSION"]);
            Assert.Equal(view.Deployment.Revision, stored.Revision);
            var revisions = 0;
            await foreach (var _ in deployments.HistoryAsync<byte[]>("roll"))
            {
                revisions++;
            }
            Assert.Equal(2, revisions);

            // The autoscaler on a custom metric: three replicas, the stored count stays 1.
            var subject = $"orch.metrics.{suffix}.depth";
            var queue = new Deployment
            {
                Name = "scaled",
                Replicas = 1,
                Selector = new() { ["role"] = "edge" },
                Autoscale = new AutoscaleSpec { Min = 1, Max = 3, CooldownSeconds = 0, Metric = new MetricSpec { Subject = subject, TargetPerReplica = 10 } },
                Template = new Workload { Image = NodeHost.Image, Command = ["sleep", "100000"], Network = NetworkMode.None, StopGracePeriodSeconds = 0 },
            };
            await client.ApplyAsync([queue], signingSeed);
            await Eventually.TrueAsync("three scaled replicas on the worker", async () =>
            {
                var running = (await edge.Client.ListAsync()).Count(c => c.Name.StartsWith("scaled-", StringComparison.Ordinal) && c.State == ContainerState.Running);
                if (running != 3)
                {
                    await operatorConnection.PublishAsync(subject, Encoding.UTF8.GetBytes("25")); // ceil(25 / 10) = 3
                }
                return running == 3;
            }, TimeSpan.FromSeconds(60), () => $"violations:\n{fleet.Violations()}", TimeSpan.FromMilliseconds(300));
            var scaled = (await client.GetDeploymentsAsync()).Single(d => d.Deployment.Name == "scaled");
            Assert.Equal(3, scaled.Deployment.Replicas);
            Assert.Equal(3, scaled.Status!.AutoscaledReplicas);
            Assert.Equal(1, System.Text.Json.JsonSerializer.Deserialize((await deployments.GetEntryAsync<byte[]>("scaled")).Value!, WorkloadJsonContext.Default.Deployment)!.Replicas);

            var violations = fleet.Violations();
            Assert.True(violations.Length == 0, violations);
        }
        finally
        {
            foreach (var host in hosts)
            {
                await host.DisposeAsync();
            }
        }
    }

    [Fact(Timeout = 120_000)]
    public async Task An_operator_without_forward_cp_or_exec_is_refused_those_and_keeps_the_rest()
    {
        await using var fleet = await SecureFleet.StartAsync(workers: ["node-a"], schedulers: [], restricted: [("viewer", "exec,cp,forward"), ("no-forward", "forward")]);
        await fleet.CreateFleetStateAsync();
        await using var node = await fleet.ConnectAsync(fleet.Seed("node-a"), "_INBOX_node-a");
        await using var requests = await node.SubscribeCoreAsync<string>("orch.node.node-a.>");
        await node.PingAsync();
        async Task<string?> Delivered(NatsConnection from, string subject)
        {
            await from.PublishAsync(subject, "x");
            await from.PingAsync();
            using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            try
            {
                return (await requests.Msgs.ReadAsync(wait.Token)).Subject;
            }
            catch (OperationCanceledException)
            {
                return null;
            }
        }
        var errors = new ConcurrentQueue<string>();
        await using var viewer = await fleet.ConnectAsync(fleet.Seed("viewer"), errors: errors);
        foreach (var subject in new[] { "orch.node.node-a.exec", "orch.node.node-a.exec.0123", "orch.node.node-a.attach", "orch.node.node-a.attach.0123", "orch.node.node-a.cp", "orch.node.node-a.cp.0123", "orch.node.node-a.port-forward", "orch.node.node-a.port-forward.0123" })
        {
            Assert.Null(await Delivered(viewer, subject));
        }
        await Eventually.TrueAsync("the server's refusals", () => errors.Count(e => e.Contains("Permissions Violation for Publish", StringComparison.Ordinal)) >= 7, TimeSpan.FromSeconds(10));
        Assert.Equal("orch.node.node-a.ps", await Delivered(viewer, "orch.node.node-a.ps"));
        Assert.Equal("orch.node.node-a.logs", await Delivered(viewer, "orch.node.node-a.logs"));
        await using var noForward = await fleet.ConnectAsync(fleet.Seed("no-forward"));
        Assert.Null(await Delivered(noForward, "orch.node.node-a.port-forward"));
        Assert.Equal("orch.node.node-a.exec", await Delivered(noForward, "orch.node.node-a.exec"));
        Assert.Equal("orch.node.node-a.exec.0123", await Delivered(noForward, "orch.node.node-a.exec.0123"));
        Assert.Equal("orch.node.node-a.cp", await Delivered(noForward, "orch.node.node-a.cp"));
        Assert.Equal("orch.node.node-a.attach", await Delivered(noForward, "orch.node.node-a.attach"));
        Assert.Equal("orch.node.node-a.attach.0123", await Delivered(noForward, "orch.node.node-a.attach.0123"));
    }

    [Fact(Timeout = 120_000)]
    public async Task Connections_without_tls_a_client_certificate_or_a_known_nkey_are_refused()
    {
        await using var fleet = await SecureFleet.StartAsync(workers: ["node-a"], schedulers: []);

        // The right credentials get in (the control).
        await using (var ok = await fleet.ConnectAsync(fleet.Seed("node-a"), "_INBOX_node-a"))
        {
            await ok.PingAsync();
        }

        // No TLS at all: the server requires it.
        var plain = await RefusedConnectAsync(fleet.Opts(fleet.Seed("node-a"), tls: false));
        Assert.Contains("tls", plain, StringComparison.OrdinalIgnoreCase);

        // TLS and the nkey, but no client certificate: the handshake fails.
        await RefusedConnectAsync(fleet.Opts(fleet.Seed("node-a"), clientCertificate: false));

        // TLS with a certificate, but no nkey, or one the server does not know.
        var anonymous = await RefusedConnectAsync(fleet.Opts(seedFile: null));
        Assert.Contains("Authorization Violation", anonymous, StringComparison.OrdinalIgnoreCase);
        var stranger = fleet.WriteSeed("stranger", KeyPairSeed());
        var unknown = await RefusedConnectAsync(fleet.Opts(stranger));
        Assert.Contains("Authorization Violation", unknown, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>Starts the refused operation and waits for the server's permission violation naming it.</summary>
    private static async Task RefusedAsync(ConcurrentQueue<string> errors, string expected, Func<CancellationToken, Task> operation)
    {
        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var running = Task.Run(() => operation(cancel.Token), CancellationToken.None);
        await Eventually.TrueAsync($"a permission violation containing {expected}", () => errors.Any(e => e.Contains(expected, StringComparison.Ordinal)),
            TimeSpan.FromSeconds(8), () => $"the server said: [{string.Join("; ", errors)}]", TimeSpan.FromMilliseconds(50));
        await cancel.CancelAsync();
        try
        {
            await running;
        }
        catch (Exception e) when (e is OperationCanceledException or NatsException or TimeoutException)
        {
            // The refused publish never gets an answer: the client gives up, as it should.
        }
    }

    private static async Task<string> RefusedConnectAsync(NatsOpts opts)
    {
        await using var connection = new NatsConnection(opts);
        var error = await Assert.ThrowsAnyAsync<Exception>(async () => await connection.ConnectAsync());
        var text = error.ToString();
        return text;
    }

    private static string KeyPairSeed()
    {
        using var pair = NATS.NKeys.KeyPair.CreatePair(NATS.NKeys.PrefixByte.User);
        return pair.GetSeed();
    }

    /// <summary>
    /// A nats-server with TLS (verify: clients need a certificate of the test CA) and the fleet's
    /// accounts block from packaging/nats/gen-fleet-users.sh, for an operator and the given nodes.
    /// </summary>
    private sealed class SecureFleet : IAsyncDisposable
    {
        private readonly TempDir _dir = new("orch-tls");
        private readonly Dictionary<string, string> _seeds = new(StringComparer.Ordinal);

        public NatsServer Server { get; private set; } = null!;
        public string Ca => _dir.Combine("ca.pem");
        public string Cert => _dir.Combine("client.pem");
        public string Key => _dir.Combine("client-key.pem");
        public string OperatorSeed => _seeds["operator"];
        public string TlsUrl => $"tls://127.0.0.1:{Server.Port}";

        public string Seed(string name) => _seeds[name];

        /// <param name="restricted">Operators without some rights: a name (its seed, as for nodes) and what --operator-without takes away.</param>
        public static async Task<SecureFleet> StartAsync(string[] workers, string[] schedulers, (string Name, string Rights)[]? restricted = null)
        {
            var fleet = new SecureFleet();
            TestPki.Write(fleet._dir.Path);
            var args = new List<string>();
            foreach (var (name, rights) in restricted ?? [])
            {
                using var pair = NATS.NKeys.KeyPair.CreatePair(NATS.NKeys.PrefixByte.User);
                fleet.WriteSeed(name, pair.GetSeed());
                args.AddRange(["--operator-without", $"{rights}={pair.GetPublicKey()}"]);
            }
            foreach (var (name, flag) in workers.Select(w => (w, "--node")).Concat(schedulers.Select(s => (s, "--scheduler"))).Prepend(("operator", "--operator")))
            {
                using var pair = NATS.NKeys.KeyPair.CreatePair(NATS.NKeys.PrefixByte.User);
                fleet.WriteSeed(name, pair.GetSeed());
                args.Add(flag);
                args.Add(name == "operator" ? pair.GetPublicKey() : $"{name}={pair.GetPublicKey()}");
            }
            await using var generate = DaemonProcess.Start("/bin/bash", [Path.Combine(Repo.Root, "packaging", "nats", "gen-fleet-users.sh"), .. args]);
            Assert.True(await generate.WaitForExitAsync(TimeSpan.FromSeconds(30)) == 0, generate.Output);
            var users = generate.Output;
            Assert.Contains("accounts {", users, StringComparison.Ordinal);
            // The tls block of packaging/nats/fleet-server.conf, with this test's files.
            fleet.Server = await NatsServer.StartAsync($$"""
                tls {
                  cert_file: "{{fleet._dir.Combine("server.pem")}}"
                  key_file: "{{fleet._dir.Combine("server-key.pem")}}"
                  ca_file: "{{fleet.Ca}}"
                  verify: true
                  timeout: 5
                }
                {{users}}
                """);
            return fleet;
        }

        public string WriteSeed(string name, string seed)
        {
            var path = _dir.Combine($"{name}.seed");
            File.WriteAllText(path, seed + "\n");
            _seeds[name] = path;
            return path;
        }

        /// <summary>
        /// Two real orchd nodes of this fleet, added to <paramref name="hosts"/> (which the caller
        /// disposes): <paramref name="scheduler"/> (label role=core, may take the lease) and
        /// <paramref name="worker"/> (role=edge, fleet.scheduler false), each with its own seed.
        /// </summary>
        public async Task StartNodesAsync(List<NodeHost> hosts, string scheduler, string worker, params string[] extraArgs)
        {
            foreach (var (name, role, mayLead) in new[] { (scheduler, "core", true), (worker, "edge", false) })
            {
                var host = await NodeHost.StartAsync(sharedNats: Server, name: name, start: false);
                hosts.Add(host);
                host.ClientOpts = Opts(OperatorSeed);
                await host.StartOrchdAsync([.. s_fast, .. NodeArgs(name), "--label", $"role={role}", "--scheduler", mayLead ? "true" : "false", .. extraArgs]);
            }
        }

        /// <summary>orchd's flags for a node of this fleet: the tls:// url, the CA, the client certificate, its seed.</summary>
        public string[] NodeArgs(string name) =>
            ["--nats-url", TlsUrl, "--nats-tls-ca", Ca, "--nats-tls-cert", Cert, "--nats-tls-key", Key, "--nats-nkey", Seed(name)];

        public NatsOpts Opts(string? seedFile, bool tls = true, bool clientCertificate = true, string? inboxPrefix = null)
        {
            var settings = new NatsSettings
            {
                Urls = [tls ? TlsUrl : Server.Url],
                TlsCa = tls ? Ca : null,
                TlsCert = tls && clientCertificate ? Cert : null,
                TlsKey = tls && clientCertificate ? Key : null,
                NKeySeedFile = seedFile,
            };
            return NatsOpts.Default with
            {
                Url = settings.Urls[0],
                AuthOpts = settings.ToAuthOpts(),
                TlsOpts = tls ? settings.ToTlsOpts() : NatsTlsOpts.Default with { Mode = TlsMode.Disable },
                InboxPrefix = inboxPrefix ?? NatsOpts.Default.InboxPrefix,
                ConnectTimeout = TimeSpan.FromSeconds(5),
            };
        }

        public async Task<NatsConnection> ConnectAsync(string seedFile, string? inboxPrefix = null, ConcurrentQueue<string>? errors = null)
        {
            var connection = new NatsConnection(Opts(seedFile, inboxPrefix: inboxPrefix));
            if (errors is not null)
            {
                connection.ServerError += (_, e) =>
                {
                    errors.Enqueue(e.Error);
                    return ValueTask.CompletedTask;
                };
            }
            await connection.ConnectAsync();
            return connection;
        }

        /// <summary>What the operator does before workers join: the buckets and the events stream (workers may not create them).</summary>
        public async Task CreateFleetStateAsync()
        {
            await using var connection = await ConnectAsync(OperatorSeed);
            var js = new NatsJSContext(connection);
            var kv = new NatsKVContext(js);
            foreach (var (bucket, history) in new[] { ("orch-nodes", 1), ("orch-deployments", 10), ("orch-assignments", 1), ("orch-leader", 1), ("orch-deployment-status", 1), ("orch-node-settings", 1) })
            {
                await kv.CreateOrUpdateStoreAsync(new NatsKVConfig(bucket) { History = history, Description = "Orchestrator fleet state" });
            }
            // The same configuration as the nodes' (FleetStore.EnsureEventStreamAsync), which they then find unchanged.
            await js.CreateOrUpdateStreamAsync(new NATS.Client.JetStream.Models.StreamConfig(Orchestrator.Api.NodeEvent.Stream, [Orchestrator.Api.NodeEvent.Subjects])
            {
                MaxAge = TimeSpan.FromDays(7),
                MaxBytes = 64L << 20,
                Description = "Orchestrator events",
            });
        }

        /// <summary>The server's permission violations so far (empty when none).</summary>
        public string Violations()
            => File.Exists(Server.LogFile)
                ? string.Join("\n", File.ReadAllLines(Server.LogFile).Where(l => l.Contains("Violation", StringComparison.Ordinal)))
                : "";

        public async ValueTask DisposeAsync()
        {
            if (Server is not null)
            {
                await Server.DisposeAsync();
            }
            _dir.Dispose();
        }
    }

    /// <summary>A CA, a server certificate for 127.0.0.1 and a client certificate, in PEM files.</summary>
    private static class TestPki
    {
        public static void Write(string dir)
        {
            var now = DateTimeOffset.UtcNow;
            using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var caRequest = new CertificateRequest("CN=orchestrator test CA", caKey, HashAlgorithmName.SHA256);
            caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
            caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
            caRequest.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(caRequest.PublicKey, false));
            using var ca = caRequest.CreateSelfSigned(now.AddDays(-1), now.AddDays(7));
            File.WriteAllText(Path.Combine(dir, "ca.pem"), ca.ExportCertificatePem());
            Leaf(dir, "server", ca, now, "1.3.6.1.5.5.7.3.1", san: true);
            Leaf(dir, "client", ca, now, "1.3.6.1.5.5.7.3.2", san: false);
        }

        private static void Leaf(string dir, string name, X509Certificate2 ca, DateTimeOffset now, string usage, bool san)
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest($"CN=orchestrator test {name}", key, HashAlgorithmName.SHA256);
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
            request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(usage)], false));
            request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca, true, false));
            if (san)
            {
                var names = new SubjectAlternativeNameBuilder();
                names.AddIpAddress(System.Net.IPAddress.Loopback);
                names.AddDnsName("localhost");
                request.CertificateExtensions.Add(names.Build());
            }
            using var certificate = request.Create(ca, now.AddDays(-1), now.AddDays(6), RandomNumberGenerator.GetBytes(16));
            File.WriteAllText(Path.Combine(dir, $"{name}.pem"), certificate.ExportCertificatePem());
            File.WriteAllText(Path.Combine(dir, $"{name}-key.pem"), key.ExportPkcs8PrivateKeyPem());
        }
    }
}

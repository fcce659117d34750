using System.Text;
using NATS.Client.Core;
using Orchestrator.Api;
using Orchestrator.Client.Identity;

namespace Orchestrator.Fleet.Tests.Identity;

/// <summary>
/// Enrolment, refusal, renewal and revocation against a real nats-server in operator mode
/// (decentralised auth, resolver: full), with keys and JWTs made by this code alone.
/// </summary>
public sealed class IdentityTests
{
    [Fact]
    public async Task A_device_enrols_with_a_one_time_token_and_gets_only_its_own_subjects()
    {
        await using var fleet = await IdentityFleet.StartAsync();
        var token = EnrolmentToken.Parse(await fleet.CreateTokenAsync());
        using var device = new TempDir("orch-device");
        var enrolled = await DeviceIdentity.EnrollAsync(fleet.Settings, token, "gw-1", device.Path, TestContext.Current.CancellationToken);
        Assert.Equal("gw-1", enrolled.Node);
        Assert.Equal("lab", enrolled.Labels["site"]);
        // The seed was made on the device and never left it: the JWT is for the key in node.nk.
        var seedText = await File.ReadAllTextAsync(DeviceIdentity.SeedPath(device.Path), TestContext.Current.CancellationToken);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(DeviceIdentity.SeedPath(device.Path)));
        using (var pair = NATS.NKeys.KeyPair.FromSeed(seedText.Trim()))
        {
            Assert.Equal(pair.GetPublicKey(), NatsJwt.Decode(enrolled.Jwt).Subject);
        }

        await using var node = IdentityFleet.Connect(fleet.Server.Url, DeviceIdentity.CredsPath(device.Path), "_INBOX_gw-1");
        await node.ConnectAsync();
        // Its own heartbeat subject: allowed. Another node's: the server says permission violation.
        await node.PublishAsync("orch.events.gw-1.test", "x"u8.ToArray(), cancellationToken: TestContext.Current.CancellationToken);
        await node.PingAsync(TestContext.Current.CancellationToken);
        Assert.Equal(NatsConnectionState.Open, node.ConnectionState);
        // Another node's requests: the server refuses the subscription (and says so in its log).
        await using (var sub = await node.SubscribeCoreAsync<byte[]>("orch.node.gw-2.>", cancellationToken: TestContext.Current.CancellationToken))
        {
            await node.PingAsync(TestContext.Current.CancellationToken);
            await fleet.Admin.PublishAsync("orch.node.gw-2.info", "x"u8.ToArray(), cancellationToken: TestContext.Current.CancellationToken);
            using var quiet = new CancellationTokenSource(1500);
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await sub.Msgs.ReadAsync(quiet.Token));
        }
        Assert.Contains("Subscription Violation", await File.ReadAllTextAsync(fleet.Server.LogFile, TestContext.Current.CancellationToken), StringComparison.Ordinal);

        // A scheduler's JWT is the longest: with the CONNECT line's other fields it passes the
        // server's 4 KB default, which identity init raises (the e2e test failed at connect without it).
        var schedulerToken = EnrolmentToken.Parse(await fleet.CreateTokenAsync("""{"scheduler":true}"""));
        using var core = new TempDir("orch-device");
        var scheduler = await DeviceIdentity.EnrollAsync(fleet.Settings, schedulerToken, "core-1", core.Path, TestContext.Current.CancellationToken);
        Assert.True(scheduler.Scheduler);
        Assert.InRange(scheduler.Jwt.Length, 3000, 12_000);
        await using var schedulerConnection = IdentityFleet.Connect(fleet.Server.Url, DeviceIdentity.CredsPath(core.Path), "_INBOX_core-1");
        await schedulerConnection.ConnectAsync();
        await schedulerConnection.PingAsync(TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task A_token_is_refused_when_used_twice_expired_or_unknown_and_names_the_fix()
    {
        await using var fleet = await IdentityFleet.StartAsync();
        var token = EnrolmentToken.Parse(await fleet.CreateTokenAsync());
        using var first = new TempDir("orch-device");
        using var second = new TempDir("orch-device");
        await DeviceIdentity.EnrollAsync(fleet.Settings, token, "gw-1", first.Path, TestContext.Current.CancellationToken);
        var twice = await Assert.ThrowsAsync<EnrolmentException>(() => DeviceIdentity.EnrollAsync(fleet.Settings, token, "gw-2", second.Path, TestContext.Current.CancellationToken));
        Assert.Contains("has been used", twice.Message, StringComparison.Ordinal);
        Assert.Contains("orchctl node token create", twice.Message, StringComparison.Ordinal);

        // The same device retrying after a lost reply gets its credentials again, without a second use.
        var again = await DeviceIdentity.EnrollAsync(fleet.Settings, token, "gw-1", first.Path, TestContext.Current.CancellationToken);
        Assert.Equal("gw-1", again.Node);

        var forged = token with { Secret = "not-the-secret" };
        var unknown = await Assert.ThrowsAsync<EnrolmentException>(() => DeviceIdentity.EnrollAsync(fleet.Settings, forged, "gw-3", second.Path, TestContext.Current.CancellationToken));
        Assert.Contains("is not known", unknown.Message, StringComparison.Ordinal);

        // A name taken by a live identity is not handed to another key.
        var other = EnrolmentToken.Parse(await fleet.CreateTokenAsync());
        var taken = await Assert.ThrowsAsync<EnrolmentException>(() => DeviceIdentity.EnrollAsync(fleet.Settings, other, "gw-1", second.Path, TestContext.Current.CancellationToken));
        Assert.Contains("enrolled already", taken.Message, StringComparison.Ordinal);

        // A revoked token enrols nothing more, and its own user cannot even connect.
        var revokedToken = EnrolmentToken.Parse(await fleet.CreateTokenAsync("""{"uses":5}"""));
        Assert.Contains("revokedAt", await fleet.AskAsync(IdentitySubjects.TokenRevoke, $$"""{"node":"{{revokedToken.Id}}"}"""), StringComparison.Ordinal);
        var afterRevoke = await Assert.ThrowsAsync<EnrolmentException>(() => DeviceIdentity.EnrollAsync(fleet.Settings, revokedToken, "gw-5", second.Path, TestContext.Current.CancellationToken));
        Assert.Contains("refused the token's credentials", afterRevoke.Message, StringComparison.Ordinal);
        Assert.False(afterRevoke.Transient);
        Assert.Contains("no enrolment token", await fleet.AskAsync(IdentitySubjects.TokenRevoke, """{"node":"nosuch"}"""), StringComparison.Ordinal);

        // Bad requests to the admin subjects: one sentence each.
        Assert.Contains("out of range", await fleet.AskAsync(IdentitySubjects.TokenCreate, """{"uses":0}"""), StringComparison.Ordinal);
        Assert.Contains("not valid", await fleet.AskAsync(IdentitySubjects.TokenCreate, """{"labels":{"bad key":"x"}}"""), StringComparison.Ordinal);
        Assert.Contains("not valid JSON", await fleet.AskAsync(IdentitySubjects.TokenCreate, "{"), StringComparison.Ordinal);
        Assert.Contains("not a role", await fleet.AskAsync(IdentitySubjects.UserCreate, """{"name":"x","role":"root","publicKey":"U"}"""), StringComparison.Ordinal);
        Assert.Throws<FormatException>(() => EnrolmentToken.Parse("orchtok1.!!!"));
        Assert.Throws<FormatException>(() => EnrolmentToken.Parse("K10abc::server:secret"));
    }

    [Fact]
    public async Task An_expired_token_is_refused_by_the_server_itself()
    {
        await using var fleet = await IdentityFleet.StartAsync();
        // The shortest token the service makes is a minute; its user's JWT expires with it. A
        // token whose JWT's expiry has passed is refused at connect: forge one by hand with exp in the past.
        var token = EnrolmentToken.Parse(await fleet.CreateTokenAsync());
        using var signing = IdentitySetup.ReadSeed(fleet.FleetPath("service", "account-signing.nk"), 'A');
        using var user = NATS.NKeys.KeyPair.FromSeed(token.Seed);
        var past = DateTimeOffset.UtcNow.AddHours(-2);
        var expiredJwt = NatsJwt.User(signing, fleet.Info.Account, user.GetPublicKey(), "enrol-old", FleetPermissions.Enrolment(token.Id), past, past.AddHours(1));
        using var device = new TempDir("orch-device");
        var refused = await Assert.ThrowsAsync<EnrolmentException>(() => DeviceIdentity.EnrollAsync(fleet.Settings, token with { Jwt = expiredJwt }, "gw-9", device.Path, TestContext.Current.CancellationToken));
        Assert.Contains("refused the token's credentials", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_revoked_device_is_disconnected_and_cannot_come_back()
    {
        await using var fleet = await IdentityFleet.StartAsync();
        var token = EnrolmentToken.Parse(await fleet.CreateTokenAsync());
        using var device = new TempDir("orch-device");
        await DeviceIdentity.EnrollAsync(fleet.Settings, token, "gw-17", device.Path, TestContext.Current.CancellationToken);
        await using var node = IdentityFleet.Connect(fleet.Server.Url, DeviceIdentity.CredsPath(device.Path), "_INBOX_gw-17");
        await node.ConnectAsync();
        var reply = await fleet.AskAsync(IdentitySubjects.Revoke, """{"node":"gw-17"}""");
        Assert.Contains("revokedAt", reply, StringComparison.Ordinal);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (node.ConnectionState == NatsConnectionState.Open && watch.Elapsed < TimeSpan.FromSeconds(10))
        {
            await Task.Delay(100, TestContext.Current.CancellationToken);
        }
        Assert.NotEqual(NatsConnectionState.Open, node.ConnectionState);
        // Its reconnects keep being refused for a minute's worth of tries.
        await Task.Delay(3000, TestContext.Current.CancellationToken);
        Assert.NotEqual(NatsConnectionState.Open, node.ConnectionState);
        await using var fresh = IdentityFleet.Connect(fleet.Server.Url, DeviceIdentity.CredsPath(device.Path), "_INBOX_gw-17") ;
        var connect = await Assert.ThrowsAnyAsync<NatsException>(async () => await fresh.ConnectAsync());
        Assert.Contains("authorization violation", (connect.InnerException?.Message ?? connect.Message).ToLowerInvariant(), StringComparison.Ordinal);
        // The hub loses its JetStream store (the identity bucket with it) and the service restarts:
        // the servers' own account JWT still holds the revocation, the service merges it back and
        // never pushes an account that forgets it.
        var js0 = new NATS.Client.JetStream.NatsJSContext(fleet.Admin);
        await new NATS.Client.KeyValueStore.NatsKVContext(js0).DeleteStoreAsync(IdentitySubjects.Bucket, TestContext.Current.CancellationToken);
        await fleet.RestartServiceAsync();
        await using (var afterLoss = IdentityFleet.Connect(fleet.Server.Url, DeviceIdentity.CredsPath(device.Path), "_INBOX_gw-17"))
        {
            await Assert.ThrowsAnyAsync<NatsException>(async () => await afterLoss.ConnectAsync());
        }
        var identity = await new NATS.Client.KeyValueStore.NatsKVContext(js0).GetStoreAsync(IdentitySubjects.Bucket, TestContext.Current.CancellationToken);
        var kept = await identity.GetEntryAsync<byte[]>("revocations", cancellationToken: TestContext.Current.CancellationToken);
        Assert.Contains(NatsJwt.Decode(NatsJwt.JwtOfCreds(await File.ReadAllTextAsync(DeviceIdentity.CredsPath(device.Path), TestContext.Current.CancellationToken))!).Subject,
            System.Text.Encoding.UTF8.GetString(kept.Value!), StringComparison.Ordinal);

        // The name enrols again with a new token under a new key, and its settings are back to normal.
        using (var replacement = new TempDir("orch-device"))
        {
            var again = await DeviceIdentity.EnrollAsync(fleet.Settings, EnrolmentToken.Parse(await fleet.CreateTokenAsync()), "gw-17", replacement.Path, TestContext.Current.CancellationToken);
            Assert.NotEqual(NatsJwt.Decode(again.Jwt).Subject, kept.Key);
            await using var back = IdentityFleet.Connect(fleet.Server.Url, DeviceIdentity.CredsPath(replacement.Path), "_INBOX_gw-17");
            await back.ConnectAsync();
            var settingsBucket = await new NATS.Client.KeyValueStore.NatsKVContext(js0).GetStoreAsync(Buckets.NodeSettings, TestContext.Current.CancellationToken);
            var cleared = await settingsBucket.GetEntryAsync<byte[]>("gw-17", cancellationToken: TestContext.Current.CancellationToken);
            Assert.False(System.Text.Json.JsonSerializer.Deserialize(cleared.Value, FleetJsonContext.Default.NodeSettings)!.Revoked);
        }
    }

    [Fact]
    public async Task Revoking_again_keeps_the_first_time_and_the_node_settings_say_revoked()
    {
        await using var fleet = await IdentityFleet.StartAsync();
        var token = EnrolmentToken.Parse(await fleet.CreateTokenAsync());
        using var device = new TempDir("orch-device");
        await DeviceIdentity.EnrollAsync(fleet.Settings, token, "gw-17", device.Path, TestContext.Current.CancellationToken);
        Assert.Contains("revokedAt", await fleet.AskAsync(IdentitySubjects.Revoke, """{"node":"gw-17"}"""), StringComparison.Ordinal);
        // Revoking again is no error and keeps the first time.
        Assert.Contains("revokedAt", await fleet.AskAsync(IdentitySubjects.Revoke, """{"node":"gw-17"}"""), StringComparison.Ordinal);
        // The node's settings say revoked (and cordoned): the scheduler takes it for lost at once.
        var js = new NATS.Client.JetStream.NatsJSContext(fleet.Admin);
        var settings = await new NATS.Client.KeyValueStore.NatsKVContext(js).GetStoreAsync(Buckets.NodeSettings, TestContext.Current.CancellationToken);
        var entry = await settings.GetEntryAsync<byte[]>("gw-17", cancellationToken: TestContext.Current.CancellationToken);
        var set = System.Text.Json.JsonSerializer.Deserialize(entry.Value, FleetJsonContext.Default.NodeSettings)!;
        Assert.True(set.Revoked && set.Cordoned);
    }

    [Fact]
    public async Task A_hundred_devices_enrol_from_one_token_and_revoking_one_leaves_the_others_connected()
    {
        await using var fleet = await IdentityFleet.StartAsync();
        var token = EnrolmentToken.Parse(await fleet.CreateTokenAsync("""{"labels":{"site":"depot"},"uses":100,"ttlSeconds":3600}"""));
        var devices = Enumerable.Range(0, 100).Select(i => (Name: $"dev-{i:000}", Dir: new TempDir("orch-device"))).ToList();
        var connections = new NatsConnection[devices.Count];
        try
        {
            var watch = System.Diagnostics.Stopwatch.StartNew();
            await Parallel.ForEachAsync(Enumerable.Range(0, devices.Count), new ParallelOptions { MaxDegreeOfParallelism = 10 }, async (i, ct) =>
            {
                var enrolled = await DeviceIdentity.EnrollAsync(fleet.Settings, token, devices[i].Name, devices[i].Dir.Path, ct);
                Assert.Equal(devices[i].Name, enrolled.Node);
                connections[i] = IdentityFleet.Connect(fleet.Server.Url, DeviceIdentity.CredsPath(devices[i].Dir.Path), $"_INBOX_{devices[i].Name}");
                await connections[i].ConnectAsync();
            });
            TestContext.Current.SendDiagnosticMessage($"100 devices enrolled and connected in {watch.Elapsed.TotalSeconds:0.0} s");
            Assert.All(connections, c => Assert.Equal(NatsConnectionState.Open, c.ConnectionState));
            // The hundred and first is refused: the token's uses are spent, each exactly once.
            using (var extra = new TempDir("orch-device"))
            {
                var refused = await Assert.ThrowsAsync<EnrolmentException>(() => DeviceIdentity.EnrollAsync(fleet.Settings, token, "dev-100", extra.Path, TestContext.Current.CancellationToken));
                Assert.Contains("has been used", refused.Message, StringComparison.Ordinal);
            }

            Assert.Contains("revokedAt", await fleet.AskAsync(IdentitySubjects.Revoke, """{"node":"dev-050"}"""), StringComparison.Ordinal);
            await Eventually.TrueAsync("dev-050's connection to close", () => Task.FromResult(connections[50].ConnectionState != NatsConnectionState.Open), TimeSpan.FromSeconds(10),
                () => connections[50].ConnectionState.ToString(), TimeSpan.FromMilliseconds(100));
            await Task.Delay(2000, TestContext.Current.CancellationToken);
            for (var i = 0; i < connections.Length; i++)
            {
                if (i != 50)
                {
                    Assert.Equal(NatsConnectionState.Open, connections[i].ConnectionState);
                    await connections[i].PingAsync(TestContext.Current.CancellationToken);
                }
            }
            Assert.NotEqual(NatsConnectionState.Open, connections[50].ConnectionState);
            // Revocations survive a restart of the service: it pushes the account again at start.
        }
        finally
        {
            foreach (var c in connections.Where(c => c is not null))
            {
                await c.DisposeAsync();
            }
            foreach (var d in devices)
            {
                d.Dir.Dispose();
            }
        }
    }

    [Fact]
    public async Task A_node_renews_its_jwt_and_its_connection_carries_on_past_the_old_ones_expiry()
    {
        await using var fleet = await IdentityFleet.StartAsync(jwtLifetime: TimeSpan.FromSeconds(12));
        var token = EnrolmentToken.Parse(await fleet.CreateTokenAsync());
        using var device = new TempDir("orch-device");
        var first = await DeviceIdentity.EnrollAsync(fleet.Settings, token, "gw-r", device.Path, TestContext.Current.CancellationToken);
        // As orchd connects: the settings' creds file is read at every connect.
        var settings = new Orchestrator.Client.NatsSettings { Urls = [fleet.Server.Url], CredsFile = DeviceIdentity.CredsPath(device.Path), InboxPrefix = "_INBOX_gw-r" };
        await using var node = new NatsConnection(settings.ToNatsOpts("gw-r") with { ReconnectWaitMin = TimeSpan.FromMilliseconds(100), ReconnectWaitMax = TimeSpan.FromMilliseconds(300) });
        var disconnects = 0;
        node.ConnectionDisconnected += (_, _) =>
        {
            Interlocked.Increment(ref disconnects);
            return ValueTask.CompletedTask;
        };
        await node.ConnectAsync();
        var renewAt = DeviceIdentity.RenewAt(first.Jwt);
        Assert.InRange((renewAt - NatsJwt.Decode(first.Jwt).IssuedAt).TotalSeconds, 7, 9);
        await Task.Delay(TimeSpan.FromSeconds(3), TestContext.Current.CancellationToken);
        var renewed = await DeviceIdentity.RenewAsync(node, device.Path, TestContext.Current.CancellationToken);
        Assert.True(renewed.Expires > first.Expires);
        Assert.Equal(renewed.Jwt, NatsJwt.JwtOfCreds(await File.ReadAllTextAsync(DeviceIdentity.CredsPath(device.Path), TestContext.Current.CancellationToken)));
        // Past the first JWT's expiry the server ends that connection; the client comes back with the new one.
        await Task.Delay(first.Expires - DateTimeOffset.UtcNow + TimeSpan.FromSeconds(2), TestContext.Current.CancellationToken);
        await Eventually.TrueAsync("the node to be connected again", () => Task.FromResult(node.ConnectionState == NatsConnectionState.Open), TimeSpan.FromSeconds(5),
            () => node.ConnectionState.ToString(), TimeSpan.FromMilliseconds(100));
        Assert.True(disconnects >= 1, "the server did not end the connection at the first JWT's expiry");
        await node.PingAsync(TestContext.Current.CancellationToken);

        // A key the service does not know, or the right key with a forged proof, renews nothing.
        using var stranger = new TempDir("orch-device");
        Directory.CreateDirectory(DeviceIdentity.Dir(stranger.Path));
        File.Copy(DeviceIdentity.RecordPath(device.Path), DeviceIdentity.RecordPath(stranger.Path));
        File.Copy(DeviceIdentity.CredsPath(device.Path), DeviceIdentity.CredsPath(stranger.Path));
        using (var other = NATS.NKeys.KeyPair.CreatePair(NATS.NKeys.PrefixByte.User))
        {
            IdentitySetup.WriteSecret(DeviceIdentity.SeedPath(stranger.Path), other.GetSeed() + "\n");
        }
        var refused = await Assert.ThrowsAsync<EnrolmentException>(() => DeviceIdentity.RenewAsync(node, stranger.Path, TestContext.Current.CancellationToken));
        Assert.Contains("is not enrolled", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Operator_roles_are_enforced_by_the_server()
    {
        await using var fleet = await IdentityFleet.StartAsync();
        using var dir = new TempDir("orch-roles");
        async Task<NatsConnection> UserAsync(string role)
        {
            using var key = NATS.NKeys.KeyPair.CreatePair(NATS.NKeys.PrefixByte.User);
            var reply = await fleet.AskAsync(IdentitySubjects.UserCreate, $$"""{"name":"{{role}}-user","role":"{{role}}","publicKey":"{{key.GetPublicKey()}}"}""");
            var jwt = System.Text.Json.JsonSerializer.Deserialize(reply, IdentityJsonContext.Default.UserCreateReply)!.Jwt;
            Assert.Equal(key.GetPublicKey(), NatsJwt.Decode(jwt).Subject);
            var path = dir.Combine($"{role}.creds");
            IdentitySetup.WriteSecret(path, NatsJwt.Creds(jwt, key.GetSeed()));
            var connection = IdentityFleet.Connect(fleet.Server.Url, path);
            await connection.ConnectAsync();
            return connection;
        }
        var violations = new System.Collections.Concurrent.ConcurrentQueue<string>();
        await using var viewer = await UserAsync("viewer");
        await using var deployer = await UserAsync("deployer");
        foreach (var c in new[] { viewer, deployer })
        {
            c.ServerError += (_, e) =>
            {
                violations.Enqueue(e.Error);
                return ValueTask.CompletedTask;
            };
        }
        var adminKv = new NATS.Client.KeyValueStore.NatsKVContext(new NATS.Client.JetStream.NatsJSContext(fleet.Admin));
        var deployments = await Orchestrator.Client.FleetStore.OpenAsync(adminKv, Buckets.Deployments, 10, TestContext.Current.CancellationToken);
        var settings = await Orchestrator.Client.FleetStore.OpenAsync(adminKv, Buckets.NodeSettings, 1, TestContext.Current.CancellationToken);
        await deployments.PutAsync("web", "{}"u8.ToArray(), cancellationToken: TestContext.Current.CancellationToken);

        // The viewer reads (a watch, the way orchctl reads a bucket) and cannot write.
        var viewerKv = new NATS.Client.KeyValueStore.NatsKVContext(new NATS.Client.JetStream.NatsJSContext(viewer));
        var seen = await Orchestrator.Client.FleetState.ReadAllAsync(await viewerKv.GetStoreAsync(Buckets.Deployments, TestContext.Current.CancellationToken), TestContext.Current.CancellationToken);
        Assert.True(seen.ContainsKey("web"));
        await viewer.PublishAsync("$KV.orch-deployments.web", "{\"x\":1}"u8.ToArray(), cancellationToken: TestContext.Current.CancellationToken);
        await viewer.PublishAsync("orch.node.gw-1.exec", "{}"u8.ToArray(), cancellationToken: TestContext.Current.CancellationToken);
        await viewer.PingAsync(TestContext.Current.CancellationToken);

        // The deployer writes deployments, and neither node settings nor identity requests.
        var deployerKv = new NATS.Client.KeyValueStore.NatsKVContext(new NATS.Client.JetStream.NatsJSContext(deployer));
        await (await deployerKv.GetStoreAsync(Buckets.Deployments, TestContext.Current.CancellationToken)).PutAsync("web", "{\"v\":2}"u8.ToArray(), cancellationToken: TestContext.Current.CancellationToken);
        await deployer.PublishAsync("$KV.orch-node-settings.gw-1", "{\"cordoned\":true}"u8.ToArray(), cancellationToken: TestContext.Current.CancellationToken);
        await deployer.PublishAsync(IdentitySubjects.Revoke, "{\"node\":\"gw-1\"}"u8.ToArray(), cancellationToken: TestContext.Current.CancellationToken);
        await deployer.PingAsync(TestContext.Current.CancellationToken);
        await Eventually.TrueAsync("four permission violations", () => Task.FromResult(violations.Count >= 4), TimeSpan.FromSeconds(5), () => string.Join(" | ", violations), TimeSpan.FromMilliseconds(100));
        var all = string.Join(" | ", violations);
        Assert.Contains("$KV.orch-deployments.web", all, StringComparison.Ordinal);
        Assert.Contains("orch.node.gw-1.exec", all, StringComparison.Ordinal);
        Assert.Contains("$KV.orch-node-settings.gw-1", all, StringComparison.Ordinal);
        Assert.Contains(IdentitySubjects.Revoke, all, StringComparison.Ordinal);
        var stored = await deployments.GetEntryAsync<byte[]>("web", cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal("{\"v\":2}", System.Text.Encoding.UTF8.GetString(stored.Value!));
        await Assert.ThrowsAsync<NATS.Client.KeyValueStore.NatsKVKeyNotFoundException>(async () => await settings.GetEntryAsync<byte[]>("gw-1", cancellationToken: TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task A_device_behind_a_sites_leaf_server_enrols_through_it_and_is_cut_off_there_when_revoked()
    {
        var leafPort = FreePort.Next();
        await using var fleet = await IdentityFleet.StartAsync(leafPort: leafPort);
        // The site's leaf server: the same operator, a cache resolver fed by the hub over the
        // system account, and two remotes: the fleet's account (a leaf user) and SYS (updates).
        using var site = new TempDir("orch-site");
        using var signing = IdentitySetup.ReadSeed(fleet.FleetPath("service", "account-signing.nk"), 'A');
        var leafCreds = site.Combine("leaf.creds");
        IdentitySetup.WriteSecret(leafCreds, IdentitySetup.NewCreds(signing, fleet.Info.Account, "site-a", FleetPermissions.Operator("leaf"), DateTimeOffset.UtcNow, null));
        var hubConf = await File.ReadAllTextAsync(fleet.FleetPath("server", "nats-server.conf"));
        var preload = hubConf[hubConf.IndexOf("resolver_preload", StringComparison.Ordinal)..];
        var leafConf = $$"""
            operator: "{{fleet.FleetPath("server", "operator.jwt")}}"
            system_account: {{fleet.Info.SystemAccount}}
            max_control_line: 16384
            resolver: { type: cache, dir: "{{site.Combine("jwt")}}", ttl: "1h", timeout: "1.9s" }
            {{preload}}
            leafnodes {
              remotes: [
                { url: "nats-leaf://127.0.0.1:{{leafPort}}", credentials: "{{leafCreds}}", account: {{fleet.Info.Account}} }
                { url: "nats-leaf://127.0.0.1:{{leafPort}}", credentials: "{{fleet.FleetPath("service", "sys.creds")}}", account: {{fleet.Info.SystemAccount}} }
              ]
            }
            """;
        Directory.CreateDirectory(site.Combine("jwt"));
        await using var leaf = await NatsServer.StartAsync(leafConf);
        await Eventually.TrueAsync("the leaf to connect to the hub", async () => (await File.ReadAllTextAsync(leaf.LogFile)).Split("Leafnode connection created").Length >= 3,
            TimeSpan.FromSeconds(15), () => File.ReadAllText(leaf.LogFile), TimeSpan.FromMilliseconds(200));

        var token = EnrolmentToken.Parse(await fleet.CreateTokenAsync());
        using var device = new TempDir("orch-device");
        var atLeaf = new Orchestrator.Client.NatsSettings { Urls = [leaf.Url] };
        var enrolled = await Eventually.ValueAsync("an enrolment through the leaf", async () =>
        {
            try
            {
                return await DeviceIdentity.EnrollAsync(atLeaf, token, "site-gw-1", device.Path, TestContext.Current.CancellationToken);
            }
            catch (EnrolmentException e) when (e.Message.Contains("no identity service answers", StringComparison.Ordinal))
            {
                return null; // the service's subscription has not reached the leaf yet
            }
        }, e => e is not null, TimeSpan.FromSeconds(15), TimeSpan.FromMilliseconds(300));
        Assert.Equal("site-gw-1", enrolled!.Node);
        await using var node = IdentityFleet.Connect(leaf.Url, DeviceIdentity.CredsPath(device.Path), "_INBOX_site-gw-1");
        await node.ConnectAsync();
        await node.PingAsync(TestContext.Current.CancellationToken);

        Assert.Contains("revokedAt", await fleet.AskAsync(IdentitySubjects.Revoke, """{"node":"site-gw-1"}"""), StringComparison.Ordinal);
        await Eventually.TrueAsync("the leaf to close the revoked device's connection", () => Task.FromResult(node.ConnectionState != NatsConnectionState.Open),
            TimeSpan.FromSeconds(15), () => node.ConnectionState.ToString(), TimeSpan.FromMilliseconds(100));
        await using var again = IdentityFleet.Connect(leaf.Url, DeviceIdentity.CredsPath(device.Path), "_INBOX_site-gw-1");
        await Assert.ThrowsAnyAsync<NatsException>(async () => await again.ConnectAsync());
    }
}

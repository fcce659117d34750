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
        // Revoking again is no error and keeps the first time.
        Assert.Contains("revokedAt", await fleet.AskAsync(IdentitySubjects.Revoke, """{"node":"gw-17"}"""), StringComparison.Ordinal);
        // The node's settings say revoked (and cordoned): the scheduler takes it for lost at once.
        var js = new NATS.Client.JetStream.NatsJSContext(fleet.Admin);
        var settings = await new NATS.Client.KeyValueStore.NatsKVContext(js).GetStoreAsync(Buckets.NodeSettings, TestContext.Current.CancellationToken);
        var entry = await settings.GetEntryAsync<byte[]>("gw-17", cancellationToken: TestContext.Current.CancellationToken);
        var set = System.Text.Json.JsonSerializer.Deserialize(entry.Value, FleetJsonContext.Default.NodeSettings)!;
        Assert.True(set.Revoked && set.Cordoned);
    }
}

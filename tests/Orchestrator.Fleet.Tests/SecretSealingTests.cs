using System.Text;
using NATS.NKeys;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Client;

namespace Orchestrator.Fleet.Tests;

/// <summary>Secrets sealed per node: only that node opens its copy, a changed byte or field is refused, the operator's curve key follows its seed.</summary>
public sealed class SecretSealingTests
{
    private static readonly string s_seed = ManifestSigning.CreateKey().Seed;
    private static readonly byte[] s_value = Encoding.UTF8.GetBytes("s3cret-v1\n");

    [Fact]
    public void Only_the_node_it_was_sealed_for_opens_it()
    {
        using var gw1 = SecretSealing.NewNodeKey();
        using var gw2 = SecretSealing.NewNodeKey();
        var copy = SecretSealing.SealFor("db-pass", 1, "gw-1", gw1.GetPublicKey(), s_value, s_seed);

        Assert.Equal(s_value, SecretSealing.Open(copy, gw1));
        Assert.DoesNotContain("s3cret", Encoding.UTF8.GetString(copy.ToBytes()), StringComparison.Ordinal); // the hub holds ciphertext only
        // A stolen device's key opens its own copy, not another's.
        var e = Assert.Throws<ManifestSignatureException>(() => SecretSealing.Open(copy, gw2));
        Assert.Contains("secret 'db-pass' version 1 does not open with node 'gw-1''s key", e.Message, StringComparison.Ordinal);
        Assert.Contains("orchctl secret sync db-pass", e.Message, StringComparison.Ordinal);
        // Two seals of the same value differ (a fresh nonce each).
        Assert.NotEqual(copy.Data, SecretSealing.SealFor("db-pass", 1, "gw-1", gw1.GetPublicKey(), s_value, s_seed).Data);
    }

    [Fact]
    public void A_copy_altered_after_signing_or_signed_by_an_untrusted_key_is_refused()
    {
        using var node = SecretSealing.NewNodeKey();
        var trusted = KeyOf(s_seed);
        using var other = SecretSealing.NewNodeKey();
        var copy = SecretSealing.SealFor("db-pass", 2, "gw-1", node.GetPublicKey(), s_value, s_seed);
        Assert.Null(SecretSealing.Verify(copy, [trusted]));

        // Each signed field: moved to another node, another version, another name, another receiver.
        foreach (var altered in new[] { copy with { Node = "gw-2" }, copy with { Version = 3 }, copy with { Name = "api-key" }, copy with { Receiver = other.GetPublicKey() } })
        {
            Assert.Contains("does not match its content", SecretSealing.Verify(altered, [trusted]), StringComparison.Ordinal);
        }
        var data = Convert.FromBase64String(copy.Data);
        data[^1] ^= 1;
        Assert.Contains("does not match its content", SecretSealing.Verify(copy with { Data = Convert.ToBase64String(data) }, [trusted]), StringComparison.Ordinal);
        // Sealed by someone else's key: well formed, but not trusted.
        var intruder = ManifestSigning.CreateKey().Seed;
        var forged = SecretSealing.SealFor("db-pass", 2, "gw-1", node.GetPublicKey(), Encoding.UTF8.GetBytes("evil"), intruder);
        Assert.Contains("not among this node's fleet.trusted_keys", SecretSealing.Verify(forged, [trusted]), StringComparison.Ordinal);
        Assert.Contains("is not signed", SecretSealing.Verify(forged with { Signature = null }, [trusted]), StringComparison.Ordinal);
        // A box with a flipped byte does not open either (it is authenticated).
        Assert.Throws<ManifestSignatureException>(() => SecretSealing.Open(copy with { Data = Convert.ToBase64String(data) }, node));
    }

    [Fact]
    public void The_operators_curve_key_follows_its_seed_and_its_escrow_copy_opens_only_with_it()
    {
        using var a = SecretSealing.CurveKey(s_seed);
        using var b = SecretSealing.CurveKey(s_seed + "\n");
        Assert.Equal(a.GetPublicKey(), b.GetPublicKey());
        Assert.True(KeyPair.IsValidPublicKey(PrefixByte.Curve, a.GetPublicKey()));
        var other = ManifestSigning.CreateKey().Seed;
        using var c = SecretSealing.CurveKey(other);
        Assert.NotEqual(a.GetPublicKey(), c.GetPublicKey());

        var escrow = SecretSealing.Escrow("db-pass", 1, s_value, s_seed);
        Assert.Equal(s_value, SecretSealing.OpenEscrow(escrow, s_seed));
        var e = Assert.Throws<ManifestSignatureException>(() => SecretSealing.OpenEscrow(escrow, other));
        Assert.Contains("was sealed with another operator key", e.Message, StringComparison.Ordinal);
        Assert.Throws<ManifestSignatureException>(() => SecretSealing.CurveKey("not a seed"));
    }

    [Fact]
    public void A_config_is_in_clear_and_signed_when_a_key_is_given()
    {
        var config = SecretSealing.Config("app-conf", 1, Encoding.UTF8.GetBytes("mode=fast"), s_seed);
        Assert.Null(SecretSealing.Verify(config, [KeyOf(s_seed)]));
        using var any = SecretSealing.NewNodeKey();
        Assert.Equal("mode=fast", Encoding.UTF8.GetString(SecretSealing.Open(config, any)));
        Assert.Null(SecretSealing.Config("app-conf", 1, [], null).Signature);
        Assert.Equal("app-conf.1", SealedSecret.Key(SecretKind.Config, "app-conf", 1, "gw-1"));
        Assert.Equal("db-pass.3.gw-1", SealedSecret.Key(SecretKind.Secret, "db-pass", 3, "gw-1"));
    }

    [Fact]
    public void Secret_mounts_are_checked_field_by_field()
    {
        var w = new Workload
        {
            Name = "app", Image = "busybox", Env = new() { ["DB_PASS"] = "x" },
            Volumes = [new Volume { Name = "data", Target = "/data" }],
            Secrets =
            [
                new SecretMount { Name = "db.pass" },
                new SecretMount { Name = "db-pass", Env = "DB_PASS" },
                new SecretMount { Name = "db-pass", Target = "/data" },
                new SecretMount { Name = "tls", Target = "../etc/shadow" },
                new SecretMount { Name = "tls", Target = "/proc/x" },
                new SecretMount { Name = "key", Mode = "0999", Uid = -1 },
                new SecretMount { Name = "key2", Env = "KEY", Target = "/k" },
                new SecretMount { Name = "key3", Version = 0 },
            ],
            Configs = [new SecretMount { Name = "conf", Env = "1BAD" }, new SecretMount { Name = "db-pass" }],
        };
        var errors = WorkloadValidator.Validate(w);
        string[] expected =
        [
            "secrets[0].name: 'db.pass' is not a secret name",
            "secrets[1].env: DB_PASS is already set (env or another secret)",
            "secrets[2].target: '/data' is already mounted",
            "secrets[3].target: expected a file path inside the container without '..'",
            "secrets[4].target: '/proc/x' is under a file system the container gets of its own",
            "secrets[5].mode: '0999' is not octal permissions",
            "secrets[5].uid:",
            "secrets[6]: env gives the value as a variable, so target, mode, uid and gid do not apply",
            "secrets[7].version:",
            "configs[0].env: '1BAD' is not a variable name",
        ];
        foreach (var e in expected)
        {
            Assert.Contains(errors, x => x.Contains(e, StringComparison.Ordinal));
        }
        // A config of the same name as a secret is another object, at its own default path (/db-pass).
        Assert.DoesNotContain(errors, x => x.StartsWith("configs[1]", StringComparison.Ordinal));
        Assert.Equal("/run/secrets/db-pass", SecretMounts.TargetOf(new SecretMount { Name = "db-pass" }, SecretKind.Secret));
        Assert.Equal("/run/secrets/tls/key.pem", SecretMounts.TargetOf(new SecretMount { Name = "k", Target = "tls/key.pem" }, SecretKind.Secret));
        Assert.Equal("/db-pass", SecretMounts.TargetOf(new SecretMount { Name = "db-pass" }, SecretKind.Config));
        Assert.Equal(0x124u, SecretMounts.ModeOf(new SecretMount { Name = "x" }));
        Assert.Equal(0x100u, SecretMounts.ModeOf(new SecretMount { Name = "x", Mode = "0400" }));
    }

    private static string KeyOf(string seed)
    {
        using var pair = KeyPair.FromSeed(seed);
        return pair.GetPublicKey();
    }
}

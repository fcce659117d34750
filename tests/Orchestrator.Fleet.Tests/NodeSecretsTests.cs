using System.Text;
using NATS.NKeys;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Client;
using Orchestrator.Fleet.Agent;
using Orchestrator.Node.Secrets;

namespace Orchestrator.Fleet.Tests;

/// <summary>A node's own sealing key and kept copies: opened offline, a moved, forged or foreign copy refused, a damaged key replaced.</summary>
public sealed class NodeSecretsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("node-secrets").FullName;
    private static readonly string s_seed = ManifestSigning.CreateKey().Seed;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Trusted()
    {
        using var pair = KeyPair.FromSeed(s_seed);
        return pair.GetPublicKey();
    }

    private void Keep(SealedSecret value)
    {
        Directory.CreateDirectory(Path.Combine(_dir, "secrets"));
        File.WriteAllBytes(Path.Combine(_dir, "secrets", $"{WireNames.Of(value.Kind)}.{value.Name}.{value.Version}.json"), value.ToBytes());
    }

    [Fact]
    public async Task A_kept_copy_opens_offline_and_one_moved_forged_or_sealed_to_another_key_is_refused()
    {
        using var node = new NodeSecrets("gw-1", _dir, [Trusted()]);
        Assert.True(SecretSealing.IsNodeKey(node.PublicKey));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(_dir, "seal.xk")));
        using (var again = new NodeSecrets("gw-1", _dir, [Trusted()]))
        {
            Assert.Equal(node.PublicKey, again.PublicKey); // the key is the node's for good
        }

        Keep(SecretSealing.SealFor("db-pass", 1, "gw-1", node.PublicKey, Encoding.UTF8.GetBytes("v1"), s_seed));
        Assert.Equal("v1", Encoding.UTF8.GetString(await node.OpenAsync(SecretKind.Secret, "db-pass", 1, default)));

        // Another node's copy put where this node's goes.
        Keep(SecretSealing.SealFor("api", 1, "gw-2", node.PublicKey, Encoding.UTF8.GetBytes("x"), s_seed));
        var moved = await Assert.ThrowsAsync<SecretException>(() => node.OpenAsync(SecretKind.Secret, "api", 1, default).AsTask());
        Assert.Contains("for node 'gw-2' (moved or forged)", moved.Message, StringComparison.Ordinal);

        // Sealed and signed by a key the node does not trust.
        Keep(SecretSealing.SealFor("evil", 1, "gw-1", node.PublicKey, Encoding.UTF8.GetBytes("x"), ManifestSigning.CreateKey().Seed));
        var forged = await Assert.ThrowsAsync<SecretException>(() => node.OpenAsync(SecretKind.Secret, "evil", 1, default).AsTask());
        Assert.Contains("not among this node's fleet.trusted_keys", forged.Message, StringComparison.Ordinal);

        // Sealed to an older key of this node (a reinstall): said, with the fix.
        using var old = SecretSealing.NewNodeKey();
        Keep(SecretSealing.SealFor("tls", 1, "gw-1", old.GetPublicKey(), Encoding.UTF8.GetBytes("x"), s_seed));
        var stale = await Assert.ThrowsAsync<SecretException>(() => node.OpenAsync(SecretKind.Secret, "tls", 1, default).AsTask());
        Assert.Contains("was sealed for another key of node 'gw-1'", stale.Message, StringComparison.Ordinal);
        Assert.Contains("orchctl secret sync tls", stale.Message, StringComparison.Ordinal);

        // Never fetched, and no fleet to ask: retried later, said so.
        var offline = await Assert.ThrowsAsync<SecretException>(() => node.OpenAsync(SecretKind.Config, "conf", 4, default).AsTask());
        Assert.Equal(ErrorKind.Unavailable, offline.Kind);
        Assert.Contains("config 'conf' version 4 is not on this node yet and the fleet cannot be reached", offline.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_damaged_key_file_is_kept_aside_and_a_new_key_made()
    {
        File.WriteAllText(Path.Combine(_dir, "seal.xk"), "not a seed\n");
        using var node = new NodeSecrets("gw-1", _dir, []);
        Assert.True(SecretSealing.IsNodeKey(node.PublicKey));
        Assert.Contains("orchctl secret sync", node.KeyReplaced, StringComparison.Ordinal);
        Assert.Single(Directory.GetFiles(_dir, "seal.xk.damaged-*"));
    }
}

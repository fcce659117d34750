using System.Security.Cryptography;
using System.Text;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Client;

using static Orchestrator.Daemon.Tests.Node.FleetHarness;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// Fleet secrets and configs against real orchd nodes (both backends) and a real nats-server, driven
/// by orchctl: each node gets its own sealed copy, opened only onto a memory file system; the hub,
/// the node's disk and the other nodes never see the value; a new version rolls out; a node that
/// joined later gets its copy from `secret sync`; a copy signed by an untrusted key is refused; a
/// container restarted while NATS is down starts from the node's sealed copy.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class SecretTests
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(90);

    private static string Hash(string value) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(value)))[..16];

    private static async Task<(string Seed, string File, string Public)> OperatorKeyAsync(TempDir dir)
    {
        var file = dir.Combine("op.nk");
        var created = await Orchctl.RunAsync("keys", "create", "-o", file);
        Assert.True(created.Code == 0, created.All);
        return (ManifestSigning.ReadSeed(file), file, created.Out.Trim());
    }

    private static async Task WaitForSealKeysAsync(FleetClient fleet, int count)
    {
        var deadline = DateTime.UtcNow + s_wait;
        while ((await fleet.GetNodesAsync()).Count(n => SecretSealing.IsNodeKey(n.Info.SealKey)) < count)
        {
            Assert.True(DateTime.UtcNow < deadline, $"{count} nodes with a sealing key in their heartbeat");
            await Task.Delay(300);
        }
    }

    /// <summary>Every file under <paramref name="dir"/> that holds <paramref name="needle"/> (a secret that must not be there in clear).</summary>
    private static List<string> FilesHolding(string dir, string needle)
    {
        var bytes = Encoding.UTF8.GetBytes(needle);
        var found = new List<string>();
        foreach (var file in Directory.EnumerateFiles(dir, "*", new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true, AttributesToSkip = 0 }))
        {
            try
            {
                var info = new FileInfo(file);
                if (info.LinkTarget is null && info.Length < 64 << 20 && File.ReadAllBytes(file).AsSpan().IndexOf(bytes) >= 0)
                {
                    found.Add(file);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
            }
        }
        return found;
    }

    /// <summary>The container once it exists (the scheduler places it) and has a message (a start that failed says why).</summary>
    private static async Task<ContainerStatus> RefusedAsync(NodeHost host, string name)
    {
        var deadline = DateTime.UtcNow + s_wait;
        while (true)
        {
            if ((await host.Client.ListAsync()).FirstOrDefault(c => c.Name == name) is { Message: not null } found)
            {
                return found;
            }
            Assert.True(DateTime.UtcNow < deadline, $"{name} on {host.NodeName} with a message");
            await Task.Delay(300);
        }
    }

    [Fact(Timeout = 420_000)]
    public async Task Each_node_opens_only_its_own_copy_in_memory_and_a_new_version_rolls_out()
    {
        await using var nats = await NatsServer.StartAsync();
        using var dir = new TempDir("orch-secrets");
        var (seed, keyFile, publicKey) = await OperatorKeyAsync(dir);
        var hosts = new List<NodeHost>();
        try
        {
            // One node on each backend; both run dirs on a disk, so orchd mounts a tmpfs for the secrets itself.
            foreach (var runtime in (string[])["native", "containerd"])
            {
                hosts.Add(await NodeHost.StartAsync(sharedNats: nats, runtime: runtime, name: $"s-{runtime[..3]}-{Guid.NewGuid().ToString("N")[..4]}",
                    extraArgs: [.. Fast, "--trusted-key", publicKey, "--label", "backend=" + runtime]));
            }
            await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
            await connection.ConnectAsync();
            var fleet = new FleetClient(connection);
            await WaitForSealKeysAsync(fleet, 2);
            var server = new[] { "--server", nats.Url };

            var created = await Orchctl.RunAsync([.. server, "secret", "create", "db-pass", "--from-literal", "s3cret-v1", "--sign-key", keyFile]);
            Assert.True(created.Code == 0, created.All);
            Assert.Contains("secret db-pass: created (version 1, 9 bytes, sealed for 2 nodes)", created.Out, StringComparison.Ordinal);
            var again = await Orchctl.RunAsync([.. server, "secret", "create", "db-pass", "--from-literal", "x", "--sign-key", keyFile]);
            Assert.Equal(1, again.Code);
            Assert.Contains("secret 'db-pass' exists (version 1); a new version is `orchctl secret update db-pass --from-file FILE`", again.All, StringComparison.Ordinal);
            var noKey = await Orchctl.RunAsync([.. server, "secret", "create", "other", "--from-literal", "x"]);
            Assert.Equal(1, noKey.Code);
            Assert.Contains("needs the operator's key (--sign-key FILE or ORCH_SIGN_KEY)", noKey.All, StringComparison.Ordinal);
            var config = await Orchctl.RunAsync([.. server, "configmap", "create", "app-conf", "--from-literal", "mode=fast", "--sign-key", keyFile]);
            Assert.True(config.Code == 0, config.All);

            var manifest = dir.Combine("app.yaml");
            File.WriteAllText(manifest, $"""
                kind: Deployment
                name: app
                replicas: 2
                template:
                  image: {NodeHost.Image}
                  command: ["sh", "-c", "echo \"hash=$(sha256sum /run/secrets/db-pass | cut -c1-16) mode=$MODE conf=$(cat /etc/app.conf) perm=$(stat -c %a:%u /run/secrets/db-pass) $(touch /run/secrets/db-pass 2>/dev/null && echo writable || echo read-only)\"; exec sleep 3600"]
                  secrets:
                    - name: db-pass
                  configs:
                    - name: app-conf
                      env: MODE
                    - name: app-conf
                      target: /etc/app.conf
                """);
            var apply = await Orchctl.RunAsync([.. server, "apply", "-f", manifest, "--sign-key", keyFile]);
            Assert.True(apply.Code == 0, apply.All);
            var stored = (await fleet.GetDeploymentsAsync()).Single(d => d.Deployment.Name == "app").Deployment;
            Assert.Equal(1, stored.Template.Secrets![0].Version); // pinned by apply, and signed with it
            Assert.Equal(1, stored.Template.Configs![1].Version);

            async Task<Dictionary<string, string>> LinesAsync(string wanted)
            {
                var lines = new Dictionary<string, string>(StringComparer.Ordinal);
                var deadline = DateTime.UtcNow + s_wait;
                while (true)
                {
                    foreach (var host in hosts)
                    {
                        foreach (var c in (await ContainersAsync([host], "app-")).Where(c => c.State == ContainerState.Running))
                        {
                            var text = string.Join("\n", (await host.Client.LogsAsync(c.Name)).Select(l => l.Text));
                            if (text.Contains(wanted, StringComparison.Ordinal))
                            {
                                lines[c.Name] = text.Split('\n').Last(l => l.Contains(wanted, StringComparison.Ordinal));
                            }
                        }
                    }
                    if (lines.Count == 2) // both replicas, wherever the rollout put them
                    {
                        return lines;
                    }
                    if (DateTime.UtcNow > deadline)
                    {
                        var states = string.Join("; ", (await ContainersAsync(hosts, "app-")).Select(c => $"{c.Name} {c.State} {c.Message}"));
                        var events = await Orchctl.RunAsync([.. server, "events", "--since", "5m"]);
                        var status = await Orchctl.RunAsync([.. server, "rollout", "status", "app"]);
                        Assert.Fail($"every node's replica printing {wanted}: {states}\n{status.All}\n{events.All}");
                    }
                    await Task.Delay(500);
                }
            }
            foreach (var (replica, line) in await LinesAsync("hash=" + Hash("s3cret-v1")))
            {
                Assert.Equal($"hash={Hash("s3cret-v1")} mode=mode=fast conf=mode=fast perm=444:0 read-only", line);
            }
            foreach (var host in hosts)
            {
                // Spread by the scheduler: one replica on each backend.
                Assert.Single(await ContainersAsync([host], "app-"), c => c.State == ContainerState.Running);
            }

            // In clear nowhere but memory: not in the hub's store (not a bucket value, not a byte of
            // nats-server's files), not on either node's disk; the files live on a tmpfs.
            var store = await new NatsKVContext(new NatsJSContext(connection)).GetStoreAsync(Buckets.Secrets);
            await foreach (var key in store.GetKeysAsync())
            {
                var value = (await store.GetEntryAsync<byte[]>(key)).Value!;
                Assert.DoesNotContain("s3cret", Encoding.UTF8.GetString(value), StringComparison.Ordinal);
            }
            Assert.Empty(FilesHolding(nats.StoreDir, "s3cret-v1"));
            foreach (var host in hosts)
            {
                Assert.Empty(FilesHolding(host.StateDir, "s3cret-v1"));
                Assert.Equal("tmpfs", Orchestrator.Linux.MountInfo.FileSystemOf(Path.Combine(host.RunDir, "secrets")));
            }
            // A stolen node's key opens its own copy and not the other node's.
            using (var stolen = NATS.NKeys.KeyPair.FromSeed(File.ReadAllText(Path.Combine(hosts[0].StateDir, "seal.xk")).Trim()))
            {
                var own = SealedSecret.Parse((await store.GetEntryAsync<byte[]>($"db-pass.1.{hosts[0].NodeName}")).Value!);
                var other = SealedSecret.Parse((await store.GetEntryAsync<byte[]>($"db-pass.1.{hosts[1].NodeName}")).Value!);
                Assert.Equal("s3cret-v1", Encoding.UTF8.GetString(SecretSealing.Open(own, stolen)));
                Assert.Throws<ManifestSignatureException>(() => SecretSealing.Open(other, stolen));
            }

            // A secret as a variable on a node whose run directory is on a disk: refused, saying why and what to do.
            var envApp = new Deployment
            {
                Name = "envapp", Replicas = 1, Selector = new() { ["backend"] = "native" },
                Template = NodeHost.Sh("x", "echo $DB_PASS; sleep 3600", w => w.Secrets = [new SecretMount { Name = "db-pass", Env = "DB_PASS" }]),
            };
            envApp.Template.Name = "";
            await fleet.ApplyAsync([envApp], seed);
            var refused = await RefusedAsync(hosts[0], "envapp-0");
            Assert.Contains("a secret as a variable (DB_PASS) is written into the container's spec under", refused.Message, StringComparison.Ordinal);
            Assert.Contains("put orchd's run_dir on a tmpfs (/run/orchd) or give the secret as a file", refused.Message, StringComparison.Ordinal);
            await fleet.DeleteDeploymentAsync("envapp");

            // A new version: the deployment is re-applied pinned to it and rolled out; both replicas get it.
            var update = await Orchctl.RunAsync([.. server, "secret", "update", "db-pass", "--from-literal", "s3cret-v2", "--sign-key", keyFile]);
            Assert.True(update.Code == 0, update.All);
            Assert.Contains("secret db-pass: updated (version 2, 9 bytes, sealed for 2 nodes)", update.Out, StringComparison.Ordinal);
            Assert.Contains("deployment app: rolling out version 2", update.Out, StringComparison.Ordinal);
            await LinesAsync("hash=" + Hash("s3cret-v2"));
            Assert.Equal(2, (await fleet.GetDeploymentsAsync()).Single(d => d.Deployment.Name == "app").Deployment.Template.Secrets![0].Version);
            var list = await Orchctl.RunAsync([.. server, "secret", "ls"]);
            Assert.Matches(@"db-pass\s+2\s+9\s+2\s", list.Out);

            // In use: not removed. Unused: removed with every copy.
            var inUse = await Orchctl.RunAsync([.. server, "secret", "rm", "db-pass"]);
            Assert.Equal(1, inUse.Code);
            Assert.Contains("secret 'db-pass' is used by deployment app; take it out of that deployment (apply) or delete it first", inUse.All, StringComparison.Ordinal);
            await fleet.DeleteDeploymentAsync("app");
            var removed = await Orchctl.RunAsync([.. server, "secret", "rm", "db-pass"]);
            Assert.True(removed.Code == 0, removed.All);
            var left = new List<string>();
            await foreach (var key in store.GetKeysAsync())
            {
                left.Add(key);
            }
            Assert.Empty(left);
        }
        finally
        {
            await DisposeAllAsync(hosts);
        }
    }

    [Fact(Timeout = 300_000)]
    public async Task A_node_that_joined_later_gets_its_copy_from_sync_refuses_an_untrusted_one_and_starts_from_its_sealed_copy_offline()
    {
        await using var nats = await NatsServer.StartAsync();
        using var dir = new TempDir("orch-secrets");
        var (seed, keyFile, publicKey) = await OperatorKeyAsync(dir);
        await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
        await connection.ConnectAsync();
        var fleet = new FleetClient(connection);
        var server = new[] { "--server", nats.Url };

        // Made before any node joined: sealed for none.
        var created = await Orchctl.RunAsync([.. server, "secret", "create", "api-key", "--from-literal", "k3y-v1", "--sign-key", keyFile]);
        Assert.True(created.Code == 0, created.All);
        Assert.Contains("sealed for 0 nodes", created.Out, StringComparison.Ordinal);

        // The node's run directory on a tmpfs, as /run/orchd is under systemd: a secret may be a variable there.
        await using var node = await NodeHost.StartAsync(sharedNats: nats, start: false);
        Directory.CreateDirectory(node.RunDir);
        Assert.Equal(0, Orchestrator.Linux.Libc.mount("tmpfs", node.RunDir, "tmpfs", 0, "mode=0755"));
        await node.StartOrchdAsync([.. Fast, "--trusted-key", publicKey]);
        await WaitForSealKeysAsync(fleet, 1);

        var app = new Deployment
        {
            Name = "api", Replicas = 1,
            Template = NodeHost.Sh("x", "echo \"env=$(echo -n $API_KEY | sha256sum | cut -c1-16) file=$(sha256sum /run/secrets/keys/api | cut -c1-16)\"; exec sleep 3600", w =>
                w.Secrets = [new SecretMount { Name = "api-key", Env = "API_KEY" }, new SecretMount { Name = "api-key", Target = "keys/api", Mode = "0400", Uid = 1000 }]),
        };
        app.Template.Name = "";
        await fleet.ApplyAsync([app], seed);
        var missing = await RefusedAsync(node, "api-0");
        Assert.Contains($"secret 'api-key' version 1 is not sealed for node '{node.NodeName}'", missing.Message, StringComparison.Ordinal);
        Assert.Contains("orchctl secret sync api-key", missing.Message, StringComparison.Ordinal);

        var synced = await Orchctl.RunAsync([.. server, "secret", "sync", "--sign-key", keyFile]);
        Assert.True(synced.Code == 0, synced.All);
        Assert.Contains($"secret api-key: sealed for 1 node ({node.NodeName})", synced.Out, StringComparison.Ordinal);
        Assert.Contains("secret api-key: every node has its copy", (await Orchctl.RunAsync([.. server, "secret", "sync", "api-key", "--sign-key", keyFile])).Out, StringComparison.Ordinal);
        var expected = $"env={Hash("k3y-v1")} file={Hash("k3y-v1")}";
        await node.LogsUntilAsync("api-0", lines => lines.Any(l => l.Text == expected), s_wait, "the secret as a variable and as a file");
        Assert.Empty(FilesHolding(node.StateDir, "k3y-v1"));

        // Sealed and signed by a key the node does not trust: refused, the running replica untouched.
        var intruder = ManifestSigning.CreateKey().Seed;
        await fleet.PutSecretAsync(SecretKind.Secret, "forged", Encoding.UTF8.GetBytes("evil"), intruder, update: false);
        var bad = new Deployment { Name = "bad", Replicas = 1, Template = NodeHost.Sh("", "cat /run/secrets/forged; sleep 3600", w => w.Secrets = [new SecretMount { Name = "forged" }]) };
        await fleet.ApplyAsync([bad], seed);
        var forged = await RefusedAsync(node, "bad-0");
        Assert.Contains("secret 'forged' version 1 is signed by", forged.Message, StringComparison.Ordinal);
        Assert.Contains("which is not among this node's fleet.trusted_keys", forged.Message, StringComparison.Ordinal);
        Assert.Equal(ContainerState.Running, (await node.Client.InspectAsync("api-0")).State);

        // NATS down: the container is killed and restarted by its node from the sealed copy it kept.
        var before = await node.Client.InspectAsync("api-0");
        DateTimeOffset? back = null;
        await nats.RestartAsync(whileDown: async () =>
        {
            await KillAndWaitForOfflineRestartAsync(node, before, s_wait);
            back = DateTimeOffset.UtcNow;
        });
        await WaitReachableAsync(node, s_wait); // it reconnects by itself, with backoff
        var after = await node.WaitForAsync("api-0", c => c.Restarts == before.Restarts + 1 && c.State == ContainerState.Running, s_wait, "restarted");
        Assert.True(after.StartedAt < back, $"started at {after.StartedAt:O}, NATS back at {back:O}");
        await node.LogsUntilAsync("api-0", lines => lines.Count(l => l.Text == expected) >= 2, s_wait, "the secret again after the offline restart");

        // A compose file's secrets and configs, as its author wrote them: made from the file beside it
        // by apply; unchanged on a second apply; a changed file is a new version, rolled out.
        var compose = Directory.CreateDirectory(dir.Combine("compose")).FullName;
        File.WriteAllText(Path.Combine(compose, "db_password.txt"), "pw-1");
        File.WriteAllText(Path.Combine(compose, ".env"), "LEVEL=3\n"); // interpolated into the config's content by apply
        var composeFile = Path.Combine(compose, "docker-compose.yml");
        File.WriteAllText(composeFile, $$"""
            services:
              db:
                image: {{NodeHost.Image}}
                command: ["sh", "-c", "echo \"pw=$$(sha256sum /run/secrets/db_password | cut -c1-16) conf=$$(cat /etc/app.conf)\"; exec sleep 3600"]
                secrets: [db_password]
                configs:
                  - source: app_conf
                    target: /etc/app.conf
            secrets:
              db_password:
                file: ./db_password.txt
            configs:
              app_conf:
                content: level=${LEVEL}
            """);
        var applied = await Orchctl.RunAsync([.. server, "apply", "-f", composeFile, "--sign-key", keyFile]);
        Assert.True(applied.Code == 0, applied.All);
        Assert.Contains("secret db_password: created from ./db_password.txt (version 1, sealed for 1 node(s))", applied.Out, StringComparison.Ordinal);
        Assert.Contains("config app_conf: created from content: (version 1)", applied.Out, StringComparison.Ordinal);
        // The file is one app, named after its directory: its container db runs as compose-0_db.
        await WaitForContainerAsync(node, "compose-0_db", s_wait);
        await node.LogsUntilAsync("compose-0_db", lines => lines.Any(l => l.Text == $"pw={Hash("pw-1")} conf=level=3"), s_wait, "the compose secret and config");
        var unchanged = await Orchctl.RunAsync([.. server, "apply", "-f", composeFile, "--sign-key", keyFile]);
        Assert.Contains("secret db_password: unchanged", unchanged.Out, StringComparison.Ordinal);
        Assert.Contains("config app_conf: unchanged", unchanged.Out, StringComparison.Ordinal);
        File.WriteAllText(Path.Combine(compose, "db_password.txt"), "pw-2");
        var dry = await Orchctl.RunAsync([.. server, "apply", "-f", composeFile, "--sign-key", keyFile, "--dry-run"]);
        Assert.True(dry.Code == 0, dry.All);
        Assert.Contains("secret db_password: updated from ./db_password.txt (version 2, dry run)", dry.Out, StringComparison.Ordinal);
        Assert.Contains("deployment compose: changed (dry run)", dry.Out, StringComparison.Ordinal);
        Assert.Equal(1, (await fleet.GetSecretAsync(SecretKind.Secret, "db_password")).Version);
        var rolled = await Orchctl.RunAsync([.. server, "apply", "-f", composeFile, "--sign-key", keyFile]);
        Assert.Contains("secret db_password: updated from ./db_password.txt (version 2", rolled.Out, StringComparison.Ordinal);
        await node.LogsUntilAsync("compose-0_db", lines => lines.Any(l => l.Text == $"pw={Hash("pw-2")} conf=level=3"), s_wait, "the new version rolled out");
    }
}

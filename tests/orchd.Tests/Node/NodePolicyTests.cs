using Orchestrator.Client;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// The node's own policy (issue #17): host paths, host network and unconfined seccomp are
/// refused unless the node's config allows them, whoever sends the workload (here: a bare node
/// API request with no credentials, as anyone who reaches an unauthenticated NATS can send, and
/// the node's manifest directory); and a node without NATS authentication or trusted keys says so.
/// </summary>
[Trait("Category", "Privileged")]
public sealed class NodePolicyTests
{
    [Fact(Timeout = 90_000)]
    public async Task The_default_policy_refuses_host_paths_host_network_and_unconfined_seccomp_from_anyone()
    {
        await using var node = await NodeHost.StartAsync();
        var marker = $"/tmp/orch-policy-{Guid.NewGuid():N}";
        // What the independent check sent: hostPath /, network host, seccomp unconfined, writing to the host.
        var attack = NodeHost.Sh("root-me", $"echo pwned > /host{marker}; exec sleep 1000", w =>
        {
            w.Volumes = [new Volume { HostPath = "/", Target = "/host" }];
            w.Network = NetworkMode.Host;
            w.Seccomp = "unconfined";
        });
        var refused = await Assert.ThrowsAsync<NodeRequestException>(() => node.Client.RunAsync(attack));
        Assert.Contains("workload 'root-me' is refused by this node's policy: volumes[0].hostPath: '/' is not under a host path this node allows (policy.host_paths: none)", refused.Message, StringComparison.Ordinal);
        Assert.Contains("network: host is not allowed on this node (policy.host_network: false)", refused.Message, StringComparison.Ordinal);
        Assert.Contains("seccomp: unconfined is not allowed on this node (policy.unconfined_seccomp: false)", refused.Message, StringComparison.Ordinal);
        Assert.Empty(await node.Client.ListAsync());
        Assert.False(File.Exists(marker), "the refused workload wrote to the host");

        // Each alone is refused too (no setting hides behind another).
        foreach (var (name, change) in new (string, Action<Workload>)[]
        {
            ("hp", w => w.Volumes = [new Volume { HostPath = "/etc", Target = "/e", ReadOnly = true }]),
            ("hn", w => w.Network = NetworkMode.Host),
            ("sc", w => w.Seccomp = "unconfined"),
        })
        {
            await Assert.ThrowsAsync<NodeRequestException>(() => node.Client.RunAsync(NodeHost.Sh(name, "exec sleep 1000", change)));
        }

        // The same workload from the node's manifest directory does not run either, and the refusal is an event.
        var since = DateTimeOffset.UtcNow.AddSeconds(-1);
        File.WriteAllText(Path.Combine(node.ManifestDir, "evil.yaml"), $"""
            name: local-evil
            image: busybox:latest
            command: [sh, -c, "echo pwned > /host{marker}; exec sleep 1000"]
            network: host
            volumes: [{"{"}hostPath: /, target: /host{"}"}]
            """);
        await node.Client.RunAsync(NodeHost.Sh("fine", "exec sleep 1000"));
        await using var connection = new NATS.Client.Core.NatsConnection(new NATS.Client.Core.NatsOpts { Url = node.Nats!.Url });
        await connection.ConnectAsync();
        var fleet = new FleetClient(connection);
        var events = await Eventually.ValueAsync("a workload.refused event for local-evil", () => ToListAsync(fleet.EventsAsync(since, watch: false)),
            events => events.Any(e => e is { Kind: "workload.refused", Subject: "local-evil" }), TimeSpan.FromSeconds(20), TimeSpan.FromMilliseconds(200),
            events => "events: " + string.Join("; ", events.Select(e => $"{e.Kind} {e.Subject}")));
        Assert.Equal(["fine"], (await node.Client.ListAsync()).Select(c => c.Name));
        Assert.False(File.Exists(marker), "the refused manifest wrote to the host");
    }

    [Fact(Timeout = 90_000)]
    public async Task An_allowed_host_path_is_bound_and_a_symlink_inside_it_cannot_lead_out()
    {
        using var allowed = new TempDir("allowed");
        Directory.CreateDirectory(allowed.Combine("data"));
        File.WriteAllText(allowed.Combine("data", "hello"), "from the host");
        // A link a container that mounts the directory read-write could have made.
        File.CreateSymbolicLink(allowed.Combine("escape"), "/");
        File.CreateSymbolicLink(allowed.Combine("up"), "data/../..");
        await using var node = await NodeHost.StartAsync(extraArgs: ["--allow-host-path", allowed.Path]);

        await node.Client.RunAsync(NodeHost.Sh("reader", "exec sleep 1000", w => w.Volumes = [new Volume { HostPath = allowed.Combine("data"), Target = "/data", ReadOnly = true }]));
        var read = await node.Client.ExecAsync("reader", ["cat", "/data/hello"]);
        Assert.Equal("from the host", read.Stdout);

        foreach (var link in new[] { "escape", "up" })
        {
            var refused = await Assert.ThrowsAsync<NodeRequestException>(() => node.Client.RunAsync(
                NodeHost.Sh("via-" + link, "exec sleep 1000", w => w.Volumes = [new Volume { HostPath = allowed.Combine(link), Target = "/x" }])));
            Assert.Contains($"volumes[0].hostPath: '{allowed.Combine(link)}' (which is '", refused.Message, StringComparison.Ordinal);
            Assert.Contains($"is not under a host path this node allows (policy.host_paths: {allowed.Path})", refused.Message, StringComparison.Ordinal);
        }
        Assert.Equal(["reader"], (await node.Client.ListAsync()).Select(c => c.Name));
    }

    [Fact(Timeout = 90_000)]
    public async Task A_node_without_nats_authentication_or_trusted_keys_says_so()
    {
        await using var node = await NodeHost.StartAsync();
        var nodes = await Orchctl.RunAsync("--server", node.Nats!.Url, "get", "nodes");
        Assert.Equal(0, nodes.Code);
        Assert.Contains($"warning: {node.NodeName}: NATS without authentication: anyone who reaches the server can send this node work", nodes.Err, StringComparison.Ordinal);
        Assert.Contains($"warning: {node.NodeName}: no fleet.trusted_keys: deployments are not checked for a signature", nodes.Err, StringComparison.Ordinal);
        var described = await Orchctl.RunAsync("--server", node.Nats!.Url, "describe", "node", node.NodeName);
        Assert.Contains("Warnings:\n  NATS without authentication", described.Out, StringComparison.Ordinal);
        Assert.Contains("unsafe: NATS without authentication", node.Daemon.Output, StringComparison.Ordinal);
    }

    private static async Task<List<T>> ToListAsync<T>(IAsyncEnumerable<T> items)
    {
        var list = new List<T>();
        await foreach (var item in items)
        {
            list.Add(item);
        }
        return list;
    }
}

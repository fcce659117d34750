using Orchestrator.Client;
using Orchestrator.Api;
using Orchestrator.Node.Reconcile;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>What the fleet tests share: fast membership timings, a deployment of sleepers, and waits on what the nodes run.</summary>
internal static class FleetHarness
{
    /// <summary>Heartbeat every second; unreachable after 3 s, lost after 6 s; a scheduler lease of 3 s.</summary>
    public static readonly string[] Fast = ["--heartbeat", "1s", "--unreachable-after", "3s", "--lost-after", "6s", "--leader-lease", "3s"];

    /// <summary>
    /// A template whose readiness probe passes once the container has touched /tmp/ready, which
    /// a <paramref name="healthy"/> one does at start and an unhealthy one never does (a rollout
    /// that never gets ready); <paramref name="version"/> goes into VERSION.
    /// </summary>
    public static Workload ReadyWhenHealthy(string version, bool healthy, double probePeriodSeconds = 0.3) => new()
    {
        Image = NodeHost.Image,
        Command = ["sh", "-c", (healthy ? "touch /tmp/ready; " : "") + "exec sleep 100000"],
        Env = new() { ["VERSION"] = version },
        Network = NetworkMode.None,
        StopGracePeriodSeconds = 0,
        Probes = new Probes { Readiness = new Probe { Exec = new ExecAction { Command = ["test", "-f", "/tmp/ready"] }, PeriodSeconds = probePeriodSeconds, FailureThreshold = 1 } },
    };

    /// <summary><paramref name="replicas"/> busybox sleepers; <paramref name="version"/> goes into VERSION (a template change).</summary>
    public static Deployment Sleepers(string name, int replicas, string? version = null, Dictionary<string, string>? selector = null) => new()
    {
        Name = name,
        Replicas = replicas,
        Selector = selector,
        Template = new Workload
        {
            Image = NodeHost.Image, Command = ["sleep", "100000"], Network = NetworkMode.None, StopGracePeriodSeconds = 0,
            Env = version is null ? null : new() { ["VERSION"] = version },
        },
    };

    /// <summary>Node → names of its running containers starting with <paramref name="prefix"/> (none for a node whose orchd is down).</summary>
    public static async Task<Dictionary<string, List<string>>> RunningAsync(IEnumerable<NodeHost> nodes, string prefix)
    {
        var result = new Dictionary<string, List<string>>();
        foreach (var node in nodes)
        {
            try
            {
                result[node.NodeName] = (await node.Client.ListAsync()).Where(c => c.Name.StartsWith(prefix, StringComparison.Ordinal) && c.State == ContainerState.Running).Select(c => c.Name).ToList();
            }
            catch (NodeRequestException)
            {
                result[node.NodeName] = []; // that node's orchd is down
            }
        }
        return result;
    }

    public static Task<Dictionary<string, List<string>>> WaitForRunningAsync(IEnumerable<NodeHost> nodes, string prefix,
        Func<Dictionary<string, List<string>>, bool> condition, string what)
        => Eventually.ValueAsync(what, () => RunningAsync(nodes, prefix), condition, TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(250),
            last => "running: " + string.Join("; ", last.Select(kv => $"{kv.Key}=[{string.Join(",", kv.Value)}]")));

    /// <summary>Every container starting with <paramref name="prefix"/> on any of the nodes, inspected.</summary>
    public static async Task<List<ContainerStatus>> ContainersAsync(IEnumerable<NodeHost> hosts, string prefix)
    {
        var all = new List<ContainerStatus>();
        foreach (var host in hosts)
        {
            foreach (var c in await host.Client.ListAsync())
            {
                if (c.Name.StartsWith(prefix, StringComparison.Ordinal))
                {
                    try
                    {
                        all.Add(await host.Client.InspectAsync(c.Name));
                    }
                    catch (NodeRequestException)
                    {
                        // Removed between the list and the inspect (scaled down, rolled): not there.
                    }
                }
            }
        }
        return all;
    }

    public static Task<List<ContainerStatus>> UntilAsync(IEnumerable<NodeHost> hosts, string prefix,
        Func<List<ContainerStatus>, bool> condition, string what, int seconds = 60)
        => Eventually.ValueAsync(what, () => ContainersAsync(hosts, prefix), condition, TimeSpan.FromSeconds(seconds), TimeSpan.FromMilliseconds(200),
            all => string.Join(", ", all.Select(c => $"{c.Name} {c.State} ready={c.Ready} v{c.Spec?.Env?.GetValueOrDefault("VERSION")}")));

    /// <summary>The first event since <paramref name="since"/> that matches, waited for up to 30 s.</summary>
    public static async Task<NodeEvent> EventAsync(FleetClient fleet, DateTimeOffset since, Func<NodeEvent, bool> match, string what)
    {
        var events = await Eventually.ValueAsync($"an event for {what}", async () =>
        {
            var events = new List<NodeEvent>();
            await foreach (var ev in fleet.EventsAsync(since, watch: false))
            {
                events.Add(ev);
            }
            return events;
        }, events => events.Any(match), TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(300),
            events => "events: " + string.Join(" | ", events.Select(e => $"{e.Node} {e.Kind} {e.Subject}: {e.Message}")));
        return events.First(match);
    }

    /// <summary>Waits until the node answers on NATS again (after a NATS restart it reconnects by itself, with backoff).</summary>
    /// <summary>
    /// Kills a container's process (while NATS is down, say) and waits, from the node's record on
    /// disk (the node API needs NATS), until the node restarted it by itself: one restart more.
    /// </summary>
    public static async Task KillAndWaitForOfflineRestartAsync(NodeHost host, ContainerStatus before, TimeSpan timeout)
    {
        Assert.Equal(0, Tmds.Linux.LibC.kill(before.Pid, Tmds.Linux.LibC.SIGKILL));
        var record = Path.Combine(host.StateDir, "containers", before.Name + ".json");
        var deadline = DateTime.UtcNow + timeout;
        while (System.Text.Json.JsonDocument.Parse(File.ReadAllText(record)).RootElement.GetProperty("restarts").GetInt32() != before.Restarts + 1)
        {
            Assert.True(DateTime.UtcNow < deadline, $"{before.Name} restarted while NATS was down: " + File.ReadAllText(record));
            await Task.Delay(200);
        }
    }

    public static async Task WaitReachableAsync(NodeHost host, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            try
            {
                await host.Client.ListAsync();
                return;
            }
            catch (Exception e) when (e is NodeRequestException or NATS.Client.Core.NatsException or TimeoutException)
            {
                Assert.True(DateTime.UtcNow < deadline, $"{host.NodeName} answering again: {e.Message}");
                await Task.Delay(200);
            }
        }
    }

    /// <summary>Waits until the node has the container (the scheduler placed it and the node took it).</summary>
    public static async Task WaitForContainerAsync(NodeHost host, string name, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while ((await host.Client.ListAsync()).All(c => c.Name != name))
        {
            if (DateTime.UtcNow > deadline)
            {
                var log = host.Daemon.Output;
                Assert.Fail($"{name} on {host.NodeName}; orchd said:\n{(log.Length > 4000 ? log[^4000..] : log)}");
            }
            await Task.Delay(200);
        }
    }

    public static async Task DisposeAllAsync(IEnumerable<NodeHost> hosts)
    {
        foreach (var host in hosts)
        {
            await host.DisposeAsync();
        }
    }
}

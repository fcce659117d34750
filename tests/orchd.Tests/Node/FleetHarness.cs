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

    /// <summary><paramref name="replicas"/> busybox sleepers; <paramref name="version"/> goes into VERSION (a template change).</summary>
    public static Deployment Sleepers(string name, int replicas, string? version = null, Dictionary<string, string>? selector = null) => new()
    {
        Name = name,
        Replicas = replicas,
        Selector = selector,
        Template = new Workload
        {
            Image = NodeHost.Image, Command = ["sleep", "100000"], Network = "none", StopGracePeriodSeconds = 0,
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
                result[node.NodeName] = (await node.Client.ListAsync()).Where(c => c.Name.StartsWith(prefix, StringComparison.Ordinal) && c.State == "running").Select(c => c.Name).ToList();
            }
            catch (NodeRequestException)
            {
                result[node.NodeName] = []; // that node's orchd is down
            }
        }
        return result;
    }

    public static async Task<Dictionary<string, List<string>>> WaitForRunningAsync(IEnumerable<NodeHost> nodes, string prefix,
        Func<Dictionary<string, List<string>>, bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        Dictionary<string, List<string>> last;
        while (!condition(last = await RunningAsync(nodes, prefix)))
        {
            Assert.True(DateTime.UtcNow < deadline, $"{what} did not happen; running: {string.Join("; ", last.Select(kv => $"{kv.Key}=[{string.Join(",", kv.Value)}]"))}");
            await Task.Delay(250);
        }
        return last;
    }

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

    public static async Task<List<ContainerStatus>> UntilAsync(IEnumerable<NodeHost> hosts, string prefix,
        Func<List<ContainerStatus>, bool> condition, string what, int seconds = 60)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(seconds);
        while (true)
        {
            var all = await ContainersAsync(hosts, prefix);
            if (condition(all))
            {
                return all;
            }
            Assert.True(DateTime.UtcNow < deadline, $"{what} did not happen: {string.Join(", ", all.Select(c => $"{c.Name} {c.State} ready={c.Ready} v{c.Spec?.Env?.GetValueOrDefault("VERSION")}"))}");
            await Task.Delay(200);
        }
    }

    /// <summary>The first event since <paramref name="since"/> that matches, waited for up to 30 s.</summary>
    public static async Task<NodeEvent> EventAsync(FleetClient fleet, DateTimeOffset since, Func<NodeEvent, bool> match, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            var events = new List<NodeEvent>();
            await foreach (var ev in fleet.EventsAsync(since, watch: false))
            {
                events.Add(ev);
            }
            if (events.FirstOrDefault(match) is { } found)
            {
                return found;
            }
            Assert.True(DateTime.UtcNow < deadline, $"no event for {what}; events: {string.Join(" | ", events.Select(e => $"{e.Node} {e.Kind} {e.Subject}: {e.Message}"))}");
            await Task.Delay(300);
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

using Microsoft.Extensions.Logging.Abstractions;
using Orchestrator.Node.Network;

namespace Orchestrator.Node.Tests;

/// <summary>What each bridge container's /etc/hosts names: its neighbours, its app's services, and each deployment by its ready replicas on the node.</summary>
public sealed class HostsNamesTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private HostsEntry Entry(string name, string address, bool running = true, string? app = null, string? service = null, string? deployment = null, bool ready = true)
    {
        var file = _dir.Combine(name + ".hosts");
        if (!File.Exists(file))
        {
            File.WriteAllText(file, "");
        }
        return new HostsEntry(name, name, address, running, file, app, service, deployment, running && ready);
    }

    private string[] Lines(string name) => File.ReadAllLines(_dir.Combine(name + ".hosts")).Skip(3).ToArray();

    [Fact]
    public void A_deployment_is_named_by_its_ready_replicas_and_an_apps_own_service_name_wins()
    {
        var network = new ContainerNetwork(null, NullLogger.Instance);
        network.UpdateHosts(
        [
            Entry("db-0", "10.88.0.2", deployment: "db"),
            Entry("db-1", "10.88.0.3", deployment: "db", ready: false),
            Entry("db-2", "10.88.0.4", deployment: "db", running: false),
            Entry("web-0", "10.88.0.5", deployment: "web"),
            Entry("shop-0_db", "10.88.0.6", app: "shop-0", service: "db", deployment: "shop"),
            Entry("shop-0_web", "10.88.0.7", app: "shop-0", service: "web", deployment: "shop"),
        ], []);
        Assert.Equal(["10.88.0.2\tdb", "10.88.0.2\tdb-0", "10.88.0.3\tdb-1", "10.88.0.6\tshop-0_db", "10.88.0.7\tshop-0_web"], Lines("web-0"));
        // Inside the app, db is the app's own db; the fleet's deployment db is db-0 by name.
        Assert.Equal(["10.88.0.6\tdb", "10.88.0.2\tdb-0", "10.88.0.3\tdb-1", "10.88.0.6\tshop-0_db", "10.88.0.5\tweb", "10.88.0.5\tweb-0"],
            Lines("shop-0_web").Where(l => !l.EndsWith("shop-0_web", StringComparison.Ordinal)).ToArray()[..6]);
        Assert.DoesNotContain("10.88.0.2\tdb", Lines("shop-0_web"));
        // A replica does not name itself by its deployment's name (no neighbour of its own deployment is ready).
        Assert.DoesNotContain(Lines("db-0"), l => l.EndsWith("\tdb", StringComparison.Ordinal));

        // db-0 stops being ready: db-1 now is, and the name follows.
        network.UpdateHosts(
        [
            Entry("db-0", "10.88.0.2", deployment: "db", ready: false),
            Entry("db-1", "10.88.0.3", deployment: "db"),
            Entry("web-0", "10.88.0.5", deployment: "web"),
        ], []);
        Assert.Equal(["10.88.0.3\tdb", "10.88.0.2\tdb-0", "10.88.0.3\tdb-1"], Lines("web-0"));
    }

    [Fact]
    public void Clients_of_a_deployment_with_several_ready_replicas_start_at_different_ones_and_see_them_all()
    {
        var network = new ContainerNetwork(null, NullLogger.Instance);
        var replicas = Enumerable.Range(0, 3).Select(i => Entry($"db-{i}", $"10.88.0.{10 + i}", deployment: "db")).ToList();
        var clients = Enumerable.Range(0, 12).Select(i => Entry($"web-{i}", $"10.88.1.{i}", deployment: "web")).ToList();
        network.UpdateHosts([.. replicas, .. clients], []);
        var firsts = new HashSet<string>();
        foreach (var client in clients)
        {
            var db = Lines(client.Name).Where(l => l.EndsWith("\tdb", StringComparison.Ordinal)).Select(l => l.Split('\t')[0]).ToList();
            Assert.Equal(["10.88.0.10", "10.88.0.11", "10.88.0.12"], db.Order(StringComparer.Ordinal));
            firsts.Add(db[0]);
        }
        Assert.Equal(3, firsts.Count); // twelve clients spread over all three
        var before = clients.Select(c => File.ReadAllText(c.HostsFile)).ToList();
        network.UpdateHosts([.. replicas, .. clients], []);
        Assert.Equal(before, clients.Select(c => File.ReadAllText(c.HostsFile))); // the same order again (an orchd restart too)
    }

    [Fact]
    public void A_deployment_that_runs_only_on_other_nodes_is_named_by_its_service_address_and_a_ready_one_here_wins()
    {
        var network = new ContainerNetwork(null, NullLogger.Instance);
        RemoteService[] remote = [new("db", "10.89.3.7"), new("mqtt", "10.89.0.9"), new("cache", "10.89.1.1")];
        network.UpdateHosts(
        [
            Entry("web-0", "10.88.0.5", deployment: "web"),
            Entry("mqtt-0", "10.88.0.6", deployment: "mqtt"),
            Entry("shop-0_cache", "10.88.0.7", app: "shop-0", service: "cache", deployment: "shop"),
            Entry("shop-0_web", "10.88.0.8", app: "shop-0", service: "web", deployment: "shop"),
        ], remote);
        var web = Lines("web-0");
        Assert.Contains("10.89.3.7\tdb", web);                 // only elsewhere: its service address
        Assert.Contains("10.88.0.6\tmqtt", web);               // ready here too: the replica here, directly
        Assert.DoesNotContain("10.89.0.9\tmqtt", web);
        Assert.Contains("10.89.1.1\tcache", web);
        // Inside the app, cache is the app's own; the fleet's cache is not put over it.
        Assert.Contains("10.88.0.7\tcache", Lines("shop-0_web"));
        Assert.DoesNotContain("10.89.1.1\tcache", Lines("shop-0_web"));
        // The replica here stops being ready: the name goes to the service address (the replicas elsewhere).
        network.UpdateHosts(
        [
            Entry("web-0", "10.88.0.5", deployment: "web"),
            Entry("mqtt-0", "10.88.0.6", deployment: "mqtt", ready: false),
        ], remote);
        Assert.Contains("10.89.0.9\tmqtt", Lines("web-0"));
        Assert.DoesNotContain("10.88.0.6\tmqtt", Lines("web-0"));
    }
}

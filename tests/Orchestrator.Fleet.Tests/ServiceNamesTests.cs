using System.Net;
using Orchestrator.Api;
using Orchestrator.Fleet.Agent;

namespace Orchestrator.Fleet.Tests;

/// <summary>Deployment names across nodes: the service addresses a node gives them, and the order a connection tries the replicas elsewhere.</summary>
public sealed class ServiceNamesTests
{
    private sealed class Clock : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = new(2026, 12, 7, 0, 0, 0, TimeSpan.Zero);
        public override DateTimeOffset GetUtcNow() => Now;
    }

    [Fact]
    public void Each_deployment_gets_its_own_address_in_the_range_kept_for_the_process_and_the_same_on_another_node()
    {
        var a = new ServiceAddresses("10.89.0.0/16");
        var names = Enumerable.Range(0, 2000).Select(i => $"svc-{i}").ToList();
        var given = names.ToDictionary(n => n, a.For);
        Assert.Equal(names.Count, given.Values.Distinct().Count());
        Assert.All(given.Values, ip => Assert.StartsWith("10.89.", ip.ToString(), StringComparison.Ordinal));
        Assert.DoesNotContain(IPAddress.Parse("10.89.0.0"), given.Values);
        Assert.DoesNotContain(IPAddress.Parse("10.89.255.255"), given.Values);
        Assert.All(names, n => Assert.Equal(given[n], a.For(n)));
        Assert.All(names, n => Assert.Equal(n, a.DeploymentAt(given[n])));
        Assert.Null(a.DeploymentAt(IPAddress.Parse("10.88.0.2")));
        // Another node (or this one after a restart) asked in another order: mostly the same addresses.
        var b = new ServiceAddresses("10.89.0.0/16");
        var same = names.AsEnumerable().Reverse().Count(n => b.For(n).Equals(given[n]));
        Assert.True(same > names.Count * 9 / 10, $"{same} of {names.Count} the same");
        Assert.Equal("10.89.0.0/16", new ServiceAddresses("10.89.7.1/16").Cidr);
    }

    [Fact]
    public void A_full_range_says_so_and_a_bad_one_is_refused()
    {
        var small = new ServiceAddresses("10.89.0.0/30"); // two usable addresses
        small.For("a");
        small.For("b");
        Assert.Contains("network.services", Assert.Throws<InvalidOperationException>(() => small.For("c")).Message, StringComparison.Ordinal);
        Assert.Equal(small.For("a"), small.For("a"));
        Assert.Throws<ArgumentException>(() => new ServiceAddresses("10.89.0.0"));
        Assert.Throws<ArgumentException>(() => new ServiceAddresses("fd00::/64"));
        Assert.Throws<ArgumentException>(() => new ServiceAddresses("10.89.0.0/31"));
    }

    [Fact]
    public void Connections_take_the_replicas_elsewhere_in_turn_and_one_that_did_not_answer_comes_last_for_a_while()
    {
        var clock = new Clock();
        var table = new EndpointTable("b", clock);
        table.Replace(new Dictionary<string, IReadOnlyList<Endpoint>>
        {
            ["a"] = [new("db", "db-0"), new("web", "web-0")],
            ["b"] = [new("db", "db-1")], // this node's own: never through the proxy
            ["c"] = [new("db", "db-2")],
            ["d"] = [],
        });
        Assert.Equal(["db", "web"], table.Deployments());
        var firsts = Enumerable.Range(0, 6).Select(_ => table.Candidates("db")[0]).ToList();
        Assert.Equal([("a", "db-0"), ("c", "db-2"), ("a", "db-0"), ("c", "db-2"), ("a", "db-0"), ("c", "db-2")], firsts);
        Assert.All(Enumerable.Range(0, 4), _ => Assert.Equal(2, table.Candidates("db").Count));
        Assert.Empty(table.Candidates("mqtt"));

        table.PassOver("a", "db-0");
        Assert.All(Enumerable.Range(0, 4), _ => Assert.Equal([("c", "db-2"), ("a", "db-0")], table.Candidates("db")));
        clock.Now += EndpointTable.PassOverFor + TimeSpan.FromSeconds(1);
        Assert.Contains(("a", "db-0"), Enumerable.Range(0, 2).Select(_ => table.Candidates("db")[0]));

        // The replica moved: the bucket's new view is all there is.
        table.Replace(new Dictionary<string, IReadOnlyList<Endpoint>> { ["c"] = [new("db", "db-0")] });
        Assert.Equal([("c", "db-0")], table.Candidates("db"));
        Assert.Equal(["db"], table.Deployments());
    }
}

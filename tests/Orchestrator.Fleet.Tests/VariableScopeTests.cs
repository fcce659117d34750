using Orchestrator.Api;

namespace Orchestrator.Fleet.Tests;

/// <summary>Operators' variables by scope: the narrower wins, a deployment's own over the general ones, only the scopes that cover the node.</summary>
public sealed class VariableScopeTests
{
    private static readonly VariableScope[] s_scopes =
    [
        new() { Kind = VariableScopeKind.Node, Node = "gw-07", Vars = new() { ["SITE_ID"] = "gw-07" }, Deployments = new() { ["probe"] = new() { ["LEVEL"] = "debug" } } },
        new() { Kind = VariableScopeKind.Fleet, Vars = new() { ["API_URL"] = "https://hub", ["SITE_ID"] = "none", ["LEVEL"] = "info" }, Deployments = new() { ["probe"] = new() { ["API_URL"] = "https://probe-hub" } } },
        new() { Kind = VariableScopeKind.Label, Label = "site=lab", Vars = new() { ["SITE_ID"] = "lab", ["LEVEL"] = "warn" } },
        new() { Kind = VariableScopeKind.Label, Label = "site=field", Vars = new() { ["SITE_ID"] = "field" } },
    ];

    [Fact]
    public void The_narrower_scope_wins_and_a_deployments_own_beats_the_general_ones()
    {
        var lab = new Dictionary<string, string> { ["site"] = "lab" };
        Assert.Equal(new SortedDictionary<string, string> { ["API_URL"] = "https://hub", ["LEVEL"] = "warn", ["SITE_ID"] = "lab" },
            VariableScope.Effective(s_scopes, "gw-01", lab, "web"));
        Assert.Equal(new SortedDictionary<string, string> { ["API_URL"] = "https://probe-hub", ["LEVEL"] = "debug", ["SITE_ID"] = "gw-07" },
            VariableScope.Effective(s_scopes, "gw-07", lab, "probe"));
        Assert.Equal(new SortedDictionary<string, string> { ["API_URL"] = "https://hub", ["LEVEL"] = "info", ["SITE_ID"] = "field" },
            VariableScope.Effective(s_scopes, "gw-02", new Dictionary<string, string> { ["site"] = "field" }, null));
        Assert.Equal("none", VariableScope.Effective(s_scopes, "gw-03", new Dictionary<string, string>(), "web")["SITE_ID"]);
        Assert.Empty(VariableScope.Effective([], "gw-03", new Dictionary<string, string>(), "web"));
    }

    [Fact]
    public void Keys_are_bucket_keys_whatever_the_label()
    {
        Assert.Equal("fleet", VariableScope.Key(VariableScopeKind.Fleet, null));
        Assert.Equal("node.gw-07", VariableScope.Key(VariableScopeKind.Node, "gw-07"));
        var key = VariableScope.Key(VariableScopeKind.Label, "topology.example.com/zone=eu-1");
        Assert.Matches("^label\\.[A-Za-z0-9_-]+$", key);
        Assert.NotEqual(key, VariableScope.Key(VariableScopeKind.Label, "topology.example.com/zone=eu-2"));
        var round = VariableScope.Parse(s_scopes[0].ToBytes());
        Assert.Equal(("gw-07", "debug"), (round.Node, round.Deployments!["probe"]["LEVEL"]));
        Assert.Contains("\"kind\":\"node\"", System.Text.Encoding.UTF8.GetString(s_scopes[0].ToBytes()), StringComparison.Ordinal);
    }
}

using Orchestrator.Api;
using Orchestrator.Fleet.Agent;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Fleet.Tests;

/// <summary>A node's labels as `orchctl label node` changes them: over the configured ones, kept in the state dir, kubectl's rules.</summary>
public sealed class NodeLabelsTests
{
    private static readonly Dictionary<string, string> s_configured = new(StringComparer.Ordinal) { ["arch"] = "x64", ["zone"] = "a" };

    [Fact]
    public void Changes_sit_over_the_configured_labels_and_are_kept_across_a_restart()
    {
        using var dir = new TempDir("node-labels");
        var file = dir.Combine("labels.json");
        var labels = new NodeLabels(s_configured, file);
        Assert.True(labels.Change(new Dictionary<string, string> { ["site"] = "lab" }, ["zone"], overwrite: false));
        Assert.Equal(["arch=x64", "site=lab"], labels.Current.Select(kv => $"{kv.Key}={kv.Value}"));
        Assert.False(labels.Change(new Dictionary<string, string> { ["site"] = "lab" }, [], overwrite: false)); // no change
        Assert.False(labels.Change(new Dictionary<string, string>(), ["nothere"], overwrite: false));

        var again = new NodeLabels(s_configured, file);
        Assert.Equal(["arch=x64", "site=lab"], again.Current.Select(kv => $"{kv.Key}={kv.Value}"));
        // Back to the configured value: the change is forgotten, the file says nothing of zone.
        Assert.True(again.Change(new Dictionary<string, string> { ["zone"] = "a" }, [], overwrite: false));
        Assert.DoesNotContain("zone", File.ReadAllText(file), StringComparison.Ordinal);
    }

    [Fact]
    public void Another_value_needs_overwrite_arch_stays_and_bad_labels_change_nothing()
    {
        using var dir = new TempDir("node-labels");
        var labels = new NodeLabels(s_configured, dir.Combine("labels.json"));
        var conflict = Assert.Throws<NodeApiException>(() => labels.Change(new Dictionary<string, string> { ["zone"] = "b", ["site"] = "lab" }, [], overwrite: false));
        Assert.Equal(ErrorKind.Conflict, conflict.Kind);
        Assert.False(labels.Current.ContainsKey("site")); // all or nothing
        Assert.True(labels.Change(new Dictionary<string, string> { ["zone"] = "b" }, [], overwrite: true));
        Assert.Equal("b", labels.Current["zone"]);
        Assert.Equal(ErrorKind.Forbidden, Assert.Throws<NodeApiException>(() => labels.Change(new Dictionary<string, string> { ["arch"] = "arm64" }, [], overwrite: true)).Kind);
        Assert.Equal(ErrorKind.Forbidden, Assert.Throws<NodeApiException>(() => labels.Change(new Dictionary<string, string>(), ["arch"], overwrite: true)).Kind);
        Assert.Equal(ErrorKind.Invalid, Assert.Throws<NodeApiException>(() => labels.Change(new Dictionary<string, string> { ["bad key"] = "x" }, [], overwrite: true)).Kind);
        Assert.Equal(ErrorKind.Invalid, Assert.Throws<NodeApiException>(() => labels.Change(new Dictionary<string, string> { ["k"] = "-bad-" }, [], overwrite: true)).Kind);
    }

    [Fact]
    public void A_damaged_labels_file_leaves_the_configured_labels_and_the_node_starts()
    {
        using var dir = new TempDir("node-labels");
        var file = dir.Combine("labels.json");
        File.WriteAllText(file, "{\"site\": \"lab\", torn");
        var labels = new NodeLabels(s_configured, file);
        Assert.Equal(["arch=x64", "zone=a"], labels.Current.Select(kv => $"{kv.Key}={kv.Value}"));
        Assert.Contains("the operator's labels are lost, the configured ones hold: label the node again", labels.Warning, StringComparison.Ordinal);
        Assert.Single(Directory.GetFiles(dir.Path, "labels.json.corrupt-*"));
        Assert.True(labels.Change(new Dictionary<string, string> { ["site"] = "depot" }, [], overwrite: false));
        Assert.Equal("depot", new NodeLabels(s_configured, file).Current["site"]);
    }
}

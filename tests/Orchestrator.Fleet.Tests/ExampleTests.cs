using System.Text.RegularExpressions;
using Orchestrator.Api.Workloads;
using Orchestrator.Testing;
using Xunit;

namespace Orchestrator.Fleet.Tests;

/// <summary>What README's example session selects by, the example files carry (get containers -l app=web once found nothing).</summary>
public sealed partial class ExampleTests
{
    [Fact]
    public void Every_label_readme_selects_by_is_on_an_example_deployments_replicas()
    {
        var readme = File.ReadAllText(Path.Combine(Repo.Root, "README.md"));
        var selected = SelectorInReadme().Matches(readme).Select(m => (Key: m.Groups[1].Value, Value: m.Groups[2].Value)).Distinct().ToList();
        Assert.NotEmpty(selected);
        var examples = Directory.GetFiles(Path.Combine(Repo.Root, "examples"), "*.yaml")
            .Select(f => File.ReadAllText(f))
            .Where(text => text.Contains("kind: Deployment", StringComparison.Ordinal))
            .SelectMany(text => ManifestLoader.LoadFleetManifest(text, "example").Deployments)
            .ToList();
        foreach (var (key, value) in selected)
        {
            Assert.True(examples.Any(d => d.Template.Labels?.GetValueOrDefault(key) == value),
                $"README selects -l {key}={value}, and no deployment in examples/ gives its replicas that label");
        }
    }

    [GeneratedRegex(@"get containers -l ([a-z]+)=([a-z]+)")]
    private static partial Regex SelectorInReadme();
}

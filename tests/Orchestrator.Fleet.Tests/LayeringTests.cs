using System.Xml.Linq;

namespace Orchestrator.Fleet.Tests;

/// <summary>
/// Dependencies point down only (docs/architecture.md, "Layers"): read from the csproj files, so a
/// project reference that goes up, or sideways into the node from orchctl, fails here before review.
/// </summary>
public sealed class LayeringTests
{
    /// <summary>Bottom first: a project may reference only projects before it.</summary>
    private static readonly string[] Layers =
    [
        "Orchestrator.Syntax", "Orchestrator.Api", "Orchestrator.Client", "Orchestrator.Linux", "Orchestrator.Runtime", "Orchestrator.Images",
        "Orchestrator.Containerd", "Orchestrator.Node", "Orchestrator.Fleet",
    ];

    /// <summary>The executables: the top; none references another.</summary>
    private static readonly string[] Executables = ["orchd", "orchctl", "orch-runc"];

    private static string Src => Path.Combine(Repo.Root, "src");

    private static IReadOnlyList<string> ReferencesOf(string project)
        => [.. XDocument.Load(Path.Combine(Src, project, project + ".csproj")).Descendants("ProjectReference")
            .Select(r => Path.GetFileNameWithoutExtension(r.Attribute("Include")!.Value.Replace('\\', '/')))];

    private static IReadOnlyList<string> PackagesOf(string project)
        => [.. XDocument.Load(Path.Combine(Src, project, project + ".csproj")).Descendants("PackageReference")
            .Select(r => r.Attribute("Include")!.Value)];

    private static HashSet<string> Closure(string project)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var todo = new Stack<string>(ReferencesOf(project));
        while (todo.TryPop(out var next))
        {
            if (seen.Add(next))
            {
                foreach (var r in ReferencesOf(next))
                {
                    todo.Push(r);
                }
            }
        }
        return seen;
    }

    [Fact]
    public void Every_project_has_a_place_in_the_layers()
    {
        var projects = Directory.GetDirectories(Src).Select(Path.GetFileName).Where(d => File.Exists(Path.Combine(Src, d!, d + ".csproj"))).ToList();
        Assert.All(projects, p => Assert.True(Layers.Contains(p) || Executables.Contains(p),
            $"src/{p} is in no layer: add it to LayeringTests and to docs/architecture.md"));
    }

    [Fact]
    public void Libraries_reference_only_layers_below_them()
    {
        for (var i = 0; i < Layers.Length; i++)
        {
            foreach (var reference in ReferencesOf(Layers[i]))
            {
                var at = Array.IndexOf(Layers, reference);
                Assert.True(at >= 0 && at < i, $"{Layers[i]} references {reference}, which is not below it (docs/architecture.md, \"Layers\")");
            }
        }
    }

    [Fact]
    public void Executables_reference_libraries_only()
    {
        foreach (var exe in Executables)
        {
            Assert.All(ReferencesOf(exe), r => Assert.Contains(r, Layers));
        }
    }

    [Fact]
    public void The_contract_depends_on_nothing_of_the_node()
    {
        Assert.Empty(ReferencesOf("Orchestrator.Syntax")); // what people type, read one way: below everything
        Assert.Empty(PackagesOf("Orchestrator.Syntax"));
        Assert.Equal(["Orchestrator.Syntax"], ReferencesOf("Orchestrator.Api"));
        Assert.Equal(["YamlDotNet"], PackagesOf("Orchestrator.Api"));
        Assert.Equal(["Orchestrator.Api"], ReferencesOf("Orchestrator.Client"));
        Assert.DoesNotContain(PackagesOf("Orchestrator.Client"), p => p.StartsWith("Tmds.", StringComparison.Ordinal) || p.StartsWith("Grpc", StringComparison.Ordinal));
    }

    [Fact]
    public void Orchctl_links_the_contract_and_the_client_only()
    {
        Assert.Equal(["Orchestrator.Api", "Orchestrator.Client", "Orchestrator.Syntax"], Closure("orchctl").Order(StringComparer.Ordinal));
        Assert.Empty(PackagesOf("orchctl"));
    }
}

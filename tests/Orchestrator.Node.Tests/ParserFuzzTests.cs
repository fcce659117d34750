using System.Text;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Node.Tests;

/// <summary>
/// Seeded fuzzing of the YAML a node and orchctl read from outside (workload manifests, fleet
/// manifests, compose files): every mutant is either read or refused with a ManifestException
/// (one clear error); anything else (a crash, a NullReferenceException, an endless loop caught by
/// the test timeout) is a bug, reported with its seed.
/// </summary>
public sealed class ParserFuzzTests
{
    private static readonly string[] s_yamlTokens =
    [
        "[", "]", "{", "}", ": ", "- ", "\n", "\n  ", "&a ", "*a", "!!str ", "!!binary ", "? ", "|\n", ">-\n", "'", "\"", "#", "---\n", "...\n", "%YAML 1.2\n",
        "<<: *a\n", "~", "null", "true", "1e400", "-0", "0x1F", ".inf", "\t", "\u00a0", "\ufeff", "name: ", "image: ", "replicas: ", "template:\n  ",
        "services:\n  ", "volumes: [", "ports: [\"80:80\"]", "command: [", "env: {", "x: &b [*a, *a, *a]\n",
        "depends_on: [", "depends_on:\n      a: {condition: service_healthy}\n", "containers:\n    - name: ", "initContainers: [", "dependsOn: [{name: ",
        "condition: completed", "condition: service_completed_successfully",
    ];

    private static byte[][] Corpus(params string[] relative)
        => relative.Select(r => File.ReadAllBytes(Path.Combine(RepoRoot.Path, r))).ToArray();

    private static bool Clear(Exception e) => e is ManifestException;

    [Fact]
    public void Workload_manifests()
        => Mutator.Run("workload-yaml", Corpus("examples/hello-node.yaml"), s_yamlTokens, Mutator.Iterations(3000),
            input => ManifestLoader.Parse(Encoding.UTF8.GetString(input), "fuzz.yaml"), Clear);

    [Fact]
    public void Fleet_manifests()
        => Mutator.Run("fleet-yaml", Corpus("examples/hello.yaml", "examples/web-deployment.yaml", "examples/sensor.yaml"), s_yamlTokens, Mutator.Iterations(3000),
            input => ManifestLoader.LoadFleetManifest(Encoding.UTF8.GetString(input), "fuzz.yaml"), Clear);

    [Fact]
    public void Compose_files()
        => Mutator.Run("compose-yaml", Corpus("examples/compose/docker-compose.yml"), s_yamlTokens, Mutator.Iterations(3000),
            input => ManifestLoader.LoadFleetManifest(Encoding.UTF8.GetString(input), "docker-compose.yml"), Clear);

    /// <summary>The same mutants read as one app (orchctl apply's default): names, depends_on, the app's own checks.</summary>
    [Fact]
    public void Compose_files_as_apps()
        => Mutator.Run("compose-app-yaml", Corpus("examples/compose/docker-compose.yml"), s_yamlTokens, Mutator.Iterations(3000),
            input => ManifestLoader.LoadFleetManifest(Encoding.UTF8.GetString(input), "docker-compose.yml", new ComposeShape(true, "/srv/sensors")), Clear);
}

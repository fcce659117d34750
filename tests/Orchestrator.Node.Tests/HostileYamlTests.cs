using System.Diagnostics;
using System.Text;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Node.Tests;

/// <summary>
/// YAML that attacks the reader: nesting deep enough to overflow a recursive tree builder (it
/// crashed orchd with SIGSEGV), alias bombs that expand to gigabytes, and sizes past the limit.
/// Each is one clear error, at once, and never a crash.
/// </summary>
public sealed class HostileYamlTests
{
    private static ManifestException Refused(string yaml)
    {
        var watch = Stopwatch.StartNew();
        var error = Assert.Throws<ManifestException>(() => ManifestLoader.Parse(yaml, "evil.yaml"));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), $"the refusal took {watch.Elapsed}");
        return error;
    }

    [Theory]
    [InlineData(200_000)]
    [InlineData(65)]
    public void Deep_nesting_is_refused_not_a_crash(int depth)
    {
        var error = Refused("name: x\nimage: busybox\ncommand: " + new string('[', depth));
        Assert.Contains("evil.yaml: refused: 3:", error.Message, StringComparison.Ordinal);
        Assert.Contains($"it nests mappings and sequences more than {YamlLimits.MaxDepth} deep", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Deep_block_mappings_are_refused_too()
    {
        var yaml = new StringBuilder("name: x\nimage: busybox\nenv:\n");
        for (var i = 0; i < 100; i++)
        {
            yaml.Append(' ', 2 * (i + 1)).Append('k').Append(i).Append(":\n");
        }
        Assert.Contains("more than 64 deep", Refused(yaml.ToString()).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_nesting_a_manifest_needs_is_fine()
    {
        var workloads = ManifestLoader.Parse("name: x\nimage: busybox\ncommand: [sh, -c, 'true']\nenv: {A: '1'}\n", "ok.yaml");
        Assert.Equal("x", workloads.Single().Name);
    }

    [Fact]
    public void An_alias_bomb_is_refused_before_it_expands()
    {
        var yaml = new StringBuilder("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for (var i = 1; i < 10; i++)
        {
            yaml.Append($"a{i}: &a{i} [").Append(string.Join(", ", Enumerable.Repeat($"*a{i - 1}", 10))).Append("]\n");
        }
        yaml.Append("name: x\nimage: busybox\ncommand: *a9\n");
        Assert.Contains($"it stands for more than {YamlLimits.MaxNodes} values once its aliases are expanded", Refused(yaml.ToString()).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Anchors_and_aliases_of_a_normal_size_still_work()
    {
        var workloads = ManifestLoader.Parse("name: x\nimage: busybox\ncommand: &c [sh, -c, 'true']\nargs: *c\n", "ok.yaml");
        Assert.Equal(workloads.Single().Command, workloads.Single().Args);
        Assert.Equal(["sh", "-c", "true"], workloads.Single().Args!);
    }

    [Fact]
    public void A_file_past_the_size_limit_is_refused_without_reading_it()
    {
        var path = Path.Combine(Path.GetTempPath(), $"orch-big-{Guid.NewGuid():N}.yaml");
        try
        {
            using (var file = File.Create(path))
            {
                file.SetLength(YamlLimits.MaxBytes + 1L);
            }
            var error = Assert.Throws<ManifestException>(() => ManifestLoader.LoadFile(path));
            Assert.Contains("it is larger than the 1 MiB a manifest may be", error.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }
}

namespace Orchestrator.Daemon.Tests;

/// <summary>The scripts around the product: CI's summary line and the demo.</summary>
public sealed class ToolingTests
{
    private static string Trx(int passed, int failed, int skipped) =>
        $"""
        <TestRun><Results><UnitTestResult outcome="Failed" /></Results>
        <ResultSummary outcome="{(failed > 0 ? "Failed" : "Completed")}">
          <Counters total="{passed + failed + skipped}" executed="{passed + failed}" passed="{passed}" failed="{failed}" error="0" timeout="0" aborted="0" inconclusive="0" notExecuted="{skipped}" />
        </ResultSummary></TestRun>
        """;

    private static async Task<(int Code, IReadOnlyList<string> Stdout)> Summarize(TempDir dir, int status)
    {
        var run = DaemonProcess.Start("/bin/bash", [Path.Combine(Repo.Root, ".ci", "test-summary"), dir.Path, status.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        var code = await run.WaitForExitAsync(TimeSpan.FromSeconds(30));
        return (code, run.Stdout);
    }

    [Fact(Timeout = 60_000)]
    public async Task Ci_summary_sums_the_counters_of_every_project()
    {
        using var dir = new TempDir();
        await File.WriteAllTextAsync(dir.Combine("a.trx"), Trx(7, 1, 1));
        await File.WriteAllTextAsync(dir.Combine("b.trx"), Trx(3, 0, 2));
        var (code, stdout) = await Summarize(dir, 1);
        Assert.Equal(1, code);
        Assert.Equal("10 passed, 1 failed, 3 skipped", stdout[^1]);
    }

    [Fact(Timeout = 60_000)]
    public async Task Ci_summary_fails_when_a_test_host_crashed_or_nothing_ran()
    {
        using var dir = new TempDir();
        var (emptyCode, empty) = await Summarize(dir, 0);
        Assert.Equal(1, emptyCode);
        Assert.Equal("0 passed, 1 failed, 0 skipped", empty[^1]);

        await File.WriteAllTextAsync(dir.Combine("a.trx"), Trx(4, 0, 0));
        var (crashCode, crash) = await Summarize(dir, 1);
        Assert.Equal(1, crashCode);
        Assert.Equal("4 passed, 1 failed, 0 skipped", crash[^1]);

        var (okCode, ok) = await Summarize(dir, 0);
        Assert.Equal(0, okCode);
        Assert.Equal("4 passed, 0 failed, 0 skipped", ok[^1]);
    }

    [Fact(Timeout = 180_000)]
    [Trait("Category", "Integration")]
    public async Task Demo_stops_cleanly_on_ctrl_c_and_removes_its_files()
    {
        Requires.Program("nats-server", "nats-server");
        var demo = DaemonProcess.Start("/bin/bash", [Path.Combine(Repo.Root, "packaging", "demo", "demo.sh"), Repo.BinDir]);
        await demo.WaitForLogAsync("Ctrl-C stops", TimeSpan.FromSeconds(100));
        Assert.Contains(demo.Stdout, l => l.StartsWith("demo-1 ", StringComparison.Ordinal));
        // Each node enrolled with the demo's token (its own key and JWT) and got the token's label.
        foreach (var node in new[] { "demo-1", "demo-2", "demo-3" })
        {
            Assert.Contains(demo.Stdout, l => l.StartsWith($"demo: {node} enrolled as {node} (key U", StringComparison.Ordinal));
        }
        Assert.Contains(demo.Stdout, l => l.StartsWith("demo-1 ", StringComparison.Ordinal) && l.Contains("site=demo", StringComparison.Ordinal));
        // The global app: a copy on each of the three nodes, released in two waves.
        Assert.Contains(demo.Stdout, l => l.StartsWith("deployment sensor: ", StringComparison.Ordinal) && l.Contains("complete: 3/3 nodes updated and ready", StringComparison.Ordinal));
        Assert.Contains(demo.Stdout, l => l.StartsWith("34% ", StringComparison.Ordinal) && l.Contains("passed", StringComparison.Ordinal));
        demo.Signal(Signals.SIGINT);
        Assert.Equal(0, await demo.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        var removed = demo.Stdout.Single(l => l.StartsWith("demo: stopped, ", StringComparison.Ordinal));
        Assert.False(Directory.Exists(removed["demo: stopped, ".Length..].Replace(" removed", "", StringComparison.Ordinal)));
        Assert.Contains(demo.Stderr, l => l.Contains("stopped cleanly", StringComparison.Ordinal));
        if (Environment.UserName == "root")
        {
            // The sample deployment ran, one replica on each of the three nodes, each answered,
            // and nothing is left behind.
            Assert.Equal(["hello from hello-0, served by orchd", "hello from hello-1, served by orchd", "hello from hello-2, served by orchd"],
                demo.Stdout.Where(l => l.StartsWith("hello from ", StringComparison.Ordinal)).Order(StringComparer.Ordinal));
            Assert.Contains(demo.Stdout, l => l.StartsWith("demo-3 ", StringComparison.Ordinal));
            // The global app's two containers on demo-1, the reader having reached the broker by name.
            Assert.Contains(demo.Stdout, l => l.StartsWith("sensor-", StringComparison.Ordinal) && l.Contains("_broker ", StringComparison.Ordinal));
            Assert.Contains(demo.Stdout, l => l.Contains("reading on reader: broker says no reading yet", StringComparison.Ordinal));
            Assert.All(new[] { "orchdemo1", "orchdemo2", "orchdemo3" }, bridge => Assert.False(Directory.Exists($"/sys/class/net/{bridge}"), $"the demo's bridge {bridge} is left behind"));
        }
    }
}

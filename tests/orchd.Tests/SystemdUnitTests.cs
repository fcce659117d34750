using Orchestrator.Daemon.Configuration;

namespace Orchestrator.Daemon.Tests;

public sealed class SystemdUnitTests
{
    private static readonly string s_unitPath = Path.Combine(Repo.Root, "systemd", "orchd.service");

    private static Dictionary<string, string> Directives() =>
        File.ReadLines(s_unitPath)
            .Where(l => l.Contains('=', StringComparison.Ordinal) && !l.TrimStart().StartsWith('#'))
            .Select(l => l.Split('=', 2))
            .GroupBy(p => p[0].Trim())
            .ToDictionary(g => g.Key, g => g.Last()[1].Trim());

    [Fact]
    public void Unit_has_what_a_container_runtime_service_needs()
    {
        var unit = Directives();
        Assert.Equal("notify", unit["Type"]);
        Assert.Equal("on-failure", unit["Restart"]);
        Assert.Equal("yes", unit["Delegate"]);
        Assert.Equal("process", unit["KillMode"]);
        Assert.Equal("yes", unit["RuntimeDirectoryPreserve"]);
        Assert.Equal(ExitCodes.Config.ToString(System.Globalization.CultureInfo.InvariantCulture), unit["RestartPreventExitStatus"]);
        Assert.EndsWith("s", unit["WatchdogSec"], StringComparison.Ordinal);
        Assert.Contains($"--config {OrchdConfig.DefaultConfigFile}", unit["ExecStart"], StringComparison.Ordinal);
        // The unit must give orchd longer to stop than orchd gives itself.
        var stop = ConfigValues.Duration(unit["TimeoutStopSec"]);
        Assert.True(stop > new OrchdConfig { NodeName = "x" }.ShutdownTimeout, $"TimeoutStopSec {stop} must exceed the default shutdown_timeout");
        // Seccomp- and mount-namespace-based hardening would leak into containers or break live restore.
        foreach (var forbidden in new[] { "SystemCallFilter", "RestrictNamespaces", "ProtectSystem", "PrivateTmp", "ProtectHome", "MemoryDenyWriteExecute" })
        {
            Assert.False(unit.ContainsKey(forbidden), $"{forbidden}= breaks a container runtime; see the unit's comments");
        }
    }

    [Fact]
    public async Task Systemd_analyze_verify_is_clean()
    {
        var analyze = Requires.Program("systemd-analyze", "systemd");
        using var dir = new TempDir();
        // verify checks that ExecStart exists: point it at the published binary.
        var unit = dir.Combine("orchd.service");
        await File.WriteAllTextAsync(unit, (await File.ReadAllTextAsync(s_unitPath)).Replace("/usr/bin/orchd", Repo.Binary("orchd"), StringComparison.Ordinal));
        var verify = DaemonProcess.Start(analyze, ["verify", unit]);
        var code = await verify.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.True(code == 0 && verify.Stderr.Count == 0, verify.Output);
    }

    [Fact]
    public void Packaged_default_config_loads_cleanly()
    {
        var path = Path.Combine(Repo.Root, "packaging", "config", "orchd.yaml");
        var config = ConfigLoader.Load(CommandLine.Parse(["--config", path]), _ => null);
        Assert.Equal(OrchdConfig.DefaultConfigFile, "/etc/orchestrator/orchd.yaml");
        Assert.Equal("/var/lib/orchestrator", config.StateDir);
        Assert.Equal(RuntimeBackend.Auto, config.Runtime);
    }
}

[Trait("Category", "Integration")]
public sealed class DemoTests
{
    [Fact(Timeout = 120_000)]
    public async Task Make_demo_script_shows_the_node_and_stops_cleanly()
    {
        Requires.Program("nats-server", "nats-server");
        var demo = DaemonProcess.Start("/bin/bash", [Path.Combine(Repo.Root, "packaging", "demo", "demo.sh"), Repo.BinDir],
            new Dictionary<string, string?> { ["DEMO_DURATION"] = "1" });
        Assert.Equal(0, await demo.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains(demo.Stdout, l => l.StartsWith("demo-1 ", StringComparison.Ordinal));
        Assert.Contains(demo.Stderr, l => l.Contains("stopped cleanly", StringComparison.Ordinal));
        var removed = demo.Stdout.Single(l => l.StartsWith("demo: stopped, ", StringComparison.Ordinal));
        Assert.False(Directory.Exists(removed["demo: stopped, ".Length..].Replace(" removed", "", StringComparison.Ordinal)));
    }
}

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
        // orchd keeps nothing in systemd's fd store (stdio goes through FIFOs that outlive it): a
        // FileDescriptorStoreMax= would promise what the code does not do.
        Assert.False(unit.ContainsKey("FileDescriptorStoreMax"), "the unit sets FileDescriptorStoreMax= but orchd never stores an fd (FDSTORE=1)");
        Assert.Equal(ExitCodes.Config.ToString(System.Globalization.CultureInfo.InvariantCulture), unit["RestartPreventExitStatus"]);
        Assert.EndsWith("s", unit["WatchdogSec"], StringComparison.Ordinal);
        Assert.Contains($"--config {OrchdConfig.DefaultConfigFile}", unit["ExecStart"], StringComparison.Ordinal);
        // The unit must give orchd longer to stop than orchd gives itself.
        var stop = ConfigValues.Duration(unit["TimeoutStopSec"]);
        Assert.True(stop > new OrchdConfig { NodeName = "x" }.ShutdownTimeout, $"TimeoutStopSec {stop} must exceed the default shutdown_timeout");
        // runtime: auto uses containerd when it is there: ordered after it and pulling it in, never
        // depending on it (orchd runs without it, and must survive its restarts).
        var lines = File.ReadLines(s_unitPath).Where(l => !l.TrimStart().StartsWith('#')).ToList();
        bool Lists(string directive, string unit) => lines.Any(l => l.StartsWith(directive + "=", StringComparison.Ordinal)
            && l[(directive.Length + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries).Contains(unit));
        Assert.True(Lists("After", "containerd.service"), "orchd.service must start after containerd.service");
        Assert.True(Lists("Wants", "containerd.service"), "orchd.service must want containerd.service");
        foreach (var hard in new[] { "Requires", "Requisite", "BindsTo", "PartOf" })
        {
            Assert.False(Lists(hard, "containerd.service"), $"{hard}=containerd.service would stop orchd with containerd; Wants= is the dependency");
        }
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
        await File.WriteAllTextAsync(unit, (await File.ReadAllTextAsync(s_unitPath)).Replace("/usr/bin/orchd", Repo.Binary("orchd"), StringComparison.Ordinal)
            .Replace("/usr/lib/orchestrator/orchd-update-guard", Path.Combine(Repo.Root, "packaging", "update", "orchd-update-guard"), StringComparison.Ordinal));
        var verify = DaemonProcess.Start(analyze, ["verify", unit]);
        var code = await verify.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.True(code == 0 && verify.Stderr.Count == 0, verify.Output);
    }

    [Fact]
    public void Packaged_default_config_loads_to_the_defaults_and_mentions_every_key()
    {
        var path = Path.Combine(Repo.Root, "packaging", "config", "orchd.yaml");
        var config = ConfigLoader.Load(CommandLine.Parse(["--config", path]), _ => null);
        var defaults = ConfigLoader.Load(CommandLine.Parse(["--config", "/dev/null"]), _ => null);
        Assert.Equal(defaults with { ConfigFile = null, Labels = null!, NatsUrls = null! }, config with { ConfigFile = null, Labels = null!, NatsUrls = null! });
        Assert.Equal(defaults.NatsUrls, config.NatsUrls);
        var text = File.ReadAllText(path);
        Assert.All(ConfigSchema.All, s => Assert.Contains(s.Key[(s.Key.IndexOf('.', StringComparison.Ordinal) + 1)..] + ":", text, StringComparison.Ordinal));
    }
}

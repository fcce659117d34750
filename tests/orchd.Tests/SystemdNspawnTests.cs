namespace Orchestrator.Daemon.Tests;

/// <summary>
/// The package under a real systemd (PID 1 of this machine is not systemd): a Debian 12 rootfs
/// booted with systemd-nspawn in its own network namespace, driven by tests/systemd/nspawn-e2e.sh.
/// What it checks is written at the top of that script: no "left-over process" on
/// `systemctl restart orchd`, and `dpkg -r`/`-i`/`-P` leaving nothing running or behind.
/// </summary>
[Trait("Category", "Privileged")]
public sealed class SystemdNspawnTests : IDisposable
{
    private readonly TempDir _dir = new("orch-nspawn");

    public void Dispose() => _dir.Dispose();

    /// <summary>The rootfs make test builds in the background (tests/systemd/make-rootfs.sh); waited for here, up to 10 minutes.</summary>
    private static async Task<string> RootfsAsync()
    {
        var rootfs = Environment.GetEnvironmentVariable("ORCH_SYSTEMD_ROOTFS") is { Length: > 0 } r ? r : "/var/cache/orchestrator-tests/bookworm";
        var deadline = DateTime.UtcNow.AddMinutes(10);
        while (!File.Exists(Path.Combine(rootfs, ".complete")))
        {
            var building = File.Exists(rootfs + ".lock") && File.Exists(rootfs + ".log") && !File.ReadAllText(rootfs + ".log").Contains("built ", StringComparison.Ordinal);
            if (!building || DateTime.UtcNow > deadline)
            {
                var why = $"no Debian 12 rootfs at {rootfs}: make test builds it (tests/systemd/make-rootfs.sh {rootfs}; log {rootfs}.log)";
                if (Requires.InCi)
                {
                    Assert.Fail(why);
                }
                Assert.Skip(why);
            }
            await Task.Delay(1000);
        }
        return rootfs;
    }

    /// <summary>
    /// hybrid: this host's cgroup layout (v1 controllers, name=systemd, cgroup2 for tracking);
    /// unified: cgroup v2 alone, as Debian 12 boots, where orchd asks systemd for a delegated scope.
    /// </summary>
    [Theory(Timeout = 900_000)]
    [InlineData("hybrid")]
    [InlineData("unified")]
    public async Task Restart_remove_reinstall_and_purge_under_a_real_systemd(string cgroups)
    {
        Requires.Root();
        Requires.Program("systemd-nspawn", "systemd-container");
        Requires.Program("dpkg-deb", "dpkg");
        var rootfs = await RootfsAsync();
        var image = _dir.Combine("busybox.tar");
        BusyboxImage.CreateArchive(image);
        var debs = _dir.Combine("debs");
        var build = DaemonProcess.Start("/bin/bash", [Path.Combine(Repo.Root, "packaging", "deb", "build-deb.sh"), "--bin-dir", Repo.BinDir, "--arch", "amd64", "--out", debs]);
        Assert.True(await build.WaitForExitAsync(TimeSpan.FromMinutes(3)) == 0, build.Output);
        var deb = Assert.Single(Directory.GetFiles(debs, "orchestrator_*_amd64.deb"));

        var run = DaemonProcess.Start("/bin/bash", [Path.Combine(Repo.Root, "tests", "systemd", "nspawn-e2e.sh"), deb, image, rootfs, _dir.Combine("machine-" + cgroups), cgroups]);
        var code = await run.WaitForExitAsync(TimeSpan.FromMinutes(10));
        Assert.True(code == 0, $"nspawn-e2e.sh exited {code}:\n{run.Output}");
        var checks = new List<string> { "no left-over process reported", "dpkg -r left no container", "reinstalled: orchd enabled", "dpkg -P: state" };
        if (cgroups == "unified")
        {
            checks.Add("cgroup v2: container in /system.slice/orchestrator-");
            checks.Add("scope holder killed: replaced by orchd");
        }
        foreach (var check in checks)
        {
            Assert.Contains(run.Stdout, l => l.Contains(check, StringComparison.Ordinal));
        }
    }
}

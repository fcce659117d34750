using System.Text.Json;

namespace Orchestrator.Daemon.Tests;

/// <summary>
/// What an edge host gets: the linux-arm64 binaries (run here under qemu-user) and the .deb
/// (built with packaging/deb/build-deb.sh, installed with dpkg on this machine, removed and
/// purged again).
/// </summary>
[Trait("Category", "Integration")]
public sealed class PackagingTests : IAsyncLifetime
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(150); // dpkg with man-db triggers, on a loaded machine
    private readonly TempDir _dir = new("orch-packaging");

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync()
    {
        _dir.Dispose();
        return ValueTask.CompletedTask;
    }

    /// <summary>The arm64 binaries `make publish-arm64` made (ORCH_ARM64_BIN_DIR, default artifacts/bin-arm64).</summary>
    private static string Arm64Binary(string name)
    {
        var dir = Environment.GetEnvironmentVariable("ORCH_ARM64_BIN_DIR") is { Length: > 0 } d ? d : Path.Combine(Repo.Root, "artifacts", "bin-arm64");
        var path = Path.Combine(dir, name);
        if (!File.Exists(path))
        {
            if (Requires.InCi)
            {
                Assert.Fail($"'{path}' does not exist; make test builds it with make publish-arm64");
            }
            Assert.Skip($"'{path}' does not exist; run make publish-arm64 (or set ORCH_ARM64_BIN_DIR)");
        }
        return path;
    }

    /// <summary>Runs an arm64 binary through qemu-user with the cross sysroot's loader and libc.</summary>
    private static async Task<DaemonProcess> RunArm64Async(string binary, IEnumerable<string> args, int expectedExit = 0)
    {
        var qemu = Requires.Program("qemu-aarch64-static", "qemu-user-static");
        Assert.True(Directory.Exists("/usr/aarch64-linux-gnu/lib"), "the arm64 sysroot is missing; apt-get install libc6-dev-arm64-cross (make publish-arm64 does)");
        var process = DaemonProcess.Start(qemu, ["-L", "/usr/aarch64-linux-gnu", binary, .. args]);
        var code = await process.WaitForExitAsync(s_wait);
        Assert.True(code == expectedExit, $"{Path.GetFileName(binary)} {string.Join(' ', args)} exited {code}:\n{process.Output}");
        return process;
    }

    private static bool IsElfFor(string path, ushort machine)
    {
        var header = new byte[20];
        using (var file = File.OpenRead(path))
        {
            file.ReadExactly(header);
        }
        return header[0] == 0x7f && header[1] == (byte)'E' && BitConverter.ToUInt16(header, 18) == machine;
    }

    private const ushort ElfAarch64 = 183;
    private const ushort ElfX86_64 = 62;

    [Fact(Timeout = 180_000)]
    public async Task Arm64_orchd_runs_under_qemu_version_config_and_runtime_spec()
    {
        var orchd = Arm64Binary("orchd");
        Assert.True(IsElfFor(orchd, ElfAarch64), $"{orchd} is not an arm64 ELF binary");
        Assert.True(IsElfFor(Arm64Binary("orchctl"), ElfAarch64));

        var version = await RunArm64Async(orchd, ["--version"]);
        Assert.Matches(@"^orchd \d+\.\d+\.\d+\S* \(linux-arm64, \.NET \d+", version.Stdout.Single());

        // The config loader (YAML through the static context) and the settings table, on arm64.
        var config = _dir.Combine("orchd.yaml");
        await File.WriteAllTextAsync(config, "node_name: edge-arm\nlabels: {zone: north}\nfleet:\n  heartbeat: 2s\n");
        var check = await RunArm64Async(orchd, ["--check-config", "--config", config, "--label", "hw=rpi4"]);
        Assert.Contains("node_name: \"edge-arm\"", check.Stdout);
        Assert.Contains("  \"zone\": \"north\"", check.Stdout);
        Assert.Contains("  \"hw\": \"rpi4\"", check.Stdout);
        var bad = await RunArm64Async(orchd, ["--check-config", "--config", config, "--runtime", "dockr"], expectedExit: 78);
        Assert.Contains(bad.Stderr, l => l.Contains("'dockr' is not a runtime backend", StringComparison.Ordinal));

        // orch-runc (a binary of its own, built for arm64 too) writes a runtime spec with the arm64 JSON code.
        var bundle = _dir.Combine("bundle");
        Directory.CreateDirectory(bundle);
        var runc = Arm64Binary("orch-runc");
        Assert.True(IsElfFor(runc, ElfAarch64), $"{runc} is not an arm64 ELF binary");
        await RunArm64Async(runc, ["spec", "--bundle", bundle]);
        using var spec = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(bundle, "config.json")));
        Assert.StartsWith("1.", spec.RootElement.GetProperty("ociVersion").GetString(), StringComparison.Ordinal);

        // orchctl answers offline: its help and a completion script from the command table.
        var completion = await RunArm64Async(Arm64Binary("orchctl"), ["completion", "bash"]);
        Assert.Contains(completion.Stdout, l => l.Contains("orchctl", StringComparison.Ordinal));
    }

    private async Task<string> BuildDebAsync(string binDir, string arch)
    {
        var output = _dir.Combine("debs-" + arch);
        var build = DaemonProcess.Start("/bin/bash", [Path.Combine(Repo.Root, "packaging", "deb", "build-deb.sh"), "--bin-dir", binDir, "--arch", arch, "--out", output]);
        var code = await build.WaitForExitAsync(s_wait);
        Assert.True(code == 0, $"build-deb.sh --arch {arch} exited {code}:\n{build.Output}");
        return Assert.Single(Directory.GetFiles(output, $"orchestrator_*_{arch}.deb"));
    }

    private static async Task<DaemonProcess> RunAsync(string program, params string[] args)
    {
        var process = DaemonProcess.Start(program, args);
        var code = await process.WaitForExitAsync(s_wait);
        Assert.True(code == 0, $"{program} {string.Join(' ', args)} exited {code}:\n{process.Output}");
        return process;
    }

    private static readonly string[] s_packagedFiles =
    [
        "./usr/bin/orchd", "./usr/bin/orchctl", "./usr/bin/orch-runc", "./lib/systemd/system/orchd.service", "./lib/systemd/system/orchd-identity.service",
        "./etc/orchestrator/orchd.yaml", "./usr/lib/tmpfiles.d/orchestrator.conf", "./usr/share/man/man8/orchd.8.gz",
        "./usr/share/man/man1/orchctl.1.gz", "./usr/share/man/man8/orch-runc.8.gz", "./usr/share/bash-completion/completions/orchctl",
        "./usr/share/doc/orchestrator/copyright",
    ];

    [Fact(Timeout = 180_000)]
    public async Task Arm64_deb_holds_arm64_binaries_and_every_file()
    {
        Requires.Program("dpkg-deb", "dpkg");
        var deb = await BuildDebAsync(Path.GetDirectoryName(Arm64Binary("orchd"))!, "arm64");
        var info = await RunAsync("dpkg-deb", "--field", deb, "Package", "Architecture", "Depends");
        Assert.Contains("Package: orchestrator", info.Stdout);
        Assert.Contains("Architecture: arm64", info.Stdout);
        Assert.Contains(info.Stdout, l => l.StartsWith("Depends: libc6 (>= 2.", StringComparison.Ordinal));
        Assert.Contains(info.Stdout, l => l.StartsWith("Depends: ", StringComparison.Ordinal) && l.Contains("libssl3 | libssl1.1", StringComparison.Ordinal)); // orchd and orchctl abort without it
        var contents = (await RunAsync("dpkg-deb", "--contents", deb)).Stdout;
        foreach (var file in s_packagedFiles)
        {
            Assert.Contains(contents, l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Contains(file));
        }
        var extracted = _dir.Combine("arm64-root");
        await RunAsync("dpkg-deb", "--extract", deb, extracted);
        Assert.True(IsElfFor(Path.Combine(extracted, "usr/bin/orchd"), ElfAarch64));
        Assert.True(IsElfFor(Path.Combine(extracted, "usr/bin/orchctl"), ElfAarch64));
        Assert.True(IsElfFor(Path.Combine(extracted, "usr/bin/orch-runc"), ElfAarch64));

        // An x64 binary is refused for an arm64 package, with the fix.
        var wrong = DaemonProcess.Start("/bin/bash", [Path.Combine(Repo.Root, "packaging", "deb", "build-deb.sh"), "--bin-dir", Repo.BinDir, "--arch", "arm64", "--out", _dir.Combine("wrong")]);
        Assert.Equal(1, await wrong.WaitForExitAsync(s_wait));
        Assert.Contains(wrong.Stderr, l => l.Contains("is built for amd64, not arm64; pass the right --bin-dir", StringComparison.Ordinal));
    }

    [Fact(Timeout = 300_000)]
    [Trait("Category", "Privileged")]
    public async Task Deb_installs_runs_removes_keeping_state_and_purges_without_following_bind_mounts()
    {
        Requires.Root();
        Requires.Program("dpkg", "dpkg");
        Assert.True(IsElfFor(Repo.Binary("orchd"), ElfX86_64), "this test installs the amd64 package: run it on x86-64");
        // The machine is shared: never replace a real installation or touch existing state.
        if (Directory.Exists("/var/lib/orchestrator") || Directory.Exists("/etc/orchestrator")
            || (await DaemonProcess.Start("dpkg-query", ["-W", "orchestrator"]).WaitForExitAsync(s_wait)) == 0)
        {
            Assert.Skip("an orchestrator installation (package, /etc/orchestrator or /var/lib/orchestrator) is already on this machine; this test will not touch it");
        }
        var deb = await BuildDebAsync(Repo.BinDir, "amd64");
        var volume = _dir.Combine("host-data");
        Directory.CreateDirectory(volume);
        await File.WriteAllTextAsync(Path.Combine(volume, "keep"), "host data");
        var mountPoint = "/var/lib/orchestrator/volumes/app/data";
        try
        {
            var install = await RunAsync("dpkg", "-i", deb);
            Assert.Contains(install.Stdout, l => l.Contains("systemctl enable --now orchd", StringComparison.Ordinal));

            var version = await RunAsync("/usr/bin/orchd", "--version");
            Assert.Matches(@"^orchd \d+\.\d+\.\d+\S* \(linux-x64, ", version.Stdout.Single());
            // orch-runc is a binary of its own, not a link to orchd (docs/benchmarks.md: its start is paid per container operation).
            Assert.Null(File.ResolveLinkTarget("/usr/bin/orch-runc", returnFinalTarget: false));
            var runcVersion = await RunAsync("/usr/bin/orch-runc", "--version");
            Assert.StartsWith("orch-runc version ", runcVersion.Stdout[0], StringComparison.Ordinal);
            await RunAsync("/usr/bin/orchctl", "--help");
            // The packaged default config is what orchd loads when started by the unit.
            var check = await RunAsync("/usr/bin/orchd", "--check-config", "--config", "/etc/orchestrator/orchd.yaml");
            Assert.Contains(check.Stdout, l => l.Contains("/var/lib/orchestrator", StringComparison.Ordinal));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode("/var/lib/orchestrator"));
            Assert.True(Directory.Exists("/etc/orchestrator/manifests"));
            var conffiles = await RunAsync("dpkg-query", "-W", "-f=${Conffiles}", "orchestrator");
            Assert.Contains("/etc/orchestrator/orchd.yaml", conffiles.Output, StringComparison.Ordinal);
            // Installed, not enabled: nothing in a .wants directory.
            Assert.False(File.Exists("/etc/systemd/system/multi-user.target.wants/orchd.service"));
            // The installed unit verifies against the installed binary.
            var analyze = DaemonProcess.Start(Requires.Program("systemd-analyze", "systemd"), ["verify", "/lib/systemd/system/orchd.service", "/lib/systemd/system/orchd-identity.service"]);
            Assert.True(await analyze.WaitForExitAsync(s_wait) == 0 && analyze.Stderr.Count == 0, analyze.Output);
            Assert.False(File.Exists("/etc/systemd/system/multi-user.target.wants/orchd-identity.service"));
            var man = await RunAsync("man", "-w", "orchd");
            Assert.Contains("/usr/share/man/man8/orchd.8.gz", man.Stdout);

            // State a node would have: its id, and a volume bind-mounted from elsewhere on the host.
            await File.WriteAllTextAsync("/var/lib/orchestrator/node-id", "n-123\n");
            Directory.CreateDirectory(mountPoint);
            await RunAsync("mount", "--bind", volume, mountPoint);

            // A damaged node id: the teardown cannot tell this node's containers from another
            // orchd's, so the removal stops, saying why and how to go on; nothing is removed.
            var refused = DaemonProcess.Start("dpkg", ["-r", "orchestrator"]);
            Assert.NotEqual(0, await refused.WaitForExitAsync(s_wait));
            Assert.Contains(refused.Stderr, l => l.Contains("'/var/lib/orchestrator/node-id' holds no node id", StringComparison.Ordinal));
            Assert.Contains(refused.Stderr, l => l.Contains("ORCHESTRATOR_FORCE_REMOVE=1 dpkg -r orchestrator", StringComparison.Ordinal));
            Assert.True(File.Exists("/usr/bin/orchd"), "a refused removal removed the binary");
            await File.WriteAllTextAsync("/var/lib/orchestrator/node-id", "0123456789abcdef0123456789abcdef\n");

            var removed = await RunAsync("dpkg", "-r", "orchestrator");
            Assert.Contains(removed.Stdout, l => l.StartsWith("orchd teardown: 0 container(s) of orchd's runtime stopped; 1 mount(s) under /var/lib/orchestrator", StringComparison.Ordinal));
            Assert.False(File.Exists("/usr/bin/orchd"));
            Assert.False(File.Exists("/lib/systemd/system/orchd.service"));
            Assert.True(File.Exists("/etc/orchestrator/orchd.yaml"), "remove keeps the conffile");
            Assert.True(File.Exists("/var/lib/orchestrator/node-id"), "remove keeps the node's state");

            // Another orchd's container on this host (its own node id): purging this package must not touch it.
            var otherParent = File.Exists("/sys/fs/cgroup/cgroup.controllers") ? "/sys/fs/cgroup/orchestrator/feedfacefeed" : "/sys/fs/cgroup/pids/orchestrator/feedfacefeed";
            var otherCgroup = Path.Combine(otherParent, "other");
            Directory.CreateDirectory(otherCgroup);
            await using var other = DaemonProcess.Start("/bin/sleep", ["1000"]);
            await File.WriteAllTextAsync(Path.Combine(otherCgroup, "cgroup.procs"), other.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture));
            try
            {
                await RunAsync("dpkg", "-P", "orchestrator");
                Assert.False(other.HasExited, "purging the package killed another orchd's container");
            }
            finally
            {
                other.Signal(9);
                await other.WaitForExitAsync(s_wait);
                Directory.Delete(otherCgroup);
                Directory.Delete(otherParent);
            }
            Assert.False(Directory.Exists("/var/lib/orchestrator"), "purge removes the state");
            Assert.False(Directory.Exists("/etc/orchestrator"), "purge removes the config");
            Assert.Equal("host data", await File.ReadAllTextAsync(Path.Combine(volume, "keep")));
            Assert.DoesNotContain(File.ReadLines("/proc/self/mountinfo"), l => l.Contains(" /var/lib/orchestrator", StringComparison.Ordinal));
        }
        finally
        {
            if (File.ReadLines("/proc/self/mountinfo").Any(l => l.Contains(" " + mountPoint + " ", StringComparison.Ordinal)))
            {
                await DaemonProcess.Start("umount", ["-l", mountPoint]).WaitForExitAsync(s_wait);
            }
            await DaemonProcess.Start("dpkg", ["-P", "orchestrator"]).WaitForExitAsync(s_wait);
        }
    }

    [Fact]
    public void Man_page_documents_every_setting()
    {
        var page = File.ReadAllText(Path.Combine(Repo.Root, "packaging", "man", "orchd.8"));
        foreach (var setting in Orchestrator.Daemon.Configuration.ConfigSchema.All)
        {
            Assert.True(page.Contains(setting.Flag.Replace("-", "\\-", StringComparison.Ordinal), StringComparison.Ordinal) && page.Contains(setting.Env, StringComparison.Ordinal),
                $"packaging/man/orchd.8 does not document {setting.Flag} ({setting.Key}); add it to the SETTINGS section");
        }
    }
}

using System.Globalization;
using System.Text.Json.Nodes;

namespace Orchestrator.Runtime.Tests.Privileged;

/// <summary>
/// Runtime bugs that docker, podman and containerd's shim ran into (issue 16), each reproduced
/// here through orch-runc alone, the way the client drives it. The clients themselves are in
/// <see cref="DockerClientTests"/>, <see cref="PodmanClientTests"/> and <see cref="ContainerdShimTests"/>.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(HostState.Collection)]
public sealed class ClientFoundRuntimeTests : IDisposable
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(60);
    private readonly TempDir _state = new("orch-runc-root");

    public ClientFoundRuntimeTests() => Requires.Root();

    public void Dispose()
    {
        foreach (var dir in Directory.Exists(_state.Path) ? Directory.GetDirectories(_state.Path) : [])
        {
            using var delete = System.Diagnostics.Process.Start(Repo.Binary("orch-runc"), ["--root", _state.Path, "delete", "--force", Path.GetFileName(dir)]);
            delete.WaitForExit(10_000);
        }
        _state.Dispose();
    }

    private async Task<(int Code, string Stdout, string Stderr)> Runc(params string[] args)
    {
        var process = DaemonProcess.Start(Repo.Binary("orch-runc"), ["--root", _state.Path, .. args]);
        var detached = args[0] == "create" || (args[0] == "run" && args.Contains("-d"));
        var code = await process.WaitForExitAsync(s_wait, drainOutput: !detached);
        var result = (code, string.Join("\n", process.Stdout), string.Join("\n", process.Stderr));
        await process.DisposeAsync();
        return result;
    }

    /// <summary>
    /// podman --user 65534:65534 (create, then start): the process is not root and has no
    /// capabilities when it opens the exec fifo it waits on. runtime.md ("start"): the runtime
    /// MUST run the user-specified program; the fifo was 0600 root, so the child died with
    /// EACCES and start was refused. runc makes it 0622.
    /// </summary>
    [Fact(Timeout = 120_000)]
    public async Task Create_then_start_runs_a_non_root_process_without_capabilities()
    {
        using var bundle = OciBundle.CreateBusybox("sh", "-c", "id -u > /tmp/out; id -g >> /tmp/out; grep CapEff /proc/self/status >> /tmp/out");
        bundle.Edit(s =>
        {
            s["root"]!["readonly"] = false;
            s["process"]!["user"] = new JsonObject { ["uid"] = 65534, ["gid"] = 65534 };
            s["process"]!["capabilities"] = new JsonObject
            {
                ["bounding"] = new JsonArray("CAP_KILL"), ["effective"] = new JsonArray(), ["permitted"] = new JsonArray(),
                ["inheritable"] = new JsonArray(), ["ambient"] = new JsonArray(),
            };
        });
        // The image's /tmp as images have it (extraction applied the umask): nobody writes there.
        File.SetUnixFileMode(Path.Combine(bundle.Rootfs, "tmp"), (UnixFileMode)Convert.ToInt32("1777", 8));
        var create = await Runc("create", "--bundle", bundle.Path, "nobody");
        Assert.True(create.Code == 0, create.Stderr);
        var start = await Runc("start", "nobody");
        Assert.True(start.Code == 0, $"start refused: {start.Stderr}");
        var output = Path.Combine(bundle.Rootfs, "tmp", "out");
        for (var i = 0; i < 200 && (!File.Exists(output) || File.ReadAllLines(output).Length < 3); i++)
        {
            await Task.Delay(25);
        }
        Assert.Equal(["65534", "65534", "CapEff:\t0000000000000000"], await File.ReadAllLinesAsync(output));
        Assert.Equal(0, (await Runc("delete", "--force", "nobody")).Code);
    }

    /// <summary>
    /// podman --read-only mounts tmpfs on /run, /tmp and /var/tmp with tmpcopyup (runc's and crun's
    /// extension): the tmpfs starts with the content of the directory it covers (files, modes,
    /// owners, symlinks, subdirectories), writable while the root stays read-only, and nothing
    /// written reaches the image.
    /// </summary>
    [Fact(Timeout = 120_000)]
    public async Task A_tmpcopyup_tmpfs_starts_with_the_covered_directory_s_content()
    {
        using var bundle = OciBundle.CreateBusybox("sh", "-c", string.Join("; ",
            "cat /srv/data/file",
            "stat -c '%a %u:%g' /srv /srv/data /srv/data/file",
            "readlink /srv/link",
            "echo new > /srv/new && cat /srv/new",
            "touch /x 2>/dev/null && echo ROOT-WRITABLE || echo root-read-only",
            "cat /ro/file; touch /ro/y 2>/dev/null && echo RO-WRITABLE || echo ro-read-only",
            "grep -c ' /srv tmpfs ' /proc/mounts"));
        var srv = Path.Combine(bundle.Rootfs, "srv");
        Directory.CreateDirectory(Path.Combine(srv, "data"));
        await File.WriteAllTextAsync(Path.Combine(srv, "data", "file"), "from the image\n");
        File.CreateSymbolicLink(Path.Combine(srv, "link"), "data/file");
        File.SetUnixFileMode(srv, (UnixFileMode)Convert.ToInt32("1777", 8));
        // Modes other than the defaults, that root without CAP_DAC_* (the default spec) can still use.
        File.SetUnixFileMode(Path.Combine(srv, "data"), (UnixFileMode)Convert.ToInt32("751", 8));
        File.SetUnixFileMode(Path.Combine(srv, "data", "file"), (UnixFileMode)Convert.ToInt32("604", 8));
        Chown(Path.Combine(srv, "data"), 1234, 4321);
        Chown(Path.Combine(srv, "data", "file"), 1234, 4321);
        Directory.CreateDirectory(Path.Combine(bundle.Rootfs, "ro"));
        await File.WriteAllTextAsync(Path.Combine(bundle.Rootfs, "ro", "file"), "read-only copy\n");
        bundle.Edit(s =>
        {
            s["root"]!["readonly"] = true;
            var mounts = s["mounts"]!.AsArray();
            mounts.Add(new JsonObject { ["destination"] = "/srv", ["type"] = "tmpfs", ["source"] = "tmpfs", ["options"] = new JsonArray("rw", "rprivate", "nosuid", "nodev", "tmpcopyup") });
            mounts.Add(new JsonObject { ["destination"] = "/ro", ["type"] = "tmpfs", ["source"] = "tmpfs", ["options"] = new JsonArray("ro", "nosuid", "tmpcopyup") });
        });
        var (code, stdout, stderr) = await Runc("run", "--bundle", bundle.Path, "copyup");
        Assert.True(code == 0, $"exit {code}\nstdout: {stdout}\nstderr: {stderr}");
        Assert.Equal([
            "from the image",
            "1777 0:0", "751 1234:4321", "604 1234:4321",
            "data/file",
            "new",
            "root-read-only",
            "read-only copy", "ro-read-only",
            "1",
        ], stdout.Split('\n'));
        Assert.False(File.Exists(Path.Combine(srv, "new")), "a write to the tmpfs reached the image");
    }

    private static void Chown(string path, int uid, int gid)
    {
        using var chown = System.Diagnostics.Process.Start("chown", ["-h", $"{uid}:{gid}", path]);
        chown.WaitForExit();
        Assert.Equal(0, chown.ExitCode);
    }

    /// <summary>
    /// containerd's shim runs `exec --detach` and, as a subreaper, reaps every orphan at once.
    /// The exec'd process was forked by orch-runc's child after it joined the pid namespace; when
    /// that child exited, the process went to the subreaper, which could reap it (a short
    /// command, a busy CPU) before orch-runc opened a pidfd of it: pidfd_open failed and the
    /// cleanup then waited on a closed pidfd, `waitid 'pid N': invalid argument (EINVAL)`, 7 of 40
    /// under load. tini -s stands in for the shim: a subreaper that reaps at once. Four at a time.
    /// </summary>
    [Fact(Timeout = 240_000)]
    public async Task A_hundred_detached_execs_under_a_reaping_subreaper_and_cpu_load_all_succeed()
    {
        var tini = Requires.Program("tini", "tini");
        using var bundle = OciBundle.CreateBusybox("sleep", "600");
        Assert.Equal(0, (await Runc("run", "-d", "--bundle", bundle.Path, "execs")).Code);
        await using var load = CpuLoad.Start(2);
        var failures = await Repeated.RunAsync(100, 4, _ => EngineSupport.RunAsync(tini, ["-s", "--", Repo.Binary("orch-runc"), "--root", _state.Path, "exec", "-d", "execs", "true"], s_wait));
        Assert.True(failures.Count == 0, $"{failures.Count} of 100 execs failed:\n{string.Join("\n", failures)}");
        Assert.Equal(0, (await Runc("delete", "--force", "execs")).Code);
    }
}

namespace Orchestrator.Testing;

/// <summary>
/// Debian's podman 4.3 on private state: its own --root, --runroot and --tmpdir (libpod's
/// database, locks, exit files, events) in a temp dir, the cgroupfs manager under a private
/// cgroup parent, the file events backend, the vfs storage driver, containers without a network
/// (--network none), and `--runtime` naming the OCI runtime: orch-runc or Debian's runc (the
/// reference). conmon's exit command calls podman back with the same global flags, so restart
/// policies and cleanup stay on this private state too. The busybox image is imported from a
/// tar made at test time.
/// </summary>
public sealed class PodmanEngine : IContainerEngine
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(120);
    private readonly TempDir _dir = new("orch-podman");
    private readonly string _podman;

    private PodmanEngine(string podman) => _podman = podman;

    public string Name => "podman";
    public string Image => "localhost/orch-busybox:latest";
    public string CgroupParent { get; } = $"orch-podman-{Guid.NewGuid():N}"[..20];
    public bool ReportsOomKilled => false;

    public static async Task<PodmanEngine> StartAsync()
    {
        var engine = new PodmanEngine(Requires.Program("podman", "podman"));
        Requires.Program("conmon", "conmon");
        Requires.Program("runc", "runc");
        try
        {
            var layer = BusyboxImage.CreateRootfsTar(engine._dir.Combine("busybox-rootfs.tar.gz"));
            var import = await engine.Cli("orch", "import", "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "--change", "CMD [\"sh\"]", layer, engine.Image);
            if (import.Code != 0)
            {
                throw new InvalidOperationException($"podman import failed: {import}");
            }
            return engine;
        }
        catch
        {
            await engine.DisposeAsync();
            throw;
        }
    }

    private static string RuntimePath(string runtime) => runtime switch
    {
        "orch" => Repo.Binary("orch-runc"),
        "runc" => Requires.Program("runc", "runc"),
        _ => throw new ArgumentException($"unknown runtime '{runtime}'", nameof(runtime)),
    };

    private string[] Args(string runtime, string[] args)
    {
        string[] globals = [
            "--root", _dir.Combine("root"), "--runroot", _dir.Combine("runroot"), "--tmpdir", _dir.Combine("tmp"),
            "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--storage-driver", "vfs",
            "--runtime", RuntimePath(runtime),
        ];
        // No CAP_SYS_RESOURCE here: podman's default rlimits (nofile 1048576) cannot be set, by runc either.
        string[] sandbox = ["--network", "none", "--cgroup-parent", "/" + CgroupParent, "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"];
        return args.Length > 0 && args[0] is "run" or "create"
            ? [.. globals, args[0], .. sandbox, .. args[1..]]
            : [.. globals, .. args];
    }

    public Task<CliResult> Cli(string runtime, params string[] args) => EngineSupport.RunAsync(_podman, Args(runtime, args), s_timeout);

    public string CommandLine(string runtime, params string[] args)
        => string.Join(' ', new[] { _podman }.Concat(Args(runtime, args)).Select(EngineSupport.Quote));

    public async ValueTask DisposeAsync()
    {
        // Every container (and its conmon) goes; then the storage's mounts and the cgroups.
        foreach (var runtime in new[] { "orch", "runc" })
        {
            try
            {
                await Cli(runtime, "rm", "--all", "--force", "--time", "0");
            }
            catch (Exception e) when (e is TimeoutException or InvalidOperationException or FileNotFoundException)
            {
            }
        }
        foreach (var pid in ConmonPids())
        {
            Orchestrator.Testing.Signals.Send(pid, 9);
        }
        await EngineSupport.UnmountUnder(_dir.Path);
        EngineSupport.RemoveCgroupTree(CgroupParent);
        _dir.Dispose();
    }

    /// <summary>conmon processes still running for this engine's containers (they name our root in their arguments).</summary>
    private List<int> ConmonPids()
    {
        var pids = new List<int>();
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid))
            {
                continue;
            }
            try
            {
                var cmdline = File.ReadAllText(Path.Combine(dir, "cmdline"));
                if (cmdline.StartsWith("/usr/bin/conmon", StringComparison.Ordinal) && cmdline.Contains(_dir.Path, StringComparison.Ordinal))
                {
                    pids.Add(pid);
                }
            }
            catch (IOException)
            {
            }
        }
        return pids;
    }
}

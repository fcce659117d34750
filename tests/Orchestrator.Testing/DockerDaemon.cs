namespace Orchestrator.Testing;

/// <summary>
/// A private dockerd (Debian's docker.io 20.10) for a test class: its own data root, exec root
/// (where it runs its own containerd), unix socket, pidfile and config file in a temp dir, no
/// iptables, no bridge (containers get no network beyond their own loopback), the vfs storage
/// driver, a private cgroup parent, and two runtimes: "orch" (orch-runc, --add-runtime) and
/// docker's built-in "runc" (Debian's runc on PATH, the reference). The busybox image is imported from a tar made at test time: nothing is pulled.
/// </summary>
public sealed class DockerDaemon : IContainerEngine
{
    /// <summary>Debian's client: /usr/local/bin/docker on this machine is another one.</summary>
    public const string ClientPath = "/usr/bin/docker";
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(120);

    private readonly TempDir _dir = new("orch-docker");
    private DaemonProcess? _process;

    private DockerDaemon()
    {
    }

    public string Name => "docker";
    public string Image => "orch-busybox:latest";
    public string CgroupParent { get; } = $"orch-docker-{Guid.NewGuid():N}"[..20];
    public bool ReportsOomKilled => true;
    public string Socket => _dir.Combine("docker.sock");
    public string DaemonOutput => _process?.Output ?? "";

    public static async Task<DockerDaemon> StartAsync()
    {
        var dockerd = Requires.Program("dockerd", "docker.io");
        Requires.ProgramAt(ClientPath, "docker.io");
        Requires.Program("containerd", "containerd");
        Requires.Program("runc", "runc");
        var daemon = new DockerDaemon();
        try
        {
            await File.WriteAllTextAsync(daemon._dir.Combine("daemon.json"), "{}");
            daemon._process = DaemonProcess.Start(dockerd, [
                "--config-file", daemon._dir.Combine("daemon.json"),
                "--data-root", daemon._dir.Combine("data"),
                "--exec-root", daemon._dir.Combine("exec"),
                "-H", $"unix://{daemon.Socket}",
                "--pidfile", daemon._dir.Combine("docker.pid"),
                "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--bridge=none", "--userland-proxy=false",
                "--storage-driver", "vfs",
                "--cgroup-parent", "/" + daemon.CgroupParent,
                "--add-runtime", $"orch={Repo.Binary("orch-runc")}",
            ]);
            await daemon.WaitReadyAsync();
            await daemon.ImportImageAsync();
            return daemon;
        }
        catch
        {
            await daemon.DisposeAsync();
            throw;
        }
    }

    private async Task WaitReadyAsync()
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            if (_process!.HasExited)
            {
                throw new InvalidOperationException($"dockerd exited at start:\n{_process.Output}");
            }
            if (File.Exists(Socket) && (await Client("version", "--format", "{{.Server.Version}}")).Code == 0)
            {
                return;
            }
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"dockerd did not answer on {Socket} within 60 s:\n{_process.Output}");
            }
            await Task.Delay(100);
        }
    }

    private async Task ImportImageAsync()
    {
        var layer = BusyboxImage.CreateRootfsTar(_dir.Combine("busybox-rootfs.tar.gz"));
        var import = await Client("import", "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "--change", "CMD [\"sh\"]", layer, Image);
        if (import.Code != 0)
        {
            throw new InvalidOperationException($"docker import failed: {import}");
        }
    }

    private Task<CliResult> Client(params string[] args)
        => EngineSupport.RunAsync(ClientPath, ["-H", $"unix://{Socket}", .. args], s_timeout);

    private static string[] Args(string runtime, string[] args)
        => args.Length > 0 && args[0] is "run" or "create" ? [args[0], "--runtime", runtime, .. args[1..]] : args;

    public Task<CliResult> Cli(string runtime, params string[] args) => Client(Args(runtime, args));

    public string CommandLine(string runtime, params string[] args)
        => string.Join(' ', new[] { ClientPath, "-H", $"unix://{Socket}" }.Concat(Args(runtime, args)).Select(EngineSupport.Quote));

    public async ValueTask DisposeAsync()
    {
        if (_process is not null)
        {
            if (!_process.HasExited)
            {
                // Remove every container (their processes, shims and cgroups) while dockerd can still do it.
                try
                {
                    var all = await Client("ps", "-aq");
                    foreach (var id in all.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                    {
                        await Client("rm", "-f", id);
                    }
                }
                catch (TimeoutException)
                {
                }
                _process.Signal(Signals.SIGTERM);
                try
                {
                    await _process.WaitForExitAsync(TimeSpan.FromSeconds(30), drainOutput: false);
                }
                catch (TimeoutException)
                {
                }
            }
            // Kills what is left of dockerd and its containerd (the whole process tree).
            await _process.DisposeAsync();
        }
        await EngineSupport.UnmountUnder(_dir.Path);
        EngineSupport.RemoveCgroupTree(CgroupParent);
        _dir.Dispose();
    }
}

using System.Globalization;
using NATS.Client.Core;
using Orchestrator.Client;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>Node tests start containers, cgroups and mounts: one class at a time.</summary>
[CollectionDefinition(Collection)]
public sealed class NodeTests
{
    public const string Collection = "orchd node with containers";
}

/// <summary>
/// One real orchd node for a test: its own state and run dirs, a real nats-server, the busybox
/// image imported, and a <see cref="NodeClient"/> on the node API. Disposing it kills orchd and
/// then every container it left (as an operator's cleanup would), unmounts and deletes.
/// </summary>
public sealed class NodeHost : IAsyncDisposable
{
    public const string Image = "busybox:latest";

    /// <summary>The name the node's store lists <see cref="Image"/> by (docs/images.md: one canonical name).</summary>
    public const string StoredImage = "docker.io/library/busybox:latest";
    private readonly List<DaemonProcess> _daemons = [];
    private NatsConnection? _connection;

    private readonly bool _ownsNats;

    private NodeHost(TempDir dir, NatsServer? nats, string node, bool ownsNats = true)
    {
        Dir = dir;
        Nats = nats;
        NodeName = node;
        _ownsNats = ownsNats;
    }

    public TempDir Dir { get; }
    public NatsServer? Nats { get; }
    public string NodeName { get; }
    public string StateDir => Dir.Combine("state");
    public string RunDir => Dir.Combine("run");
    public string ManifestDir => Dir.Combine("manifests");
    /// <summary>A bridge and subnet of this test's own (private addresses, removed afterwards).</summary>
    public string Bridge { get; } = "ot" + Guid.NewGuid().ToString("N")[..8];
    public string Cidr { get; } = $"10.{Random.Shared.Next(100, 250)}.{Random.Shared.Next(0, 255)}.0/24";
    public DaemonProcess Daemon => _daemons[^1];
    public NodeClient Client { get; private set; } = null!;
    /// <summary>Options of the test's own connection to <see cref="Nats"/> (TLS, credentials); plain by default. Set before starting orchd.</summary>
    public NatsOpts? ClientOpts { get; set; }

    /// <summary>The backends node tests run against: orchd's own runtime, and containerd (a private one per node).</summary>
    public static TheoryData<string> Runtimes => new("native", "containerd");

    /// <summary>native (orchd's default here: auto, whose checks pass) or containerd (runtime: containerd on <see cref="Containerd"/>).</summary>
    public string Runtime { get; private init; } = "native";

    /// <summary>orchd's runtime: setting when the node has a containerd (containerd unless a test wants auto or native).</summary>
    public string RuntimeSetting { get; set; } = "containerd";

    /// <summary>The private containerd of a containerd node (started with it, stopped after it).</summary>
    public ContainerdServer? Containerd { get; private set; }

    /// <summary>A node with the busybox image in its store; NATS unless <paramref name="withNats"/> is false.</summary>
    /// <param name="runtime">native, or containerd: a private containerd is started and orchd drives it.</param>
    public static async Task<NodeHost> StartAsync(bool withNats = true, string[]? extraArgs = null, bool start = true, NatsServer? sharedNats = null, string? name = null,
        string runtime = "native")
    {
        Requires.Root();
        var dir = new TempDir("orchd-node");
        var nats = sharedNats ?? (withNats ? await NatsServer.StartAsync() : null);
        var host = new NodeHost(dir, nats, name ?? "node-" + Guid.NewGuid().ToString("N")[..6], ownsNats: sharedNats is null) { Runtime = runtime };
        try
        {
            if (runtime == "containerd")
            {
                host.Containerd = await ContainerdServer.StartAsync();
            }
            Directory.CreateDirectory(host.ManifestDir);
            BusyboxImage.CreateLayout(dir.Combine("layout"));
            await using (var import = DaemonProcess.Start(Repo.Binary("orchd"), ["image", "import", dir.Combine("layout"), "--name", Image, "--state-dir", host.StateDir, "--config", "/dev/null"]))
            {
                Assert.True(await import.WaitForExitAsync(TimeSpan.FromSeconds(60)) == 0, import.Output);
            }
            if (start)
            {
                await host.StartOrchdAsync(extraArgs);
            }
            return host;
        }
        catch
        {
            // What was started for a node that never came up (its NATS server, its containerd) is
            // stopped here: the test never gets the host to dispose.
            await host.DisposeAsync();
            throw;
        }
    }

    /// <summary>The network namespace orchd runs in (nsenter --net: same pid, same mounts), or null; set before starting orchd.</summary>
    public NetNs? Namespace { get; set; }

    /// <summary>Where orchd itself connects, when not straight to <see cref="Nats"/> (a cuttable proxy); set before starting orchd.</summary>
    public string? NatsUrlOverride { get; set; }

    public string[] Args(string[]? extra = null) =>
    [
        "--config", "/dev/null", "--node-name", NodeName, "--state-dir", StateDir, "--run-dir", RunDir,
        "--manifest-dir", ManifestDir, "--nats-url", NatsUrlOverride ?? Nats?.Url ?? "nats://127.0.0.1:1", "--bridge", Bridge, "--bridge-cidr", Cidr,
        .. Containerd is null ? [] : (string[])["--runtime", RuntimeSetting, "--containerd-socket", Containerd.Socket], .. extra ?? [],
    ];

    /// <summary>orchd's containerd namespace for this node (orchd-&lt;node id prefix&gt;).</summary>
    public string ContainerdNamespace => "orchd-" + File.ReadAllText(Path.Combine(StateDir, "node-id")).Trim()[..12];

    /// <summary>The containers containerd holds for this node (ctr containers ls).</summary>
    public async Task<IReadOnlyList<string>> ContainerdContainersAsync()
    {
        var (code, stdout, stderr) = await Containerd!.Ctr(ContainerdNamespace, "containers", "ls", "-q");
        Assert.True(code == 0, stderr);
        return stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }

    /// <summary>No container left in the backend's own state (the native runtime's dir, or containerd's namespace).</summary>
    public async Task AssertNoContainersLeftAsync()
    {
        if (Containerd is null)
        {
            Assert.Empty(Directory.GetDirectories(Path.Combine(RunDir, "runtime")));
        }
        else
        {
            Assert.Empty(await ContainerdContainersAsync());
        }
    }

    /// <summary>The flags that make orchd answer its metrics on NATS, which <see cref="WaitForReconcilePassesAsync"/> reads.</summary>
    public static readonly string[] MetricsOnNats = ["--metrics-nats", "true"];

    /// <summary>Where a node without NATS serves its metrics (orchd started with --metrics-listen PORT); null: read them over NATS.</summary>
    public int? MetricsPort { get; set; }

    /// <summary>
    /// The node agent's completed reconcile passes (orchd_node_reconcile_passes_total): over NATS
    /// (start orchd with <see cref="MetricsOnNats"/>), or over HTTP on <see cref="MetricsPort"/>.
    /// </summary>
    public async Task<long> ReconcilePassesAsync()
    {
        string text;
        if (MetricsPort is { } port)
        {
            using var http = new HttpClient();
            text = await http.GetStringAsync(new Uri($"http://127.0.0.1:{port}/metrics"));
        }
        else
        {
            var reply = await _connection!.RequestAsync<byte[], byte[]>(Orchestrator.Daemon.Metrics.MetricsService.Subject(NodeName), [],
                replyOpts: new NatsSubOpts { Timeout = TimeSpan.FromSeconds(10) });
            text = System.Text.Encoding.UTF8.GetString(reply.Data!);
        }
        return (long)Exposition.Parse(text).Value("orchd_node_reconcile_passes_total", "node", NodeName);
    }

    /// <summary>
    /// Waits until the node has completed <paramref name="passes"/> more reconcile passes: proof that
    /// something the loop would have undone by now (a stopped container restarted, a running one
    /// replaced) was not, without guessing at a sleep.
    /// </summary>
    public async Task WaitForReconcilePassesAsync(int passes)
    {
        var from = await ReconcilePassesAsync();
        await Eventually.ValueAsync($"{passes} reconcile passes of {NodeName} after pass {from}", ReconcilePassesAsync, n => n >= from + passes,
            TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(100));
    }

    /// <summary>A container's log, polled until <paramref name="condition"/> holds.</summary>
    public Task<IReadOnlyList<Orchestrator.Api.LogLine>> LogsUntilAsync(string name, Func<IReadOnlyList<Orchestrator.Api.LogLine>, bool> condition, TimeSpan timeout, string what,
        TimeSpan? poll = null)
        => Eventually.ValueAsync($"{name}'s log: {what}", () => Client.LogsAsync(name), condition, timeout, poll ?? TimeSpan.FromMilliseconds(100),
            lines => lines.Count == 0 ? "no lines" : $"{lines.Count} lines, the last '{lines[^1].Text}'");

    /// <summary>Starts (or starts again) orchd and waits until it answers on NATS.</summary>
    public async Task StartOrchdAsync(string[]? extraArgs = null, IReadOnlyDictionary<string, string?>? environment = null)
    {
        var variables = new Dictionary<string, string?> { ["ORCHD_LOG_LEVEL"] = "debug" };
        foreach (var (key, value) in environment ?? new Dictionary<string, string?>())
        {
            variables[key] = value;
        }
        var (program, args) = Namespace is null ? (Repo.Binary("orchd"), Args(extraArgs)) : Namespace.Wrap(Repo.Binary("orchd"), Args(extraArgs));
        var daemon = DaemonProcess.Start(program, args, variables);
        _daemons.Add(daemon);
        await daemon.WaitForLogAsync(" ready: node ", TimeSpan.FromSeconds(20));
        if (Nats is null)
        {
            return;
        }
        if (_connection is null)
        {
            _connection = new NatsConnection(ClientOpts ?? new NatsOpts { Url = Nats.Url });
            await _connection.ConnectAsync();
            Client = new NodeClient(_connection, NodeName, TimeSpan.FromSeconds(60));
        }
        var fleet = new FleetClient(_connection);
        await Eventually.TrueAsync($"orchd {NodeName} to answer on NATS", async () => await fleet.GetNodeInfoAsync(NodeName, TimeSpan.FromSeconds(1)) is not null,
            TimeSpan.FromSeconds(20), () => $"no answer; output:\n{daemon.Output}", TimeSpan.FromMilliseconds(50));
    }

    /// <summary>kill -9: what a crash or the OOM killer does to orchd.</summary>
    public async Task KillOrchdAsync()
    {
        Daemon.Signal(9);
        await Daemon.WaitForExitAsync(TimeSpan.FromSeconds(10), drainOutput: false);
    }

    public static Workload Sh(string name, string script, Action<Workload>? configure = null)
    {
        var workload = new Workload { Name = name, Image = Image, Command = ["sh", "-c", script] };
        configure?.Invoke(workload);
        return workload;
    }

    /// <summary>Polls the node until <paramref name="condition"/> holds for the container, or fails with its last status.</summary>
    public Task<Orchestrator.Api.ContainerStatus> WaitForAsync(string name, Func<Orchestrator.Api.ContainerStatus, bool> condition, TimeSpan timeout, string what)
        => Eventually.ValueAsync($"container {name}: {what}", () => Client.InspectAsync(name), condition, timeout, TimeSpan.FromMilliseconds(50),
            last => $"state {last.State}, restarts {last.Restarts}, message {last.Message}\n{Daemon.Output}");

    /// <summary>Alive and not a zombie (a test machine's pid 1 may not reap what orchd left it).</summary>
    public static bool IsAlive(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..][0] is not ('Z' or 'X');
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>The pid of every process the node's containers run (from their cgroups).</summary>
    public static int ProcessStartTicks(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        return int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[19], CultureInfo.InvariantCulture);
    }

    private static async Task RunQuietlyAsync(string program, params string[] args)
    {
        var path = Requires.Which(program);
        if (path is not null)
        {
            await using var process = DaemonProcess.Start(path, args);
            await process.WaitForExitAsync(TimeSpan.FromSeconds(10));
        }
    }

    /// <summary>
    /// kill -9 of every process still running orchd's binary with this node's directories on its
    /// command line: a fence keeper, or a child orchd forked for a container or an exec that was
    /// left waiting when orchd was killed (a container init blocked on its exec fifo between
    /// create and start). Nothing else would ever end them, and they hold the node's cgroups.
    /// </summary>
    private void KillStragglers()
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) || pid == Environment.ProcessId)
            {
                continue;
            }
            try
            {
                var cmdline = File.ReadAllText(Path.Combine(dir, "cmdline"));
                if (cmdline.Contains(Dir.Path + "/", StringComparison.Ordinal) && cmdline.Split('\0')[0] is var program
                    && (program.EndsWith("/orchd", StringComparison.Ordinal) || program.EndsWith("/orch-runc", StringComparison.Ordinal) || program == "orchd"))
                {
                    Signals.Send(pid, Signals.SIGKILL);
                }
            }
            catch (IOException)
            {
                // Gone meanwhile.
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var daemon in _daemons)
        {
            await daemon.DisposeAsync();
        }
        if (_connection is not null)
        {
            await _connection.DisposeAsync();
        }
        KillStragglers();
        // Containers outlive orchd by design: remove them the way an operator would.
        if (Containerd is not null)
        {
            if (File.Exists(Path.Combine(StateDir, "node-id")))
            {
                foreach (var id in await ContainerdContainersAsync())
                {
                    await Containerd.Ctr(ContainerdNamespace, "task", "rm", "-f", id);
                    await Containerd.Ctr(ContainerdNamespace, "containers", "rm", id);
                }
            }
            await Containerd.DisposeAsync();
            if (File.Exists(Path.Combine(StateDir, "node-id")))
            {
                // The runc v2 shim keeps runc's state under /run/containerd/runc/<namespace>, whatever containerd's state dir.
                try { Directory.Delete(Path.Combine("/run/containerd/runc", ContainerdNamespace)); } catch (IOException) { }
            }
        }
        var runtime = Path.Combine(RunDir, "runtime");
        if (Directory.Exists(runtime))
        {
            foreach (var id in Directory.EnumerateDirectories(runtime).Select(Path.GetFileName))
            {
                await using var delete = DaemonProcess.Start(Repo.Binary("orch-runc"), ["--root", runtime, "delete", "--force", id!]);
                await delete.WaitForExitAsync(TimeSpan.FromSeconds(30));
            }
        }
        foreach (var mount in File.ReadAllLines("/proc/self/mountinfo").Select(l => l.Split(' ')[4])
                     .Where(m => m.StartsWith(Dir.Path, StringComparison.Ordinal)).OrderByDescending(m => m.Length))
        {
            Orchestrator.Linux.Libc.umount2(mount, Orchestrator.Linux.Libc.MNT_DETACH);
        }
        var nodeId = File.Exists(Path.Combine(StateDir, "node-id")) ? File.ReadAllText(Path.Combine(StateDir, "node-id")).Trim() : null;
        await RunQuietlyAsync("ip", "link", "del", Bridge);
        if (nodeId is { Length: >= 12 })
        {
            await RunQuietlyAsync("nft", "delete", "table", "ip", "orchd_" + nodeId[..8]);
            foreach (var hierarchy in Directory.Exists("/sys/fs/cgroup") ? Directory.EnumerateDirectories("/sys/fs/cgroup").Append("/sys/fs/cgroup") : [])
            {
                var dir = Path.Combine(hierarchy, "orchestrator", nodeId[..12]);
                if (Directory.Exists(dir))
                {
                    foreach (var child in Directory.EnumerateDirectories(dir))
                    {
                        try { Directory.Delete(child); } catch (IOException) { }
                    }
                    try { Directory.Delete(dir); } catch (IOException) { }
                }
            }
        }
        if (Nats is not null && _ownsNats)
        {
            await Nats.DisposeAsync();
        }
        Dir.Dispose();
    }
}

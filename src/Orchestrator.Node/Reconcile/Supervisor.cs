using Orchestrator.Runtime.Spec;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Orchestrator.Api.Workloads;
using Orchestrator.Images.Registry;
using Orchestrator.Images.Snapshots;
using Orchestrator.Images.Store;
using Orchestrator.Node.Drivers;
using Orchestrator.Node.Health;
using Orchestrator.Node.Images;
using Orchestrator.Node.Logs;
using Orchestrator.Node.Network;
using Orchestrator.Node.StateStore;
using Orchestrator.Node.Stats;
using static Orchestrator.Node.Reconcile.SupervisorLog;

namespace Orchestrator.Node.Reconcile;

/// <summary>
/// The node's reconcile loop: the desired workloads (applied through the node API, or static
/// manifests) become running containers and stay so. One mailbox serialises every change
/// (API calls, exits, probe results, the periodic resync), so the state needs no locks and
/// each step is level-triggered: it looks at desired and actual and does what differs.
///
/// Containers outlive orchd: stopping orchd stops nothing, and a new orchd re-adopts what runs
/// (records on disk, the runtime's state, pidfds), restarting only what died meanwhile.
///
/// The loop, reconcile and recovery live here (and in Supervisor.Recovery.cs); a container's
/// start, exit and stop in Supervisor.Lifecycle.cs; the node API's operations in
/// Supervisor.Api.cs. The parts that watch or serve from other threads are types of their own
/// that post to the mailbox: <see cref="ContainerNetwork"/> (bridge, ports, /etc/hosts),
/// <see cref="ProbeRunner"/> and <see cref="ProbeTracker"/> (probes), <see cref="ResourceSampler"/>
/// (stats, node capacity) and <see cref="ImageService"/> (the image API, a container's rootfs).
/// Timers, backoff and probe periods run on the <see cref="TimeProvider"/> it is given.
/// </summary>
public sealed partial class Supervisor : IAsyncDisposable
{
    private readonly NodeOptions _options;
    private readonly ITaskDriver _driver;
    private readonly LogPump _logs;
    private readonly ILogger _logger;
    private readonly TimeProvider _clock;
    private readonly Mailbox _mailbox;
    private readonly ContainerNetwork _network;
    private readonly ProbeRunner _probes;
    private readonly ResourceSampler _resources;
    private readonly Dictionary<string, Workload> _applied = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Workload> _static = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _staticFiles = new(StringComparer.Ordinal);
    private readonly HashSet<string> _stopped = new(StringComparer.Ordinal);
    private readonly HashSet<string> _fleetOwned = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SupervisedContainer> _containers = new(StringComparer.Ordinal);
    private IReadOnlyDictionary<string, ContainerView> _view = new Dictionary<string, ContainerView>();
    private readonly TaskCompletionSource _recovered = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private IReadOnlyList<string> _manifestErrors = [];
    private DateTime _manifestStamp;

    /// <param name="puller">orchd's pull into its store (registry or NATS bucket); null: this node does not pull.</param>
    /// <param name="clock">The clock of the loop's timers, restart backoff and probe periods (a test's fake clock); null: the system's.</param>
    public Supervisor(NodeOptions options, ImageStore images, SnapshotStore snapshots, ITaskDriver driver, LogPump logs,
        ILogger<Supervisor> logger, IImagePuller? puller = null, TimeProvider? clock = null)
    {
        _options = options;
        _driver = driver;
        _logs = logs;
        _logs.Dropped += (name, message) =>
        {
            LogLogsDropped(logger, name, message);
            Emit("container.logs-dropped", name, message);
        };
        _logger = logger;
        _clock = clock ?? TimeProvider.System;
        _mailbox = new Mailbox(PublishView);
        _network = new ContainerNetwork(options.Bridge, logger);
        _probes = new ProbeRunner(driver, _clock);
        _resources = new ResourceSampler(driver);
        Images = new ImageService(images, snapshots, driver, puller, _mailbox, Users, ContainersRunDir);
        foreach (var dir in new[] { WorkloadsDir, ContainerRecordsDir, LogsRoot, VolumesDir, ContainersRunDir })
        {
            Directory.CreateDirectory(dir);
        }
    }

    /// <summary>The node's images: the node API's image operations, and each container's rootfs.</summary>
    public ImageService Images { get; }

    /// <summary>Bytes of the container's output dropped since orchd started because its log could not be written (a full disk).</summary>
    public long LogBytesDropped(string name) => _logs.DroppedBytes(name);

    /// <summary>Raised (on the loop) after anything about a container changed: for status lines and events.</summary>
    public event Action<string>? Changed;

    /// <summary>Raised (on the loop) for what an operator wants to hear about: kind, container, a sentence.</summary>
    public event Action<string, string, string>? Emitted;

    private void Emit(string kind, string name, string message) => Emitted?.Invoke(kind, name, message);

    /// <summary>The node's persistent state directory (others keep their own files there).</summary>
    public string StateDir => _options.StateDir;

    /// <summary>orchd's run directory (a tmpfs under systemd).</summary>
    public string RunDir => _options.RunDir;

    /// <summary>The cgroup each container of this node runs under, as <c>CgroupParent/NAME</c>.</summary>
    public string CgroupParent => _options.CgroupParent;

    private string WorkloadsDir => Path.Combine(_options.StateDir, "workloads");
    private string ContainerRecordsDir => Path.Combine(_options.StateDir, "containers");
    private string LogsRoot => Path.Combine(_options.StateDir, "logs");
    private string VolumesDir => Path.Combine(_options.StateDir, "volumes");
    private string ContainersRunDir => Path.Combine(_options.RunDir, "containers");

    public string LogDir(string name) => Path.Combine(LogsRoot, name);

    public ITaskDriver Driver => _driver;

    /// <summary>Completes once the containers left by the previous orchd have been re-adopted.</summary>
    public Task Recovered => _recovered.Task;

    // ---------------------------------------------------------------- the loop

    /// <summary>Reconcile passes completed (recovery's, the resync's, those after an exit or an API call): a test waits for N of them instead of sleeping.</summary>
    public PassCounter Passes { get; } = new();

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        // Before the mailbox is read: requests that arrive meanwhile wait for it.
        await RecoverAsync().ConfigureAwait(false);
        PublishView();
        _recovered.TrySetResult();
        using var timer = new PeriodicTimer(_options.Resync, _clock);
        var ticks = Task.Run(async () =>
        {
            try
            {
                while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
                {
                    _ = Post(ReconcileAsync);
                }
            }
            catch (OperationCanceledException)
            {
            }
        }, CancellationToken.None);
        await _mailbox.RunAsync(cancellationToken).ConfigureAwait(false);
        await ticks.ConfigureAwait(false);
        foreach (var container in _containers.Values)
        {
            container.Probes?.Cancel(); // containers keep running; only orchd's watching stops
        }
    }

    /// <summary>Runs <paramref name="work"/> on the loop.</summary>
    private Task<bool> Post(Func<Task> work) => _mailbox.Post(work);

    /// <summary>Runs <paramref name="work"/> on the loop and returns its result.</summary>
    private Task<T> Post<T>(Func<Task<T>> work) => _mailbox.Post(work);

    private Task<T> Post<T>(Func<T> work) => _mailbox.Post(work);

    /// <summary>Completes once everything posted before it has run (a test's barrier).</summary>
    internal Task DrainAsync() => Post(() => true);

    // ---------------------------------------------------------------- reconcile

    private Dictionary<string, Workload> Desired()
    {
        var desired = new Dictionary<string, Workload>(_applied, StringComparer.Ordinal);
        foreach (var (name, workload) in _static)
        {
            desired[name] = workload; // a device's own manifests win over remote ones
        }
        return desired;
    }

    /// <summary>What runs: <see cref="Desired"/> with each app replaced by its containers.</summary>
    private Dictionary<string, Workload> DesiredContainers() => Expand(Desired());

    private async Task ReconcileAsync()
    {
        LoadManifests(force: false);
        var wanted = Desired();
        var apps = wanted.Values.Where(Apps.IsApp).ToDictionary(w => w.Name, StringComparer.Ordinal);
        var desired = Expand(wanted);
        var made = false;
        foreach (var (name, workload) in desired.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (WaitingFor(name, workload, apps) is not null)
            {
                continue; // an app's container whose turn has not come (init containers, dependsOn)
            }
            try
            {
                made |= !_containers.ContainsKey(name);
                await ReconcileOneAsync(name, workload).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // One workload's trouble (a pull that times out, a full disk) must not stop the
                // pass for the others; it backs off like a failed start.
                LogStepFailed(_logger, name, e.Message);
                if (_containers.TryGetValue(name, out var container) && container.Handle is null)
                {
                    BackOffFailedStart(container, e.Message);
                }
            }
        }
        var unwanted = _containers.Values.Where(i => !desired.ContainsKey(i.Record.Name)).ToList();
        foreach (var container in unwanted)
        {
            LogRemoving(_logger, container.Record.Name);
            Emit("container.removed", container.Record.Name, "no longer wanted on this node");
        }
        try
        {
            // Stopped side by side: the loop waits for the longest grace period, not their sum.
            await StopAllAsync(unwanted, "removed").ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            LogStepFailed(_logger, string.Join(", ", unwanted.Select(c => c.Record.Name)), e.Message);
        }
        foreach (var container in unwanted)
        {
            try
            {
                await RemoveContainerAsync(container, "removed", keepLogs: false).ConfigureAwait(false);
                _containers.Remove(container.Record.Name);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                LogStepFailed(_logger, container.Record.Name, e.Message);
            }
        }
        foreach (var gone in _waiting.Keys.Where(n => !desired.ContainsKey(n)).ToList())
        {
            _waiting.Remove(gone);
        }
        if (made && _waiting.Count > 0)
        {
            _ = Post(ReconcileAsync); // one that started this pass may be what another waits for: another pass, after this one
        }
        // The apps and the waits change only here (every change of what is wanted ends in a pass):
        // published once a pass, not after every step of the loop.
        Volatile.Write(ref _appsView, new AppsView(apps, new Dictionary<string, string>(_waiting, StringComparer.Ordinal)));
        SyncDevices();
        Passes.PassCompleted();
    }

    /// <summary>
    /// Hot-plug, once a pass: each running container that mapped a device glob gets the devices that
    /// now match it and loses those gone (<see cref="DeviceHotplug"/>); nothing is read for others.
    /// </summary>
    private void SyncDevices()
    {
        foreach (var container in _containers.Values)
        {
            if (container.Handle is not { } handle || container.Stopping || container.Workload.Devices?.Any(d => DeviceGlob.IsGlob(d.HostPath)) != true)
            {
                continue;
            }
            var name = container.Record.Name;
            List<MappedDevice> now;
            try
            {
                now = HostDevices.Map(container.Workload, _options.Policy);
            }
            catch (SpecException e)
            {
                // A fixed device gone: the container keeps what it has; said once, not every pass.
                if (container.DeviceProblem != e.Message)
                {
                    container.DeviceProblem = e.Message;
                    LogStepFailed(_logger, name, e.Message);
                }
                continue;
            }
            container.DeviceProblem = null;
            // A run orchd recovered from before its restart: what it has is not known, so every
            // device now is (re)made; one already there is left as it is.
            var recovered = container.Devices is null;
            var outcome = DeviceHotplug.Sync(handle.Pid, container.Devices ?? [], now);
            container.Devices = now;
            if (outcome.Added.Count > 0 && !recovered)
            {
                Emit("container.device-added", name, $"devices plugged in: {string.Join(", ", outcome.Added)}");
            }
            if (outcome.Removed.Count > 0)
            {
                Emit("container.device-removed", name, $"devices gone: {string.Join(", ", outcome.Removed)}");
            }
            foreach (var problem in outcome.Problems)
            {
                LogStepFailed(_logger, name, "device hot-plug: " + problem);
                Emit("container.device-failed", name, problem);
            }
        }
    }

    private async Task ReconcileOneAsync(string name, Workload workload)
    {
        var hash = SpecHash(workload);
        if (!_containers.TryGetValue(name, out var container))
        {
            container = new SupervisedContainer(workload, new SupervisedContainerRecord { Name = name, SpecHash = hash, Image = workload.Image, Workload = workload });
            _containers[name] = container;
            await FirstStartAsync(container).ConfigureAwait(false);
            return;
        }
        if (container.Record.SpecHash != hash)
        {
            // Stopped and cleaned up under the spec it was started with (its grace period, its ports).
            LogReplacing(_logger, name);
            await RemoveContainerAsync(container, "replaced", keepLogs: true).ConfigureAwait(false);
            container = new SupervisedContainer(workload, new SupervisedContainerRecord { Name = name, SpecHash = hash, Image = workload.Image, Workload = workload });
            _containers[name] = container;
            await FirstStartAsync(container).ConfigureAwait(false);
            return;
        }
        container.Workload = workload;
        if (_stopped.Contains(name))
        {
            if (container.Handle is not null)
            {
                await StopAsync(container, "stopped").ConfigureAwait(false);
            }
            if (container.Record.State != ContainerState.Stopped)
            {
                container.Record.State = ContainerState.Stopped;
                container.Record.NextRestartAt = null;
                Save(container);
            }
            return;
        }
        if (workload.Job is { } job)
        {
            await ReconcileJobAsync(container, job).ConfigureAwait(false);
            return;
        }
        var due = container.Record.NextRestartAt is not { } at || at <= _clock.GetUtcNow().AddMilliseconds(20);
        if (container.Record.State is ContainerState.Backoff or ContainerState.Created or ContainerState.Stopped && due && container.Handle is null)
        {
            await StartAsync(container).ConfigureAwait(false);
        }
    }

    /// <summary>A new container starts at once, unless it is a scheduled job: that one waits for its time.</summary>
    private Task FirstStartAsync(SupervisedContainer container)
        => container.Workload.Job is { Schedule: not null } job ? ReconcileJobAsync(container, job) : StartAsync(container);

    private void LoadManifests(bool force)
    {
        if (_options.ManifestDir is not { } dir)
        {
            return;
        }
        var stamp = Directory.Exists(dir)
            ? Directory.EnumerateFiles(dir).Select(File.GetLastWriteTimeUtc).DefaultIfEmpty().Max().AddTicks(Directory.EnumerateFiles(dir).Count())
            : DateTime.MinValue;
        if (!force && stamp == _manifestStamp)
        {
            return;
        }
        _manifestStamp = stamp;
        var (loaded, loadErrors, broken) = ManifestLoader.LoadDirectory(dir);
        // The node's policy holds for its own manifest directory too: a refused workload is an
        // error of its file (logged and an event once), and does not run.
        var errors = loadErrors.ToList();
        var workloads = new List<(Workload Workload, string File)>();
        foreach (var (workload, file) in loaded)
        {
            if (Refusal(workload) is { } refusal)
            {
                errors.Add($"{file}: {refusal}");
                if (!_manifestErrors.Contains(errors[^1]))
                {
                    Emit("workload.refused", workload.Name, refusal);
                }
                continue;
            }
            workloads.Add((workload, file));
        }
        foreach (var error in errors.Except(_manifestErrors))
        {
            LogManifestError(_logger, error);
        }
        _manifestErrors = errors;
        // A file with an error keeps what it ran before: a typo must not take a service down.
        var kept = _static.Values.Where(w => _staticFiles.TryGetValue(w.Name, out var file) && broken.Contains(file)
                                             && workloads.All(n => n.Workload.Name != w.Name))
            .Select(w => (Workload: w, File: _staticFiles[w.Name])).ToList();
        _static.Clear();
        _staticFiles.Clear();
        foreach (var (workload, file) in workloads.Concat(kept))
        {
            _static[workload.Name] = workload;
            _staticFiles[workload.Name] = file;
        }
        LogManifests(_logger, dir, workloads.Count, errors.Count);
    }

    private void Save(SupervisedContainer container)
    {
        try
        {
            AtomicFile.WriteAllText(Path.Combine(ContainerRecordsDir, container.Record.Name + ".json"),
                JsonSerializer.Serialize(container.Record, ContainerRecordJsonContext.Default.SupervisedContainerRecord));
        }
        catch (IOException e)
        {
            // A full disk: the container goes on as the record in memory says; the record on
            // disk is the previous whole one, and the next save writes it again.
            LogRecordUnsaved(_logger, container.Record.Name, e.Message);
        }
    }

    public static string SpecHash(Workload workload)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(workload, WorkloadJsonContext.Default.Workload);
        return Convert.ToHexStringLower(SHA256.HashData(json))[..16];
    }

    /// <summary>The workloads and running containers that use <paramref name="image"/>, by any of its names (on the loop).</summary>
    private List<string> Users(string image)
        => DesiredContainers().Values.Where(w => ImageReference.SameImage(w.Image, image)).Select(w => w.Name)
            .Concat(_containers.Values.Where(i => i.Handle is not null && ImageReference.SameImage(i.Workload.Image, image)).Select(i => i.Record.Name))
            .Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
}

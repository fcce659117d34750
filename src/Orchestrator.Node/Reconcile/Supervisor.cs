using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Orchestrator.Images.Oci;
using Orchestrator.Images.Registry;
using Orchestrator.Images.Snapshots;
using Orchestrator.Images.Store;
using Orchestrator.Node.Drivers;
using Orchestrator.Node.Health;
using Orchestrator.Node.Logs;
using Orchestrator.Node.Network;
using Orchestrator.Node.StateStore;
using Orchestrator.Api.Workloads;
using Orchestrator.Runtime.Spec;

namespace Orchestrator.Node.Reconcile;

/// <summary>
/// The node's reconcile loop: the desired workloads (applied through the node API, or static
/// manifests) become running containers and stay so. One mailbox serialises every change
/// (API calls, exits, probe results, the periodic resync), so the state needs no locks and
/// each step is level-triggered: it looks at desired and actual and does what differs.
///
/// Containers outlive orchd: stopping orchd stops nothing, and a new orchd re-adopts what runs
/// (records on disk, the runtime's state, pidfds), restarting only what died meanwhile.
/// </summary>
public sealed partial class Supervisor : IAsyncDisposable
{
    private readonly NodeOptions _options;
    private readonly ImageStore _images;
    private readonly SnapshotStore _snapshots;
    private readonly ITaskDriver _driver;
    private readonly LogPump _logs;
    private readonly ILogger _logger;
    private readonly Prober _prober;
    /// <summary>orchd's pull into its store (registry or NATS bucket), reporting to the progress when given one.</summary>
    private readonly Func<string, IProgress<PullProgress>?, CancellationToken, Task>? _pullImage;
    private readonly BridgeNetwork? _bridge;
    private readonly Channel<Func<Task>> _mailbox = Channel.CreateUnbounded<Func<Task>>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Dictionary<string, Workload> _applied = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Workload> _static = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _staticFiles = new(StringComparer.Ordinal);
    private readonly HashSet<string> _stopped = new(StringComparer.Ordinal);
    private readonly HashSet<string> _fleetOwned = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Instance> _instances = new(StringComparer.Ordinal);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, (long CpuNs, DateTimeOffset At)> _cpuSamples = new(StringComparer.Ordinal);
    private IReadOnlyDictionary<string, ContainerView> _view = new Dictionary<string, ContainerView>();
    private readonly TaskCompletionSource _recovered = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private IReadOnlyList<string> _manifestErrors = [];
    private DateTime _manifestStamp;

    public Supervisor(NodeOptions options, ImageStore images, SnapshotStore snapshots, ITaskDriver driver, LogPump logs,
        ILogger<Supervisor> logger, Func<string, IProgress<PullProgress>?, CancellationToken, Task>? pullImage = null)
    {
        _options = options;
        _images = images;
        _snapshots = snapshots;
        _driver = driver;
        _logs = logs;
        _logs.Dropped += (name, message) =>
        {
            LogLogsDropped(logger, name, message);
            Emit("container.logs-dropped", name, message);
        };
        _logger = logger;
        _pullImage = pullImage;
        _prober = new Prober(driver);
        _bridge = options.Bridge is { } bridge ? new BridgeNetwork(bridge) : null;
        foreach (var dir in new[] { WorkloadsDir, InstancesDir, LogsRoot, VolumesDir, ContainersRunDir })
        {
            Directory.CreateDirectory(dir);
        }
    }

    /// <summary>Bytes of the container's output dropped since orchd started because its log could not be written (a full disk).</summary>
    public long LogBytesDropped(string name) => _logs.DroppedBytes(name);

    [LoggerMessage(EventId = 2304, Level = LogLevel.Warning, Message = "container {Name}: {Message}")]
    private static partial void LogLogsDropped(ILogger logger, string name, string message);

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
    private string InstancesDir => Path.Combine(_options.StateDir, "containers");
    private string LogsRoot => Path.Combine(_options.StateDir, "logs");
    private string VolumesDir => Path.Combine(_options.StateDir, "volumes");
    private string ContainersRunDir => Path.Combine(_options.RunDir, "containers");

    public string LogDir(string name) => Path.Combine(LogsRoot, name);

    public ITaskDriver Driver => _driver;

    /// <summary>Completes once the containers left by the previous orchd have been re-adopted.</summary>
    public Task Recovered => _recovered.Task;

    private sealed class Instance(Workload workload, InstanceRecord record)
    {
        public Workload Workload { get; set; } = workload;
        public InstanceRecord Record { get; } = record;
#pragma warning disable CA1051 // read by the exit watcher thread with Volatile.Read
        public TaskHandle? HandleField;
#pragma warning restore CA1051

        public TaskHandle? Handle
        {
            get => HandleField;
            set => Volatile.Write(ref HandleField, value);
        }
        public TaskCompletionSource Exited { get; set; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public CancellationTokenSource? Probes { get; set; }
        /// <summary>Why orchd is ending this run (stop, replace, liveness), or null when the process ended by itself.</summary>
        public string? EndingBecause { get; set; }
        /// <summary>The exit as the watcher saw it, before the loop has processed it.</summary>
        public TaskExit? SeenExit { get; set; }
        public int LivenessFailures { get; set; }
        public int ReadinessFailures { get; set; }
        public int ReadinessSuccesses { get; set; }
        public int StartupFailures { get; set; }
    }

    // ---------------------------------------------------------------- the loop

    /// <summary>Reconcile passes completed (recovery's, the resync's, those after an exit or an API call): a test waits for N of them instead of sleeping.</summary>
    public PassCounter Passes { get; } = new();

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        // Before the mailbox is read: requests that arrive meanwhile wait for it.
        await RecoverAsync().ConfigureAwait(false);
        PublishView();
        _recovered.TrySetResult();
        using var timer = new PeriodicTimer(_options.Resync);
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
        try
        {
            await foreach (var work in _mailbox.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                await work().ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        await ticks.ConfigureAwait(false);
        foreach (var instance in _instances.Values)
        {
            instance.Probes?.Cancel(); // containers keep running; only orchd's watching stops
        }
    }

    /// <summary>Runs <paramref name="work"/> on the loop and returns its result.</summary>
    private Task<bool> Post(Func<Task> work) => Post(async () =>
    {
        await work().ConfigureAwait(false);
        return true;
    });

    private Task<T> Post<T>(Func<Task<T>> work)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_mailbox.Writer.TryWrite(async () =>
        {
            try
            {
                var result = await work().ConfigureAwait(false);
                PublishView(); // whoever asked sees its own change in the next ps
                done.TrySetResult(result);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                PublishView();
                done.TrySetException(e);
            }
        }))
        {
            done.TrySetException(new InvalidOperationException("orchd is stopping; try again once it is back"));
        }
        return done.Task;
    }

    private Task<T> Post<T>(Func<T> work) => Post(() => Task.FromResult(work()));

    // ---------------------------------------------------------------- recovery

    private async Task RecoverAsync()
    {
        var damaged = new List<string>();
        foreach (var file in Directory.EnumerateFiles(WorkloadsDir, "*.json"))
        {
            var workload = ReadJson(file, WorkloadJsonContext.Default.Workload);
            if (workload is null)
            {
                damaged.Add(Path.GetFileNameWithoutExtension(file));
                continue;
            }
            if (workload is not null && WorkloadValidator.Validate(workload).Count == 0)
            {
                if (Refusal(workload) is { } refusal)
                {
                    // Stored before the node's policy said no (an upgrade, a config change): it
                    // does not run again; the record stays so that allowing it brings it back.
                    LogRefusedAtStart(_logger, workload.Name, refusal);
                    Emit("workload.refused", workload.Name, refusal);
                    continue;
                }
                _applied[workload.Name] = workload;
            }
        }
        foreach (var marker in Directory.EnumerateFiles(WorkloadsDir, "*.stopped"))
        {
            _stopped.Add(Path.GetFileNameWithoutExtension(marker));
        }
        var fleetFile = Path.Combine(WorkloadsDir, "fleet-assigned");
        if (File.Exists(fleetFile))
        {
            _fleetOwned.UnionWith(File.ReadAllLines(fleetFile).Where(l => _applied.ContainsKey(l)));
        }
        LoadManifests(force: true);

        var adopted = 0;
        var records = new Dictionary<string, InstanceRecord>(StringComparer.Ordinal);
        foreach (var file in Directory.EnumerateFiles(InstancesDir, "*.json"))
        {
            if (ReadJson(file, InstanceJsonContext.Default.InstanceRecord) is { } record)
            {
                records[record.Name] = record;
            }
        }
        // A damaged workload file is rebuilt from the spec its container was made from: the
        // container keeps running (it used to be killed as "no longer wanted").
        foreach (var name in damaged)
        {
            if (records.GetValueOrDefault(name)?.Workload is { } kept && kept.Name == name && WorkloadValidator.Validate(kept).Count == 0 && Refusal(kept) is null)
            {
                _applied[name] = kept;
                AtomicFile.WriteAllText(Path.Combine(WorkloadsDir, name + ".json"), JsonSerializer.Serialize(kept, WorkloadJsonContext.Default.Workload));
                LogWorkloadRebuilt(_logger, name);
                Emit("workload.rebuilt", name, $"workloads/{name}.json was damaged; rebuilt from its container's record (the container keeps running)");
            }
            else
            {
                Emit("workload.damaged", name, $"workloads/{name}.json was damaged and no container record holds its spec; apply the workload again");
            }
        }
        // A container the runtime knows but whose record was lost (a torn write, a crash between
        // start and save) is adopted under a rebuilt record if a workload still wants it.
        foreach (var id in _driver.List())
        {
            if (!records.ContainsKey(id) && Desired().TryGetValue(id, out var wanted) && _driver.Recover(id) is { } running)
            {
                records[id] = new InstanceRecord
                {
                    Name = id, SpecHash = SpecHash(wanted), Image = wanted.Image, Workload = wanted, State = "running", Pid = running.Pid,
                    PidStartTime = running.PidStartTime, StartedAt = DateTimeOffset.UtcNow, Started = true,
                    Message = "re-adopted without a record (the record was lost)",
                };
                LogRebuilt(_logger, id);
            }
            else if (!records.ContainsKey(id))
            {
                _driver.Destroy(id); // nobody's: a leftover of a crash
            }
        }
        foreach (var record in records.Values)
        {
            try
            {
                if (Adopt(record))
                {
                    adopted++;
                }
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                LogStepFailed(_logger, record.Name, e.Message);
            }
        }
        LogRecovered(_logger, adopted, records.Count - adopted);
        await ReconcileAsync().ConfigureAwait(false);
    }

    /// <summary>Takes a container left by the previous orchd back; true when it still runs.</summary>
    private bool Adopt(InstanceRecord record)
    {
        // A workload whose spec changed while orchd was away is replaced by the next pass,
        // under the spec the container was started with (record.SpecHash tells them apart).
        var workload = Desired().GetValueOrDefault(record.Name) ?? new Workload { Name = record.Name, Image = record.Image };
        var instance = new Instance(workload, record);
        _instances[record.Name] = instance;
        var handle = record.State == "running" ? _driver.Recover(record.Name) : null;
        if (handle is not null && handle.Pid == record.Pid && handle.PidStartTime == record.PidStartTime)
        {
            instance.Handle = handle;
            AttachLogs(record.Name);
            _driver.Watch(handle, (h, exit) => OnExit(instance, h, exit));
            StartProbes(instance);
            if (!File.Exists(Path.Combine(InstancesDir, record.Name + ".json")))
            {
                Save(instance); // a rebuilt record is written again, whole
            }
            return true;
        }
        if (record.State == "running")
        {
            // It died while no orchd was watching (or the host rebooted): an exit with no
            // code, and the restart policy decides.
            _driver.Destroy(record.Name);
            if (Directory.Exists(FifoDir(record.Name)))
            {
                AttachLogs(record.Name); // whatever it wrote before dying is still in the pipe
            }
            Exited(instance, new TaskExit(null, false, DateTimeOffset.UtcNow));
        }
        return false;
    }

    private T? ReadJson<T>(string file, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) where T : class
    {
        try
        {
            return Linux.StateFile.Read(file, bytes => JsonSerializer.Deserialize(bytes, type));
        }
        catch (Linux.DamagedStateException e)
        {
            // A torn or corrupt file: kept aside for a post-mortem; the caller rebuilds what it can.
            LogCorrupt(_logger, file, e.InnerException?.Message ?? e.Message, e.MovedTo ?? "(could not be moved)");
            return null;
        }
    }

    [LoggerMessage(EventId = 2303, Level = LogLevel.Warning, Message = "workload {Name}: its file was damaged; rebuilt from its container's record, the container keeps running")]
    private static partial void LogWorkloadRebuilt(ILogger logger, string name);

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

    private async Task ReconcileAsync()
    {
        LoadManifests(force: false);
        var desired = Desired();
        foreach (var (name, workload) in desired.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            try
            {
                await ReconcileOneAsync(name, workload).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // One workload's trouble (a pull that times out, a full disk) must not stop the
                // pass for the others; it backs off like a failed start.
                LogStepFailed(_logger, name, e.Message);
                if (_instances.TryGetValue(name, out var instance) && instance.Handle is null)
                {
                    instance.Record.Message = e.Message;
                    var plan = RestartTracker.OnExit(instance.Workload.Restart, instance.Record, null, DateTimeOffset.UtcNow, DateTimeOffset.UtcNow);
                    instance.Record.State = plan.Decision == RestartDecision.Restart ? "backoff" : "failed";
                    instance.Record.NextRestartAt = plan.Decision == RestartDecision.Restart ? plan.At : null;
                }
            }
        }
        foreach (var instance in _instances.Values.Where(i => !desired.ContainsKey(i.Record.Name)).ToList())
        {
            try
            {
                LogRemoving(_logger, instance.Record.Name);
            Emit("container.removed", instance.Record.Name, "no longer wanted on this node");
                await RemoveContainerAsync(instance, "removed", keepLogs: false).ConfigureAwait(false);
                _instances.Remove(instance.Record.Name);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                LogStepFailed(_logger, instance.Record.Name, e.Message);
            }
        }
        Passes.PassCompleted();
    }

    private async Task ReconcileOneAsync(string name, Workload workload)
    {
        var hash = SpecHash(workload);
        if (!_instances.TryGetValue(name, out var instance))
        {
            instance = new Instance(workload, new InstanceRecord { Name = name, SpecHash = hash, Image = workload.Image, Workload = workload });
            _instances[name] = instance;
            await StartAsync(instance).ConfigureAwait(false);
            return;
        }
        if (instance.Record.SpecHash != hash)
        {
            // Stopped and cleaned up under the spec it was started with (its grace period, its ports).
            LogReplacing(_logger, name);
            await RemoveContainerAsync(instance, "replaced", keepLogs: true).ConfigureAwait(false);
            instance = new Instance(workload, new InstanceRecord { Name = name, SpecHash = hash, Image = workload.Image, Workload = workload });
            _instances[name] = instance;
            await StartAsync(instance).ConfigureAwait(false);
            return;
        }
        instance.Workload = workload;
        if (_stopped.Contains(name))
        {
            if (instance.Handle is not null)
            {
                await StopAsync(instance, "stopped").ConfigureAwait(false);
            }
            if (instance.Record.State != "stopped")
            {
                instance.Record.State = "stopped";
                instance.Record.NextRestartAt = null;
                Save(instance);
            }
            return;
        }
        var due = instance.Record.NextRestartAt is not { } at || at <= DateTimeOffset.UtcNow.AddMilliseconds(20);
        if (instance.Record.State is "backoff" or "created" or "stopped" && due && instance.Handle is null)
        {
            await StartAsync(instance).ConfigureAwait(false);
        }
    }

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

    // ---------------------------------------------------------------- start, exit, stop

    private string FifoDir(string name) => Path.Combine(ContainersRunDir, name);

    private void AttachLogs(string name)
    {
        try
        {
            _logs.Attach(name, FifoDir(name), LogDir(name));
        }
        catch (Exception e) when (e is IOException or Linux.LinuxException)
        {
            LogNoLogs(_logger, name, e.Message);
        }
    }

    private async Task StartAsync(Instance instance)
    {
        var name = instance.Record.Name;
        var workload = instance.Workload;
        var record = instance.Record;
        try
        {
            var (imageConfig, rootfs) = await PrepareImageAsync(name, workload).ConfigureAwait(false);
            var bundle = Path.Combine(FifoDir(name), "bundle");
            var spec = SpecBuilder.Build(workload, imageConfig,
                new ContainerPaths(bundle, rootfs, VolumesDir, $"{_options.CgroupParent}/{name}"));
            Directory.CreateDirectory(bundle);
            File.WriteAllBytes(Path.Combine(bundle, "config.json"), JsonSerializer.SerializeToUtf8Bytes(spec, SpecJsonContext.Default.RuntimeSpec));

            var beforeStart = PrepareNetwork(instance);
            UpdateHosts(); // its own /etc/hosts names the neighbours before its program runs
            Save(instance); // its address is on disk before anything can hold it
            var (stdout, stderr) = LogPump.CreateFifos(FifoDir(name));
            TaskHandle handle;
            try
            {
                AttachLogs(name);
                handle = _driver.Start(new TaskConfig(name, bundle, stdout, stderr, beforeStart) { Runtime = workload.Runtime });
            }
            catch
            {
                Unpublish(instance); // only what this start published (the record says), nothing of another's
                throw;
            }
            finally
            {
                Linux.Libc.close(stdout);
                Linux.Libc.close(stderr);
            }
            instance.Exited = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            instance.SeenExit = null;
            instance.EndingBecause = null;
            instance.LivenessFailures = instance.ReadinessFailures = instance.ReadinessSuccesses = instance.StartupFailures = 0;
            instance.Handle = handle;
            // Watched before anything else can fail: a running container must never go unwatched.
            _driver.Watch(handle, (h, exit) => OnExit(instance, h, exit));
            record.Published = workload.Network is null or "bridge" && workload.Ports is { Count: > 0 } ports ? [.. ports] : null;
            if (record.StartedAt is not null)
            {
                record.Restarts++;
            }
            record.State = "running";
            record.Pid = handle.Pid;
            record.PidStartTime = handle.PidStartTime;
            record.StartedAt = DateTimeOffset.UtcNow;
            record.NextRestartAt = null;
            record.Started = workload.Probes?.Startup is null;
            record.Ready = workload.Probes?.Readiness is null;
            record.Message = null;
            Save(instance);
            StartProbes(instance);
            UpdateHosts();
            LogStarted(_logger, name, handle.Pid, record.Restarts);
            Emit("container.started", name, $"started (pid {handle.Pid}, restarts {record.Restarts}, image {workload.Image})");
        }
        catch (Exception e) when (ErrorKinds.Of(e) is not null || e is IOException or InvalidOperationException or HttpRequestException or UnauthorizedAccessException)
        {
            record.Message = e.Message;
            LogStartFailed(_logger, name, e.Message);
            Emit("container.start-failed", name, e.Message);
            var plan = RestartTracker.OnExit(workload.Restart, record, null, DateTimeOffset.UtcNow, DateTimeOffset.UtcNow);
            record.State = plan.Decision == RestartDecision.Restart ? "backoff" : "failed";
            record.NextRestartAt = plan.Decision == RestartDecision.Restart ? plan.At : null;
            Save(instance);
        }
        Changed?.Invoke(name);
    }

    /// <summary>
    /// The image's run defaults and a rootfs for the container: from containerd's image store and
    /// snapshotter when its backend runs from them, otherwise from orchd's (pulled when missing).
    /// </summary>
    private async Task<(ImageConfigFile Config, string Rootfs)> PrepareImageAsync(string name, Workload workload)
    {
        if (_driver.ImagesFor(workload.Runtime) is { } containerd)
        {
            var pull = _pullImage;
            var pulled = await containerd.EnsureAsync(workload.Image, _images, pull is null ? null : (r, ct) => pull(r, null, ct), CancellationToken.None).ConfigureAwait(false);
            return (pulled.Config, await containerd.MountRootfsAsync(name, pulled, ContainerdRootfs(name)).ConfigureAwait(false));
        }
        ImageRecord image;
        try
        {
            image = _images.Inspect(workload.Image);
        }
        catch (ImageException) when (_pullImage is not null)
        {
            await _pullImage(workload.Image, null, CancellationToken.None).ConfigureAwait(false);
            image = _images.Inspect(workload.Image);
        }
        return (_images.Config(image), await PrepareRootfsAsync(name, image).ConfigureAwait(false));
    }

    /// <summary>Where a container's containerd snapshot is mounted (the run dir: gone with a reboot, like the mount).</summary>
    private string ContainerdRootfs(string name) => Path.Combine(FifoDir(name), "containerd-rootfs");

    private async Task<string> PrepareRootfsAsync(string name, ImageRecord image)
    {
        // The marker lives in the run dir: after a reboot the overlay mount is gone and the
        // rootfs is made again; after an orchd restart (or a container restart) it is reused.
        var marker = Path.Combine(FifoDir(name), "rootfs");
        if (File.Exists(marker) && File.ReadAllText(marker) is { Length: > 0 } kept && Directory.Exists(kept))
        {
            return kept;
        }
        _snapshots.Remove(name);
        var rootfs = await _snapshots.PrepareAsync(image.Name, name).ConfigureAwait(false);
        Directory.CreateDirectory(FifoDir(name));
        File.WriteAllText(marker, rootfs);
        return rootfs;
    }

    /// <summary>Called by the driver's watcher thread: completes the waiters at once, then updates state on the loop.</summary>
    private void OnExit(Instance instance, TaskHandle handle, TaskExit exit)
    {
        // The instance was captured when the watch began: nothing here touches the loop's dictionaries.
        if (ReferenceEquals(Volatile.Read(ref instance.HandleField), handle))
        {
            instance.SeenExit = exit;
            instance.Exited.TrySetResult();
        }
        _ = Post(() =>
        {
            if (ReferenceEquals(instance.Handle, handle))
            {
                Exited(instance, exit);
                Changed?.Invoke(instance.Record.Name);
            }
            return Task.CompletedTask;
        });
    }

    private void Exited(Instance instance, TaskExit exit)
    {
        var record = instance.Record;
        instance.Handle = null;
        instance.Exited.TrySetResult();
        instance.Probes?.Cancel();
        instance.Probes = null;
        var reason = instance.EndingBecause ?? (exit.OomKilled ? "oom-killed" : "exited");
        record.LastExit = new ExitRecord { Code = exit.Code, OomKilled = exit.OomKilled, At = exit.At, Reason = reason };
        record.FinishedAt = exit.At;
        record.Pid = 0;
        record.Ready = false;
        Unpublish(instance);
        UpdateHosts();
        LogExited(_logger, record.Name, exit.Code?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unknown", reason);
        Emit(exit.OomKilled ? "container.oom-killed" : "container.exited", record.Name,
            $"exited with code {exit.Code?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unknown"} ({reason})");
        if (instance.EndingBecause is "stopped" or "replaced" or "removed" or "restarted")
        {
            record.State = "stopped";
            Save(instance);
            return;
        }
        var plan = RestartTracker.OnExit(instance.Workload.Restart, record, exit.Code, record.StartedAt ?? exit.At, exit.At);
        switch (plan.Decision)
        {
            case RestartDecision.Restart:
                record.State = "backoff";
                record.NextRestartAt = plan.At;
                record.Message = $"restarting in {plan.Delay.TotalSeconds:0.###}s ({reason}, code {record.LastExit.Code?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unknown"})";
                // A timer may fire a little before the wall clock says the time has come (they run on
                // different clocks): a margin, so that the restart happens now and not at the next resync.
                _ = Task.Delay(plan.Delay + TimeSpan.FromMilliseconds(25)).ContinueWith(_ => Post(ReconcileAsync), TaskScheduler.Default);
                break;
            case RestartDecision.GiveUp:
                record.State = "failed";
                record.Message = $"gave up after {record.ConsecutiveFailures} restarts in a row (restart.maxRetries)";
                Emit("container.failed", record.Name, record.Message);
                break;
            default:
                record.State = "exited";
                break;
        }
        Save(instance);
    }

    /// <summary>SIGTERM, the grace period, then SIGKILL to everything in the container.</summary>
    private async Task StopAsync(Instance instance, string reason)
    {
        if (instance.Handle is null)
        {
            return;
        }
        instance.EndingBecause = reason;
        instance.Probes?.Cancel();
        var grace = instance.Workload.StopGracePeriodSeconds is { } s ? TimeSpan.FromSeconds(s) : _options.DefaultStopGrace;
        try
        {
            _driver.Signal(instance.Record.Name, 15, all: false);
        }
        catch (Exception e) when (e is InvalidOperationException or Linux.LinuxException or IOException)
        {
        }
        if (await Task.WhenAny(instance.Exited.Task, Task.Delay(grace)).ConfigureAwait(false) != instance.Exited.Task)
        {
            try
            {
                _driver.Signal(instance.Record.Name, 9, all: true);
            }
            catch (Exception e) when (e is InvalidOperationException or Linux.LinuxException or IOException)
            {
            }
            await Task.WhenAny(instance.Exited.Task, Task.Delay(TimeSpan.FromSeconds(10))).ConfigureAwait(false);
        }
        if (instance.Handle is not null)
        {
            // Processed here, not when the watcher's report reaches the loop (it is then stale).
            Exited(instance, instance.SeenExit ?? new TaskExit(null, false, DateTimeOffset.UtcNow));
        }
    }

    private async Task RemoveContainerAsync(Instance instance, string reason, bool keepLogs)
    {
        var name = instance.Record.Name;
        await StopAsync(instance, reason).ConfigureAwait(false);
        _driver.Destroy(name);
        _logs.Detach(name);
        _logs.Flush(); // the pump is done with the files before they are deleted
        try
        {
            _snapshots.Remove(name);
            if (_driver.ImagesFor("containerd") is { } containerd)
            {
                // Before the run dir goes: its mount point must be unmounted first. Whatever runtime it
                // has now, an earlier one may have left a snapshot there.
                await containerd.RemoveRootfsAsync(name, ContainerdRootfs(name)).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (ErrorKinds.Of(e) is not null || e is IOException or UnauthorizedAccessException)
        {
            LogCleanup(_logger, name, e.Message);
        }
        TryDelete(FifoDir(name));
        File.Delete(Path.Combine(InstancesDir, name + ".json"));
        instance.Record.Ip = null;
        if (!keepLogs)
        {
            TryDelete(LogDir(name));
        }
        _cpuSamples.TryRemove(name, out _);
        Changed?.Invoke(name);
    }

    private static void TryDelete(string dir)
    {
        try
        {
            if (Directory.Exists(dir))
            {
                Directory.Delete(dir, recursive: true);
            }
        }
        catch (IOException)
        {
        }
    }

    private void Save(Instance instance)
    {
        try
        {
            AtomicFile.WriteAllText(Path.Combine(InstancesDir, instance.Record.Name + ".json"),
                JsonSerializer.Serialize(instance.Record, InstanceJsonContext.Default.InstanceRecord));
        }
        catch (IOException e)
        {
            // A full disk: the container goes on as the record in memory says; the record on
            // disk is the previous whole one, and the next save writes it again.
            LogRecordUnsaved(_logger, instance.Record.Name, e.Message);
        }
    }

    [LoggerMessage(EventId = 2305, Level = LogLevel.Warning, Message = "container {Name}: its record is not saved ({Reason}); free space under the state directory")]
    private static partial void LogRecordUnsaved(ILogger logger, string name, string reason);

    public static string SpecHash(Workload workload)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(workload, WorkloadJsonContext.Default.Workload);
        return Convert.ToHexStringLower(SHA256.HashData(json))[..16];
    }

    // ---------------------------------------------------------------- network

    /// <summary>What to do between create and start: bridge (address, veth, ports) or loopback only.</summary>
    private Action<int>? PrepareNetwork(Instance instance)
    {
        var workload = instance.Workload;
        switch (workload.Network ?? "bridge")
        {
            case "host":
                instance.Record.Ip = null;
                return null;
            case "none":
                instance.Record.Ip = null;
                return BridgeNetwork.LoopbackOnly;
        }
        if (_bridge is null)
        {
            throw new NetworkException($"workload '{workload.Name}' wants network bridge, which is off on this node (network.bridge: none); use network: host or none, or turn it on");
        }
        var address = instance.Record.Ip is { } kept && System.Net.IPAddress.TryParse(kept, out var ip)
            ? ip
            : _bridge.Allocate(_instances.Values.Where(i => i != instance).Select(i => i.Record.Ip).OfType<string>());
        instance.Record.Ip = address.ToString();
        return pid =>
        {
            _bridge.Attach(pid, workload.Name, address);
            _bridge.Publish(address, workload.Ports ?? [], add: true);
            instance.Record.Published = workload.Ports is { Count: > 0 } ports ? [.. ports] : null;
        };
    }

    /// <summary>Withdraws the ports this container's run published (as recorded), and nothing else.</summary>
    private void Unpublish(Instance instance)
    {
        if (_bridge is not null && instance.Record.Ip is { } ip && instance.Record.Published is { Count: > 0 } ports)
        {
            try
            {
                _bridge.Publish(System.Net.IPAddress.Parse(ip), ports, add: false);
            }
            catch (NetworkException e)
            {
                LogCleanup(_logger, instance.Record.Name, e.Message);
            }
        }
        instance.Record.Published = null;
    }

    /// <summary>Every bridge container's /etc/hosts names its running neighbours (written in place: it is bind-mounted).</summary>
    private void UpdateHosts()
    {
        var onBridge = _instances.Values.Where(i => i.Record.Ip is not null && i.Workload.Network is null or "bridge").ToList();
        var running = onBridge.Where(i => i.Handle is not null).Select(i => (i.Record.Name, i.Record.Ip!)).ToList();
        foreach (var instance in onBridge)
        {
            var file = Path.Combine(FifoDir(instance.Record.Name), "bundle", "hosts");
            if (!File.Exists(file))
            {
                continue;
            }
            var text = SpecBuilder.Hosts(instance.Workload.Hostname ?? instance.Record.Name, instance.Record.Ip,
                running.Where(r => r.Name != instance.Record.Name));
            try
            {
                if (File.ReadAllText(file) != text)
                {
                    using var stream = new FileStream(file, FileMode.Open, FileAccess.Write);
                    stream.SetLength(0);
                    stream.Write(System.Text.Encoding.UTF8.GetBytes(text));
                }
            }
            catch (IOException e)
            {
                LogCleanup(_logger, instance.Record.Name, e.Message);
            }
        }
    }

    // ---------------------------------------------------------------- probes

    private void StartProbes(Instance instance)
    {
        var probes = instance.Workload.Probes;
        if (probes is null || (probes.Startup ?? probes.Liveness ?? probes.Readiness) is null || instance.Handle is null)
        {
            return;
        }
        var cts = new CancellationTokenSource();
        instance.Probes = cts;
        var handle = instance.Handle;
        var host = instance.Workload.Network is "host" || instance.Record.Ip is null ? "127.0.0.1" : instance.Record.Ip;
        _ = Task.Run(async () =>
        {
            try
            {
                if (probes.Startup is { } startup)
                {
                    await Task.Delay(TimeSpan.FromSeconds(startup.InitialDelaySeconds), cts.Token).ConfigureAwait(false);
                    while (true)
                    {
                        var result = await ProbeOnceAsync(startup, instance.Record.Name, host, cts.Token).ConfigureAwait(false);
                        if (await Post(() => OnProbe(instance, handle, "startup", result)).ConfigureAwait(false))
                        {
                            break;
                        }
                        await Task.Delay(TimeSpan.FromSeconds(startup.PeriodSeconds), cts.Token).ConfigureAwait(false);
                    }
                }
                await Task.WhenAll(
                    probes.Liveness is { } l ? LoopAsync(l, "liveness") : Task.CompletedTask,
                    probes.Readiness is { } r ? LoopAsync(r, "readiness") : Task.CompletedTask).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }, CancellationToken.None);

        async Task LoopAsync(Probe probe, string kind)
        {
            await Task.Delay(TimeSpan.FromSeconds(probe.InitialDelaySeconds), cts.Token).ConfigureAwait(false);
            while (!cts.IsCancellationRequested)
            {
                var result = await ProbeOnceAsync(probe, instance.Record.Name, host, cts.Token).ConfigureAwait(false);
                await Post(() => OnProbe(instance, handle, kind, result)).ConfigureAwait(false);
                await Task.Delay(TimeSpan.FromSeconds(probe.PeriodSeconds), cts.Token).ConfigureAwait(false);
            }
        }
    }

    /// <summary>One probe run; anything unexpected (a program missing from the image, a spawn error) is a failed probe, not a dead probe loop.</summary>
    private async Task<ProbeResult> ProbeOnceAsync(Probe probe, string name, string host, CancellationToken cancellationToken)
    {
        try
        {
            return await _prober.RunAsync(probe, name, host, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return new ProbeResult(false, e.Message);
        }
    }

    /// <summary>Applies one probe result (on the loop); returns true when a startup probe has passed.</summary>
    private async Task<bool> OnProbe(Instance instance, TaskHandle handle, string kind, ProbeResult result)
    {
        if (instance.Handle != handle)
        {
            return true; // a result for a run that has ended
        }
        var record = instance.Record;
        var probes = instance.Workload.Probes!;
        switch (kind)
        {
            case "startup":
                if (result.Ok)
                {
                    record.Started = true;
                    Save(instance);
                    return true;
                }
                if (++instance.StartupFailures >= probes.Startup!.FailureThreshold)
                {
                    await KillForProbeAsync(instance, "startup-probe", result).ConfigureAwait(false);
                    return true;
                }
                return false;
            case "liveness":
                if (result.Ok)
                {
                    instance.LivenessFailures = 0;
                }
                else if (++instance.LivenessFailures >= probes.Liveness!.FailureThreshold)
                {
                    await KillForProbeAsync(instance, "liveness-probe", result).ConfigureAwait(false);
                }
                return true;
            default:
                var ready = record.Ready;
                if (result.Ok)
                {
                    instance.ReadinessFailures = 0;
                    if (++instance.ReadinessSuccesses >= probes.Readiness!.SuccessThreshold)
                    {
                        ready = true;
                    }
                }
                else
                {
                    instance.ReadinessSuccesses = 0;
                    if (++instance.ReadinessFailures >= probes.Readiness!.FailureThreshold)
                    {
                        ready = false;
                    }
                }
                var message = ready ? null : $"not ready: {(result.Ok ? "waiting for successThreshold" : result.Detail)}";
                if (ready != record.Ready || (!result.Ok && record.Message != message))
                {
                    record.Ready = ready;
                    record.Message = message;
                    LogReadiness(_logger, record.Name, ready, result.Detail);
                    Save(instance);
                    Changed?.Invoke(record.Name);
                }
                return true;
        }
    }

    private async Task KillForProbeAsync(Instance instance, string reason, ProbeResult result)
    {
        LogProbeKill(_logger, instance.Record.Name, reason, result.Detail);
        Emit("container.unhealthy", instance.Record.Name, $"{reason} failed ({result.Detail}); killed");
        instance.Record.Message = $"{reason} failed: {result.Detail}";
        instance.EndingBecause = reason;
        instance.Probes?.Cancel();
        try
        {
            _driver.Signal(instance.Record.Name, 9, all: true);
        }
        catch (Exception e) when (e is InvalidOperationException or Linux.LinuxException or IOException)
        {
        }
        await Task.CompletedTask.ConfigureAwait(false);
    }
}

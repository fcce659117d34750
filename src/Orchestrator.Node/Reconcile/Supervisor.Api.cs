using Microsoft.Extensions.Logging;
using Orchestrator.Node.Drivers;
using Orchestrator.Node.Logs;
using Orchestrator.Node.StateStore;
using Orchestrator.Node.Stats;
using static Orchestrator.Node.Reconcile.SupervisorLog;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Node.Reconcile;

/// <summary>A node API request that cannot be served: the message names the object and the fix.</summary>
public sealed class NodeApiException : OrchestratorException
{
    public NodeApiException() : base(ErrorKind.Invalid, "nodeapi error") { }
    public NodeApiException(string message) : base(ErrorKind.Invalid, message) { }
    public NodeApiException(string message, Exception inner) : base(ErrorKind.Invalid, message, inner) { }
    public NodeApiException(ErrorKind kind, string message, Exception? inner = null) : base(kind, message, inner) { }
}

/// <summary>The operations the node API offers (run, stop, start, rm, ps, inspect, logs, exec, stats, status).</summary>
public sealed partial class Supervisor
{
    /// <summary>Validates, stores and applies a workload (create, or replace when its spec changed); returns its status.</summary>
    public Task<ContainerStatus> ApplyAsync(Workload workload) => ApplyCoreAsync(workload, fromFleet: false);

    /// <summary>
    /// A workload the fleet's scheduler assigned to this node. Kept on disk like any other, so
    /// the node runs its last assignments with NATS gone (edge autonomy); marked as the
    /// fleet's, so that <see cref="SyncAssignedAsync"/> can remove what the fleet no longer assigns.
    /// </summary>
    public Task<ContainerStatus> ApplyAssignedAsync(Workload workload) => ApplyCoreAsync(workload, fromFleet: true);

    /// <summary>Removes every fleet-assigned workload not in <paramref name="assigned"/> (the fleet's current view).</summary>
    public Task SyncAssignedAsync(IReadOnlySet<string> assigned) => Post(async () =>
    {
        var gone = _fleetOwned.Where(name => !assigned.Contains(name)).ToList();
        foreach (var name in gone)
        {
            _applied.Remove(name);
            _fleetOwned.Remove(name);
            File.Delete(Path.Combine(WorkloadsDir, name + ".json"));
        }
        if (gone.Count > 0)
        {
            SaveFleetOwned();
            await ReconcileAsync().ConfigureAwait(false);
        }
    });

    /// <summary>The names of the workloads the fleet assigned here (from the node's own records).</summary>
    public Task<HashSet<string>> AssignedAsync() => Post(() => new HashSet<string>(_fleetOwned, StringComparer.Ordinal));

    /// <summary>Why this node's policy refuses the workload (one sentence per setting), or null.</summary>
    public string? Refusal(Workload workload)
        => (Apps.IsApp(workload)
                ? MembersOf(workload).SelectMany(m => _options.Policy.Refusals(m).Select(r => $"{Apps.ServiceOf(m)}: {r}")).ToList()
                : _options.Policy.Refusals(workload)) is { Count: > 0 } refusals
            ? $"workload '{workload.Name}' is refused by this node's policy: {string.Join("; ", refusals)}"
            : null;

    private void SaveFleetOwned()
        => AtomicFile.WriteAllText(Path.Combine(WorkloadsDir, "fleet-assigned"), string.Concat(_fleetOwned.Order(StringComparer.Ordinal).Select(n => n + "\n")));

    private async Task<ContainerStatus> ApplyCoreAsync(Workload workload, bool fromFleet)
    {
        var errors = WorkloadValidator.Validate(workload);
        if (errors.Count > 0)
        {
            throw new NodeApiException($"workload '{workload.Name}' is not valid: {string.Join("; ", errors)}");
        }
        if (Refusal(workload) is { } refusal)
        {
            Emit("workload.refused", workload.Name, refusal);
            LogRefused(_logger, workload.Name, fromFleet ? "the fleet" : "the node API", refusal);
            throw new NodeApiException(refusal);
        }
        return await Post(async () =>
        {
            if (_static.ContainsKey(workload.Name))
            {
                throw new NodeApiException(ErrorKind.Conflict, $"workload '{workload.Name}' comes from this node's manifest directory ({_options.ManifestDir}); change it there, or pick another name");
            }
            var others = DesiredContainers().Values.Where(w => w.Name != workload.Name && Apps.AppOf(w) != workload.Name).ToList();
            var mine = Apps.IsApp(workload) ? MembersOf(workload) : [workload];
            var claimed = new Dictionary<(int, string), string>();
            foreach (var (port, owner) in mine.SelectMany(m => (m.Ports ?? []).Select(p => (p, m.Name))))
            {
                var hostPort = port.HostPort ?? port.ContainerPort;
                var holder = others.FirstOrDefault(w => (w.Ports ?? []).Any(p => (p.HostPort ?? p.ContainerPort) == hostPort && p.Protocol == port.Protocol))?.Name;
                if (holder is null && !claimed.TryAdd((hostPort, port.Protocol), owner))
                {
                    holder = claimed[(hostPort, port.Protocol)];
                }
                if (holder is not null)
                {
                    throw new NodeApiException(ErrorKind.Conflict, $"host port {hostPort}/{port.Protocol} is already published by '{holder}' on this node; pick another hostPort");
                }
            }
            AtomicFile.WriteAllText(Path.Combine(WorkloadsDir, workload.Name + ".json"),
                System.Text.Json.JsonSerializer.Serialize(workload, WorkloadJsonContext.Default.Workload));
            _applied[workload.Name] = workload;
            if (fromFleet != _fleetOwned.Contains(workload.Name))
            {
                if (fromFleet)
                {
                    _fleetOwned.Add(workload.Name);
                }
                else
                {
                    _fleetOwned.Remove(workload.Name);
                }
                SaveFleetOwned();
            }
            File.Delete(Path.Combine(WorkloadsDir, workload.Name + ".stopped"));
            _stopped.Remove(workload.Name);
            await ReconcileAsync().ConfigureAwait(false);
            return Apps.IsApp(workload) ? AppStatus(workload) : Status(_containers[workload.Name], withSpec: false);
        }).ConfigureAwait(false);
    }

    /// <summary>Stops and forgets a workload, its container, its rootfs and its logs.</summary>
    public Task RemoveAsync(string name) => Post(async () =>
    {
        // An app's name removes every container of it.
        var containers = Desired().TryGetValue(name, out var app) && Apps.IsApp(app)
            ? MembersOf(app).Where(m => _containers.ContainsKey(m.Name)).Select(m => _containers[m.Name]).ToList()
            : [Find(name)];
        if (_static.ContainsKey(name))
        {
            throw new NodeApiException(ErrorKind.Conflict, $"workload '{name}' comes from this node's manifest directory ({_options.ManifestDir}); delete its file there");
        }
        if (_fleetOwned.Contains(name))
        {
            // The fleet still assigns it here: the container goes (process, rootfs, logs) and the
            // same pass makes it anew, as kubectl delete pod has its ReplicaSet do. Forgetting the
            // workload instead left it gone until the assignment changed.
            Emit("container.removed", name, "deleted by request; the fleet's assignment runs it again");
            foreach (var container in containers)
            {
                await RemoveContainerAsync(container, "removed", keepLogs: false).ConfigureAwait(false);
                _containers.Remove(container.Record.Name);
            }
            await ReconcileAsync().ConfigureAwait(false);
            return;
        }
        _applied.Remove(name);
        _stopped.Remove(name);
        File.Delete(Path.Combine(WorkloadsDir, name + ".json"));
        File.Delete(Path.Combine(WorkloadsDir, name + ".stopped"));
        await ReconcileAsync().ConfigureAwait(false);
    });

    /// <summary>Stops a container and keeps it stopped (the restart policy does not apply) until started again.</summary>
    public Task<ContainerStatus> StopAsync(string name) => StopAsync(name, "stopped by request");

    /// <summary>
    /// Stops a container and keeps it stopped, with the reason kept next to it (what
    /// <see cref="StopReasonsAsync"/> reads back, across restarts of orchd).
    /// </summary>
    public Task<ContainerStatus> StopAsync(string name, string reason) => Post(async () =>
    {
        Find(name);
        _stopped.Add(name);
        string? unsaved = null;
        try
        {
            AtomicFile.WriteAllText(StopMarker(name), reason.TrimEnd('\n') + "\n");
        }
        catch (IOException e)
        {
            // A full disk must not keep a container from stopping: it stops now; only the
            // marker that keeps it stopped across a restart of orchd is missing (said in the reply).
            unsaved = $"stopped, but the stop is not saved ({e.Message}): a restart of orchd would start it again; free space under {_options.StateDir}";
            Emit("container.stop-unsaved", name, unsaved);
        }
        await ReconcileAsync().ConfigureAwait(false);
        var status = Status(_containers[name], withSpec: false);
        if (unsaved is not null)
        {
            status.Message = unsaved;
        }
        return status;
    });

    /// <summary>Every container kept stopped, with the reason it was stopped for.</summary>
    public Task<Dictionary<string, string>> StopReasonsAsync() => Post(() => _stopped.ToDictionary(n => n, n =>
    {
        try
        {
            return File.ReadAllText(StopMarker(n)).Trim();
        }
        catch (IOException)
        {
            return "";
        }
    }, StringComparer.Ordinal));

    /// <summary>The file that keeps a workload stopped across restarts of orchd (also written by the fence keeper).</summary>
    public string StopMarker(string name) => Path.Combine(WorkloadsDir, name + ".stopped");

    /// <summary>Starts a stopped container (or one that exited, failed or gave up) now, with a fresh backoff.</summary>
    public Task<ContainerStatus> StartAsync(string name) => Post(async () =>
    {
        var container = Find(name);
        _stopped.Remove(name);
        File.Delete(Path.Combine(WorkloadsDir, name + ".stopped"));
        if (container.Handle is null)
        {
            container.Record.ConsecutiveFailures = 0;
            container.Record.NextRestartAt = null;
            container.Record.State = ContainerState.Created;
        }
        await ReconcileAsync().ConfigureAwait(false);
        return Status(container, withSpec: false);
    });

    /// <summary>Kills the container's processes now; the restart policy then applies (as a crash would).</summary>
    public Task<ContainerStatus> RestartAsync(string name) => Post(async () =>
    {
        var container = Find(name);
        if (container.Handle is not null)
        {
            await StopAsync(container, "restarted").ConfigureAwait(false);
        }
        container.Record.ConsecutiveFailures = 0;
        container.Record.State = ContainerState.Created;
        container.Record.NextRestartAt = null;
        await ReconcileAsync().ConfigureAwait(false);
        return Status(container, withSpec: false);
    });

    // Reads (ps, inspect, stats, status, logs, exec) are served from the view the loop publishes
    // after every step, not through the mailbox: a stop waiting out a grace period, or a pull,
    // never makes a `ps` wait.

    /// <summary>
    /// Reads wait for recovery's first view after a start (bounded): until then the view is empty,
    /// and a container that runs would be answered "no container".
    /// </summary>
    private async Task ViewReadyAsync()
    {
        if (!_recovered.Task.IsCompleted)
        {
            try
            {
                await _recovered.Task.WaitAsync(TimeSpan.FromSeconds(30), _clock).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                // Recovery is stuck or failed: answer from what there is rather than not at all.
            }
        }
    }

    public async Task<List<ContainerStatus>> ListAsync()
    {
        await ViewReadyAsync().ConfigureAwait(false);
        return View.Values.OrderBy(v => v.Summary.Name, StringComparer.Ordinal).Select(v => v.Summary).ToList();
    }

    public async Task<ContainerStatus> InspectAsync(string name)
    {
        await ViewReadyAsync().ConfigureAwait(false);
        var view = View;
        if (!view.ContainsKey(name) && Volatile.Read(ref _appsView) is { } apps && apps.Apps.TryGetValue(name, out var app))
        {
            var status = FoldFromView(app, view, apps);
            status.Spec = app;
            return status;
        }
        return FindView(name).Detail;
    }

    /// <summary>
    /// Each container's resource use; CPU % since the previous read (or the start). The new CPU
    /// samples go to the loop, which owns them, and reach the next read through the view. The
    /// heartbeat (<paramref name="forHeartbeat"/>) keeps a window of its own: a client's read
    /// (`orchctl top` every second) must not shorten the window the autoscaler's figure covers.
    /// </summary>
    public async Task<List<ContainerStats>> StatsAsync(string? name, bool forHeartbeat = false)
    {
        await ViewReadyAsync().ConfigureAwait(false);
        var views = name is null ? View.Values.ToList() : [FindView(name)];
        var now = _clock.GetUtcNow();
        var result = new List<ContainerStats>();
        var samples = new List<(string Name, CpuSample Sample)>();
        foreach (var view in views.OrderBy(v => v.Summary.Name, StringComparer.Ordinal))
        {
            var (stats, sample) = _resources.Sample(forHeartbeat ? view.Sampled with { LastCpu = view.LastHeartbeatCpu } : view.Sampled, now);
            if (sample is { } taken)
            {
                samples.Add((view.Summary.Name, taken));
            }
            result.Add(stats);
        }
        if (samples.Count > 0)
        {
            _ = Post(() => RecordCpuSamples(samples, forHeartbeat)); // one step (and one view) per read, whatever the number of containers
        }
        return result;
    }

    private bool RecordCpuSamples(List<(string Name, CpuSample Sample)> samples, bool forHeartbeat)
    {
        foreach (var (name, sample) in samples)
        {
            if (_containers.TryGetValue(name, out var container))
            {
                if (forHeartbeat)
                {
                    container.LastHeartbeatCpu = sample;
                }
                else
                {
                    container.LastCpu = sample;
                }
            }
        }
        return true;
    }

    public Task<NodeStatus> NodeStatusAsync()
        => Task.FromResult(_resources.NodeStatus(View.Values.Select(v => v.Sampled).ToList()));

    /// <summary>One container as the loop last published it.</summary>
    private sealed record ContainerView(ContainerStatus Summary, ContainerStatus Detail, Workload Workload, bool Running, CpuSample? LastCpu, CpuSample? LastHeartbeatCpu)
    {
        public SampledContainer Sampled => new(Summary, Workload, Running, LastCpu);
    }

    private IReadOnlyDictionary<string, ContainerView> View => Volatile.Read(ref _view);

    private ContainerView FindView(string name)
        => View.TryGetValue(name, out var view)
            ? view
            : throw NoContainer(name, Volatile.Read(ref _appsView).Apps.GetValueOrDefault(name));

    /// <summary>Called on the loop after every step.</summary>
    private void PublishView()
        => Volatile.Write(ref _view, _containers.Values.ToDictionary(
            i => i.Record.Name,
            i => new ContainerView(Status(i, withSpec: false), Status(i, withSpec: true), i.Workload, i.Handle is not null, i.LastCpu, i.LastHeartbeatCpu),
            StringComparer.Ordinal));

    /// <summary>The container's log lines (its log survives restarts of the container and of orchd).</summary>
    /// <param name="previous">Only the last exited run's lines (see <see cref="LogsRequest.Previous"/>).</param>
    /// <param name="run">Only this run of a job (every attempt of it): see <see cref="LogsRequest.Run"/>.</param>
    public async Task<IReadOnlyList<LogLine>> LogsAsync(string name, int? tail, DateTimeOffset? since, bool previous, int? run, CancellationToken cancellationToken)
    {
        await ViewReadyAsync().ConfigureAwait(false);
        FindView(name);
        DateTimeOffset? until = null;
        if (previous || run is not null)
        {
            (var from, until) = await Post(() => run is { } number ? RunWindow(name, number) : PreviousRun(name)).ConfigureAwait(false);
            since = since is { } s && s > from ? s : from;
        }
        _logs.Flush();
        return await LogReader.ReadAsync(LogDir(name), tail, since, until, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Where the last exited run's lines are in the log (by time): the run before this one, or this one when it has ended. On the loop.</summary>
    private (DateTimeOffset From, DateTimeOffset? Until) PreviousRun(string name)
    {
        var container = _containers.TryGetValue(name, out var c) ? c
            : throw new NodeApiException(ErrorKind.NotFound, $"no container '{name}' on this node; `ps` lists the ones there are");
        var record = container.Record;
        if (container.Handle is null && record.LogFrom is { } last && record.LastExit is not null)
        {
            return (last, null); // not running: its last run is the previous one
        }
        if (record.PreviousLogFrom is { } from && record.PreviousLogTo is { } to)
        {
            return (from, to);
        }
        throw new NodeApiException(ErrorKind.NotFound, container.Handle is null
            ? $"container '{name}' has not run yet: it has no previous run; `orchctl logs {name}` shows what there is"
            : $"container '{name}' has not restarted since it started (or since orchd kept logs per run): it has no previous run; `orchctl logs {name}` shows the current one");
    }

    /// <summary>The last lines, then new ones as the container writes them, until cancelled. Throws at once for an unknown container.</summary>
    public async Task<IAsyncEnumerable<LogLine>> FollowLogsAsync(string name, int? tail, DateTimeOffset? since, CancellationToken cancellationToken)
    {
        await ViewReadyAsync().ConfigureAwait(false);
        FindView(name);
        _logs.Flush();
        return LogReader.FollowAsync(LogDir(name), tail, since, cancellationToken);
    }

    /// <summary>Runs a command in a running container and returns its output, buffered (the first 64 KiB of each stream).</summary>
    public async Task<ExecResult> ExecAsync(string name, IReadOnlyList<string> command, TimeSpan timeout, CancellationToken cancellationToken)
    {
        await ExecCheckAsync(name, command).ConfigureAwait(false);
        return await _driver.ExecAsync(name, command, timeout, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Runs a command in a running container, handing its output to <paramref name="output"/> as it
    /// comes; cancelling kills the command.
    /// </summary>
    public async Task<ExecExit> ExecStreamAsync(string name, IReadOnlyList<string> command, ExecOutputSink output, TimeSpan timeout, CancellationToken cancellationToken)
    {
        await ExecCheckAsync(name, command).ConfigureAwait(false);
        return await _driver.ExecStreamAsync(name, command, output, timeout, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Starts an interactive process in a running container (`exec -i` / `exec -t`); the caller
    /// relays it and disposes of it, which kills it if it still runs.
    /// </summary>
    public async Task<InteractiveProcess> ExecInteractiveAsync(string name, IReadOnlyList<string> command, InteractiveOptions options, CancellationToken cancellationToken)
    {
        await ExecCheckAsync(name, command).ConfigureAwait(false);
        return await _driver.ExecInteractiveAsync(name, command, options, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The root of a running container as its processes see it, mounts and all (/proc/PID/root,
    /// held open): what cp reads and writes through. Checked against pid reuse.
    /// </summary>
    public async Task<Microsoft.Win32.SafeHandles.SafeFileHandle> OpenRootAsync(string name)
    {
        await ViewReadyAsync().ConfigureAwait(false);
        var (pid, startTime) = await Post(() =>
        {
            var container = Find(name);
            return container.Handle is null || container.Record.Pid <= 0
                ? throw new NodeApiException(ErrorKind.Conflict, $"container '{name}' is not running; cp reaches a running container's files (start it first)")
                : (container.Record.Pid, container.Record.PidStartTime);
        }).ConfigureAwait(false);
        var fd = Linux.Libc.open($"/proc/{pid.ToString(System.Globalization.CultureInfo.InvariantCulture)}/root", Linux.Libc.O_PATH | Linux.Libc.O_DIRECTORY | Linux.Libc.O_CLOEXEC, 0);
        var root = new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
        if (fd < 0 || (startTime != 0 && !Linux.ProcessStat.IsSame(pid, startTime)))
        {
            root.Dispose();
            throw new NodeApiException(ErrorKind.Conflict, $"container '{name}' stopped as the copy began; start it and copy again");
        }
        return root;
    }

    /// <summary>
    /// Where a forwarded connection to a container's port goes: its address on the node's bridge,
    /// or the node's loopback for a container on the host's network.
    /// </summary>
    public async Task<System.Net.IPAddress> ForwardTargetAsync(string name)
    {
        await ViewReadyAsync().ConfigureAwait(false);
        return await Post(() =>
        {
            var container = Find(name);
            if (container.Handle is null)
            {
                throw new NodeApiException(ErrorKind.Conflict, $"container '{name}' is not running; port-forward reaches a running container (start it first)");
            }
            return container.Workload.Network switch
            {
                NetworkMode.Host => System.Net.IPAddress.Loopback,
                NetworkMode.None => throw new NodeApiException(ErrorKind.Conflict, $"container '{name}' has no network (network: none): no port to forward to"),
                _ => container.Record.Ip is { } ip && System.Net.IPAddress.TryParse(ip, out var address) ? address
                    : throw new NodeApiException(ErrorKind.Conflict, $"container '{name}' has no address on the node's bridge yet; try again once it runs"),
            };
        }).ConfigureAwait(false);
    }

    /// <summary>
    /// Checks that port-forward may reach <paramref name="port"/> on the node itself: a host port
    /// a running container publishes, or any with policy.forward_host_ports.
    /// </summary>
    public async Task CheckHostForwardAsync(int port)
    {
        await ViewReadyAsync().ConfigureAwait(false);
        var published = await Post(() => _containers.Values.Any(c => c.Handle is not null
            && (c.Record.Published ?? []).Any(p => p.Protocol == "tcp" && (p.HostPort ?? p.ContainerPort) == port))).ConfigureAwait(false);
        if (!published && !_options.Policy.ForwardHostPorts)
        {
            throw new NodeApiException(ErrorKind.Forbidden, $"port {port} on this node is not published by a running container, and the node's policy lets port-forward reach only those "
                + "(policy.forward_host_ports: false); its operator can allow every port in orchd.yaml (--allow-forward-host-ports)");
        }
    }

    private async Task ExecCheckAsync(string name, IReadOnlyList<string> command)
    {
        if (command.Count == 0)
        {
            throw new NodeApiException("exec needs a command, e.g. [\"cat\", \"/etc/hostname\"]");
        }
        await ViewReadyAsync().ConfigureAwait(false);
        if (!FindView(name).Running)
        {
            throw new NodeApiException(ErrorKind.Conflict, $"container '{name}' is not running; start it first");
        }
    }

    /// <summary>Re-reads the manifest directory now (also done on every resync when a file changed).</summary>
    public Task ReloadManifestsAsync() => Post(async () =>
    {
        LoadManifests(force: true);
        await ReconcileAsync().ConfigureAwait(false);
    });

    private SupervisedContainer Find(string name)
        => _containers.TryGetValue(name, out var container)
            ? container
            : throw NoContainer(name, Desired().GetValueOrDefault(name));

    private ContainerStatus Status(SupervisedContainer container, bool withSpec) => new()
    {
        Name = container.Record.Name,
        Image = container.Workload.Image,
        State = container.Stopping ? ContainerState.Stopping : container.Record.State,
        Pid = container.Handle?.Pid ?? 0,
        StartedAt = container.Record.StartedAt,
        Restarts = container.Record.Restarts,
        Ready = container.Workload.Job is not null ? JobReady(container) : container.Handle is not null && container.Record.Ready && !container.Stopping,
        LastExit = container.Record.LastExit,
        Message = container.Record.Message,
        Ip = container.Workload.Network is null or NetworkMode.Bridge ? container.Record.Ip : null,
        Source = _static.ContainsKey(container.Record.Name) ? "manifest" : _fleetOwned.Contains(container.Record.Name) ? "fleet" : "api",
        Labels = container.Workload.Labels,
        SpecHash = container.Record.SpecHash,
        Spec = withSpec ? container.Workload : null,
        Runs = container.Workload.Job is null ? null : [.. container.Record.Runs ?? []],
        NextRunAt = container.Workload.Job is null ? null : container.Record.NextRunAt,
    };

    public async ValueTask DisposeAsync()
    {
        _mailbox.Complete();
        _probes.Dispose();
        await Task.CompletedTask.ConfigureAwait(false);
    }
}

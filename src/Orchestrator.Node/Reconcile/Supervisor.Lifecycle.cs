using System.Text.Json;
using Orchestrator.Api.Workloads;
using Orchestrator.Node.Drivers;
using Orchestrator.Node.Health;
using Orchestrator.Node.Logs;
using Orchestrator.Node.Network;
using Orchestrator.Runtime.Spec;
using static Orchestrator.Node.Reconcile.SupervisorLog;

namespace Orchestrator.Node.Reconcile;

/// <summary>
/// A container's life on the loop: start (image, rootfs, spec, network, logs, the driver), the
/// exit and what the restart policy makes of it, stop and removal, and what the probes' results
/// do to it. Everything here runs on the mailbox; the exit watcher only completes a run's waiters.
/// </summary>
public sealed partial class Supervisor
{
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

    /// <summary>
    /// A workload with <c>stdin: true</c> gets stdin.fifo (held read-write by the container or its
    /// holder: reads wait for an attached client's input); one with <c>tty: true</c> gets tty.fifo
    /// (its terminal's output, which the log pump relays) and resize.fifo. A previous run's holder
    /// and FIFOs go first. Returns the fds of stdin.fifo and tty.fifo (-1 when not made).
    /// </summary>
    private (int Stdin, int Terminal) CreateStdioFifos(string name, Workload workload)
    {
        var dir = FifoDir(name);
        Runtime.Spawn.StdioHolder.Stop(dir);
        foreach (var fifo in (string[])["stdin.fifo", "tty.fifo", "resize.fifo"])
        {
            File.Delete(Path.Combine(dir, fifo));
        }
        var stdin = workload.Stdin == true ? LogPump.CreateFifo(dir, "stdin") : -1;
        if (workload.Tty != true)
        {
            return (stdin, -1);
        }
        try
        {
            var resize = Path.Combine(dir, "resize.fifo");
            if (Linux.Libc.mkfifo(resize, 0x180) != 0)
            {
                throw Linux.LinuxException.FromLastError("mkfifo", resize);
            }
            return (stdin, LogPump.CreateFifo(dir, "tty"));
        }
        catch when (stdin >= 0)
        {
            Linux.Libc.close(stdin);
            throw;
        }
    }

    /// <summary>
    /// A container's stdio holder outlives orchd, so it goes where the node's other helpers are
    /// (<c>PARENT/.keeper</c>, NodeCgroup), out of orchd.service's cgroup: there systemd would count
    /// it as a left-over process on every restart. Where it cannot go, it works where it is.
    /// </summary>
    private void PlaceStdioHolder(string name)
    {
        if (Runtime.Spawn.StdioHolder.Running(FifoDir(name)) is not { } pid)
        {
            return;
        }
        try
        {
            Runtime.Cgroups.NodeCgroup.PlaceKeeper(_options.NodeId, _options.CgroupParent, pid);
        }
        catch (Exception e) when (e is Runtime.Cgroups.CgroupException or IOException or UnauthorizedAccessException)
        {
            LogHolderUnplaced(_logger, name, pid, e.Message);
        }
    }

    private async Task StartAsync(SupervisedContainer container)
    {
        var name = container.Record.Name;
        var workload = container.Workload;
        var record = container.Record;
        if (workload.Job is not null)
        {
            BeginAttempt(container);
        }
        try
        {
            var (imageConfig, rootfs) = await Images.PrepareAsync(name, workload).ConfigureAwait(false);
            var bundle = Path.Combine(FifoDir(name), "bundle");
            var devices = HostDevices.Map(workload, _options.Policy);
            var variables = VariablesOf(container);
            var secrets = await ResolveSecretsAsync(workload, variables).ConfigureAwait(false);
            var spec = SpecBuilder.Build(workload, imageConfig,
                new ContainerPaths(bundle, rootfs, VolumesDir, $"{_options.CgroupParent}/{name}"), devices, secrets);
            Directory.CreateDirectory(bundle);
            File.WriteAllBytes(Path.Combine(bundle, "config.json"), JsonSerializer.SerializeToUtf8Bytes(spec, SpecJsonContext.Default.RuntimeSpec));

            var beforeStart = _network.Prepare(workload, record, _containers.Values.Where(i => i != container).Select(i => i.Record.Ip).OfType<string>());
            UpdateHosts(); // its own /etc/hosts names the neighbours before its program runs
            Save(container); // its address is on disk before anything can hold it
            // The log stamps lines with the wall clock as it reads them: a mark taken before the
            // spawn is at or before this run's first line and after the last run's (drained at its exit).
            var logFrom = DateTimeOffset.UtcNow;
            var (stdout, stderr) = LogPump.CreateFifos(FifoDir(name));
            var (stdin, terminal) = (-1, -1);
            TaskHandle handle;
            try
            {
                (stdin, terminal) = CreateStdioFifos(name, workload);
                AttachLogs(name);
                handle = _driver.Start(new TaskConfig(name, bundle, stdout, stderr, beforeStart)
                {
                    Runtime = workload.Runtime,
                    Stdin = stdin,
                    Tty = workload.Tty == true,
                    TerminalOutput = terminal,
                    FifoDir = FifoDir(name),
                });
            }
            catch
            {
                _network.Unpublish(container.Record); // only what this start published (the record says), nothing of another's
                throw;
            }
            finally
            {
                foreach (var fd in (int[])[stdout, stderr, stdin, terminal])
                {
                    if (fd >= 0)
                    {
                        Linux.Libc.close(fd);
                    }
                }
            }
            PlaceStdioHolder(name);
            container.Exited = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            container.SeenExit = null;
            container.EndingBecause = null;
            container.Handle = handle;
            container.Devices = devices;
            // Watched before anything else can fail: a running container must never go unwatched.
            _driver.Watch(handle, (h, exit) => OnExit(container, h, exit));
            record.Published = workload.Network is null or NetworkMode.Bridge && workload.Ports is { Count: > 0 } ports ? [.. ports] : null;
            if (record.StartedAt is not null)
            {
                record.Restarts++;
            }
            record.State = ContainerState.Running;
            record.VariablesHash = VariablesHash(variables);
            record.Pid = handle.Pid;
            record.PidStartTime = handle.PidStartTime;
            record.StartedAt = _clock.GetUtcNow();
            if (record.LogFrom is { } last)
            {
                record.PreviousLogFrom = last;
                record.PreviousLogTo = logFrom;
            }
            record.LogFrom = logFrom;
            record.NextRestartAt = null;
            record.Started = workload.Probes?.Startup is null;
            record.Ready = workload.Probes?.Readiness is null;
            record.Message = null;
            Save(container);
            StartProbes(container);
            UpdateHosts();
            LogStarted(_logger, name, handle.Pid, record.Restarts);
            Emit("container.started", name, $"started (pid {handle.Pid}, restarts {record.Restarts}, image {workload.Image})");
        }
        catch (Exception e) when (ErrorKinds.Of(e) is not null || e is IOException or InvalidOperationException or HttpRequestException or UnauthorizedAccessException)
        {
            LogStartFailed(_logger, name, e.Message);
            Emit("container.start-failed", name, e.Message);
            BackOffFailedStart(container, e.Message);
            Save(container);
        }
        Changed?.Invoke(name);
    }

    /// <summary>
    /// A start that failed (or a step before it, such as a pull) counts as an exit with no code:
    /// it backs off by the restart policy, and is retried when the backoff ends.
    /// </summary>
    private void BackOffFailedStart(SupervisedContainer container, string message)
    {
        var record = container.Record;
        record.Message = message;
        var now = _clock.GetUtcNow();
        var plan = RestartTracker.OnExit(RestartOf(container.Workload), record, null, now, now);
        record.State = plan.Decision == RestartDecision.Restart ? ContainerState.Backoff : ContainerState.Failed;
        record.NextRestartAt = plan.Decision == RestartDecision.Restart ? plan.At : null;
        if (plan.Decision == RestartDecision.Restart)
        {
            ReconcileAfter(plan.Delay);
        }
        else if (container.Workload.Job is not null && record.RunStartedAt is not null)
        {
            EndRun(container, "failed", null, message);
        }
    }

    /// <summary>
    /// A reconcile pass when a backoff ends, not at the next resync. A timer may fire a little before
    /// the wall clock says the time has come (they run on different clocks): a margin, so that the
    /// restart happens then. Posted as soon as the timer fires (synchronously: a fake clock's
    /// Advance has posted it when it returns).
    /// </summary>
    private void ReconcileAfter(TimeSpan delay)
        => _ = Task.Delay(delay + TimeSpan.FromMilliseconds(25), _clock)
            .ContinueWith(_ => Post(ReconcileAsync), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

    /// <summary>Called by the driver's watcher thread: completes the waiters at once, then updates state on the loop.</summary>
    private void OnExit(SupervisedContainer container, TaskHandle handle, TaskExit exit)
    {
        // The container was captured when the watch began: nothing here touches the loop's dictionaries.
        if (ReferenceEquals(Volatile.Read(ref container.HandleField), handle))
        {
            container.SeenExit = exit;
            container.Exited.TrySetResult();
        }
        _ = Post(() =>
        {
            if (ReferenceEquals(container.Handle, handle))
            {
                Exited(container, exit);
                Changed?.Invoke(container.Record.Name);
            }
            return Task.CompletedTask;
        });
    }

    private void Exited(SupervisedContainer container, TaskExit exit)
    {
        var record = container.Record;
        container.Handle = null;
        container.Exited.TrySetResult();
        container.Probes?.Cancel();
        container.Probes = null;
        var reason = container.EndingBecause ?? (exit.OomKilled ? "oom-killed" : "exited");
        record.LastExit = new ExitRecord { Code = exit.Code, OomKilled = exit.OomKilled, At = exit.At, StartedAt = record.StartedAt, Reason = reason };
        record.FinishedAt = exit.At;
        record.Pid = 0;
        record.Ready = false;
        _network.Unpublish(container.Record);
        UpdateHosts();
        LogExited(_logger, record.Name, exit.Code?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unknown", reason);
        Emit(exit.OomKilled ? "container.oom-killed" : "container.exited", record.Name,
            $"exited with code {exit.Code?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unknown"} ({reason})");
        if (container.EndingBecause == "deadline")
        {
            record.State = ContainerState.Failed;
            EndRun(container, "deadline-exceeded", exit.Code, $"deadline of {container.Workload.Job?.DeadlineSeconds}s exceeded (job.deadlineSeconds): stopped");
            return;
        }
        if (container.EndingBecause is "stopped" or "replaced" or "removed" or "restarted")
        {
            record.State = ContainerState.Stopped;
            Save(container);
            return;
        }
        var plan = RestartTracker.OnExit(RestartOf(container.Workload), record, exit.Code, record.StartedAt ?? exit.At, exit.At);
        switch (plan.Decision)
        {
            case RestartDecision.Restart:
                record.State = ContainerState.Backoff;
                record.NextRestartAt = plan.At;
                record.Message = $"restarting in {plan.Delay.TotalSeconds:0.###}s ({reason}, code {record.LastExit.Code?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unknown"})";
                ReconcileAfter(plan.Delay);
                break;
            case RestartDecision.GiveUp:
                record.State = ContainerState.Failed;
                record.Message = $"gave up after {record.ConsecutiveFailures} restarts in a row (restart.maxRetries)";
                Emit("container.failed", record.Name, record.Message);
                break;
            default:
                record.State = ContainerState.Exited;
                break;
        }
        if (container.Workload.Job is not null && plan.Decision != RestartDecision.Restart)
        {
            EndRun(container, exit.Code == 0 ? "succeeded" : "failed", exit.Code,
                exit.Code == 0 ? null : $"exited with code {exit.Code?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unknown"} ({reason}) after {record.RunAttempts} attempt{(record.RunAttempts == 1 ? "" : "s")} (job.retries)");
        }
        Save(container);
        MemberChanged(container);
    }

    /// <summary>SIGTERM (or the workload's stopSignal), the grace period, then SIGKILL to everything in the container.</summary>
    private Task StopAsync(SupervisedContainer container, string reason) => StopAllAsync([container], reason);

    /// <summary>
    /// <see cref="StopAsync"/> for several containers at once: every one gets SIGTERM, then their
    /// grace periods run side by side (the loop waits for the longest, not for their sum: a node
    /// drained of 20 replicas that ignore SIGTERM took 20 × 10 s, its loop busy throughout), then
    /// SIGKILL for those still running. Only the waits overlap: each container's state is then
    /// updated on the loop, one after the other.
    /// </summary>
    private async Task StopAllAsync(IReadOnlyList<SupervisedContainer> containers, string reason)
    {
        var live = containers.Where(c => c.Handle is not null).ToList();
        if (live.Count == 0)
        {
            return;
        }
        foreach (var container in live)
        {
            container.EndingBecause = reason;
            container.Probes?.Cancel();
        }
        // Seen as stopping while the grace runs (the loop is busy here until the container exits):
        // `get containers` showed a deleted deployment's replicas running and ready for 10 s.
        PublishView();
        foreach (var container in live)
        {
            Changed?.Invoke(container.Record.Name);
        }
        foreach (var container in live)
        {
            // The workload's stopSignal (SIGTERM unless it says otherwise, as docker's STOPSIGNAL).
            Signal(container, Orchestrator.Api.Workloads.LinuxSettings.Signal(container.Workload.StopSignal) ?? 15, all: false);
        }
        await Task.WhenAll(live.Select(c => Task.WhenAny(c.Exited.Task,
            Task.Delay(c.Workload.StopGracePeriodSeconds is { } s ? TimeSpan.FromSeconds(s) : _options.DefaultStopGrace, _clock)))).ConfigureAwait(false);
        var stubborn = live.Where(c => !c.Exited.Task.IsCompleted).ToList();
        foreach (var container in stubborn)
        {
            Signal(container, 9, all: true);
        }
        await Task.WhenAll(stubborn.Select(c => Task.WhenAny(c.Exited.Task, Task.Delay(TimeSpan.FromSeconds(10), _clock)))).ConfigureAwait(false);
        foreach (var container in live.Where(c => c.Handle is not null))
        {
            // Processed here, not when the watcher's report reaches the loop (it is then stale).
            Exited(container, container.SeenExit ?? new TaskExit(null, false, _clock.GetUtcNow()));
        }
    }

    private void Signal(SupervisedContainer container, int signal, bool all)
    {
        try
        {
            _driver.Signal(container.Record.Name, signal, all);
        }
        catch (Exception e) when (e is InvalidOperationException or Linux.LinuxException or IOException)
        {
        }
    }

    private async Task RemoveContainerAsync(SupervisedContainer container, string reason, bool keepLogs)
    {
        var name = container.Record.Name;
        await StopAsync(container, reason).ConfigureAwait(false);
        _driver.Destroy(name);
        Runtime.Spawn.StdioHolder.Stop(FifoDir(name));
        _logs.Detach(name);
        _logs.Flush(); // the pump is done with the files before they are deleted
        try
        {
            await Images.RemoveRootfsAsync(name).ConfigureAwait(false);
        }
        catch (Exception e) when (ErrorKinds.Of(e) is not null || e is IOException or UnauthorizedAccessException)
        {
            LogCleanup(_logger, name, e.Message);
        }
        TryDelete(FifoDir(name));
        TryDelete(SecretsDir(name));
        File.Delete(Path.Combine(ContainerRecordsDir, name + ".json"));
        container.Record.Ip = null;
        if (!keepLogs)
        {
            TryDelete(LogDir(name));
        }
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

    // ---------------------------------------------------------------- network and probes (their parts run in ContainerNetwork, ProbeRunner)

    /// <summary>
    /// Every bridge container's /etc/hosts names its running neighbours, and the deployments that
    /// run elsewhere by their service addresses; this node's endpoints are noted on the way.
    /// </summary>
    private void UpdateHosts()
    {
        var onBridge = _containers.Values
            .Where(i => i.Record.Ip is not null && i.Workload.Network is null or NetworkMode.Bridge)
            .Select(i => new HostsEntry(i.Record.Name, i.Workload.Hostname ?? i.Record.Name, i.Record.Ip!, i.Handle is not null,
                Path.Combine(FifoDir(i.Record.Name), "bundle", "hosts"), Apps.AppOf(i.Workload), Apps.ServiceOf(i.Workload),
                i.Workload.Labels?.GetValueOrDefault("orch.deployment"), i.Handle is not null && i.Record.Ready && !i.Stopping))
            .ToList();
        _network.UpdateHosts(onBridge, RemoteServices?.Invoke() ?? []);
        NoteEndpoints(onBridge);
    }

    private void StartProbes(SupervisedContainer container)
    {
        var probes = container.Workload.Probes;
        if (probes is null || (probes.Startup ?? probes.Liveness ?? probes.Readiness) is null || container.Handle is null)
        {
            return;
        }
        var handle = container.Handle;
        var host = container.Workload.Network is NetworkMode.Host || container.Record.Ip is null ? "127.0.0.1" : container.Record.Ip;
        container.ProbeCounts = new ProbeTracker(probes);
        container.Probes = _probes.Start(probes, container.Record.Name, host, (kind, result) => Post(() => OnProbe(container, handle, kind, result)));
    }

    /// <summary>Applies one probe result (on the loop); returns true when a startup probe is done.</summary>
    private async Task<bool> OnProbe(SupervisedContainer container, TaskHandle handle, string kind, ProbeResult result)
    {
        if (container.Handle != handle || container.ProbeCounts is not { } counts)
        {
            return true; // a result for a run that has ended
        }
        var record = container.Record;
        var verdict = counts.Judge(kind, result, record.Ready);
        if (verdict.Kill)
        {
            await KillForProbeAsync(container, kind + "-probe", result).ConfigureAwait(false);
        }
        else if (verdict.Started)
        {
            record.Started = true;
            Save(container);
        }
        else if (kind is not "startup" and not "liveness")
        {
            var ready = verdict.Ready;
            var message = ready ? null : $"not ready: {(result.Ok ? "waiting for successThreshold" : result.Detail)}";
            if (ready != record.Ready || (!result.Ok && record.Message != message))
            {
                record.Ready = ready;
                record.Message = message;
                LogReadiness(_logger, record.Name, ready, result.Detail);
                Save(container);
                UpdateHosts(); // a deployment's name names its ready replicas only
                Changed?.Invoke(record.Name);
                MemberChanged(container);
            }
        }
        return verdict.StartupDone;
    }

    private Task KillForProbeAsync(SupervisedContainer container, string reason, ProbeResult result)
    {
        LogProbeKill(_logger, container.Record.Name, reason, result.Detail);
        Emit("container.unhealthy", container.Record.Name, $"{reason} failed ({result.Detail}); killed");
        container.Record.Message = $"{reason} failed: {result.Detail}";
        container.EndingBecause = reason;
        container.Probes?.Cancel();
        try
        {
            _driver.Signal(container.Record.Name, 9, all: true);
        }
        catch (Exception e) when (e is InvalidOperationException or Linux.LinuxException or IOException)
        {
        }
        return Task.CompletedTask;
    }
}

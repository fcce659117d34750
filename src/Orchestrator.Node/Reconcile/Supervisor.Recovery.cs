using System.Text.Json;
using Orchestrator.Api.Workloads;
using Orchestrator.Node.Drivers;
using Orchestrator.Node.StateStore;
using static Orchestrator.Node.Reconcile.SupervisorLog;

namespace Orchestrator.Node.Reconcile;

/// <summary>
/// Recovery, before the mailbox is read: the workloads and records on disk, damaged files
/// rebuilt from what survives, and the containers the previous orchd left re-adopted (or, when
/// they died meanwhile, handed to the restart policy).
/// </summary>
public sealed partial class Supervisor
{
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
        var records = new Dictionary<string, SupervisedContainerRecord>(StringComparer.Ordinal);
        foreach (var file in Directory.EnumerateFiles(ContainerRecordsDir, "*.json"))
        {
            if (ReadJson(file, ContainerRecordJsonContext.Default.SupervisedContainerRecord) is { } record)
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
                records[id] = new SupervisedContainerRecord
                {
                    Name = id, SpecHash = SpecHash(wanted), Image = wanted.Image, Workload = wanted, State = ContainerState.Running, Pid = running.Pid,
                    PidStartTime = running.PidStartTime, StartedAt = _clock.GetUtcNow(), Started = true,
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
    private bool Adopt(SupervisedContainerRecord record)
    {
        // A workload whose spec changed while orchd was away is replaced by the next pass,
        // under the spec the container was started with (record.SpecHash tells them apart).
        var workload = Desired().GetValueOrDefault(record.Name) ?? new Workload { Name = record.Name, Image = record.Image };
        var container = new SupervisedContainer(workload, record);
        _containers[record.Name] = container;
        var handle = record.State == ContainerState.Running ? _driver.Recover(record.Name) : null;
        if (handle is not null && handle.Pid == record.Pid && handle.PidStartTime == record.PidStartTime)
        {
            container.Handle = handle;
            AttachLogs(record.Name);
            _driver.Watch(handle, (h, exit) => OnExit(container, h, exit));
            StartProbes(container);
            if (!File.Exists(Path.Combine(ContainerRecordsDir, record.Name + ".json")))
            {
                Save(container); // a rebuilt record is written again, whole
            }
            return true;
        }
        if (record.State == ContainerState.Running)
        {
            // It died while no orchd was watching (or the host rebooted): an exit with no
            // code, and the restart policy decides.
            _driver.Destroy(record.Name);
            if (Directory.Exists(FifoDir(record.Name)))
            {
                AttachLogs(record.Name); // what a stdio holder kept of its last output is still in the pipe (docs/node.md)
            }
            Exited(container, new TaskExit(null, false, _clock.GetUtcNow()));
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
}

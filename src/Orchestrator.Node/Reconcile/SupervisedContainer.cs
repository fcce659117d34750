using Orchestrator.Api.Workloads;
using Orchestrator.Node.Drivers;
using Orchestrator.Node.Health;
using Orchestrator.Node.Stats;

namespace Orchestrator.Node.Reconcile;

/// <summary>
/// One workload's container as the supervisor's loop tracks it: its record (what is kept on disk)
/// and what only this orchd knows (the handle of the run, its probes, why orchd is ending it).
/// Touched on the loop only, except <see cref="HandleField"/> and <see cref="Exited"/>, which the
/// exit watcher reads and completes from its thread.
/// </summary>
internal sealed class SupervisedContainer(Workload workload, SupervisedContainerRecord record)
{
    public Workload Workload { get; set; } = workload;
    public SupervisedContainerRecord Record { get; } = record;
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
    /// <summary>The probes' counts for this run (a new one with each start of the probes).</summary>
    public ProbeTracker? ProbeCounts { get; set; }
    /// <summary>The node's devices this run has in its /dev (mapped at start, then kept in step by hot-plug); null before a start.</summary>
    public IReadOnlyList<MappedDevice>? Devices { get; set; }
    /// <summary>A scheduled job: the next run time a wake-up is already set for.</summary>
    public DateTimeOffset? WakeAt { get; set; }
    /// <summary>The last device problem logged for this container (said once, not every pass).</summary>
    public string? DeviceProblem { get; set; }
    /// <summary>Why orchd is ending this run (stop, replace, liveness), or null when the process ended by itself.</summary>
    public string? EndingBecause { get; set; }

    /// <summary>Told to stop and not yet exited: the grace period runs (reported as <c>stopping</c>).</summary>
    public bool Stopping => EndingBecause is not null && Handle is not null;
    /// <summary>The exit as the watcher saw it, before the loop has processed it.</summary>
    public TaskExit? SeenExit { get; set; }
    /// <summary>The CPU time at the last stats read by a client (orchctl top, the node API): the base of its next CPU %.</summary>
    public CpuSample? LastCpu { get; set; }
    /// <summary>The CPU time at the last heartbeat's read: the base of the next heartbeat's CPU % (what the autoscaler averages).</summary>
    public CpuSample? LastHeartbeatCpu { get; set; }
}

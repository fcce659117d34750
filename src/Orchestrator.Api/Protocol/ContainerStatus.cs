using Orchestrator.Api.Workloads;

namespace Orchestrator.Api;

/// <summary>One container as `ps` and `inspect` show it. Fields are only ever added.</summary>
public sealed class ContainerStatus
{
    public string Name { get; set; } = "";
    public string Image { get; set; } = "";
    public ContainerState State { get; set; }
    public int Pid { get; set; }
    public DateTimeOffset? StartedAt { get; set; }
    public int Restarts { get; set; }
    public bool Ready { get; set; }
    public ExitRecord? LastExit { get; set; }
    public string? Message { get; set; }
    /// <summary>The container's address on the node's bridge (none on the host's network or none).</summary>
    public string? Ip { get; set; }
    public string? Source { get; set; }
    /// <summary>A hash of the workload spec this container runs (the fleet compares it during rollouts).</summary>
    public string? SpecHash { get; set; }
    public Dictionary<string, string>? Labels { get; set; }
    /// <summary>inspect only: the workload as applied.</summary>
    public Workload? Spec { get; set; }
    /// <summary>A job's finished runs, newest last (job.history of them); null for other workloads.</summary>
    public List<JobRun>? Runs { get; set; }
    /// <summary>A scheduled job: when its next run starts (the node's clock).</summary>
    public DateTimeOffset? NextRunAt { get; set; }
}

/// <summary>One run of a job: when, how it ended, after how many attempts, and where its lines are in the log.</summary>
public sealed class JobRun
{
    /// <summary>Counts up from 1 for the container's life (a new spec starts again at 1).</summary>
    public int Number { get; set; }
    public DateTimeOffset StartedAt { get; set; }
    public DateTimeOffset FinishedAt { get; set; }
    /// <summary>succeeded, failed (its retries used up), or deadline-exceeded.</summary>
    public string Outcome { get; set; } = "";
    /// <summary>The last attempt's exit code; null when it has none (killed, never started).</summary>
    public int? ExitCode { get; set; }
    /// <summary>Attempts this run took (1 + the retries it used).</summary>
    public int Attempts { get; set; }
    public string? Message { get; set; }
}

/// <summary>A container's resource use.</summary>
public sealed class ContainerStats
{
    public string Name { get; set; } = "";
    public double CpuPercent { get; set; }
    public long CpuNanoseconds { get; set; }
    public long MemoryBytes { get; set; }
    public long? MemoryLimitBytes { get; set; }
    public long Pids { get; set; }
    public long OomKills { get; set; }
    public int Restarts { get; set; }
    public bool Ready { get; set; }
}

/// <summary>The node's capacity, what is promised to workloads (requests), and what is used now.</summary>
public sealed class NodeStatus
{
    public int CpuMilliCapacity { get; set; }
    public long MemoryCapacityBytes { get; set; }
    public int CpuMilliAllocatable { get; set; }
    public long MemoryAllocatableBytes { get; set; }
    public int CpuMilliRequested { get; set; }
    public long MemoryRequestedBytes { get; set; }
    public long MemoryUsedBytes { get; set; }
    public int Containers { get; set; }
    public int Running { get; set; }
    public int Ready { get; set; }
    public string Driver { get; set; } = "";
}

/// <summary>How a container last ended.</summary>
public sealed class ExitRecord
{
    /// <summary>null: it ended while orchd was not its parent (after an orchd restart).</summary>
    public int? Code { get; set; }
    public bool OomKilled { get; set; }
    public DateTimeOffset At { get; set; }
    /// <summary>When that run started (null in records from before this field).</summary>
    public DateTimeOffset? StartedAt { get; set; }
    /// <summary>exited, oom-killed, liveness-probe, stopped, replaced.</summary>
    public string Reason { get; set; } = "exited";
}

using System.Globalization;
using Orchestrator.Api.Workloads;
using Orchestrator.Node.Drivers;

namespace Orchestrator.Node.Stats;

/// <summary>A container's CPU time at a moment: the base of the next CPU % (kept by the supervisor's loop, per container).</summary>
public readonly record struct CpuSample(long CpuNanoseconds, DateTimeOffset At);

/// <summary>One container as the sampler needs to see it (from the view the supervisor's loop publishes).</summary>
public readonly record struct SampledContainer(ContainerStatus Summary, Workload Workload, bool Running, CpuSample? LastCpu);

/// <summary>
/// What the node's containers use (memory, pids, CPU % since the last sample) and what the node
/// has to offer (capacity, allocatable, requested). Reads the driver's cgroup stats and the
/// view it is handed; holds no state: a new CPU sample goes back to the caller, which posts it
/// to the supervisor's mailbox (the only place container state changes).
/// </summary>
public sealed class ResourceSampler(ITaskDriver driver)
{
    /// <summary>The host's memory does not change while orchd runs: read once, not per heartbeat.</summary>
    private static readonly Lazy<long> s_memTotal = new(MemTotal);

    /// <summary>The container's stats at <paramref name="now"/>, and the CPU sample they were taken at (null when not running).</summary>
    public (ContainerStats Stats, CpuSample? Sample) Sample(SampledContainer container, DateTimeOffset now)
    {
        var summary = container.Summary;
        var stats = new ContainerStats { Name = summary.Name, Restarts = summary.Restarts, Ready = summary.Ready };
        if (!container.Running || driver.Stats(summary.Name) is not { } cg)
        {
            return (stats, null);
        }
        stats.CpuNanoseconds = cg.CpuNanoseconds;
        stats.MemoryBytes = cg.MemoryBytes;
        stats.Pids = cg.Pids;
        stats.OomKills = cg.OomKills;
        if (container.Workload.Resources?.Memory is { } m && Quantities.TryParseBytes(m, out var limit))
        {
            stats.MemoryLimitBytes = limit;
        }
        // CPU % since the previous sample (or since the start): 100 is one full CPU. A sample of an
        // earlier run (taken before this one started, or above a counter that started again with a
        // fresh cgroup) does not count: the run's start does.
        var (previousNs, previousAt) = container.LastCpu is { } sample && sample.CpuNanoseconds <= cg.CpuNanoseconds
            && (summary.StartedAt is not { } started || sample.At >= started)
            ? (sample.CpuNanoseconds, sample.At) : (0L, summary.StartedAt ?? now);
        var elapsed = (now - previousAt).TotalMilliseconds * 1_000_000;
        stats.CpuPercent = elapsed > 0 ? Math.Round(100 * (cg.CpuNanoseconds - previousNs) / elapsed, 2) : 0;
        return (stats, new CpuSample(cg.CpuNanoseconds, now));
    }

    /// <summary>The node's capacity, what workloads may be promised of it, and what its running containers ask for and use.</summary>
    public NodeStatus NodeStatus(IReadOnlyCollection<SampledContainer> containers)
    {
        var status = new NodeStatus
        {
            CpuMilliCapacity = Environment.ProcessorCount * 1000,
            MemoryCapacityBytes = s_memTotal.Value,
            Containers = containers.Count,
            Running = containers.Count(v => v.Running),
            Ready = containers.Count(v => v.Running && v.Summary.Ready),
            Driver = driver.Name,
        };
        // What orchd itself and the system need stays out of what workloads are promised.
        status.CpuMilliAllocatable = Math.Max(0, status.CpuMilliCapacity - 100);
        status.MemoryAllocatableBytes = Math.Max(0, status.MemoryCapacityBytes - (64L << 20));
        foreach (var container in containers.Where(v => v.Running))
        {
            if (container.Workload.Resources?.Cpu is { } cpu && Quantities.TryParseMilliCpu(cpu, out var milli))
            {
                status.CpuMilliRequested += (int)milli;
            }
            if (container.Workload.Resources?.Memory is { } memory && Quantities.TryParseBytes(memory, out var bytes))
            {
                status.MemoryRequestedBytes += bytes;
            }
            status.MemoryUsedBytes += driver.Stats(container.Summary.Name)?.MemoryBytes ?? 0;
        }
        return status;
    }

    private static long MemTotal()
    {
        foreach (var line in File.ReadLines("/proc/meminfo"))
        {
            if (line.StartsWith("MemTotal:", StringComparison.Ordinal))
            {
                return long.Parse(line["MemTotal:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
            }
        }
        return 0;
    }
}

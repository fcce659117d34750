using Google.Protobuf.WellKnownTypes;

namespace Orchestrator.Containerd;

/// <summary>A task's resource use as the shim reads it from the task's cgroup (v1 or v2).</summary>
/// <param name="MemoryPeakBytes">The highest usage seen (v1's max_usage); 0 where the shim does not report it (v2).</param>
public sealed record TaskMetrics(long MemoryBytes, long MemoryPeakBytes, long CpuNanoseconds, long Pids, long OomKills)
{
    public const string V1TypeUrl = "io.containerd.cgroups.v1.Metrics";
    public const string V2TypeUrl = "io.containerd.cgroups.v2.Metrics";

    /// <summary>Decodes a Metrics reply's data; null for a type orchd does not know (another runtime's).</summary>
    public static TaskMetrics? Decode(Any data)
    {
        // Type urls come with or without the types.googleapis.com/ style prefix.
        var type = data.TypeUrl[(data.TypeUrl.LastIndexOf('/') + 1)..];
        switch (type)
        {
            case V1TypeUrl:
                var v1 = Api.Cgroups.V1.Metrics.Parser.ParseFrom(data.Value);
                return new TaskMetrics((long)(v1.Memory?.Usage?.Usage ?? 0), (long)(v1.Memory?.Usage?.Max ?? 0), (long)(v1.Cpu?.Usage?.Total ?? 0),
                    (long)(v1.Pids?.Current ?? 0), (long)(v1.MemoryOomControl?.OomKill ?? 0));
            case V2TypeUrl:
                var v2 = Api.Cgroups.V2.Metrics.Parser.ParseFrom(data.Value);
                return new TaskMetrics((long)(v2.Memory?.Usage ?? 0), 0, (long)(v2.Cpu?.UsageUsec ?? 0) * 1000,
                    (long)(v2.Pids?.Current ?? 0), (long)(v2.MemoryEvents?.OomKill ?? 0));
            default:
                return null;
        }
    }
}

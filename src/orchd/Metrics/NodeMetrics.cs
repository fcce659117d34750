using System.Globalization;
using Orchestrator.Fleet.Agent;
using Orchestrator.Node.Reconcile;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Daemon.Metrics;

/// <summary>
/// The node's metrics as Prometheus text: the node (capacity, what is promised, what is used),
/// each container (state, CPU, memory, restarts…), the NATS connection and the fleet role, and
/// orchd's own process. Every series carries a node label, so that text collected from many
/// nodes over NATS stays apart. Read from the supervisor's published view and the cgroups, so
/// a scrape never waits for the reconcile loop.
/// </summary>
public sealed class NodeMetrics(NodeIdentity identity, Supervisor supervisor, NodeAgent? agent)
{
    private static readonly ContainerState[] s_states = [ContainerState.Created, ContainerState.Running, ContainerState.Stopping, ContainerState.Backoff, ContainerState.Stopped, ContainerState.Exited, ContainerState.Failed];

    public async Task<string> CollectAsync()
    {
        var containers = await supervisor.ListAsync().ConfigureAwait(false);
        var status = await supervisor.NodeStatusAsync().ConfigureAwait(false);
        var node = identity.NodeName;
        var w = new PrometheusWriter();

        w.Family("orchd_build_info", MetricType.Gauge, "orchd's version and container backend; always 1")
            .Sample(1, "node", node, "node_id", identity.NodeId, "version", identity.Version, "runtime", identity.Runtime);
        w.Family("orchd_start_time_seconds", MetricType.Gauge, "when this orchd started, in seconds since the Unix epoch")
            .Sample(identity.StartedAt.ToUnixTimeMilliseconds() / 1000.0, "node", node);
        if (ResidentBytes() is { } rss)
        {
            w.Family("orchd_resident_memory_bytes", MetricType.Gauge, "orchd's own resident memory (VmRSS)").Sample(rss, "node", node);
        }

        w.Family("orchd_nats_connected", MetricType.Gauge, "1 while this node is connected to the fleet's NATS, 0 otherwise")
            .Sample(agent?.IsConnected == true ? 1 : 0, "node", node);
        w.Family("orchd_fleet_scheduler", MetricType.Gauge, "1 while this node holds the scheduler lease, 0 otherwise")
            .Sample(agent?.Member?.IsLeader == true ? 1 : 0, "node", node);

        w.Family("orchd_node_cpu_capacity_millicores", MetricType.Gauge, "CPUs of this node, in millicores").Sample(status.CpuMilliCapacity, "node", node);
        w.Family("orchd_node_cpu_allocatable_millicores", MetricType.Gauge, "CPU that workloads may request, in millicores").Sample(status.CpuMilliAllocatable, "node", node);
        w.Family("orchd_node_cpu_requested_millicores", MetricType.Gauge, "CPU requested by running containers, in millicores").Sample(status.CpuMilliRequested, "node", node);
        w.Family("orchd_node_memory_capacity_bytes", MetricType.Gauge, "memory of this node").Sample(status.MemoryCapacityBytes, "node", node);
        w.Family("orchd_node_memory_allocatable_bytes", MetricType.Gauge, "memory that workloads may request").Sample(status.MemoryAllocatableBytes, "node", node);
        w.Family("orchd_node_memory_requested_bytes", MetricType.Gauge, "memory requested by running containers").Sample(status.MemoryRequestedBytes, "node", node);
        w.Family("orchd_node_memory_used_bytes", MetricType.Gauge, "memory used by running containers (their cgroups)").Sample(status.MemoryUsedBytes, "node", node);

        w.Family("orchd_node_reconcile_passes_total", MetricType.Counter, "reconcile passes the node agent completed since orchd started (a stalled loop stops counting)")
            .Sample(supervisor.Passes.Completed, "node", node);

        // Every known state, zeros included: a state's series does not vanish when its count drops to 0.
        w.Family("orchd_node_containers", MetricType.Gauge, "containers on this node by state");
        foreach (var state in s_states.Union(containers.Select(c => c.State)))
        {
            w.Sample(containers.Count(c => c.State == state), "node", node, "state", WireNames.Of(state));
        }

        var rows = containers.Select(c => (Status: c, Stats: c.State == ContainerState.Running ? supervisor.Driver.Stats(c.Name) : null)).ToList();
        var limits = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (container, _) in rows)
        {
            if (await MemoryLimitAsync(container.Name).ConfigureAwait(false) is { } limit)
            {
                limits[container.Name] = limit;
            }
        }
        Family(w, rows, "orchd_container_info", MetricType.Gauge, "a container's image and state; always 1",
            r => 1, r => ["image", r.Status.Image, "state", WireNames.Of(r.Status.State)]);
        Family(w, rows, "orchd_container_ready", MetricType.Gauge, "1 when the container passes its readiness probe (or has none and runs)",
            r => r.Status.Ready ? 1 : 0);
        Family(w, rows, "orchd_container_restarts_total", MetricType.Counter, "restarts of the container by its restart policy",
            r => r.Status.Restarts);
        Family(w, rows, "orchd_container_start_time_seconds", MetricType.Gauge, "when the container's current process started, in seconds since the Unix epoch",
            r => r.Status.StartedAt is { } at && r.Status.State == ContainerState.Running ? at.ToUnixTimeMilliseconds() / 1000.0 : null);
        Family(w, rows, "orchd_container_cpu_seconds_total", MetricType.Counter, "CPU time used by the running container's cgroup",
            r => r.Stats is { } s ? s.CpuNanoseconds / 1e9 : null);
        Family(w, rows, "orchd_container_memory_bytes", MetricType.Gauge, "memory used by the running container's cgroup",
            r => r.Stats?.MemoryBytes);
        Family(w, rows, "orchd_container_memory_limit_bytes", MetricType.Gauge, "the container's memory limit (resources.memory), when it has one",
            r => limits.TryGetValue(r.Status.Name, out var limit) ? limit : null);
        Family(w, rows, "orchd_container_pids", MetricType.Gauge, "processes in the running container",
            r => r.Stats?.Pids);
        Family(w, rows, "orchd_container_oom_kills_total", MetricType.Counter, "processes of the running container killed by the OOM killer",
            r => r.Stats?.OomKills);
        Family(w, rows, "orchd_container_log_dropped_bytes_total", MetricType.Counter, "bytes of the container's output dropped because its log could not be written (a full disk), since orchd started",
            r => supervisor.LogBytesDropped(r.Status.Name));
        return w.ToString();

        void Family(PrometheusWriter writer, List<(ContainerStatus Status, Orchestrator.Runtime.Cgroups.CgroupStats? Stats)> items, string name, MetricType type, string help,
            Func<(ContainerStatus Status, Orchestrator.Runtime.Cgroups.CgroupStats? Stats), double?> value,
            Func<(ContainerStatus Status, Orchestrator.Runtime.Cgroups.CgroupStats? Stats), string[]>? labels = null)
        {
            var started = false;
            foreach (var item in items)
            {
                if (value(item) is not { } v)
                {
                    continue;
                }
                if (!started)
                {
                    writer.Family(name, type, help);
                    started = true;
                }
                writer.Sample(v, ["node", node, "container", item.Status.Name, .. labels?.Invoke(item) ?? []]);
            }
        }
    }

    private async Task<long?> MemoryLimitAsync(string name)
    {
        try
        {
            var detail = await supervisor.InspectAsync(name).ConfigureAwait(false);
            return detail.Spec?.Resources?.Memory is { } memory && Quantities.TryParseBytes(memory, out var bytes) ? bytes : null;
        }
        catch (NodeApiException)
        {
            return null; // removed since the list was taken
        }
    }

    private static long? ResidentBytes()
    {
        try
        {
            // statm: size resident shared … in pages.
            var fields = File.ReadAllText("/proc/self/statm").Split(' ');
            return long.Parse(fields[1], CultureInfo.InvariantCulture) * Environment.SystemPageSize;
        }
        catch (Exception e) when (e is IOException or FormatException or IndexOutOfRangeException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}

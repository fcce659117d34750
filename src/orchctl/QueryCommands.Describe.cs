using System.Globalization;
using System.Text.Json;
using Orchestrator.Client;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Ctl;

/// <summary>describe node|deployment|container: one object in full, with its recent events.</summary>
internal static partial class QueryCommands
{
    private static void EventsSection(List<NodeEvent> events)
    {
        Console.Out.WriteLine("Events:");
        if (events.Count == 0)
        {
            Console.Out.WriteLine("  <none in the last hour>");
            return;
        }
        Indented(["TIME", "NODE", "KIND", "SUBJECT", "MESSAGE"], events.Select(e => new[] { Output.Time(e.At), e.Node, e.Kind, e.Subject, e.Message }));
    }

    /// <summary>A table under a section heading, indented by two spaces.</summary>
    private static void Indented(string[] header, IEnumerable<string[]> rows)
    {
        using var writer = new StringWriter();
        Output.Table(header, rows, writer);
        foreach (var line in writer.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            Console.Out.WriteLine("  " + line);
        }
    }

    private static void Field(string label, string? value, int indent = 0)
        => Console.Out.WriteLine($"{new string(' ', indent)}{(label + ":").PadRight(Math.Max(1, 22 - indent))}{value ?? "-"}".TrimEnd());

    private static string Percent(long part, long whole) => whole <= 0 ? "" : string.Create(CultureInfo.InvariantCulture, $" ({100.0 * part / whole:0}%)");

    // ---- describe ----

    private static async Task<int> DescribeNodeAsync(string name, CommandContext context)
    {
        var nodes = await context.NodesAsync().ConfigureAwait(false);
        var n = nodes.FirstOrDefault(x => x.Info.Node == name)
            ?? throw new NodeRequestException(ErrorKind.NotFound, $"no node '{name}' has joined the fleet; `orchctl get nodes` lists the nodes");
        var info = n.Info;
        Field("Name", info.Node);
        Field("State", WireNames.Of(n.State) + (n.Revoked ? ", revoked (its credentials are void: orchctl delete node, then enrol it again)" : n.Draining ? ", draining" : n.Cordoned ? ", cordoned" : ""));
        Field("Role", n.Leader ? "scheduler (holds the lease)" : "worker");
        Field("Heartbeat", $"{n.HeartbeatAgeSeconds.ToString("0.#", CultureInfo.InvariantCulture)}s ago");
        Field("Node ID", info.NodeId);
        Field("Version", info.Version);
        Field("System", $"{info.Arch}, kernel {info.Kernel}, runtime {info.Runtime}{(info.Status is { Driver.Length: > 0 } d ? $" (driver {d.Driver})" : "")}");
        Field("Started", $"{Output.Time(info.StartedAt)} (up {Output.Duration(TimeSpan.FromSeconds(info.UptimeSeconds))})");
        Console.Out.WriteLine("Labels:");
        foreach (var (key, value) in info.Labels.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            Console.Out.WriteLine($"  {key}={value}");
        }
        if (info.Labels.Count == 0)
        {
            Console.Out.WriteLine("  <none>");
        }
        if (info.Warnings is { Count: > 0 } warnings)
        {
            Console.Out.WriteLine("Warnings:");
            foreach (var warning in warnings)
            {
                Console.Out.WriteLine($"  {warning}");
            }
        }
        if (info.Status is { } s)
        {
            Console.Out.WriteLine("Capacity:");
            Field("cpu", $"{s.CpuMilliCapacity}m", 2);
            Field("memory", Output.Bytes(s.MemoryCapacityBytes), 2);
            Console.Out.WriteLine("Allocatable:");
            Field("cpu", $"{s.CpuMilliAllocatable}m", 2);
            Field("memory", Output.Bytes(s.MemoryAllocatableBytes), 2);
            Console.Out.WriteLine("Requested (by its workloads):");
            Field("cpu", $"{s.CpuMilliRequested}m{Percent(s.CpuMilliRequested, s.CpuMilliAllocatable)}", 2);
            Field("memory", $"{Output.Bytes(s.MemoryRequestedBytes)}{Percent(s.MemoryRequestedBytes, s.MemoryAllocatableBytes)}", 2);
            Console.Out.WriteLine("Usage:");
            var cpu = info.Containers?.Sum(c => c.CpuPercent ?? 0) ?? 0;
            Field("cpu", string.Create(CultureInfo.InvariantCulture, $"{cpu * 10:0}m{Percent((long)(cpu * 10), s.CpuMilliCapacity)}"), 2);
            Field("memory", $"{Output.Bytes(s.MemoryUsedBytes)}{Percent(s.MemoryUsedBytes, s.MemoryCapacityBytes)}", 2);
            Field("containers", $"{s.Containers} ({s.Running} running, {s.Ready} ready)", 2);
        }
        Console.Out.WriteLine("Conditions:");
        Indented(["TYPE", "STATUS", "MESSAGE"],
        [
            ["Ready", n.State == NodeCondition.Ready ? "True" : "False", n.State == NodeCondition.Ready ? "heartbeats arrive" : $"{WireNames.Of(n.State)}: no heartbeat for {n.HeartbeatAgeSeconds.ToString("0", CultureInfo.InvariantCulture)}s"],
            ["Schedulable", n.Cordoned || n.Draining ? "False" : "True", n.Draining ? "draining: its replicas move elsewhere (orchctl uncordon)" : n.Cordoned ? "cordoned: no new replicas (orchctl uncordon)" : "gets new replicas"],
            ["Scheduler", n.Leader ? "True" : "False", n.Leader ? "this node places the fleet's replicas" : "-"],
        ]);
        Console.Out.WriteLine("Containers:");
        if (info.Containers is { Count: > 0 } containers)
        {
            Indented(["NAME", "STATE", "READY", "CPU %", "MESSAGE"], containers.OrderBy(c => c.Name, StringComparer.Ordinal).Select(c => new[]
            {
                c.Name, WireNames.Of(c.State), c.Ready ? "yes" : "no", c.CpuPercent is { } percent ? percent.ToString("0.0", CultureInfo.InvariantCulture) : "-", c.Message ?? "",
            }));
        }
        else
        {
            Console.Out.WriteLine("  <none>");
        }
        EventsSection(await RecentEventsAsync(context, e => e.Node == name).ConfigureAwait(false));
        return 0;
    }

    private static async Task<int> DescribeDeploymentAsync(string name, CommandContext context)
    {
        var view = (await context.Fleet.GetDeploymentsAsync().ConfigureAwait(false)).FirstOrDefault(d => d.Deployment.Name == name)
            ?? throw new NodeRequestException(ErrorKind.NotFound, $"no deployment '{name}' in the fleet; `orchctl get deployments` lists them");
        var d = view.Deployment;
        var s = view.Status;
        Field("Name", d.Name);
        Field("Revision", Output.Int((long)d.ShownRevision()));
        var desired = d.IsGlobal() ? $"global: one per matching node ({(s is null ? "-" : Output.Int(s.Desired))})" : $"{d.Replicas} desired";
        Field("Replicas", s is null
            ? $"{desired}, not scheduled yet"
            : $"{desired}, {s.Placed} placed, {s.Updated} updated, {s.UpdatedReady} updated and ready{(s.Surge > 0 ? $", {s.Surge} surge" : "")}{(s.Pending > 0 ? $", {s.Pending} on offline nodes" : "")}");
        Field("Selector", d.Selector is { Count: > 0 } sel ? Output.Labels(sel) : "<any node>");
        Field("Placement", (d.Strategy ?? "spread") + (d.SpreadBy is { } by ? $", spread by {by}" : "") + (d.AntiAffinity ? ", one replica per node" : ""));
        Field("Signed", d.Signature is { } sig ? $"by {sig.Key} (serial {sig.Serial})" : "no");
        var t = d.Template;
        Console.Out.WriteLine("Template:");
        Field("Image", t.Image, 2);
        if (t.Command is { Count: > 0 } || t.Args is { Count: > 0 })
        {
            Field("Command", string.Join(' ', (t.Command ?? []).Concat(t.Args ?? []).Select(Quote)), 2);
        }
        if (t.Resources is { } r)
        {
            Field("Resources", string.Join(", ", new[] { r.Cpu is null ? null : $"cpu {r.Cpu}", r.Memory is null ? null : $"memory {r.Memory}", r.Pids is null ? null : $"pids {r.Pids}" }.Where(x => x is not null)), 2);
        }
        if (t.Ports is { Count: > 0 } ports)
        {
            Field("Ports", string.Join(", ", ports.Select(p => $"{p.HostPort ?? p.ContainerPort}→{p.ContainerPort}/{p.Protocol}")), 2);
        }
        if (t.Labels is { Count: > 0 } labels)
        {
            Field("Labels", Output.Labels(labels), 2);
        }
        if (t.Probes is { } probes)
        {
            Field("Probes", string.Join(", ", new[] { probes.Startup is null ? null : "startup", probes.Liveness is null ? null : "liveness", probes.Readiness is null ? null : "readiness" }.Where(x => x is not null)), 2);
        }
        var rollout = d.Rollout ?? new RolloutSpec();
        Console.Out.WriteLine("Rollout:");
        Field("Strategy", $"maxUnavailable {rollout.MaxUnavailable}{(rollout.MaxUnavailablePercent is { } mp ? $" or {mp}%" : "")}, maxSurge {rollout.MaxSurge}{(rollout.MaxFailed > 0 ? $", maxFailed {rollout.MaxFailed}" : "")}, deadline {rollout.ProgressDeadlineSeconds}s, auto rollback {(rollout.AutoRollback ? "on" : "off")}{(rollout.Paused ? ", paused" : "")}", 2);
        if (rollout.Canary is { } canary)
        {
            var who = canary.Selector is { Count: > 0 } cs ? $"nodes with {Output.Labels(cs)}" : canary.Replicas is { } cr ? $"{cr} replica(s)" : canary.Percent is { } cp ? $"{cp}% of the replicas" : "-";
            Field("Canary", $"{who}, held ready for {canary.HoldSeconds}s", 2);
        }
        if (rollout.Waves is { Count: > 0 } waves)
        {
            Field("Waves", string.Join(", ", waves.Select(w => $"{w.Describe()} (hold {w.HoldSeconds}s)")) + ", then the rest", 2);
        }
        if (s is not null)
        {
            Field("Phase", WireNames.Of(s.Phase) + (s.Revision != (d.Revision ?? 0) ? " (for an earlier revision)" : ""), 2);
            Field("Wave", s.Wave ?? "-", 2);
            Field("Updated", $"{s.Updated} of {s.Desired} ({s.UpdatedReady} ready)", 2);
            Field("Surge", Output.Int(s.Surge), 2);
            if (s.CanaryReadySince is { } since)
            {
                Field("Canary ready since", $"{Output.Time(since)} ({Output.Age(since)} ago){(s.CanaryPassed ? ", passed" : "")}", 2);
            }
            Field("Last progress", s.LastProgressAt == default ? "-" : $"{Output.Time(s.LastProgressAt)} ({Output.Age(s.LastProgressAt)} ago)", 2);
            if (s.RolledBack is { } why)
            {
                Field("Rolled back", why, 2);
            }
            if (view.RolledBackTo is { } to)
            {
                Field("Runs", $"revision {to.Generation ?? to.Revision}'s template (image {to.Template.Image}): the scheduler rolled revision {d.ShownRevision()} back; apply a new revision to go on", 2);
            }
        }
        if (d.Autoscale is { } auto)
        {
            Console.Out.WriteLine("Autoscale:");
            Field("Range", $"{auto.Min} to {auto.Max} replicas, cooldown {auto.CooldownSeconds}s", 2);
            Field("Target", auto.Metric is { } metric ? $"{metric.Subject}: {metric.TargetPerReplica.ToString(CultureInfo.InvariantCulture)} per replica" : $"{auto.TargetCpuPercent.ToString(CultureInfo.InvariantCulture)}% CPU", 2);
            if (s?.LastScale is { } last)
            {
                Field("Last change", $"{last} ({Output.Age(s.LastScaledAt)} ago)", 2);
            }
        }
        Console.Out.WriteLine("Replicas:");
        if (s is { Replicas.Count: > 0 })
        {
            var nodes = await context.NodesAsync().ConfigureAwait(false);
            var byNode = nodes.ToDictionary(n => n.Info.Node, StringComparer.Ordinal);
            Indented(["REPLICA", "NODE", "NODE STATE", "STATE", "READY"], s.Replicas.OrderBy(r => ReplicaIndex(r.Key)).ThenBy(r => r.Key, StringComparer.Ordinal).Select(r =>
            {
                var node = byNode.GetValueOrDefault(r.Value);
                var container = node?.Info.Containers?.FirstOrDefault(c => c.Name == r.Key);
                return new[] { r.Key, r.Value, WireNames.Of(node?.State ?? NodeCondition.Unknown), container is null ? "not reported" : WireNames.Of(container.State), container is null ? "-" : container.Ready ? "yes" : "no" };
            }));
        }
        else
        {
            Console.Out.WriteLine("  <none placed>");
        }
        if (s is { Unschedulable.Count: > 0 })
        {
            Console.Out.WriteLine("Unschedulable:");
            foreach (var reason in s.Unschedulable)
            {
                Console.Out.WriteLine($"  {reason}");
            }
        }
        EventsSection(await RecentEventsAsync(context, e => e.Subject == name || e.Subject.StartsWith(name + "-", StringComparison.Ordinal) && e.Subject[(name.Length + 1)..].All(char.IsAsciiDigit)).ConfigureAwait(false));
        return 0;
    }

    private static int ReplicaIndex(string replica)
        => replica.LastIndexOf('-') is var dash and >= 0 && int.TryParse(replica[(dash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var i) ? i : int.MaxValue;

    private static string Quote(string arg) => arg.Length > 0 && arg.All(c => char.IsAsciiLetterOrDigit(c) || "-_./:=,@%+".Contains(c, StringComparison.Ordinal)) ? arg : "'" + arg.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    private static async Task<int> DescribeContainerAsync(string name, CommandContext context)
    {
        var node = await context.FindContainerNodeAsync(name).ConfigureAwait(false);
        var c = await context.Node(node).InspectAsync(name).ConfigureAwait(false);
        Field("Name", c.Name);
        Field("Node", node);
        Field("Image", c.Image);
        Field("State", WireNames.Of(c.State));
        Field("Ready", c.Ready ? "yes" : "no");
        Field("PID", c.Pid > 0 ? Output.Int(c.Pid) : "-");
        Field("Started", c.StartedAt is { } started ? $"{Output.Time(started)} ({Output.Age(started)} ago)" : "-");
        Field("Restarts", Output.Int(c.Restarts));
        if (c.LastExit is { } exit)
        {
            using var doc = JsonDocument.Parse(JsonSerializer.SerializeToUtf8Bytes(c, FleetJsonContext.Default.ContainerStatus));
            var last = doc.RootElement.GetProperty("lastExit");
            var parts = last.EnumerateObject().Select(p => $"{p.Name} {(p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString() : p.Value.GetRawText())}");
            Field("Last exit", string.Join(", ", parts));
            _ = exit;
        }
        Field("Message", c.Message ?? "-");
        Field("Source", c.Source switch { "fleet" => $"fleet (deployment {DeploymentOf(c)})", "manifest" => "the node's manifest directory", var other => other ?? "-" });
        Field("Spec hash", c.SpecHash ?? "-");
        Console.Out.WriteLine("Labels:");
        foreach (var (key, value) in (c.Labels ?? []).OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            Console.Out.WriteLine($"  {key}={value}");
        }
        if (c.Labels is not { Count: > 0 })
        {
            Console.Out.WriteLine("  <none>");
        }
        if (c.Spec is { } spec)
        {
            Console.Out.WriteLine("Spec:");
            if (spec.Command is { Count: > 0 } || spec.Args is { Count: > 0 })
            {
                Field("Command", string.Join(' ', (spec.Command ?? []).Concat(spec.Args ?? []).Select(Quote)), 2);
            }
            if (spec.Env is { Count: > 0 } env)
            {
                Field("Env", string.Join(", ", env.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={kv.Value}")), 2);
            }
            if (spec.Resources is { } r)
            {
                Field("Resources", string.Join(", ", new[] { r.Cpu is null ? null : $"cpu {r.Cpu}", r.Memory is null ? null : $"memory {r.Memory}", r.Pids is null ? null : $"pids {r.Pids}" }.Where(x => x is not null)), 2);
            }
            Field("Network", WireNames.Of(spec.Network ?? NetworkMode.Bridge), 2);
            if (spec.Ports is { Count: > 0 } ports)
            {
                Field("Ports", string.Join(", ", ports.Select(p => $"{p.HostPort ?? p.ContainerPort}→{p.ContainerPort}/{p.Protocol}")), 2);
            }
            if (spec.Volumes is { Count: > 0 } volumes)
            {
                Field("Volumes", string.Join(", ", volumes.Select(v => $"{v.Name ?? v.HostPath}→{v.Target}{(v.ReadOnly ? " (ro)" : "")}")), 2);
            }
            if (spec.Restart is { } restart)
            {
                Field("Restart", $"{WireNames.Of(restart.Policy)}{(restart.MaxRetries > 0 ? $", at most {restart.MaxRetries} retries" : "")}", 2);
            }
            if (spec.Job is { } job)
            {
                Field("Job", string.Join(", ", new[]
                {
                    job.Schedule is null ? "one run" : $"schedule {job.Schedule}{(job.TimeZone is null ? " (the node's time zone)" : $" ({job.TimeZone})")}",
                    $"{job.Retries ?? JobSpec.DefaultRetries} retries",
                    job.DeadlineSeconds is { } deadline ? $"deadline {deadline}s" : null,
                    $"keeps {job.History ?? JobSpec.DefaultHistory} runs",
                }.OfType<string>()), 2);
            }
        }
        if (c.Runs is { } runs)
        {
            Field("Next run", c.NextRunAt is { } next ? $"{Output.Time(next)} (in {Output.Duration(next - DateTimeOffset.UtcNow)})" : "-");
            Console.Out.WriteLine("Runs:");
            if (runs.Count == 0)
            {
                Console.Out.WriteLine("  <none yet>");
            }
            else
            {
                var rows = runs.AsEnumerable().Reverse().Select(r => new[]
                {
                    Output.Int(r.Number), r.Outcome, r.ExitCode is { } code ? Output.Int(code) : "-", Output.Int(r.Attempts),
                    Output.Time(r.StartedAt), Output.Duration(r.FinishedAt - r.StartedAt), r.Message ?? "",
                }).ToList();
                Output.Table(["  RUN", "OUTCOME", "EXIT", "ATTEMPTS", "STARTED", "TOOK", "MESSAGE"], [.. rows.Select(r => (string[])["  " + r[0], .. r[1..]])]);
                Console.Out.WriteLine($"  (orchctl logs {name} --run N shows a run's lines)");
            }
        }
        EventsSection(await RecentEventsAsync(context, e => e.Subject == name && e.Node == node).ConfigureAwait(false));
        return 0;
    }
}

using System.Text.Json;
using Orchestrator.Api.Workloads;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Fleet.Tests;

/// <summary>
/// The closed sets that used to be strings (container state, restart policy, network, runtime) are
/// enums now; on the wire and on disk they are the same strings as before, and a name this version
/// does not know (a newer peer's) reads as Unknown rather than failing the whole message.
/// </summary>
public sealed class WireEnumTests
{
    // The strings these fields carried before they were enums: written out here, not derived, so
    // that a renamed member or attribute fails this test.
    private static readonly (ContainerState Value, string Name)[] States =
    [
        (ContainerState.Created, "created"), (ContainerState.Running, "running"), (ContainerState.Backoff, "backoff"),
        (ContainerState.Exited, "exited"), (ContainerState.Failed, "failed"), (ContainerState.Stopped, "stopped"),
        (ContainerState.Stopping, "stopping"),
    ];

    private static readonly (RestartPolicyKind Value, string Name)[] Policies =
        [(RestartPolicyKind.Always, "always"), (RestartPolicyKind.OnFailure, "on-failure"), (RestartPolicyKind.Never, "never")];

    private static readonly (NetworkMode Value, string Name)[] Networks =
        [(NetworkMode.Bridge, "bridge"), (NetworkMode.Host, "host"), (NetworkMode.None, "none")];

    private static readonly (WorkloadRuntime Value, string Name)[] Runtimes =
        [(WorkloadRuntime.Native, "native"), (WorkloadRuntime.Containerd, "containerd")];

    private static readonly (NodeCondition Value, string Name)[] NodeConditions =
        [(NodeCondition.Ready, "ready"), (NodeCondition.Unreachable, "unreachable"), (NodeCondition.Lost, "lost")];

    private static readonly (RolloutPhase Value, string Name)[] Phases =
    [
        (RolloutPhase.Progressing, "progressing"), (RolloutPhase.Paused, "paused"), (RolloutPhase.Complete, "complete"),
        (RolloutPhase.Degraded, "degraded"), (RolloutPhase.RolledBack, "rolled-back"), (RolloutPhase.Failed, "failed"),
    ];

    [Fact]
    public void Every_member_has_its_old_string_and_no_member_is_left_out()
    {
        static void Check<T>((T Value, string Name)[] table) where T : struct, Enum
        {
            Assert.Equal(table.Select(t => t.Value), WireNames.Known<T>());
            Assert.Equal(table.Select(t => t.Name), WireNames.KnownNames<T>());
            foreach (var (value, name) in table)
            {
                Assert.Equal(name, WireNames.Of(value));
                Assert.True(WireNames.TryParse<T>(name, out var back));
                Assert.Equal(value, back);
            }
            Assert.Equal("unknown", WireNames.Of(default(T)));
        }
        Check(States);
        Check(Policies);
        Check(Networks);
        Check(Runtimes);
        Check(NodeConditions);
        Check(Phases);
    }

    [Fact]
    public void Node_conditions_and_rollout_phases_round_trip_and_a_newer_value_reads_as_unknown()
    {
        foreach (var (value, name) in Phases)
        {
            var json = JsonSerializer.Serialize(new DeploymentStatus { Name = "web", Phase = value }, FleetJsonContext.Default.DeploymentStatus);
            Assert.Contains($"\"phase\":\"{name}\"", json, StringComparison.Ordinal);
            Assert.Equal(value, JsonSerializer.Deserialize(json, FleetJsonContext.Default.DeploymentStatus)!.Phase);
        }
        var newer = JsonSerializer.Deserialize("{\"name\":\"web\",\"phase\":\"waiting-for-approval\",\"desired\":3}", FleetJsonContext.Default.DeploymentStatus)!;
        Assert.Equal((RolloutPhase.Unknown, 3), (newer.Phase, newer.Desired));
        var info = new NodeInfo { Node = "gw-01", NodeId = "0123456789abcdef0123456789abcdef", Version = "0.1.0", Arch = "x64", Kernel = "6.1.0", Runtime = "native" };
        foreach (var (value, name) in NodeConditions)
        {
            var json = JsonSerializer.Serialize(new NodeEntry { Info = info, State = value }, FleetJsonContext.Default.NodeEntry);
            Assert.Contains($"\"state\":\"{name}\"", json, StringComparison.Ordinal);
            Assert.Equal(value, JsonSerializer.Deserialize(json, FleetJsonContext.Default.NodeEntry)!.State);
        }
    }

    [Fact]
    public void Container_states_round_trip_as_their_strings_in_status_heartbeat_and_state_file()
    {
        foreach (var (value, name) in States)
        {
            var status = JsonSerializer.Serialize(new ContainerStatus { Name = "web", State = value }, FleetJsonContext.Default.ContainerStatus);
            Assert.Contains($"\"state\":\"{name}\"", status, StringComparison.Ordinal);
            Assert.Equal(value, JsonSerializer.Deserialize(status, FleetJsonContext.Default.ContainerStatus)!.State);

            var brief = JsonSerializer.Serialize(new ContainerBrief { Name = "web", State = value }, FleetJsonContext.Default.ContainerBrief);
            Assert.Equal($"{{\"name\":\"web\",\"state\":\"{name}\",\"ready\":false}}", brief);
            Assert.Equal(value, JsonSerializer.Deserialize(brief, FleetJsonContext.Default.ContainerBrief)!.State);

            var record = JsonSerializer.Serialize(new SupervisedContainerRecord { Name = "web", State = value }, ContainerRecordJsonContext.Default.SupervisedContainerRecord);
            Assert.Contains($"\"state\": \"{name}\"", record, StringComparison.Ordinal);
            Assert.Equal(value, JsonSerializer.Deserialize(record, ContainerRecordJsonContext.Default.SupervisedContainerRecord)!.State);
        }
        Assert.Equal(ContainerState.Created, new SupervisedContainerRecord().State);
    }

    [Fact]
    public void Workload_sets_round_trip_as_their_strings_and_absent_stays_absent()
    {
        foreach (var (value, name) in Policies)
        {
            var json = JsonSerializer.Serialize(new Workload { Restart = new RestartPolicy { Policy = value } }, WorkloadJsonContext.Default.Workload);
            Assert.Contains($"\"policy\": \"{name}\"", json, StringComparison.Ordinal);
            Assert.Equal(value, JsonSerializer.Deserialize($"{{\"restart\":{{\"policy\":\"{name}\"}}}}", WorkloadJsonContext.Default.Workload)!.Restart!.Policy);
        }
        foreach (var (value, name) in Networks)
        {
            var json = JsonSerializer.Serialize(new Workload { Network = value }, WorkloadJsonContext.Default.Workload);
            Assert.Contains($"\"network\": \"{name}\"", json, StringComparison.Ordinal);
            Assert.Equal(value, JsonSerializer.Deserialize($"{{\"network\":\"{name}\"}}", WorkloadJsonContext.Default.Workload)!.Network);
        }
        foreach (var (value, name) in Runtimes)
        {
            var json = JsonSerializer.Serialize(new Workload { Runtime = value }, WorkloadJsonContext.Default.Workload);
            Assert.Contains($"\"runtime\": \"{name}\"", json, StringComparison.Ordinal);
            Assert.Equal(value, JsonSerializer.Deserialize($"{{\"runtime\":\"{name}\"}}", WorkloadJsonContext.Default.Workload)!.Runtime);
        }
        // null network (bridge) and null runtime (the node's default) are left out, as before; the policy defaults to always.
        var plain = JsonSerializer.Serialize(new Workload { Name = "w", Image = "i", Restart = new RestartPolicy() }, FleetJsonContext.Default.Workload);
        Assert.Equal("{\"name\":\"w\",\"image\":\"i\",\"restart\":{\"policy\":\"always\",\"maxRetries\":0}}", plain);
        var read = JsonSerializer.Deserialize("{\"name\":\"w\",\"image\":\"i\",\"restart\":{}}", FleetJsonContext.Default.Workload)!;
        Assert.Null(read.Network);
        Assert.Null(read.Runtime);
        Assert.Equal(RestartPolicyKind.Always, read.Restart!.Policy);
    }

    [Fact]
    public void A_newer_nodes_unknown_container_state_does_not_make_its_heartbeat_unreadable()
    {
        // Before, the state was a string and was shown as it came; a whole heartbeat must not fail
        // on one container now. The state reads as unknown (and is shown so); the rest is intact.
        const string heartbeat = """
            {"schemaVersion":1,"node":"gw-01","nodeId":"5f1d","version":"9.0.0","arch":"x64","kernel":"6.1.0","runtime":"native",
             "containers":[{"name":"web-0","state":"paused","ready":false,"specHash":"3f2a"},{"name":"web-1","state":"running","ready":true}]}
            """;
        var info = JsonSerializer.Deserialize(heartbeat, FleetJsonContext.Default.NodeInfo)!;
        Assert.Equal([ContainerState.Unknown, ContainerState.Running], info.Containers!.Select(c => c.State));
        Assert.Equal("3f2a", info.Containers![0].SpecHash);
        Assert.Equal("unknown", WireNames.Of(info.Containers[0].State));

        var status = JsonSerializer.Deserialize("{\"name\":\"web-0\",\"state\":\"checkpointed\",\"pid\":7}", FleetJsonContext.Default.ContainerStatus)!;
        Assert.Equal((ContainerState.Unknown, 7), (status.State, status.Pid));

        // Names are exact, as the strings were compared: another spelling is not the member.
        Assert.Equal(ContainerState.Unknown, JsonSerializer.Deserialize("{\"name\":\"w\",\"state\":\"Running\"}", FleetJsonContext.Default.ContainerBrief)!.State);
    }

    [Fact]
    public void A_value_that_is_not_a_string_is_still_an_error()
    {
        Assert.Throws<JsonException>(() => JsonSerializer.Deserialize("{\"name\":\"w\",\"state\":1}", FleetJsonContext.Default.ContainerBrief));
        Assert.Throws<JsonException>(() => JsonSerializer.Deserialize("{\"network\":2}", WorkloadJsonContext.Default.Workload));
    }

    [Fact]
    public void A_newer_clients_unknown_workload_value_reads_and_is_refused_by_the_validator()
    {
        // A deployment in the bucket from a newer orchctl still reads (the scheduler keeps going);
        // a node refuses the workload with the allowed values, as it did when these were strings.
        var deployment = JsonSerializer.Deserialize(
            "{\"name\":\"web\",\"template\":{\"name\":\"\",\"image\":\"i\",\"network\":\"macvlan\",\"runtime\":\"wasm\",\"restart\":{\"policy\":\"sometimes\"}}}",
            WorkloadJsonContext.Default.Deployment)!;
        var w = deployment.Template;
        Assert.Equal((NetworkMode.Unknown, WorkloadRuntime.Unknown, RestartPolicyKind.Unknown), (w.Network, w.Runtime, w.Restart!.Policy));
        w.Name = "web-0";
        Assert.Equal(
            [
                "restart.policy: expected one of always, on-failure, never, got a value this version does not know",
                "network: expected one of bridge, host, none, got a value this version does not know",
                "runtime: expected one of native, containerd, got a value this version does not know",
            ],
            WorkloadValidator.Validate(w));
    }

    [Theory]
    [InlineData("network: unknown\n", "m.yaml:3:10: network: expected one of bridge, host, none, got 'unknown'")]
    [InlineData("network: Host\n", "m.yaml:3:10: network: expected one of bridge, host, none, got 'Host'")]
    [InlineData("network: [host]\n", "m.yaml:3:10: network: expected one of bridge, host, none, got a list")]
    [InlineData("runtime: wasm\n", "m.yaml:3:10: runtime: expected one of native, containerd, got 'wasm'")]
    [InlineData("restart: {policy: unknown}\n", "m.yaml:3:19: restart.policy: expected one of always, on-failure, never, got 'unknown'")]
    public void A_manifest_names_the_value_it_holds_and_never_takes_unknown(string field, string error)
    {
        var e = Assert.Throws<ManifestException>(() => ManifestLoader.Parse("name: a\nimage: b\n" + field, "m.yaml"));
        Assert.Equal(error, e.Message);
    }

    [Fact]
    public void A_manifest_reads_every_member_by_its_name()
    {
        foreach (var (network, name) in Networks)
        {
            Assert.Equal(network, ManifestLoader.Parse($"name: a\nimage: b\nnetwork: {name}\n", "m.yaml")[0].Network);
        }
        foreach (var (runtime, name) in Runtimes)
        {
            Assert.Equal(runtime, ManifestLoader.Parse($"name: a\nimage: b\nruntime: \"{name}\"\n", "m.yaml")[0].Runtime);
        }
        foreach (var (policy, name) in Policies)
        {
            Assert.Equal(policy, ManifestLoader.Parse($"name: a\nimage: b\nrestart: {{policy: {name}}}\n", "m.yaml")[0].Restart!.Policy);
        }
    }
}

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// orchctl label node against a real orchd in a fleet: a label set by an operator lets a
/// deployment whose selector waited for it land (the scheduler sees it in the heartbeat, the node
/// checks it itself), kubectl's rules for a label that has another value, removing a configured
/// label, the node's arch, bad input, and labels that outlive an orchd restart.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class LabelTests
{
    private static readonly string[] s_fast = ["--heartbeat", "1s", "--unreachable-after", "3s", "--lost-after", "6s"];

    [Fact(Timeout = 240_000)]
    public async Task A_label_set_by_the_operator_places_what_waited_for_it_and_outlives_a_restart()
    {
        await using var node = await NodeHost.StartAsync(name: $"lb-{Guid.NewGuid().ToString("N")[..4]}", extraArgs: [.. s_fast, "--label", "zone=a"]);
        var log = new List<string>();
        async Task<Orchctl.Result> Ctl(params string[] args)
        {
            var result = await Orchctl.RunAsync(["--server", node.Nats!.Url, .. args], null);
            log.Add($"$ orchctl {string.Join(' ', args)} → {result.Code}\n{result.All}");
            return result;
        }
        Task Until(Func<Task<bool>> condition, string what)
            => Eventually.TrueAsync(what, condition, TimeSpan.FromSeconds(60), () => string.Join("\n", log.TakeLast(6)) + "\n" + node.Daemon.Output[^Math.Min(3000, node.Daemon.Output.Length)..], TimeSpan.FromMilliseconds(300));
        await Until(async () => (await Ctl("get", "nodes", node.NodeName)).Out.Contains(" ready ", StringComparison.Ordinal), "the node ready");

        var manifest = node.Dir.Combine("lab.yaml");
        File.WriteAllText(manifest, """
            kind: Deployment
            name: lab
            replicas: 1
            selector: {site: lab}
            template:
              image: busybox:latest
              command: [sleep, "100000"]
              network: none
              stopGracePeriodSeconds: 0
            """);
        Assert.Equal(0, (await Ctl("apply", "-f", manifest)).Code);
        // The scheduler says why lab-0 has no node (the selector), and nothing runs it.
        await Until(async () => (await Ctl("get", "deployments", "lab")).Out.Contains("lab-0", StringComparison.Ordinal), "lab-0 reported unschedulable");
        Assert.DoesNotContain("lab-0", (await Ctl("get", "containers")).Out, StringComparison.Ordinal);

        // Labelled: the heartbeat carries it, the scheduler places lab-0, the node runs it.
        var labelled = await Ctl("label", "node", node.NodeName, "site=lab");
        Assert.True(labelled.Code == 0, labelled.All);
        Assert.Equal($"node/{node.NodeName} labeled\n", labelled.Out);
        await Until(async () => (await Ctl("get", "nodes", "-l", "site=lab", "-o", "name")).Out == node.NodeName + "\n", "get nodes -l site=lab");
        await Until(async () => (await Ctl("get", "containers", "-n", node.NodeName)).Out.Split('\n').Any(l => l.StartsWith("lab-0 ", StringComparison.Ordinal) && l.Contains(" running ", StringComparison.Ordinal)), "lab-0 placed on the labelled node");
        Assert.Equal($"node/{node.NodeName} not labeled (no change)\n", (await Ctl("label", "node", node.NodeName, "site=lab")).Out);

        // kubectl's rules: another value needs --overwrite; KEY- removes (a configured one too).
        var conflict = await Ctl("label", "node", node.NodeName, "site=depot");
        Assert.Equal(1, conflict.Code);
        Assert.Equal($"orchctl: node '{node.NodeName}': label 'site' already has the value 'lab'; --overwrite replaces it\n", conflict.Err);
        Assert.Equal(0, (await Ctl("label", $"node/{node.NodeName}", "tier=edge", "zone-")).Code);
        await Until(async () => (await Ctl("get", "nodes", "-l", "tier=edge,!zone", "-o", "name")).Out == node.NodeName + "\n", "tier=edge and no zone");
        var arch = await Ctl("label", "node", node.NodeName, "arch=riscv64", "--overwrite");
        Assert.Equal(1, arch.Code);
        Assert.Contains("'arch' is the node's own architecture; it cannot be set or removed", arch.Err, StringComparison.Ordinal);
        // What the node finds it has is labelled too (hw.*), for selectors; it cannot be removed, only overridden.
        var cpus = Environment.ProcessorCount.ToString(System.Globalization.CultureInfo.InvariantCulture);
        await Until(async () => (await Ctl("get", "nodes", "-l", $"hw.cpus={cpus},hw.memory", "-o", "name")).Out == node.NodeName + "\n", "the node's hw.cpus and hw.memory labels");
        var hw = await Ctl("label", "node", node.NodeName, "hw.cpus-");
        Assert.Equal(1, hw.Code);
        Assert.Contains("'hw.cpus' is what the node finds it has (its devices, CPUs, memory); it cannot be removed, only overridden", hw.Err, StringComparison.Ordinal);
        Assert.Equal(2, (await Ctl("label", "node", node.NodeName, "bad key=x")).Code);
        Assert.Equal(2, (await Ctl("label", "node", node.NodeName, "site")).Code);
        Assert.Equal(2, (await Ctl("label", "deployment", "lab", "a=b")).Code);
        Assert.Equal(3, (await Ctl("--timeout", "2", "label", "node", "no-such-node", "a=b")).Code);

        // Kept by the node: after a restart, the operator's labels still hold (and zone stays removed).
        await node.KillOrchdAsync();
        await node.StartOrchdAsync([.. s_fast, "--label", "zone=a"]);
        await Until(async () => (await Ctl("get", "nodes", "-l", "site=lab,tier=edge,!zone", "-o", "name")).Out == node.NodeName + "\n", "the labels after a restart");
        Assert.Equal(ContainerState.Running, (await node.Client.InspectAsync("lab-0")).State);
        // Set back to what the configuration says: the configured label again.
        Assert.Equal(0, (await Ctl("label", "node", node.NodeName, "zone=a")).Code);
        await Until(async () => (await Ctl("get", "nodes", "-l", "zone=a", "-o", "name")).Out == node.NodeName + "\n", "zone=a again");
    }
}

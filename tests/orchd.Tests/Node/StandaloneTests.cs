using System.Text.Json;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>A device with no NATS at all runs what its manifest directory says.</summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class StandaloneTests
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);

    private static async Task<string?> RuntimeStatusAsync(NodeHost node, string id)
    {
        await using var state = DaemonProcess.Start(Repo.Binary("orch-runc"), ["--root", Path.Combine(node.RunDir, "runtime"), "state", id]);
        if (await state.WaitForExitAsync(s_wait) != 0)
        {
            return null;
        }
        using var doc = JsonDocument.Parse(string.Join("\n", state.Stdout));
        return doc.RootElement.GetProperty("status").GetString();
    }

    private static Task WaitAsync(Func<Task<bool>> condition, string what, NodeHost node)
        => Eventually.TrueAsync(what, condition, s_wait, () => $"not yet; orchd said:\n{node.Daemon.Output}");

    [Fact(Timeout = 120_000)]
    public async Task Static_manifests_run_change_and_go_with_no_nats()
    {
        await using var node = await NodeHost.StartAsync(withNats: false, start: false);
        var manifest = Path.Combine(node.ManifestDir, "app.yaml");
        File.WriteAllText(manifest, """
            name: sensor
            image: busybox:latest
            command: [sh, -c, "echo v1; exec sleep 100000"]
            restart: {policy: always}
            stopGracePeriodSeconds: 1
            """);
        node.MetricsPort = FreePort.Next();
        await node.StartOrchdAsync(["--metrics-listen", node.MetricsPort.Value.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        await node.Daemon.WaitForLogAsync("cannot reach NATS", s_wait); // offline, and running anyway
        await WaitAsync(async () => await RuntimeStatusAsync(node, "sensor") == "running", "sensor running", node);
        var log = Path.Combine(node.StateDir, "logs", "sensor", "container.log");
        await WaitAsync(() => Task.FromResult(File.Exists(log) && File.ReadAllText(log).Contains(" stdout F v1", StringComparison.Ordinal)), "v1 in the log", node);

        // A broken edit keeps what runs and says what is wrong.
        File.WriteAllText(manifest, "name: sensor\nimage: busybox:latest\nresources: {memory: plenty}\n");
        await node.Daemon.WaitForLogAsync("resources.memory: 'plenty' is not a size", s_wait);
        await node.WaitForReconcilePassesAsync(2); // the broken manifest was read, and nothing was undone
        Assert.Equal("running", await RuntimeStatusAsync(node, "sensor"));
        Assert.DoesNotContain(node.Daemon.Stderr, l => l.Contains("no longer wanted", StringComparison.Ordinal));

        // A good edit replaces the container.
        File.WriteAllText(manifest, """
            name: sensor
            image: busybox:latest
            command: [sh, -c, "echo v2; exec sleep 100000"]
            stopGracePeriodSeconds: 1
            """);
        await WaitAsync(() => Task.FromResult(File.ReadAllText(log).Contains(" stdout F v2", StringComparison.Ordinal)), "v2 in the log", node);
        Assert.Equal("running", await RuntimeStatusAsync(node, "sensor"));

        File.Delete(manifest);
        await WaitAsync(async () => await RuntimeStatusAsync(node, "sensor") is null, "sensor removed", node);
    }
}

using Orchestrator.Client;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// State that survives damage (issue #17): a torn or corrupt state file is named, moved aside and
/// rebuilt from what else the node has, and never stops a container that runs; a power cut
/// between a state file's write and its rename (a fault point that kills orchd there) loses
/// nothing that was committed before it.
/// </summary>
[Trait("Category", "Privileged")]
public sealed class DamagedStateTests
{
    private static async Task<int> RunningPidAsync(NodeHost node, string name)
        => (await node.WaitForAsync(name, c => c.State == ContainerState.Running && c.Pid > 0, TimeSpan.FromSeconds(30), "running")).Pid;

    [Fact(Timeout = 120_000)]
    public async Task A_damaged_workload_file_is_rebuilt_from_its_record_and_the_container_keeps_running()
    {
        await using var node = await NodeHost.StartAsync();
        await node.Client.RunAsync(NodeHost.Sh("keeper", "exec sleep 100000"));
        var pid = await RunningPidAsync(node, "keeper");
        await node.KillOrchdAsync();

        var file = Path.Combine(node.StateDir, "workloads", "keeper.json");
        await File.WriteAllTextAsync(file, "{\"name\": \"keeper\", \"image\": \"busy"); // torn
        await node.StartOrchdAsync();

        Assert.Equal(pid, await RunningPidAsync(node, "keeper"));
        Assert.True(NodeHost.IsAlive(pid), "the container was killed because its workload file was damaged");
        var rebuilt = System.Text.Json.JsonDocument.Parse(await File.ReadAllTextAsync(file)).RootElement;
        Assert.Equal("keeper", rebuilt.GetProperty("name").GetString());
        Assert.Single(Directory.GetFiles(Path.GetDirectoryName(file)!, "keeper.json.corrupt-*"));
        Assert.Contains("workload keeper: its file was damaged; rebuilt from its container's record", node.Daemon.Output, StringComparison.Ordinal);

        // And it is a real workload again: a restart of it works.
        await node.Client.RestartAsync("keeper");
        Assert.NotEqual(pid, await RunningPidAsync(node, "keeper"));
    }

    [Fact(Timeout = 150_000)]
    public async Task A_damaged_image_index_is_restored_from_its_mirror_and_names_itself_when_both_are_gone()
    {
        await using var node = await NodeHost.StartAsync();
        await node.Client.RunAsync(NodeHost.Sh("keeper", "exec sleep 100000"));
        var pid = await RunningPidAsync(node, "keeper");
        var index = Path.Combine(node.StateDir, "images", "images.json");
        Assert.True(File.Exists(index + ".bak"), "the image index has no mirror");

        await node.KillOrchdAsync();
        await File.WriteAllTextAsync(index, "{\"busybox:latest\": {\"name\"");
        await node.StartOrchdAsync();
        await node.Client.RunAsync(NodeHost.Sh("after", "exec sleep 100000"));
        await RunningPidAsync(node, "after");
        Assert.Contains($"image store: {index} is damaged", node.Daemon.Output, StringComparison.Ordinal);
        Assert.Contains("restored from", node.Daemon.Output, StringComparison.Ordinal);

        // Both copies damaged: one clear error naming the image (not raw JSON), nothing that runs disturbed.
        await node.KillOrchdAsync();
        await File.WriteAllTextAsync(index, "[[[");
        await File.WriteAllTextAsync(index + ".bak", "\0\0\0");
        await node.StartOrchdAsync();
        var status = await node.Client.RunAsync(NodeHost.Sh("later", "exec sleep 100000"));
        var failed = await node.WaitForAsync("later", c => c.Message is { Length: > 0 }, TimeSpan.FromSeconds(30), "a message");
        Assert.DoesNotContain("JSON", failed.Message, StringComparison.Ordinal);
        Assert.Contains("busybox:latest", failed.Message, StringComparison.Ordinal);
        Assert.Contains("the store starts with no image names (its blobs are kept)", node.Daemon.Output, StringComparison.Ordinal);
        Assert.Equal(pid, await RunningPidAsync(node, "keeper"));
        _ = status;
    }

    [Theory(Timeout = 150_000)]
    [InlineData("web.json")]      // the workload file of the request
    [InlineData("images.json")]   // the image index (written when an image is tagged)
    public async Task A_power_cut_between_write_and_rename_loses_nothing_committed(string file)
    {
        await using var node = await NodeHost.StartAsync();
        await node.Client.RunAsync(NodeHost.Sh("keeper", "exec sleep 100000"));
        var pid = await RunningPidAsync(node, "keeper");
        await node.KillOrchdAsync();
        await using (var import = DaemonProcess.Start(Repo.Binary("orchd"), ["image", "import", node.Dir.Combine("layout"), "--name", "busybox:two", "--state-dir", node.StateDir, "--config", "/dev/null"]))
        {
            Assert.True(await import.WaitForExitAsync(TimeSpan.FromSeconds(60)) == 0, import.Output);
        }
        var before = Directory.GetFiles(node.StateDir, "*", SearchOption.AllDirectories)
            .Where(f => f.EndsWith(".json", StringComparison.Ordinal)).ToDictionary(f => f, File.ReadAllBytes);

        // orchd kills itself (SIGKILL) with the new content of FILE in its temp file, not yet renamed.
        await node.StartOrchdAsync(environment: new Dictionary<string, string?> { ["ORCHD_FAILPOINT"] = $"state-before-rename:{file}" });
        var crashed = node.Daemon;
        try
        {
            if (file == "web.json")
            {
                await node.Client.RunAsync(NodeHost.Sh("web", "exec sleep 100000"));
            }
            else
            {
                await node.Client.RemoveImageAsync("busybox:two");
            }
        }
        catch (Exception e) when (e is NodeRequestException or NATS.Client.Core.NatsException or TimeoutException or OperationCanceledException)
        {
        }
        Assert.True(await crashed.WaitForExitAsync(TimeSpan.FromSeconds(30), drainOutput: false) is 137 or -1 or 128 + 9, "orchd did not stop at the fault point");

        await node.StartOrchdAsync();
        Assert.Equal(pid, await RunningPidAsync(node, "keeper"));
        foreach (var (path, bytes) in before.Where(kv => File.Exists(kv.Key)))
        {
            // Every committed file is whole JSON (the same, or replaced whole).
            System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(path)).Dispose();
        }
        Assert.All(before.Keys, path => Assert.True(File.Exists(path), $"{path} was lost"));
        Assert.Empty(Directory.GetFiles(node.StateDir, "*.corrupt-*", SearchOption.AllDirectories));
        // The node works on: the request that was cut can be made again.
        if (file == "web.json")
        {
            await node.Client.RunAsync(NodeHost.Sh("web", "exec sleep 100000"));
            await RunningPidAsync(node, "web");
        }
        else
        {
            Assert.Contains("docker.io/library/busybox:two", (await node.Client.ImagesAsync()).Select(i => i.Name)); // stored by its canonical name
            await node.Client.RemoveImageAsync("busybox:two");
            Assert.DoesNotContain("docker.io/library/busybox:two", (await node.Client.ImagesAsync()).Select(i => i.Name));
        }
    }
}

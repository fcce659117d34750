using Orchestrator.Api.Workloads;
using Orchestrator.Client;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// Issue #26's air-gapped cases on real nodes (real orchd processes, a real nats-server) with no
/// registry reachable: an image pushed into the fleet's NATS bucket by one node is pulled by
/// orchctl, and run by workloads, on another, by every way of writing its name (docs/images.md).
/// The pulling node's HTTPS goes through a proxy nobody answers on, so Docker Hub is out of reach
/// there whatever the machine's network; the loopback registry with a port is closed too.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class ImageNameTests
{
    /// <summary>
    /// No registry answers: every HTTPS request (Docker Hub's) goes to a closed port on loopback; the
    /// plain-HTTP registry these tests name is a closed port itself.
    /// </summary>
    private static readonly Dictionary<string, string?> s_noRegistry = new()
    {
        ["HTTPS_PROXY"] = "http://127.0.0.1:1", ["https_proxy"] = "http://127.0.0.1:1", ["HTTP_PROXY"] = null, ["http_proxy"] = null, ["NO_PROXY"] = null, ["no_proxy"] = null,
    };

    private static async Task<(int Code, string Output)> OrchdImageAsync(NodeHost node, params string[] args)
    {
        await using var p = DaemonProcess.Start(Repo.Binary("orchd"), ["image", .. args, "--state-dir", node.StateDir, "--config", "/dev/null"], s_noRegistry);
        var code = await p.WaitForExitAsync(TimeSpan.FromSeconds(120));
        return (code, p.Output);
    }

    [Fact(Timeout = 300_000)]
    public async Task An_image_pushed_to_nats_is_pulled_and_run_on_another_node_by_every_one_of_its_names()
    {
        await using var nats = await NatsServer.StartAsync();
        var suffix = Guid.NewGuid().ToString("N")[..4];
        // A: the node with the image (imported as busybox:latest, and as a loopback registry's image with a port).
        await using var a = await NodeHost.StartAsync(sharedNats: nats, name: $"pa-{suffix}", start: false);
        var tool = "127.0.0.1:1/edge/tool:1";
        var imported = await OrchdImageAsync(a, "import", a.Dir.Combine("layout"), "--name", tool);
        Assert.True(imported.Code == 0, imported.Output);
        var push = await OrchdImageAsync(a, "push", "busybox:latest", "--nats", "--nats-url", nats.Url);
        Assert.True(push.Code == 0, push.Output);
        Assert.Contains("published busybox:latest (as docker.io/library/busybox:latest) to NATS (3 new blobs)", push.Output, StringComparison.Ordinal);
        // Pushed under its full name too: the same image, nothing new to send.
        var again = await OrchdImageAsync(a, "push", "docker.io/library/busybox:latest", "--nats", "--nats-url", nats.Url);
        Assert.True(again.Code == 0, again.Output);
        Assert.Contains("published docker.io/library/busybox:latest to NATS (0 new blobs)", again.Output, StringComparison.Ordinal);
        Assert.True((await OrchdImageAsync(a, "push", tool, "--nats", "--nats-url", nats.Url)).Code == 0);

        // B: no image at all, and no registry.
        await using var b = await NodeHost.StartAsync(sharedNats: nats, name: $"pb-{suffix}", start: false);
        var removed = await OrchdImageAsync(b, "rm", "busybox");
        Assert.True(removed.Code == 0, removed.Output);
        await b.StartOrchdAsync(environment: s_noRegistry);
        Assert.Empty(await b.Client.ImagesAsync());
        var manifestDigest = (await OrchdImageAsync(a, "inspect", "busybox")).Output.Split('\n').Single(l => l.StartsWith("manifest: ", StringComparison.Ordinal))[10..];

        async Task<Orchctl.Result> Ctl(params string[] args) => await Orchctl.RunAsync(["--server", nats.Url, .. args], null);

        // 1. orchctl pull of nats:busybox:latest stores it and finds it (every time, also after rmi by another name).
        for (var round = 0; round < 2; round++)
        {
            var pulled = await Ctl("pull", "-n", b.NodeName, "nats:busybox:latest");
            Assert.True(pulled.Code == 0, pulled.All + "\n" + b.Daemon.Output);
            Assert.Contains($"pulled docker.io/library/busybox:latest {manifestDigest}", pulled.Out, StringComparison.Ordinal);
            Assert.Equal(["docker.io/library/busybox:latest"], (await b.Client.ImagesAsync()).Select(i => i.Name));
            var rmi = await Ctl("rmi", "-n", b.NodeName, round == 0 ? "busybox" : "nats:busybox:latest");
            Assert.True(rmi.Code == 0, rmi.All);
            Assert.Empty(await b.Client.ImagesAsync());
        }

        // 2. A workload whose image is nats:busybox:latest is pulled and starts.
        Workload Sleeper(string name, string image) => new()
        {
            Name = name, Image = image, Command = ["sh", "-c", $"echo {name} runs; exec sleep 100000"], Network = NetworkMode.None, StopGracePeriodSeconds = 0,
        };
        await b.Client.RunAsync(Sleeper("from-nats", "nats:busybox:latest"));
        await b.WaitForAsync("from-nats", s => s.State == ContainerState.Running, TimeSpan.FromSeconds(60), "running from the bucket");
        await b.LogsUntilAsync("from-nats", l => l.Any(x => x.Text == "from-nats runs"), TimeSpan.FromSeconds(20), "its line");
        // In use by any of its names.
        var inUse = await Assert.ThrowsAsync<NodeRequestException>(() => b.Client.RemoveImageAsync("docker.io/library/busybox:latest"));
        Assert.Equal("image 'docker.io/library/busybox:latest' is used by 'from-nats'; remove those workloads first", inUse.Message);
        Assert.Equal(["from-nats"], Assert.Single(await b.Client.ImagesAsync()).UsedBy);
        await b.Client.RemoveAsync("from-nats");
        await b.Client.RemoveImageAsync("busybox:latest");
        Assert.Empty(await b.Client.ImagesAsync());

        // 3. A workload whose image is busybox:latest, with Docker Hub out of reach: the bucket has it by that plain name.
        await b.Client.RunAsync(Sleeper("plain", "busybox:latest"));
        await b.WaitForAsync("plain", s => s.State == ContainerState.Running, TimeSpan.FromSeconds(60), "running from the bucket by its plain name");
        await b.LogsUntilAsync("plain", l => l.Any(x => x.Text == "plain runs"), TimeSpan.FromSeconds(20), "its line");
        // Its other names run the same stored image (no pull: one image in the store).
        await b.Client.RunAsync(Sleeper("full", "docker.io/library/busybox:latest"));
        await b.Client.RunAsync(Sleeper("short", "busybox"));
        await b.WaitForAsync("full", s => s.State == ContainerState.Running, TimeSpan.FromSeconds(30), "running");
        await b.WaitForAsync("short", s => s.State == ContainerState.Running, TimeSpan.FromSeconds(30), "running");
        var image = Assert.Single(await b.Client.ImagesAsync());
        Assert.Equal(("docker.io/library/busybox:latest", manifestDigest), (image.Name, image.ManifestDigest));
        Assert.Equal(["full", "plain", "short"], image.UsedBy);

        // A registry with a port that does not answer: the bucket has its image under that name.
        await b.Client.RunAsync(Sleeper("tool", tool));
        await b.WaitForAsync("tool", s => s.State == ContainerState.Running, TimeSpan.FromSeconds(60), "running from the bucket, its registry closed");
        Assert.Contains(await b.Client.ImagesAsync(), i => i.Name == tool);

        // A name the bucket lacks, and a name that is none: one clear error each.
        var missing = await Ctl("pull", "-n", b.NodeName, "nats:ghost:1");
        Assert.NotEqual(0, missing.Code);
        Assert.Contains("image 'nats:ghost:1' is not published in the NATS bucket 'orch-images' (as docker.io/library/ghost:1); push it there first (orchd image push ghost:1 --nats)", missing.Err, StringComparison.Ordinal);
        var bad = await Ctl("pull", "-n", b.NodeName, "nats:Busybox");
        Assert.NotEqual(0, bad.Code);
        Assert.Contains("'nats:Busybox' is not an image reference: repository names are lower case ('busybox')", bad.Err, StringComparison.Ordinal);
    }

    [Fact(Timeout = 300_000)]
    public async Task A_containerd_node_without_a_registry_runs_the_buckets_image_by_its_plain_name_and_by_nats()
    {
        await using var nats = await NatsServer.StartAsync();
        var suffix = Guid.NewGuid().ToString("N")[..4];
        await using var a = await NodeHost.StartAsync(sharedNats: nats, name: $"ca-{suffix}", start: false);
        var push = await OrchdImageAsync(a, "push", "busybox", "--nats", "--nats-url", nats.Url);
        Assert.True(push.Code == 0, push.Output);
        await using var b = await NodeHost.StartAsync(sharedNats: nats, name: $"cb-{suffix}", start: false, runtime: "containerd");
        Assert.True((await OrchdImageAsync(b, "rm", "busybox:latest")).Code == 0);
        await b.StartOrchdAsync(environment: s_noRegistry);
        Assert.Empty(await b.Client.ImagesAsync());

        Workload Sleeper(string name, string image) => new()
        {
            Name = name, Image = image, Command = ["sh", "-c", $"echo {name} runs; exec sleep 100000"], Network = NetworkMode.None, StopGracePeriodSeconds = 0,
        };
        await b.Client.RunAsync(Sleeper("plain", "busybox:latest"));
        await b.WaitForAsync("plain", s => s.State == ContainerState.Running, TimeSpan.FromSeconds(60), "running from the bucket by its plain name");
        await b.Client.RunAsync(Sleeper("from-nats", "nats:busybox:latest"));
        await b.WaitForAsync("from-nats", s => s.State == ContainerState.Running, TimeSpan.FromSeconds(60), "running from the bucket");
        // containerd holds it by its canonical name; in use by both workloads, whichever name they give.
        var images = (await b.Containerd!.Ctr(b.ContainerdNamespace, "images", "ls", "-q")).Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(["docker.io/library/busybox:latest"], images);
        var inContainerd = Assert.Single(await b.Client.ImagesAsync(), i => i.Store == "containerd");
        Assert.Equal("docker.io/library/busybox:latest", inContainerd.Name);
        Assert.Equal(["from-nats", "plain"], inContainerd.UsedBy);

        // orchctl pull of nats:NAME on a containerd node, and rmi by a short name.
        await b.Client.RemoveAsync("plain");
        await b.Client.RemoveAsync("from-nats");
        var rmi = await Orchctl.RunAsync(["--server", nats.Url, "rmi", "-n", b.NodeName, "busybox"], null);
        Assert.True(rmi.Code == 0, rmi.All);
        Assert.Empty((await b.Containerd.Ctr(b.ContainerdNamespace, "images", "ls", "-q")).Stdout.Trim());
        var pulled = await Orchctl.RunAsync(["--server", nats.Url, "pull", "-n", b.NodeName, "nats:busybox:latest"], null);
        Assert.True(pulled.Code == 0, pulled.All + "\n" + b.Daemon.Output);
        Assert.Contains("pulled docker.io/library/busybox:latest ", pulled.Out, StringComparison.Ordinal);
    }
}

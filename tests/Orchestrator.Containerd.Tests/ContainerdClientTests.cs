using System.Net.Sockets;
using System.Text.Json.Nodes;
using Grpc.Core;
using Orchestrator.Containerd.Api.Types;
using Status = Orchestrator.Containerd.Api.Types.Status;

namespace Orchestrator.Containerd.Tests;

/// <summary>The gRPC client against a real containerd (Debian's 1.6, private root, state and socket).</summary>
[Trait("Category", "Privileged")]
public sealed class ContainerdClientTests
{
    [Fact(Timeout = 60_000)]
    public async Task Version_namespace_container_task_exec_pids_pause_metrics_kill_wait_delete()
    {
        Requires.Root();
        await using var server = await ContainerdServer.StartAsync();
        var ns = "orchd-test-" + Guid.NewGuid().ToString("N")[..8]; // runc's state for the namespace is under /run/containerd/runc, shared by every containerd
        using var client = new ContainerdClient(server.Socket, ns);
        var version = await client.CheckAsync();
        Assert.True(ContainerdClient.ParseVersion(version) >= ContainerdClient.MinimumVersion, version);
        await client.EnsureNamespaceAsync(new Dictionary<string, string> { ["org.orchestrator.node"] = "t" });
        await client.EnsureNamespaceAsync(new Dictionary<string, string>()); // twice is fine
        Assert.Contains(ns, await client.ListNamespacesAsync());

        using var bundle = OciBundle.CreateBusybox("sh", "-c", "echo hello; exec sleep 1000");
        var spec = JsonNode.Parse(File.ReadAllText(bundle.ConfigPath))!;
        spec["root"]!["path"] = bundle.Rootfs; // a root path of ours: no snapshot
        spec["process"]!["terminal"] = false;
        client.CreateContainer("box", System.Text.Encoding.UTF8.GetBytes(spec.ToJsonString()), new Dictionary<string, string> { ["k"] = "v" });
        Assert.Equal("v", client.GetContainer("box")!.Labels["k"]);
        Assert.Equal(["box"], client.ListContainers().Select(c => c.Id));
        var duplicate = Assert.Throws<ContainerdException>(() => client.CreateContainer("box", System.Text.Encoding.UTF8.GetBytes(spec.ToJsonString())));
        Assert.Equal(StatusCode.AlreadyExists, duplicate.Code);
        Assert.Contains("'box'", duplicate.Message, StringComparison.Ordinal);

        var output = Path.Combine(bundle.Path, "out.log");
        File.WriteAllText(output, "");
        var pid = client.CreateTask("box", output, output);
        Assert.True(pid > 0);
        Assert.Equal(Status.Created, client.GetTask("box")!.Status);
        client.StartTask("box");
        Assert.Equal(Status.Running, client.GetTask("box")!.Status);
        await WaitForAsync(() => File.ReadAllText(output).Contains("hello", StringComparison.Ordinal), "the task's output");

        var execOut = Path.Combine(bundle.Path, "exec.log");
        File.WriteAllText(execOut, "");
        var process = new JsonObject { ["args"] = new JsonArray("sh", "-c", "echo from exec; exit 4"), ["cwd"] = "/", ["env"] = new JsonArray("PATH=/bin"), ["user"] = new JsonObject { ["uid"] = 0, ["gid"] = 0 } };
        client.Exec("box", "e1", System.Text.Encoding.UTF8.GetBytes(process.ToJsonString()), execOut, execOut);
        var execWait = client.WaitAsync("box", "e1");
        client.StartTask("box", "e1");
        Assert.Equal(4, (await execWait).Status);
        await WaitForAsync(() => File.ReadAllText(execOut).Contains("from exec", StringComparison.Ordinal), "the exec's output (the shim copies it after the exit)");
        client.DeleteProcess("box", "e1");

        Assert.Contains((int)pid, client.Pids("box"));
        client.Pause("box");
        Assert.Equal(Status.Paused, client.GetTask("box")!.Status);
        client.Resume("box");
        var metric = Assert.Single(client.Metrics("box"));
        Assert.Equal("box", metric.Id);
        Assert.Contains("cgroups", metric.Data.TypeUrl, StringComparison.Ordinal);
        var decoded = client.TaskMetrics("box")!;
        Assert.True(decoded is { Pids: 1, OomKills: 0 } && decoded.MemoryBytes > 0 && decoded.MemoryPeakBytes >= decoded.MemoryBytes && decoded.CpuNanoseconds > 0, decoded.ToString());
        Assert.Null(client.TaskMetrics("nobody"));

        var wait = client.WaitAsync("box");
        client.Kill("box", 9, all: true);
        var (status, at) = await wait;
        Assert.Equal(137, status);
        Assert.True(Math.Abs((DateTimeOffset.UtcNow - at).TotalSeconds) < 30);
        Assert.Equal(137u, client.DeleteTask("box")!.ExitStatus);
        Assert.Null(client.DeleteTask("box"));
        Assert.True(client.DeleteContainer("box"));
        Assert.False(client.DeleteContainer("box"));
        Assert.Null(client.GetContainer("box"));
        var gone = Assert.Throws<ContainerdException>(() => client.Kill("box", 9, all: false));
        Assert.True(gone.IsNotFound);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_missing_or_stale_socket_is_one_sentence_with_the_fix()
    {
        using var dir = new TempDir("orch-ctrd-sock");
        var missing = await Assert.ThrowsAsync<ContainerdException>(() => new ContainerdClient(dir.Combine("no", "containerd.sock"), "x").CheckAsync());
        Assert.Equal($"containerd socket '{dir.Combine("no", "containerd.sock")}' does not exist (nor its directory): install and start containerd, or set containerd_socket", missing.Message);
        Assert.True(missing.IsUnavailable);

        var absent = await Assert.ThrowsAsync<ContainerdException>(() => new ContainerdClient(dir.Combine("containerd.sock"), "x").CheckAsync());
        Assert.Equal($"containerd socket '{dir.Combine("containerd.sock")}' does not exist: start containerd, or set containerd_socket", absent.Message);

        // A socket file nobody listens on any more (containerd stopped without removing it).
        var stale = dir.Combine("stale.sock");
        using (var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            s.Bind(new UnixDomainSocketEndPoint(dir.Combine("bound.sock")));
            File.Move(dir.Combine("bound.sock"), stale); // .NET unlinks what it bound when disposed: keep the file under another name
        }
        var refused = await Assert.ThrowsAsync<ContainerdException>(() => new ContainerdClient(stale, "x").CheckAsync());
        Assert.Equal($"nothing listens on containerd socket '{stale}' (left by a containerd that stopped): start containerd", refused.Message);
    }

    [Theory]
    [InlineData("1.6.20~ds1", "1.6.20")]
    [InlineData("v1.7.2", "1.7.2")]
    [InlineData("1.6.0-rc.1", "1.6.0")]
    [InlineData("2.0", "2.0.0")]
    public void Versions_are_read_from_their_leading_numbers(string text, string expected)
        => Assert.Equal(Version.Parse(expected), ContainerdClient.ParseVersion(text));

    [Fact(Timeout = 60_000)]
    public async Task A_containerd_older_than_the_minimum_is_refused_naming_both_versions()
    {
        await using var old = await OldContainerdServer.StartAsync("v1.5.18");
        using var client = new ContainerdClient(old.Socket, "orchd-old");
        var refused = await Assert.ThrowsAsync<ContainerdException>(() => client.CheckAsync());
        Assert.Equal($"containerd v1.5.18 at '{old.Socket}' is too old: orchd needs containerd {ContainerdClient.MinimumVersion} or later; upgrade containerd or use runtime: native",
            refused.Message);
        Assert.Equal(1, old.VersionCalls);

        await using var odd = await OldContainerdServer.StartAsync("devel");
        using var oddClient = new ContainerdClient(odd.Socket, "orchd-old");
        var unreadable = await Assert.ThrowsAsync<ContainerdException>(() => oddClient.CheckAsync());
        Assert.Equal($"containerd at '{odd.Socket}' reports version 'devel', which orchd cannot read; it needs {ContainerdClient.MinimumVersion} or later", unreadable.Message);
    }

    [Theory]
    [InlineData("1.5.18", true)]
    [InlineData("1.4.0", true)]
    [InlineData("1.6.0", false)]
    [InlineData("2.1.0", false)]
    public void Older_than_the_minimum_is_too_old(string version, bool tooOld)
        => Assert.Equal(tooOld, ContainerdClient.ParseVersion(version)! < ContainerdClient.MinimumVersion);

    [Fact]
    public void Unreadable_versions_are_null()
    {
        Assert.Null(ContainerdClient.ParseVersion("unknown"));
        Assert.Null(ContainerdClient.ParseVersion(""));
    }

    private static Task WaitForAsync(Func<bool> condition, string what)
        => Eventually.TrueAsync(what, condition, TimeSpan.FromSeconds(20), poll: TimeSpan.FromMilliseconds(50));
}

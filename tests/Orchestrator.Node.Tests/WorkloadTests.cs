using Orchestrator.Images.Oci;
using Orchestrator.Node.Reconcile;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Node.Tests;

public sealed class WorkloadTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void A_full_yaml_manifest_reads_into_the_model()
    {
        var workloads = ManifestLoader.Parse("""
            kind: Workload
            name: web
            image: busybox:latest
            command: [httpd, -f]
            args: ["-p", "8080"]
            env: {PORT: 8080, DEBUG: true, NAME: "x"}
            resources: {cpu: 0.5, memory: 64Mi, pids: 100}
            restart: {policy: on-failure, maxRetries: 5, backoff: 2s, maxBackoff: 1m, resetAfter: 10m}
            probes:
              liveness: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 5}
              readiness: {tcpSocket: {port: 8080}}
            ports: [{containerPort: 8080, hostPort: 80}]
            volumes: [{name: data, target: /data}, {hostPath: /srv, target: /srv, readOnly: true}]
            network: bridge
            labels: {app: web}
            ---
            name: second
            image: busybox
            """, "web.yaml");
        Assert.Equal(2, workloads.Count);
        var web = workloads[0];
        Assert.Equal(["httpd", "-f"], web.Command);
        Assert.Equal("8080", web.Env!["PORT"]);
        Assert.Equal("true", web.Env["DEBUG"]);
        Assert.Equal("0.5", web.Resources!.Cpu);
        Assert.Equal(100, web.Resources.Pids);
        Assert.Equal(RestartPolicyKind.OnFailure, web.Restart!.Policy);
        Assert.Equal(8080, web.Probes!.Liveness!.HttpGet!.Port);
        Assert.Equal(5, web.Probes.Liveness.PeriodSeconds);
        Assert.Equal(80, web.Ports![0].HostPort);
        Assert.True(web.Volumes![1].ReadOnly);
        Assert.Equal("web", web.Labels!["app"]);
    }

    [Fact]
    public void Every_error_in_a_manifest_is_reported_at_once_with_file_and_line()
    {
        var e = Assert.Throws<ManifestException>(() => ManifestLoader.Parse("""
            name: ok
            image: busybox
            resources: {memory: lots}
            restart: {policy: sometimes}
            ---
            name: Bad Name
            image: busybox
            ports: [{containerPort: 70000}]
            """, "m.yaml"));
        Assert.Equal(
        [
            "m.yaml:3:21: resources.memory: 'lots' is not a size of at least 4Mi; use bytes or a suffix (64Mi, 1Gi)",
            "m.yaml:4:19: restart.policy: expected one of always, on-failure, never, got 'sometimes'",
            "m.yaml:6:7: name: 'Bad Name' is not a valid name; use 1-63 letters, digits, '-' or '_', starting with a letter or digit",
            "m.yaml:8:25: ports[0].containerPort: expected an integer from 1 to 65535, got 70000",
        ], e.Message.Split('\n'));
    }

    [Fact]
    public void A_directory_loads_file_by_file_and_names_duplicates()
    {
        File.WriteAllText(_dir.Combine("a.yaml"), "name: one\nimage: busybox\n");
        File.WriteAllText(_dir.Combine("b.yml"), "name: one\nimage: other\n");
        File.WriteAllText(_dir.Combine("c.json"), "{\"name\": \"two\", \"image\": \"busybox\"}");
        File.WriteAllText(_dir.Combine("d.yaml"), "name: [broken\n");
        File.WriteAllText(_dir.Combine("README"), "not a manifest");
        var (workloads, errors, broken) = ManifestLoader.LoadDirectory(_dir.Path);
        Assert.Equal(["one", "two"], workloads.Select(w => w.Workload.Name));
        Assert.Equal("busybox", workloads[0].Workload.Image);
        Assert.Equal(_dir.Combine("c.json"), workloads[1].File);
        Assert.Equal([_dir.Combine("b.yml"), _dir.Combine("d.yaml")], broken.Order(StringComparer.Ordinal));
        Assert.Equal(2, errors.Count);
        Assert.Contains(errors, e => e == $"{_dir.Combine("b.yml")}:1:7: name: 'one' is already defined at {_dir.Combine("a.yaml")}:1:7; workload names must be unique on a node");
        Assert.Contains(errors, e => e.StartsWith(_dir.Combine("d.yaml"), StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("64Mi", 64L << 20)]
    [InlineData("1Gi", 1L << 30)]
    [InlineData("500M", 500_000_000)]
    [InlineData("1.5Ki", 1536)]
    [InlineData("4096", 4096)]
    public void Sizes_parse(string text, long bytes)
    {
        Assert.True(Quantities.TryParseBytes(text, out var parsed));
        Assert.Equal(bytes, parsed);
    }

    [Theory]
    [InlineData("0.5", 500)]
    [InlineData("2", 2000)]
    [InlineData("250m", 250)]
    public void Cpu_amounts_parse(string text, long milli)
    {
        Assert.True(Quantities.TryParseMilliCpu(text, out var parsed));
        Assert.Equal(milli, parsed);
    }

    [Theory]
    [InlineData("lots")]
    [InlineData("-1")]
    [InlineData("1Xi")]
    public void Bad_sizes_do_not_parse(string text) => Assert.False(Quantities.TryParseBytes(text, out _));

    [Fact]
    public void The_spec_follows_kubernetes_command_and_args_rules_and_merges_env()
    {
        var image = new ImageConfigFile { Config = new ImageRunConfig { Entrypoint = ["/entry"], Cmd = ["--default"], Env = ["PATH=/img/bin", "A=image"], WorkingDir = "/app", User = "1000:1000" } };
        var paths = new ContainerPaths(_dir.Combine("bundle"), _dir.Combine("rootfs"), _dir.Combine("volumes"), "/orchestrator/n/web");

        var plain = SpecBuilder.Build(new Workload { Name = "web", Image = "x" }, image, paths);
        Assert.Equal(["/entry", "--default"], plain.Process!.Args);
        Assert.Equal("/app", plain.Process.Cwd);
        Assert.Equal(1000u, plain.Process.User.Uid);
        Assert.Contains("PATH=/img/bin", plain.Process.Env!);
        Assert.Contains("HOSTNAME=web", plain.Process.Env!);
        Assert.Contains(plain.Linux!.Namespaces!, n => n.Type == "network");

        var args = SpecBuilder.Build(new Workload { Name = "web", Image = "x", Args = ["--mine"] }, image, paths);
        Assert.Equal(["/entry", "--mine"], args.Process!.Args);
        var command = SpecBuilder.Build(new Workload { Name = "web", Image = "x", Command = ["/other"], Env = new() { ["A"] = "mine" }, Network = NetworkMode.Host }, image, paths);
        Assert.Equal(["/other"], command.Process!.Args); // the image's cmd is dropped with a command of our own
        Assert.Contains("A=mine", command.Process.Env!);
        Assert.DoesNotContain("A=image", command.Process.Env!);
        Assert.DoesNotContain(command.Linux!.Namespaces!, n => n.Type == "network");

        var limited = SpecBuilder.Build(new Workload { Name = "web", Image = "x", Resources = new Resources { Cpu = "250m", Memory = "32Mi", Pids = 64 },
            Volumes = [new Volume { Name = "data", Target = "/data" }] }, image, paths);
        Assert.Equal(25_000, limited.Linux!.Resources!.Cpu!.Quota);
        Assert.Equal(32L << 20, limited.Linux.Resources.Memory!.Limit);
        Assert.Equal(64, limited.Linux.Resources.Pids!.Limit);
        Assert.Contains(limited.Mounts!, m => m.Destination == "/data" && m.Source == _dir.Combine("volumes", "data"));
        Assert.True(Directory.Exists(_dir.Combine("volumes", "data")));
        Assert.Equal("web\n", File.ReadAllText(_dir.Combine("bundle", "hostname")));
    }

    [Fact]
    public void An_image_user_given_by_name_is_refused_with_the_fix()
    {
        var image = new ImageConfigFile { Config = new ImageRunConfig { Cmd = ["x"], User = "www-data" } };
        var e = Assert.Throws<Orchestrator.Runtime.Spec.SpecException>(() => SpecBuilder.Build(new Workload { Name = "w", Image = "i" }, image,
            new ContainerPaths(_dir.Combine("b"), "/r", _dir.Combine("v"), "/c")));
        Assert.Contains("give user: as uid or uid:gid", e.Message, StringComparison.Ordinal);
    }
}

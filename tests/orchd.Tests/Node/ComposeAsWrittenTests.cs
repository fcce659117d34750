using Orchestrator.Testing;
using static Orchestrator.Daemon.Tests.Node.FleetHarness;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// A compose file as its author wrote it, applied with the real orchctl to a real node: ${VAR}s
/// from the project's .env and the shell, an env_file, a service that only says build: given an
/// image by --image-map, depends_on service_healthy, a service reached by its name, an anonymous
/// volume under a bind filled from the image (the node_modules pattern); and, with --stack, two
/// deployments that reach each other by deployment name on the node.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class ComposeAsWrittenTests
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(60);

    [Fact(Timeout = 300_000)]
    public async Task A_compose_file_with_variables_env_files_a_build_and_names_runs_as_written()
    {
        await using var nats = await NatsServer.StartAsync();
        using var dir = new TempDir("orch-compose");
        // The reader binds its source from the project's directory: the node's policy allows that, as an operator would.
        await using var node = await NodeHost.StartAsync(sharedNats: nats, start: false);
        // The reader's image: busybox with /app/node_modules in it, as a node app's image has its modules.
        BusyboxImage.CreateLayout(dir.Combine("modules-layout"), "modules", new Dictionary<string, string> { ["app/node_modules/left-pad/index.js"] = "module.exports = 1;\n" });
        await using (var import = DaemonProcess.Start(Repo.Binary("orchd"), ["image", "import", dir.Combine("modules-layout"), "--name", "busybox:modules", "--state-dir", node.StateDir, "--config", "/dev/null"]))
        {
            Assert.True(await import.WaitForExitAsync(TimeSpan.FromSeconds(60)) == 0, import.Output);
        }
        await node.StartOrchdAsync([.. Fast, "--allow-host-path", dir.Path]);
        await WaitReachableAsync(node, s_wait);
        string[] server = ["--server", nats.Url];

        var project = Directory.CreateDirectory(dir.Combine("shop")).FullName;
        File.WriteAllText(Path.Combine(project, ".env"), $"IMAGE={NodeHost.Image}\nGREETING=hello\nBROKER_PORT=8080\n# a comment\n");
        File.WriteAllText(Path.Combine(project, "reader.env"), "WHO=${READER_NAME:-reader}\nBROKER_URL=http://wrong/\n");
        Directory.CreateDirectory(Path.Combine(project, "src"));
        File.WriteAllText(Path.Combine(project, "src", "on-host"), "bound");
        var file = Path.Combine(project, "docker-compose.yml");
        File.WriteAllText(file, """
            services:
              broker:
                image: ${IMAGE}
                command: ["sh", "-c", "mkdir -p /www && echo ${GREETING} from $$(hostname) > /www/index.html && exec httpd -f -p ${BROKER_PORT} -h /www"]
                healthcheck:
                  test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:${BROKER_PORT}/"]
                  interval: 1s
              reader:
                build: ./reader
                env_file: reader.env
                environment:
                  - BROKER_URL=http://broker:${BROKER_PORT}/
                  - SHELL_ONLY
                volumes: ["./src:/app", /app/node_modules]
                command: ["sh", "-c", "while true; do echo \"$$WHO/$$SHELL_ONLY got $$(wget -q -O - $$BROKER_URL) modules=$$(ls /app/node_modules) host=$$(cat /app/on-host)\"; sleep 0.5; done"]
                depends_on:
                  broker: {condition: service_healthy}
            """);
        var env = new Dictionary<string, string?> { ["SHELL_ONLY"] = "from-shell", ["GREETING"] = "hi" }; // the shell wins over .env

        // reader only builds: refused with how to give it an image, and every warning at once.
        var refused = await Orchctl.RunAsync([.. server, "apply", "-f", file], env);
        Assert.Equal(2, refused.Code);
        Assert.Contains("services.reader.build: service reader builds its image (./reader) and names none", refused.Err, StringComparison.Ordinal);
        Assert.Contains("--image-map reader=REGISTRY/reader:TAG", refused.Err, StringComparison.Ordinal);
        Assert.Contains("services.reader.volumes[1]: an anonymous volume: /app/node_modules is the node's volume 'reader-app-node_modules'", refused.Err, StringComparison.Ordinal);

        // The dry run shows the values the fleet will get.
        var dry = await Orchctl.RunAsync([.. server, "apply", "-f", file, "--image-map", "reader=busybox:modules", "--dry-run"], env);
        Assert.True(dry.Code == 0, dry.All);
        Assert.Contains("deployment shop: created (dry run)", dry.Out, StringComparison.Ordinal);
        Assert.Contains("echo hi from $(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www", dry.Out, StringComparison.Ordinal);
        Assert.Contains("\"BROKER_URL\": \"http://broker:8080/\"", dry.Out, StringComparison.Ordinal);

        var applied = await Orchctl.RunAsync([.. server, "apply", "-f", file, "--image-map", "reader=busybox:modules"], env);
        Assert.True(applied.Code == 0, applied.All);
        await WaitForContainerAsync(node, "shop-0_reader", s_wait);
        try
        {
            await node.LogsUntilAsync("shop-0_reader", lines => lines.Any(l => l.Text == "reader/from-shell got hi from broker modules=left-pad host=bound"), s_wait,
                "the reader reaching the broker by name, with its variables, the bind and the image's /app/node_modules over it");
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            var state = await node.Client.InspectAsync("shop-0_reader");
            throw new Xunit.Sdk.XunitException($"{e.Message}\nreader: {state.State} {state.Message} restarts {state.Restarts}\n{node.Daemon.Output[^Math.Min(4000, node.Daemon.Output.Length)..]}");
        }
        var reader = await node.Client.InspectAsync("shop-0_reader");
        var broker = await node.Client.InspectAsync("shop-0_broker");
        Assert.True(reader.StartedAt > broker.StartedAt);
        Assert.True(File.Exists(Path.Combine(node.StateDir, "volumes", "shop_reader-app-node_modules", "left-pad", "index.js")), "the anonymous volume on the node, filled from the image");
        Assert.Equal(["node_modules", "on-host"], Directory.GetFileSystemEntries(Path.Combine(project, "src")).Select(Path.GetFileName).Order(StringComparer.Ordinal)); // the mount point, empty on the host
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(project, "src", "node_modules")));

        // The same file again: unchanged (the same values, nothing rolled).
        var again = await Orchctl.RunAsync([.. server, "apply", "-f", file, "--image-map", "reader=busybox:modules"], env);
        Assert.Contains("deployment shop: unchanged", again.Out, StringComparison.Ordinal);

        // --stack: each service a deployment; on the node they reach each other by deployment name.
        var stack = Directory.CreateDirectory(dir.Combine("stack")).FullName;
        var stackFile = Path.Combine(stack, "docker-compose.yml");
        File.WriteAllText(stackFile, $$"""
            services:
              api:
                image: {{NodeHost.Image}}
                command: ["sh", "-c", "mkdir -p /www && echo api-page > /www/index.html && exec httpd -f -p 8080 -h /www"]
                healthcheck: {test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"], interval: 1s}
              client:
                image: {{NodeHost.Image}}
                command: ["sh", "-c", "while true; do echo \"client got $$(wget -q -O - http://api:8080/)\"; sleep 0.5; done"]
            """);
        var stacked = await Orchctl.RunAsync([.. server, "apply", "-f", stackFile, "--stack"]);
        Assert.True(stacked.Code == 0, stacked.All);
        Assert.DoesNotContain("services:", stacked.Err, StringComparison.Ordinal); // names reach across nodes: nothing to warn of
        await WaitForContainerAsync(node, "client-0", s_wait);
        await node.LogsUntilAsync("client-0", lines => lines.Any(l => l.Text == "client got api-page"), s_wait, "the client reaching api by its deployment name");
    }
}

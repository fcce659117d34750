using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.KeyValueStore;
using Orchestrator.Fleet.Agent;
using Orchestrator.Api;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Daemon.Tests;

/// <summary>
/// orchctl against a real nats-server holding a fleet's state written the way nodes and the
/// scheduler write it (heartbeats, leader, cordon, deployment status, events): golden outputs for
/// table/wide/json/yaml, describe, apply --dry-run, no escape codes off a terminal (and colour on one),
/// completion scripts that parse and complete, context config precedence, exit codes.
/// </summary>
[Trait("Category", "Integration")]
public sealed class OrchctlTests : IAsyncLifetime
{
    private static readonly DateTimeOffset s_t0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private readonly TempDir _dir = new("orchctl-test");
    private NatsServer _nats = null!;
    private NatsConnection _connection = null!;

    public async ValueTask InitializeAsync()
    {
        _nats = await NatsServer.StartAsync();
        _connection = new NatsConnection(new NatsOpts { Url = _nats.Url });
        await _connection.ConnectAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await _connection.DisposeAsync();
        await _nats.DisposeAsync();
        _dir.Dispose();
    }

    private Task<Orchctl.Result> Ctl(params string[] args) => Orchctl.RunAsync(["--server", _nats.Url, .. args], null);

    private static NodeInfo Node(string name, Dictionary<string, string> labels, IReadOnlyList<ContainerBrief> containers) => new()
    {
        Node = name, NodeId = "0123456789abcdef0123456789ab" + name[^2..] + "00", Version = "0.1.0+5f4104d5d561", Arch = "x64", Kernel = "6.1.0", Runtime = "native",
        Labels = labels, StartedAt = s_t0, UptimeSeconds = 3600,
        Status = new NodeStatus
        {
            CpuMilliCapacity = 4000, CpuMilliAllocatable = 3900, CpuMilliRequested = 200, MemoryCapacityBytes = 4L << 30, MemoryAllocatableBytes = (4L << 30) - (64L << 20),
            MemoryRequestedBytes = 32L << 20, MemoryUsedBytes = 512L << 20, Containers = containers.Count, Running = containers.Count(c => c.State == ContainerState.Running),
            Ready = containers.Count(c => c.Ready), Driver = "native",
        },
        Containers = containers,
    };

    /// <summary>
    /// The two nodes' heartbeats, written now: a node's state comes from its heartbeat's age, so
    /// the golden commands write them again first (a JIT orchctl on a loaded machine took over
    /// 15 s to reach get-nodes.json, and the nodes read as unreachable).
    /// </summary>
    private async Task PutNodeHeartbeatsAsync()
    {
        var kv = new NatsKVContext(new NatsJSContext(_connection));
        var nodes = await FleetStore.OpenAsync(kv, Buckets.Nodes, 1, default);
        await nodes.PutAsync("gw-01", JsonSerializer.SerializeToUtf8Bytes(Node("gw-01", new() { ["zone"] = "north", ["hw"] = "rpi4" },
            [new ContainerBrief { Name = "web-0", State = ContainerState.Running, Ready = true, CpuPercent = 12.5 }, new ContainerBrief { Name = "hello", State = ContainerState.Running, Ready = false, CpuPercent = 0.5, Message = "not ready: tcp 80 refused" }]),
            FleetJsonContext.Default.NodeInfo));
        await nodes.PutAsync("gw-02", JsonSerializer.SerializeToUtf8Bytes(Node("gw-02", new() { ["zone"] = "south" },
            [new ContainerBrief { Name = "web-1", State = ContainerState.Running, Ready = false, CpuPercent = 3 }]), FleetJsonContext.Default.NodeInfo));
    }

    /// <summary>Two nodes (gw-01 the scheduler, gw-02 cordoned), deployments web and api applied with orchctl, web's status, two events.</summary>
    private async Task SeedFleetAsync()
    {
        var js = new NatsJSContext(_connection);
        var kv = new NatsKVContext(js);
        await PutNodeHeartbeatsAsync();
        var leader = await FleetStore.OpenAsync(kv, Buckets.Leader, 1, default);
        await leader.PutAsync("scheduler", JsonSerializer.SerializeToUtf8Bytes("gw-01", FleetJsonContext.Default.String));
        var settings = await FleetStore.OpenAsync(kv, Buckets.NodeSettings, 1, default);
        await settings.PutAsync("gw-02", JsonSerializer.SerializeToUtf8Bytes(new NodeSettings { Cordoned = true }, FleetJsonContext.Default.NodeSettings));

        var manifest = Path.Combine(Repo.Root, "tests", "orchd.Tests", "golden", "fleet.yaml");
        var applied = await Ctl("apply", "-f", manifest);
        Assert.True(applied.Code == 0, applied.All);
        Assert.Equal("deployment api: created (revision 1)\ndeployment web: created (revision 1)\n", applied.Out); // each deployment counts its own revisions

        var status = await FleetStore.OpenAsync(kv, Buckets.DeploymentStatus, 1, default);
        await status.PutAsync("web", JsonSerializer.SerializeToUtf8Bytes(new DeploymentStatus
        {
            Name = "web", Desired = 3, Placed = 2, Replicas = new Dictionary<string, string> { ["web-0"] = "gw-01", ["web-1"] = "gw-02" },
            Unschedulable = ["replica web-2: no node fits: gw-01 has web-0 (antiAffinity), gw-02 is cordoned"], Scheduler = "gw-01", At = s_t0.AddMinutes(1),
            Revision = 2, Updated = 2, UpdatedReady = 1, Phase = RolloutPhase.Progressing, LastProgressAt = s_t0.AddMinutes(1), Wave = "canary", Surge = 1,
            CanaryReadySince = s_t0.AddSeconds(50),
        }, FleetJsonContext.Default.DeploymentStatus));

        await FleetStore.EnsureEventStreamAsync(js, default);
        foreach (var ev in new[]
        {
            new NodeEvent { At = s_t0.AddSeconds(5), Node = "gw-01", Kind = "container.started", Subject = "web-0", Message = "started (pid 4242)" },
            new NodeEvent { At = s_t0.AddSeconds(9), Node = "gw-02", Kind = "container.exited", Subject = "web-1", Message = "exited with code 1; restarting in 1s" },
        })
        {
            await js.PublishAsync(NodeEvent.SubjectFor(ev.Node, ev.Kind), JsonSerializer.SerializeToUtf8Bytes(ev, FleetJsonContext.Default.NodeEvent));
        }
    }

    [Fact(Timeout = 240_000)]
    public async Task Get_describe_and_apply_dry_run_match_the_golden_outputs_with_no_escape_codes_off_a_terminal()
    {
        await SeedFleetAsync();
        var outputs = new List<string>();
        async Task<string> Golden(string file, params string[] args)
        {
            await PutNodeHeartbeatsAsync();
            var result = await Ctl(args);
            Assert.True(result.Code == 0, $"orchctl {string.Join(' ', args)}: exit {result.Code}\n{result.All}");
            outputs.Add(result.All);
            var normalised = Orchctl.Normalise(result.Out, _dir.Path);
            if (file.EndsWith(".txt", StringComparison.Ordinal) && (file.StartsWith("get-", StringComparison.Ordinal) || file.StartsWith("top-", StringComparison.Ordinal)))
            {
                normalised = Orchctl.Realign(normalised);
            }
            Orchctl.AssertGolden(file, normalised);
            return result.Out;
        }

        Orchctl.AssertAligned(await Golden("get-nodes.txt", "get", "nodes"));
        Orchctl.AssertAligned(await Golden("get-nodes-wide.txt", "get", "nodes", "-o", "wide"));
        var nodesJson = await Golden("get-nodes.json", "get", "nodes", "-o", "json");
        var nodesYaml = await Golden("get-nodes.yaml", "get", "nodes", "-o", "yaml");
        Orchctl.AssertAligned(await Golden("get-deployments.txt", "get", "deployments"));
        Orchctl.AssertAligned(await Golden("get-deployments-wide.txt", "get", "deployments", "-o", "wide"));
        var deploymentsJson = await Golden("get-deployments.json", "get", "deployments", "-o", "json");
        var deploymentsYaml = await Golden("get-deployments.yaml", "get", "deployments", "-o", "yaml");
        await Golden("get-deployment-web.yaml", "get", "deployment/web", "-o", "yaml");
        Orchctl.AssertAligned(await Golden("get-events.txt", "get", "events"));
        await Golden("get-events.json", "get", "events", "-o", "json");
        await Golden("describe-node.txt", "describe", "node", "gw-01");
        await Golden("describe-deployment.txt", "describe", "deployment", "web");
        await Golden("rollout-status.txt", "rollout", "status", "web");
        Orchctl.AssertAligned(await Golden("top-nodes.txt", "top", "nodes"));

        // The YAML says what the JSON says (parsed back with YamlDotNet's representation model).
        AssertYamlEqualsJson(nodesYaml, nodesJson);
        AssertYamlEqualsJson(deploymentsYaml, deploymentsJson);

        // Selectors and names.
        var north = await Ctl("get", "nodes", "-l", "zone=north", "-o", "name");
        Assert.Equal("gw-01\n", north.Out);
        Assert.Equal("gw-02\n", (await Ctl("get", "nodes", "-l", "zone!=north,!hw", "-o", "name")).Out);
        Assert.Equal("web\n", (await Ctl("get", "deployments", "-l", "app=web", "-o", "name")).Out);
        Assert.Equal("gw-01\ngw-02\n", (await Ctl("get", "nodes", "-l", "zone in (north, south)", "-o", "name")).Out);
        Assert.Equal("gw-02\n", (await Ctl("get", "nodes", "-l", "zone notin (north)", "-o", "name")).Out);
        Assert.Equal("web\n", (await Ctl("get", "deployments", "-l", "app in (web)", "-o", "name")).Out);
        var unbalanced = await Ctl("get", "deployments", "-l", "app in (web");
        Assert.Equal(2, unbalanced.Code); // not "nothing matched", exit 0
        Assert.Equal("orchctl: -l 'app in (web': 'app in (web' is not a selector requirement; use key=value, key!=value, key, !key, key in (a,b) or key notin (a,b), comma-separated\n", unbalanced.Err);

        // apply --dry-run: web changed (a diff), api unchanged, cache created; nothing is written.
        var changed = _dir.Combine("changed.yaml");
        File.WriteAllText(changed, File.ReadAllText(Path.Combine(Repo.Root, "tests", "orchd.Tests", "golden", "fleet.yaml"))
            .Replace("replicas: 3", "replicas: 4", StringComparison.Ordinal).Replace("busybox:1.36", "busybox:1.37", StringComparison.Ordinal)
            + "---\nkind: Deployment\nname: cache\ntemplate: {image: busybox:latest, command: [sleep, \"3600\"]}\n");
        await Golden("apply-dry-run.txt", "apply", "-f", changed, "--dry-run");
        Assert.Equal("2", (await Ctl("get", "deployment", "web", "-o", "json")).Out.Split("\"revision\": ")[1][..1]);
        Assert.Equal("api\nweb\n", (await Ctl("get", "deployments", "-o", "name")).Out);

        Assert.All(outputs, o => Assert.DoesNotContain('\u001b', o));
    }

    private static void AssertYamlEqualsJson(string yaml, string json)
    {
        var stream = new YamlDotNet.RepresentationModel.YamlStream();
        stream.Load(new StringReader(yaml));
        using var doc = JsonDocument.Parse(json);
        AssertSame(stream.Documents[0].RootNode, doc.RootElement, "$");
    }

    private static void AssertSame(YamlDotNet.RepresentationModel.YamlNode yaml, JsonElement json, string path)
    {
        switch (json.ValueKind)
        {
            case JsonValueKind.Object:
                var mapping = Assert.IsType<YamlDotNet.RepresentationModel.YamlMappingNode>(yaml);
                Assert.Equal(json.EnumerateObject().Count(), mapping.Children.Count);
                foreach (var property in json.EnumerateObject().Where(p => p.Name != "heartbeatAgeSeconds")) // changes between the two runs
                {
                    AssertSame(mapping.Children[new YamlDotNet.RepresentationModel.YamlScalarNode(property.Name)], property.Value, $"{path}.{property.Name}");
                }
                break;
            case JsonValueKind.Array:
                var sequence = Assert.IsType<YamlDotNet.RepresentationModel.YamlSequenceNode>(yaml);
                Assert.Equal(json.GetArrayLength(), sequence.Children.Count);
                var i = 0;
                foreach (var item in json.EnumerateArray())
                {
                    AssertSame(sequence.Children[i], item, $"{path}[{i++}]");
                }
                break;
            default:
                var scalar = Assert.IsType<YamlDotNet.RepresentationModel.YamlScalarNode>(yaml);
                var quoted = scalar.Style is YamlDotNet.Core.ScalarStyle.DoubleQuoted or YamlDotNet.Core.ScalarStyle.SingleQuoted;
                switch (json.ValueKind)
                {
                    case JsonValueKind.String:
                        Assert.True(scalar.Value == json.GetString(), $"{path}: yaml '{scalar.Value}' json '{json.GetString()}'");
                        // A plain scalar must not read back as a number, bool or null.
                        Assert.True(quoted || !Regex.IsMatch(scalar.Value!, @"^(-?\d+(\.\d+)?|true|false|null|~|yes|no|on|off)$", RegexOptions.IgnoreCase), $"{path}: '{scalar.Value}' should be quoted");
                        break;
                    case JsonValueKind.Number:
                        Assert.False(quoted, $"{path}: a number is not quoted");
                        Assert.Equal(json.GetDouble(), double.Parse(scalar.Value!, System.Globalization.CultureInfo.InvariantCulture));
                        break;
                    default:
                        Assert.False(quoted, path);
                        Assert.Equal(json.GetRawText(), scalar.Value);
                        break;
                }
                break;
        }
    }

    [Fact(Timeout = 120_000)]
    public async Task Colour_appears_on_a_terminal_only_and_never_with_NO_COLOR()
    {
        await SeedFleetAsync();
        var script = Requires.Program("script", "bsdutils");
        async Task<string> OnTerminal(string? noColor)
        {
            var env = new Dictionary<string, string?> { ["NO_COLOR"] = noColor, ["TERM"] = "xterm" };
            var result = await Orchctl.RunAsync(["-qec", $"{Repo.Binary("orchctl")} --server {_nats.Url} get nodes", "/dev/null"], env, program: script);
            Assert.True(result.Code == 0, result.All);
            return result.Out;
        }
        var coloured = await OnTerminal(null);
        Assert.Contains("\u001b[1mNODE\u001b[0m", coloured, StringComparison.Ordinal);
        Assert.Contains("\u001b[32mready\u001b[0m", coloured, StringComparison.Ordinal);
        Assert.DoesNotContain('\u001b', await OnTerminal("1"));
        var piped = await Ctl("get", "nodes");
        Assert.DoesNotContain('\u001b', piped.All);
        // --no-color on a terminal, too.
        var flagged = await Orchctl.RunAsync(["-qec", $"{Repo.Binary("orchctl")} --no-color --server {_nats.Url} get nodes", "/dev/null"], new Dictionary<string, string?> { ["TERM"] = "xterm" }, program: script);
        Assert.DoesNotContain('\u001b', flagged.Out);
    }

    [Fact(Timeout = 120_000)]
    public async Task Completion_scripts_parse_and_complete_commands_flags_and_names_from_the_fleet()
    {
        await SeedFleetAsync();
        var env = new Dictionary<string, string?>
        {
            ["PATH"] = Path.GetDirectoryName(Repo.Binary("orchctl")) + ":" + Environment.GetEnvironmentVariable("PATH"),
            ["ORCH_SERVER"] = _nats.Url,
        };
        foreach (var shell in new[] { "bash", "zsh", "fish" })
        {
            var generated = await Orchctl.RunAsync(["completion", shell], null);
            Assert.True(generated.Code == 0, generated.All);
            File.WriteAllText(_dir.Combine($"orchctl.{shell}"), generated.Out);
            var program = Requires.Which(shell);
            if (program is null)
            {
                continue; // checked below for bash; zsh and fish when installed
            }
            var check = await Orchctl.RunAsync(["-n", _dir.Combine($"orchctl.{shell}")], null, program: program);
            Assert.True(check.Code == 0, $"{shell} -n: {check.All}");
        }
        Assert.Equal(2, (await Orchctl.RunAsync("completion", "tcsh")).Code);

        var bash = Requires.Program("bash", "bash");
        async Task<string[]> Complete(params string[] words)
        {
            var line = string.Join(' ', words.Select(w => $"'{w}'"));
            var result = await Orchctl.RunAsync(["-c", $"source {_dir.Combine("orchctl.bash")}; COMP_WORDS=({line}); COMP_CWORD={words.Length - 1}; _orchctl; printf '%s\\n' \"${{COMPREPLY[@]}}\""], env, program: bash);
            Assert.True(result.Code == 0, result.All);
            return result.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        }
        Assert.Equal(["get"], await Complete("orchctl", "ge"));
        Assert.Equal(["describe", "delete"], await Complete("orchctl", "de"));
        Assert.Equal(["nodes", "deployments", "containers", "images", "events"], await Complete("orchctl", "get", ""));
        Assert.Equal(["table", "wide", "json", "yaml", "name", "jsonpath=", "custom-columns="], await Complete("orchctl", "get", "nodes", "-o", ""));
        Assert.Equal(["gw-01", "gw-02"], await Complete("orchctl", "get", "nodes", ""));
        Assert.Equal(["api", "web"], await Complete("orchctl", "--timeout", "5", "describe", "deployment", ""));
        Assert.Equal(["web"], await Complete("orchctl", "rollout", "status", "w"));
        Assert.Equal(["gw-01", "gw-02"], await Complete("orchctl", "cordon", ""));
        Assert.Equal(["gw-01", "gw-02"], await Complete("orchctl", "logs", "-n", ""));
        Assert.Equal(["bash", "fish", "zsh"], (await Complete("orchctl", "completion", "")).Order().ToArray());
        Assert.Contains("--dry-run", await Complete("orchctl", "apply", "--"));
        Assert.Contains("--server", await Complete("orchctl", "apply", "--"));

        if (Requires.Which("fish") is { } fish)
        {
            var result = await Orchctl.RunAsync(["-c", $"source {_dir.Combine("orchctl.fish")}; complete -C 'orchctl get '; complete -C 'orchctl describe deployment '"], env, program: fish);
            Assert.True(result.Code == 0, result.All);
            var words = result.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('\t')[0]).ToList();
            Assert.Contains("nodes", words);
            Assert.Contains("web", words);
        }
    }

    [Fact(Timeout = 120_000)]
    public async Task Context_config_settings_come_from_flags_then_env_then_the_context_then_defaults()
    {
        var config = _dir.Combine("config.yaml");
        var creds = _dir.Combine("b.creds");
        File.WriteAllText(creds, "");
        File.WriteAllText(config, $"""
            # the operator's contexts
            current-context: a
            contexts:
              a:
                server: {_nats.Url}
                node: node-a
                timeout: 7s
              b:
                servers: [nats://10.0.0.1:4222, nats://10.0.0.2:4222]
                creds: b.creds
            """);
        Dictionary<string, string?> Env(params (string, string)[] extra)
        {
            var env = new Dictionary<string, string?> { ["ORCH_CONFIG"] = config };
            foreach (var (k, v) in extra)
            {
                env[k] = v;
            }
            return env;
        }
        async Task<Dictionary<string, (string Value, string From)>> View(string[] args, Dictionary<string, string?> env)
        {
            var result = await Orchctl.RunAsync([.. args, "config", "view"], env);
            Assert.True(result.Code == 0, result.All);
            Assert.DoesNotContain('\u001b', result.All);
            return result.Out.Split('\n').SkipWhile(l => !l.StartsWith("SETTING", StringComparison.Ordinal)).Skip(1).TakeWhile(l => l.Length > 0)
                .Select(l => Regex.Split(l, " {2,}")).ToDictionary(c => c[0], c => (c[1], c[2]));
        }

        var fromContext = await View([], Env());
        Assert.Equal((_nats.Url, "context a"), fromContext["server"]);
        Assert.Equal(("node-a", "context a"), fromContext["node"]);
        Assert.Equal(("7s", "context a"), fromContext["timeout"]);
        Assert.Equal(("-", "-"), fromContext["creds"]);

        var fromEnv = await View([], Env(("ORCH_SERVER", "nats://env:4222"), ("ORCH_NODE", "node-env")));
        Assert.Equal(("nats://env:4222", "env ORCH_SERVER"), fromEnv["server"]);
        Assert.Equal(("node-env", "env ORCH_NODE"), fromEnv["node"]);
        Assert.Equal(("7s", "context a"), fromEnv["timeout"]);

        var fromFlags = await View(["--server", "nats://flag:4222", "-n", "node-flag"], Env(("ORCH_SERVER", "nats://env:4222")));
        Assert.Equal(("nats://flag:4222", "flag --server"), fromFlags["server"]);
        Assert.Equal(("node-flag", "flag --node"), fromFlags["node"]);

        var contextB = await View(["--context", "b"], Env());
        Assert.Equal(("nats://10.0.0.1:4222,nats://10.0.0.2:4222", "context b"), contextB["server"]);
        Assert.Equal((creds, "context b"), contextB["creds"]); // relative to the config file
        Assert.Equal(("2s", "default"), contextB["timeout"]);
        Assert.Equal(("nats://10.0.0.1:4222,nats://10.0.0.2:4222", "context b"), (await View([], Env(("ORCH_CONTEXT", "b"))))["server"]);

        var defaults = await View([], new Dictionary<string, string?> { ["ORCH_CONFIG"] = _dir.Combine("none.yaml") });
        Assert.Equal(("nats://127.0.0.1:4222", "default"), defaults["server"]);

        // The context is what connects: no --server, and the deployments of context a's server.
        await Orchctl.RunAsync(["--server", _nats.Url, "apply", "-f", Path.Combine(Repo.Root, "tests", "orchd.Tests", "golden", "fleet.yaml")], null);
        var listed = await Orchctl.RunAsync(["get", "deployments", "-o", "name"], Env());
        Assert.True(listed.Code == 0, listed.All);
        Assert.Equal("api\nweb\n", listed.Out);

        // get-contexts, use-context (comments kept), set-context, current-context.
        var contexts = await Orchctl.RunAsync(["config", "get-contexts"], Env());
        Assert.Matches(@"^\*\s+a\s+nats://127", contexts.Out.Split('\n')[1]);
        Assert.Equal(0, (await Orchctl.RunAsync(["config", "use-context", "b"], Env())).Code);
        Assert.Contains("# the operator's contexts", File.ReadAllText(config), StringComparison.Ordinal);
        Assert.Equal("b\n", (await Orchctl.RunAsync(["config", "current-context"], Env())).Out);
        var set = await Orchctl.RunAsync(["config", "set-context", "c", "--server", "nats://c:4222", "--node", "gw-c", "--current"], Env());
        Assert.True(set.Code == 0, set.All);
        var fromC = await View([], Env());
        Assert.Equal(("nats://c:4222", "context c"), fromC["server"]);
        Assert.Equal(("gw-c", "context c"), fromC["node"]);
        Assert.Equal("nats://10.0.0.1:4222,nats://10.0.0.2:4222", (await View(["--context", "b"], Env()))["server"].Value); // b kept

        // Mistakes: one sentence each, exit 2.
        var unknownContext = await Orchctl.RunAsync(["--context", "nope", "get", "nodes"], Env());
        Assert.Equal(2, unknownContext.Code);
        Assert.Contains("names context 'nope'", unknownContext.Err, StringComparison.Ordinal);
        File.WriteAllText(config, "current-context: a\ncontexts:\n  a:\n    sever: nats://x:1\n");
        var typo = await Orchctl.RunAsync(["get", "nodes"], Env());
        Assert.Equal(2, typo.Code);
        Assert.StartsWith($"orchctl: {config}:4:5: context 'a': unknown key 'sever'; did you mean 'server'?", typo.Err, StringComparison.Ordinal);
    }

    /// <summary>
    /// Issue 22: `rollout undo` after only scales said "no earlier template" while history listed
    /// revisions 1-3, and scale printed the bucket's sequence as the revision. Now: scale prints
    /// the deployment's own revision, history says what each revision changed, and undo says why
    /// there is nothing to go back to, then goes back over a template change, keeping replicas.
    /// </summary>
    /// <summary>
    /// #17, item 3: an automatic rollback is the scheduler's decision in the status (the status the
    /// scheduler writes, put here as it writes it), not a revision. orchctl shows what runs (get,
    /// describe, history's `N*` row, rollout status), and scale and undo start from what runs: scale
    /// keeps the rolled-back template with its signature; undo then goes back to the revision rolled
    /// back from.
    /// </summary>
    [Fact(Timeout = 120_000)]
    public async Task After_the_schedulers_rollback_orchctl_shows_what_runs_and_scale_and_undo_start_from_it()
    {
        var seed = _dir.Combine("op.nk");
        Assert.Equal(0, (await Orchctl.RunAsync(["keys", "create", "-o", seed])).Code);
        var file = _dir.Combine("roll.yaml");
        File.WriteAllText(file, "kind: Deployment\nname: roll\nreplicas: 2\ntemplate: {image: busybox:latest, command: [sleep, \"60\"]}\n");
        Assert.Equal("deployment roll: created (revision 1, signed)\n", (await Ctl("apply", "-f", file, "--sign-key", seed)).Out);
        File.WriteAllText(file, "kind: Deployment\nname: roll\nreplicas: 2\ntemplate: {image: busybox:latest, command: [sleep, \"61\"]}\n");
        Assert.Equal("deployment roll: configured (revision 2, signed)\n", (await Ctl("apply", "-f", file, "--sign-key", seed)).Out);

        var fleet = new FleetClient(_connection);
        var history = await fleet.HistoryAsync("roll");
        var (v1, v2) = (history[0].Deployment!, history[1].Deployment!);
        const string Why = "revision 2: replica roll-0 on gw-01 not ready (running: not ready) within 6s";
        var statuses = await FleetStore.OpenAsync(new NatsKVContext(new NatsJSContext(_connection)), Buckets.DeploymentStatus, 1, default);
        await statuses.PutAsync("roll", JsonSerializer.SerializeToUtf8Bytes(new DeploymentStatus
        {
            Name = "roll", Desired = 2, Scheduler = "gw-01", At = s_t0, Revision = v2.Revision!.Value, Phase = RolloutPhase.RolledBack,
            RolledBack = Why, LastRollback = Why, LastRollbackAt = s_t0, RolledBackTo = SchedulerDecisions.RollbackTo(v1),
        }, FleetJsonContext.Default.DeploymentStatus));

        // What runs is revision 1's template, under revision 2.
        var view = (await fleet.GetDeploymentsAsync()).Single(d => d.Deployment.Name == "roll");
        Assert.Equal(["sleep", "60"], view.Deployment.Template.Command);
        Assert.Equal(2UL, view.Deployment.ShownRevision());
        var describe = await Ctl("describe", "deployment", "roll");
        Assert.True(describe.Code == 0, describe.All);
        Assert.Contains("Runs:", describe.Out, StringComparison.Ordinal);
        Assert.Contains("revision 1's template (image busybox:latest): the scheduler rolled revision 2 back", describe.Out, StringComparison.Ordinal);
        var shown = (await Ctl("rollout", "history", "roll")).Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(4, shown.Length);
        Assert.StartsWith("2* ", shown[3], StringComparison.Ordinal);
        Assert.EndsWith($"rolled back by the scheduler to revision 1's template: {Why}", shown[3], StringComparison.Ordinal);
        var status = await Ctl("rollout", "status", "roll");
        Assert.Equal(1, status.Code);
        Assert.Contains($"rolled back: {Why}", status.Out, StringComparison.Ordinal);
        var watched = await Ctl("rollout", "status", "roll", "-w", "--wait-timeout", "20s");
        Assert.Equal(1, watched.Code);
        Assert.Contains($"revision 2 was rolled back: {Why}", watched.Err, StringComparison.Ordinal);

        // scale writes what runs with the new count: revision 1's template and signature.
        Assert.Equal("deployment roll: scaled to 3 (revision 3)\n", (await Ctl("scale", "roll", "3")).Out);
        var v3 = (await fleet.HistoryAsync("roll"))[^1].Deployment!;
        Assert.Equal(["sleep", "60"], v3.Template.Command);
        Assert.Equal(3, v3.Replicas);
        Assert.Equal(v1.Signature!.Serial, v3.Signature!.Serial);
        Assert.Equal(v1.Signature.Sig, v3.Signature.Sig);
        Assert.Equal(["sleep", "60"], (await fleet.GetDeploymentsAsync()).Single(d => d.Deployment.Name == "roll").Deployment.Template.Command);

        // undo goes back over the template, to the one rolled back from, keeping the count.
        Assert.Equal("deployment roll: rolled back (revision 4)\n", (await Ctl("rollout", "undo", "roll", "--sign-key", seed)).Out);
        var v4 = (await fleet.GetDeploymentsAsync()).Single(d => d.Deployment.Name == "roll").Deployment;
        Assert.Equal(["sleep", "61"], v4.Template.Command);
        Assert.Equal(3, v4.Replicas);
    }

    /// <summary>
    /// Without a scale in between, undo straight after the scheduler's rollback goes back to the
    /// revision it rolled back from too (as when a rollback was a revision of its own).
    /// </summary>
    [Fact(Timeout = 120_000)]
    public async Task Undo_right_after_the_schedulers_rollback_goes_to_the_revision_it_rolled_back_from()
    {
        var file = _dir.Combine("back.yaml");
        File.WriteAllText(file, "kind: Deployment\nname: back\nreplicas: 1\ntemplate: {image: busybox:latest, command: [sleep, \"60\"]}\n");
        Assert.Equal(0, (await Ctl("apply", "-f", file)).Code);
        File.WriteAllText(file, "kind: Deployment\nname: back\nreplicas: 1\ntemplate: {image: busybox:latest, command: [sleep, \"61\"]}\n");
        Assert.Equal(0, (await Ctl("apply", "-f", file)).Code);
        var fleet = new FleetClient(_connection);
        var history = await fleet.HistoryAsync("back");
        var statuses = await FleetStore.OpenAsync(new NatsKVContext(new NatsJSContext(_connection)), Buckets.DeploymentStatus, 1, default);
        await statuses.PutAsync("back", JsonSerializer.SerializeToUtf8Bytes(new DeploymentStatus
        {
            Name = "back", Revision = history[1].Deployment!.Revision!.Value, Phase = RolloutPhase.Complete, LastRollback = "not ready", RolledBackTo = SchedulerDecisions.RollbackTo(history[0].Deployment!),
        }, FleetJsonContext.Default.DeploymentStatus));
        Assert.Equal(["sleep", "60"], (await fleet.GetDeploymentsAsync()).Single().Deployment.Template.Command);
        Assert.Equal("deployment back: rolled back (revision 3)\n", (await Ctl("rollout", "undo", "back")).Out);
        Assert.Equal(["sleep", "61"], (await fleet.GetDeploymentsAsync()).Single().Deployment.Template.Command);
    }

    [Fact(Timeout = 120_000)]
    public async Task Rollout_history_says_what_each_revision_changed_and_undo_goes_back_over_templates_only()
    {
        var file = _dir.Combine("steady.yaml");
        File.WriteAllText(file, "kind: Deployment\nname: steady\nreplicas: 2\ntemplate: {image: busybox:latest, command: [sleep, \"60\"]}\n");
        Assert.Equal("deployment steady: created (revision 1)\n", (await Ctl("apply", "-f", file)).Out);
        var other = _dir.Combine("other.yaml");
        File.WriteAllText(other, "kind: Deployment\nname: other\nreplicas: 1\ntemplate: {image: busybox:latest}\n");
        Assert.Equal(0, (await Ctl("apply", "-f", other)).Code); // moves the bucket's sequence on
        Assert.Equal("deployment steady: scaled to 5 (revision 2)\n", (await Ctl("scale", "steady", "5")).Out);
        Assert.Equal("deployment steady: scaled to 3 (revision 3)\n", (await Ctl("scale", "steady", "3")).Out);

        var undo = await Ctl("rollout", "undo", "steady");
        Assert.Equal(1, undo.Code);
        Assert.Equal("orchctl: deployment 'steady' has no earlier template to go back to: its kept revisions (1-3) all run this one (they changed replicas or rollout settings, which undo leaves as they are); `orchctl rollout history steady` shows what each changed\n", undo.Err);

        File.WriteAllText(file, "kind: Deployment\nname: steady\nreplicas: 3\ntemplate: {image: busybox:latest, command: [sleep, \"61\"]}\n");
        Assert.Equal("deployment steady: configured (revision 4)\n", (await Ctl("apply", "-f", file)).Out);
        Assert.Equal(0, (await Ctl("rollout", "pause", "steady")).Code);
        var history = (await Ctl("rollout", "history", "steady")).Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(6, history.Length);
        Assert.EndsWith("CHANGE", history[0], StringComparison.Ordinal);
        // BY: who wrote each revision, as orchctl's credentials name it (none here).
        Assert.Contains(" BY ", history[0], StringComparison.Ordinal);
        Assert.All(history.Skip(1), row => Assert.Contains(" anonymous ", row, StringComparison.Ordinal));
        string[] changes = ["created", "replicas 2 -> 5", "replicas 5 -> 3", "template", "paused"];
        for (var i = 0; i < changes.Length; i++)
        {
            Assert.StartsWith((i + 1).ToString(System.Globalization.CultureInfo.InvariantCulture) + " ", history[i + 1], StringComparison.Ordinal);
            Assert.EndsWith(" " + changes[i], history[i + 1], StringComparison.Ordinal);
        }

        // Paused: undo would write a template nothing rolls out (kubectl refuses too).
        var paused = await Ctl("rollout", "undo", "steady");
        Assert.Equal(1, paused.Code);
        Assert.Equal("orchctl: deployment 'steady' is paused; `orchctl rollout resume steady` first, then undo\n", paused.Err);
        Assert.Equal(0, (await Ctl("rollout", "resume", "steady")).Code);

        // Undo goes back over the template change (revision 3's template), keeping today's 3 replicas.
        Assert.Equal("deployment steady: rolled back (revision 7)\n", (await Ctl("rollout", "undo", "steady")).Out);
        var steady = (await new FleetClient(_connection).GetDeploymentsAsync()).Single(d => d.Deployment.Name == "steady").Deployment;
        Assert.Equal(["sleep", "60"], steady.Template.Command);
        Assert.Equal(3, steady.Replicas);
    }

    /// <summary>
    /// Issue 26, item 4: an autoscaled deployment's file applied again keeps the autoscaler's count
    /// when it leaves replicas out, and says so (with --dry-run too, whose diff then has no replica
    /// change); a count in the file wins within min/max; without autoscale the file owns it again;
    /// orchctl sign keeps a left-out replicas out.
    /// </summary>
    [Fact(Timeout = 120_000)]
    public async Task Apply_keeps_the_autoscalers_count_when_the_file_leaves_replicas_out_and_says_so()
    {
        const string Template = "kind: Deployment\nname: burst\ntemplate: {image: busybox:latest, command: [sleep, \"SECONDS\"]}\n";
        const string Autoscale = "autoscale: {min: 1, max: 6, targetCpuPercent: 50}\n";
        string Write(string name, string yaml)
        {
            var path = _dir.Combine(name);
            File.WriteAllText(path, yaml);
            return path;
        }
        var file = Write("burst.yaml", Template.Replace("SECONDS", "60", StringComparison.Ordinal) + Autoscale);
        var created = await Ctl("apply", "-f", file);
        Assert.True(created.Code == 0, created.All);
        Assert.Equal("deployment burst: created (revision 1)\n", created.Out);
        var fleet = new FleetClient(_connection);
        await fleet.ScaleAsync("burst", 4); // what the autoscaler writes
        async Task<int> ReplicasAsync() => (await fleet.GetDeploymentsAsync()).Single(d => d.Deployment.Name == "burst").Deployment.Replicas;

        // The same file, dry run and for real, twice: unchanged, the count kept, and said.
        const string Kept = "  replicas 4 kept (the autoscaler's count: the file leaves replicas out)\n";
        Assert.Equal("deployment burst: unchanged\n" + Kept + "dry run: 0 to create, 0 to change, 1 unchanged; nothing written\n", (await Ctl("apply", "-f", file, "--dry-run")).Out);
        Assert.Equal("deployment burst: unchanged\n" + Kept, (await Ctl("apply", "-f", file)).Out);
        Assert.Equal("deployment burst: unchanged\n" + Kept, (await Ctl("apply", "-f", file)).Out);
        Assert.Equal(4, await ReplicasAsync());

        // A template change: the diff shows it and no replica change (it was -4 / +1).
        var changed = Write("burst-changed.yaml", Template.Replace("SECONDS", "61", StringComparison.Ordinal) + Autoscale);
        var dry = await Ctl("apply", "-f", changed, "--dry-run");
        Assert.True(dry.Code == 0, dry.All);
        Assert.StartsWith("deployment burst: changed (dry run)\n" + Kept, dry.Out, StringComparison.Ordinal);
        Assert.Contains("-      \"60\"", dry.Out, StringComparison.Ordinal);
        Assert.Contains("+      \"61\"", dry.Out, StringComparison.Ordinal);
        Assert.DoesNotContain(dry.Out.Split('\n'), l => (l.StartsWith("  -", StringComparison.Ordinal) || l.StartsWith("  +", StringComparison.Ordinal)) && l.Contains("\"replicas\"", StringComparison.Ordinal));
        var configured = await Ctl("apply", "-f", changed);
        Assert.Equal("deployment burst: configured (revision 3)\n" + Kept, configured.Out);
        Assert.Equal(4, await ReplicasAsync());

        // replicas in the file wins, clamped to max; the change is in the diff and the note.
        var explicitFile = Write("burst-20.yaml", Template.Replace("SECONDS", "61", StringComparison.Ordinal) + Autoscale + "replicas: 20\n");
        var clamped = await Ctl("apply", "-f", explicitFile, "--dry-run");
        Assert.StartsWith("deployment burst: changed (dry run)\n  replicas 20 in the file is outside autoscale 1-6: 6 (autoscale.max 6)\n", clamped.Out, StringComparison.Ordinal);
        Assert.Contains("-  \"replicas\": 4,", clamped.Out, StringComparison.Ordinal);
        Assert.Contains("+  \"replicas\": 6,", clamped.Out, StringComparison.Ordinal);
        var five = Write("burst-5.yaml", Template.Replace("SECONDS", "61", StringComparison.Ordinal) + Autoscale + "replicas: 5\n");
        Assert.Equal("deployment burst: configured (revision 4)\n  replicas 4 → 5: set in the file (the autoscaler carries on from there)\n", (await Ctl("apply", "-f", five)).Out);
        Assert.Equal(5, await ReplicasAsync());

        // autoscale taken out and replicas left out: the file owns the count again, and it says so.
        var plain = Write("burst-plain.yaml", Template.Replace("SECONDS", "61", StringComparison.Ordinal));
        var handedBack = await Ctl("apply", "-f", plain, "--dry-run");
        Assert.StartsWith("deployment burst: changed (dry run)\n  replicas 5 → 1: autoscale is no longer in the file", handedBack.Out, StringComparison.Ordinal);
        Assert.Contains("-  \"replicas\": 5,", handedBack.Out, StringComparison.Ordinal);
        Assert.Contains("+  \"replicas\": 1,", handedBack.Out, StringComparison.Ordinal);

        // sign: a left-out replicas stays out of the signed file (so applying it keeps the count too).
        var seed = _dir.Combine("op.nk");
        var key = await Orchctl.RunAsync(["keys", "create", "-o", seed]);
        Assert.True(key.Code == 0, key.All);
        var signed = await Orchctl.RunAsync(["sign", "-f", changed, "--key", seed]);
        Assert.True(signed.Code == 0, signed.All);
        Assert.DoesNotContain("\"replicas\"", signed.Out, StringComparison.Ordinal);
        Assert.Contains("\"signature\"", signed.Out, StringComparison.Ordinal);
        var signedFile = Write("burst-signed.yaml", signed.Out);
        var applySigned = await Ctl("apply", "-f", signedFile);
        Assert.True(applySigned.Code == 0, applySigned.All);
        Assert.Equal("deployment burst: configured (revision 5)\n  replicas 5 kept (the autoscaler's count: the file leaves replicas out)\n", applySigned.Out);
        Assert.Equal(5, await ReplicasAsync());
    }

    [Fact(Timeout = 120_000)]
    public async Task Apply_reads_files_directories_and_stdin_writes_only_changes_and_delete_takes_a_file()
    {
        var dir = _dir.Combine("deploy");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "a.yaml"), "kind: Deployment\nname: one\ntemplate: {image: busybox:latest, command: [sleep, \"60\"]}\n");
        File.WriteAllText(Path.Combine(dir, "b.json"), """{"kind": "Deployment", "name": "two", "replicas": 2, "template": {"image": "busybox:latest"}}""");
        File.WriteAllText(Path.Combine(dir, "notes.txt"), "not a manifest");
        var applied = await Ctl("apply", "-f", dir);
        Assert.True(applied.Code == 0, applied.All);
        Assert.Equal("deployment one: created (revision 1)\ndeployment two: created (revision 1)\n", applied.Out);
        // Again: nothing changed, nothing written.
        Assert.Equal("deployment one: unchanged\ndeployment two: unchanged\n", (await Ctl("apply", "-f", dir)).Out);
        // stdin
        var piped = await Orchctl.RunAsync(["--server", _nats.Url, "apply", "-f", "-"], null, "kind: Deployment\nname: one\nreplicas: 5\ntemplate: {image: busybox:latest, command: [sleep, \"60\"]}\n");
        Assert.True(piped.Code == 0, piped.All);
        Assert.Equal("deployment one: configured (revision 2)\n", piped.Out);

        // Every error of every file at once, nothing written.
        File.WriteAllText(Path.Combine(dir, "c.yaml"), "kind: Deployment\nname: Bad Name\ntemplate: {image: busybox:latest}\n");
        File.WriteAllText(Path.Combine(dir, "d.yaml"), "kind: Deployment\nname: one\ntemplate: {image: busybox:latest}\n");
        // A broken file is bad input as a bad flag is: exit 2, each line "orchctl: FILE:…", and
        // said before NATS is asked (an unreachable server says the same).
        var broken = await Ctl("apply", "-f", dir);
        Assert.Equal(2, broken.Code);
        var lines = broken.Err.TrimEnd('\n').Split('\n');
        Assert.Equal(2, lines.Length);
        Assert.All(lines, l => Assert.StartsWith("orchctl: ", l, StringComparison.Ordinal));
        Assert.StartsWith($"orchctl: {Path.Combine(dir, "c.yaml")}:2:", lines[0], StringComparison.Ordinal);
        Assert.Contains("'Bad Name'", lines[0], StringComparison.Ordinal);
        Assert.Contains("deployment 'one' is also in", lines[1], StringComparison.Ordinal);
        Assert.Equal("", broken.Out);
        var offline = await Orchctl.RunAsync("--server", "nats://127.0.0.1:1", "--timeout", "1", "apply", "-f", dir, "--dry-run");
        Assert.Equal((2, broken.Err), (offline.Code, offline.Err));
        File.WriteAllText(Path.Combine(dir, "c.yaml"), "kind: Deployment\nname: c\ntemplate:\n  image: busybox\n  command: [sh, -c\n");
        var syntax = await Ctl("delete", "-f", Path.Combine(dir, "c.yaml"));
        Assert.Equal(2, syntax.Code);
        Assert.Equal($"orchctl: {Path.Combine(dir, "c.yaml")}:6:1: not valid YAML: a list opened with '[' is not closed: add the ']' (and a ',' between items)\n", syntax.Err);
        File.Delete(Path.Combine(dir, "c.yaml"));
        File.Delete(Path.Combine(dir, "d.yaml"));

        // A docker-compose file as a stack: each service a deployment, the keys that do not map as warnings on stderr.
        var compose = await Ctl("apply", "-f", Path.Combine(Repo.Root, "examples", "compose", "docker-compose.yml"), "--stack", "--dry-run");
        Assert.True(compose.Code == 0, compose.All);
        Assert.Contains("deployment web: created (dry run)", compose.Out, StringComparison.Ordinal);
        Assert.Contains("depends_on", compose.Err, StringComparison.Ordinal);
        Assert.All(compose.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => Assert.StartsWith("warning: ", l, StringComparison.Ordinal));

        var deleted = await Ctl("delete", "-f", dir);
        Assert.True(deleted.Code == 0, deleted.All);
        Assert.Equal("deployment one: deleted\ndeployment two: deleted\n", deleted.Out);
        var again = await Ctl("delete", "deployment", "one");
        Assert.Equal(1, again.Code);
        Assert.Equal("orchctl: no deployment 'one' in the fleet; `orchctl get deployments` lists them\n", again.Err);
        Assert.Equal(0, (await Ctl("delete", "deployment", "one", "--ignore-not-found")).Code);
    }

    /// <summary>
    /// delete node (kubectl delete node): a ready node is refused with the fix, since its next
    /// heartbeat would bring it back; --force, or a node that has gone quiet, is forgotten with its
    /// cordon/drain settings. Unknown kinds and names say so (#22: delete took only deployments).
    /// </summary>
    [Fact(Timeout = 120_000)]
    public async Task Delete_node_refuses_a_ready_node_and_forgets_one_with_force()
    {
        await PutNodeHeartbeatsAsync();
        Assert.Equal(0, (await Ctl("cordon", "gw-02")).Code);
        var refused = await Ctl("delete", "node", "gw-02");
        Assert.Equal(1, refused.Code);
        Assert.Matches(@"^orchctl: node 'gw-02' is ready \(heartbeat \d+s ago\): its next heartbeat would bring it back; stop orchd on it first \(`orchctl drain gw-02` moves its replicas off meanwhile\), or --force\n$", refused.Err);
        Assert.Contains("gw-02", (await Ctl("get", "nodes", "-o", "name")).Out, StringComparison.Ordinal);

        var forced = await Ctl("delete", "node/gw-02", "--force");
        Assert.True(forced.Code == 0, forced.All);
        Assert.Equal("node gw-02: deleted (its replicas are placed elsewhere)\n", forced.Out);
        Assert.Equal("gw-01\n", (await Ctl("get", "nodes", "-o", "name")).Out);
        var settings = await FleetStore.OpenAsync(new NatsKVContext(new NatsJSContext(_connection)), Buckets.NodeSettings, 1, default);
        Assert.False((await settings.TryGetEntryAsync<byte[]>("gw-02")).Success, "the cordon outlived the node");

        var missing = await Ctl("delete", "node", "gw-09");
        Assert.Equal(1, missing.Code);
        Assert.Equal("orchctl: no node 'gw-09' has joined the fleet; `orchctl get nodes` lists the nodes\n", missing.Err);
        Assert.Equal("node gw-09: not found (ignored)\n", (await Ctl("delete", "node", "gw-09", "--ignore-not-found")).Out);
        var kind = await Ctl("delete", "pod", "x");
        Assert.Equal(2, kind.Code);
        Assert.Equal("orchctl: delete pod: delete deployment, container or node NAME… (or delete -f FILE)\n", kind.Err);
    }

    /// <summary>
    /// -o jsonpath and -o custom-columns as kubectl users write them (#22): a list is
    /// {"items": […]}; range/end, [*], indexes from either end, ['key'] for a label with dots,
    /// string literals; a missing field is empty (jsonpath) or &lt;none&gt; (columns); a template
    /// that does not parse is a usage error before anything is asked.
    /// </summary>
    [Fact(Timeout = 120_000)]
    public async Task Jsonpath_and_custom_columns_read_what_json_prints()
    {
        await SeedFleetAsync();
        async Task<string> Out(params string[] args)
        {
            await PutNodeHeartbeatsAsync();
            var result = await Ctl(args);
            Assert.True(result.Code == 0, $"orchctl {string.Join(' ', args)}: exit {result.Code}\n{result.All}");
            return result.Out;
        }
        Assert.Equal("gw-01 gw-02\n", await Out("get", "nodes", "-o", "jsonpath={.items[*].info.node}"));
        Assert.Equal("gw-01=north\ngw-02=south\n", await Out("get", "nodes", "-o", "jsonpath={range .items[*]}{.info.node}={.info.labels.zone}{\"\\n\"}{end}"));
        Assert.Equal("gw-02\n", await Out("get", "nodes", "-o", "jsonpath={.items[-1].info.node}"));
        Assert.Equal("rpi4\n", await Out("get", "nodes", "-o", "jsonpath={.items[0].info.labels['hw']}"));
        Assert.Equal("north\n", await Out("get", "node", "gw-01", "-o", "jsonpath={.info.labels.zone}")); // one object, as kubectl get node X
        Assert.Equal("", await Out("get", "nodes", "-o", "jsonpath={.items[5].info.node}"));
        Assert.Equal("api busybox:latest\nweb busybox:1.36\n",
            await Out("get", "deployments", "-o", "jsonpath={range .items[*]}{.deployment.name} {.deployment.template.image}{\"\\n\"}{end}"));

        var columns = await Out("get", "nodes", "-o", "custom-columns=NODE:.info.node,ZONE:.info.labels.zone,HW:.info.labels.hw");
        Assert.Equal(["NODE   ZONE   HW", "gw-01  north  rpi4", "gw-02  south  <none>"], columns.TrimEnd('\n').Split('\n').Select(l => l.TrimEnd()));
        Orchctl.AssertAligned(columns);

        foreach (var (template, says) in new[]
        {
            ("jsonpath={.items[*].info.node", "is not closed with '}'"),
            ("jsonpath={range .items[*]}{.x}", "{range …} without its {end}"),
            ("jsonpath={.items[?(@.x)]}", "filters are not supported"),
            ("jsonpath={items}", "start it with '.'"),
            ("custom-columns=NAME", "is not HEADER:PATH"),
        })
        {
            var bad = await Orchctl.RunAsync("--server", "nats://127.0.0.1:1", "--timeout", "1", "get", "nodes", "-o", template);
            Assert.True(bad.Code == 2, $"{template}: exit {bad.Code}: {bad.All}");
            Assert.Contains(says, bad.Err, StringComparison.Ordinal);
        }
    }

    [Fact(Timeout = 180_000)]
    public async Task Get_watch_prints_the_list_then_one_line_per_change_and_the_deleted_ones()
    {
        await SeedFleetAsync();
        await PutNodeHeartbeatsAsync();
        await using var deployments = Orchctl.Start("--server", _nats.Url, "get", "deployments", "-w");
        await using var names = Orchctl.Start("--server", _nats.Url, "get", "deployments", "-w", "-o", "name");
        await using var nodes = Orchctl.Start("--server", _nats.Url, "get", "nodes", "-w");

        // The list first, as get prints it.
        await deployments.WaitForLineAsync(l => l.StartsWith("web ", StringComparison.Ordinal), "web's row");
        Assert.Equal(["DEPLOYMENT", "api", "web"], deployments.Stdout.Select(l => l.Split(' ')[0]));
        await names.WaitForLineAsync(l => l == "web", "web's name");
        await nodes.WaitForLineAsync(l => l.StartsWith("gw-02 ", StringComparison.Ordinal), "gw-02's row");
        Assert.Matches(@"^gw-01\s+ready\s+scheduler\s", nodes.Stdout[1]);
        Assert.Matches(@"^gw-02\s+ready,cordoned\s", nodes.Stdout[2]);

        // One change, one line: web's, with its new count; nothing for api.
        Assert.Equal(0, (await Ctl("scale", "web", "5")).Code);
        var scaled = await deployments.WaitForLineAsync(l => l.StartsWith("web ", StringComparison.Ordinal), "web's new row", skip: 3);
        Assert.Matches(@"^web\s+2\s+5\s", deployments.Stdout[scaled]);
        await names.WaitForLineAsync(l => l == "web", "web's name again", skip: 2);

        // A deployment that goes is a row marked deleted (by name: NAME deleted).
        Assert.Equal(0, (await Ctl("delete", "deployment", "api")).Code);
        var deleted = await deployments.WaitForLineAsync(l => l.StartsWith("api ", StringComparison.Ordinal), "api's deleted row", skip: scaled + 1);
        Assert.Matches(@"^api\s+1\s+1\s+-\s+-\s+-\s+deleted\s+busybox:latest", deployments.Stdout[deleted]);
        await names.WaitForLineAsync(l => l == "api deleted", "api deleted, by name");

        // Nodes: a cordon is a line at once; a node whose heartbeats stopped turns unreachable
        // with no write at all (15 s here), and that is a line too.
        Assert.Equal(0, (await Ctl("cordon", "gw-01")).Code);
        await nodes.WaitForLineAsync(l => l.StartsWith("gw-01 ", StringComparison.Ordinal) && l.Contains(",cordoned", StringComparison.Ordinal), "gw-01 cordoned", skip: 3);
        await nodes.WaitForLineAsync(l => l.StartsWith("gw-02 ", StringComparison.Ordinal) && l.Contains("unreachable", StringComparison.Ordinal), "gw-02 unreachable", skip: 3);

        // Ctrl-C ends a watch with exit 0; the heartbeat's age and memory moving printed nothing:
        // the header, two rows, web's change and api's deletion.
        deployments.Signal(Signals.SIGINT);
        Assert.Equal(0, await deployments.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(5, deployments.Stdout.Count);
        Orchctl.AssertAligned(string.Join('\n', deployments.Stdout) + "\n");
        Assert.Equal(["api", "web", "web", "api deleted"], names.Stdout);
        names.Signal(Signals.SIGINT);
        Assert.Equal(0, await names.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        nodes.Signal(Signals.SIGINT);
        Assert.Equal(0, await nodes.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Empty(deployments.Stderr.Concat(names.Stderr));

        var columns = await Ctl("get", "nodes", "-w", "-o", "custom-columns=NODE:.info.node");
        Assert.Equal(2, columns.Code);
        Assert.Contains("-o custom-columns does not go with -w", columns.Err, StringComparison.Ordinal);
        Assert.Equal(2, (await Ctl("get", "images", "-w")).Code);
    }

    [Fact(Timeout = 120_000)]
    public async Task Wait_for_a_rollout_that_rolled_back_ends_at_once_saying_why()
    {
        await SeedFleetAsync();
        // A rollout that rolled back will not complete by waiting: exit 1 at once, saying why.
        var kv = new NatsKVContext(new NatsJSContext(_connection));
        var statuses = await FleetStore.OpenAsync(kv, Buckets.DeploymentStatus, 1, default);
        await statuses.PutAsync("api", JsonSerializer.SerializeToUtf8Bytes(new DeploymentStatus
        {
            Name = "api", Desired = 1, Scheduler = "gw-01", At = s_t0, Revision = 1_000_000, Phase = RolloutPhase.RolledBack, RolledBack = "api-0 not ready within 120 s",
        }, FleetJsonContext.Default.DeploymentStatus));
        var clock = Stopwatch.StartNew();
        var rolledBack = await Ctl("wait", "deployment/api", "--for=condition=complete", "--wait-timeout", "60s");
        Assert.Equal(1, rolledBack.Code);
        Assert.Equal("orchctl: deployment 'api' will not complete: rolled-back: api-0 not ready within 120 s\n", rolledBack.Err);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"waited {clock.Elapsed} for a rollout that had rolled back");

    }

    [Fact(Timeout = 120_000)]
    public async Task Exit_codes_are_0_ok_1_failure_2_usage_3_unreachable_and_help_has_examples_for_every_command()
    {
        Assert.Equal(0, (await Orchctl.RunAsync("--help")).Code);
        Assert.Equal(2, (await Orchctl.RunAsync()).Code);
        var unknown = await Orchctl.RunAsync("gett", "nodes");
        Assert.Equal(2, unknown.Code);
        Assert.Equal("orchctl: unknown command 'gett'; did you mean 'get'? (orchctl help lists the commands)\n", unknown.Err);
        Assert.Equal("orchctl: unknown command 'aply'; did you mean 'apply'? (orchctl help lists the commands)\n", (await Orchctl.RunAsync("aply", "-f", "x")).Err);
        Assert.Equal("orchctl: unknown command 'rollot'; did you mean 'rollout'? (orchctl help lists the commands)\n", (await Orchctl.RunAsync("rollot", "undo", "x")).Err);
        Assert.Equal("orchctl: unknown command 'xyz' (orchctl help lists the commands)\n", (await Orchctl.RunAsync("xyz")).Err);
        Assert.Equal(2, (await Ctl("get")).Code);
        Assert.Equal(2, (await Ctl("get", "nodes", "-o", "xml")).Code);
        Assert.Equal(2, (await Ctl("apply")).Code);
        Assert.Equal(2, (await Ctl("get", "nodes", "--bogus")).Code);
        var previousFollowed = await Ctl("logs", "web-0", "--previous", "-f");
        Assert.Equal(2, previousFollowed.Code);
        Assert.Equal("orchctl: logs: --previous and -f do not go together (a run that has ended writes no more lines)\n", previousFollowed.Err);
        Assert.Equal(1, (await Ctl("get", "deployment", "nope")).Code);
        Assert.Equal(1, (await Ctl("describe", "node", "nope")).Code);
        var unreachable = await Orchctl.RunAsync("--server", "nats://127.0.0.1:1", "--timeout", "1", "get", "nodes");
        Assert.Equal(3, unreachable.Code);
        Assert.StartsWith("orchctl: cannot reach NATS at nats://127.0.0.1:1", unreachable.Err, StringComparison.Ordinal);
        Assert.Single(unreachable.Err.TrimEnd('\n').Split('\n'));

        // A url that is not a NATS one is a usage error with the fix, never the client's stack trace (it was exit 134).
        foreach (var (url, env) in new (string, string?)[] { ("http://127.0.0.1:4222", null), ("nats://127.0.0.1:port", null), ("127.0.0.1", null), ("nats://127.0.0.1:99999", null), ("nats://127.0.0.1:4222,ftp://x", null), ("https://127.0.0.1:4222", "ORCH_SERVER") })
        {
            var bad = env is null
                ? await Orchctl.RunAsync("--server", url, "--timeout", "1", "get", "nodes")
                : await Orchctl.RunAsync(new[] { "--timeout", "1", "get", "nodes" }, new Dictionary<string, string?> { [env] = url });
            Assert.True(bad.Code == 2, $"{url}: exit {bad.Code}: {bad.All}");
            Assert.Matches(@"^orchctl: server \((flag --server|env ORCH_SERVER)\): '[^']+' (is not a NATS url|has no valid port)[^\n]*; write it as nats://host:4222 \(or tls://, ws://, wss://\)\n$", bad.Err);
        }

        var overview = (await Orchctl.RunAsync("help")).Out.Split("Global flags")[0];
        foreach (var command in Regex.Matches(overview, @"^  ([a-z][a-z-]+) ", RegexOptions.Multiline).Select(m => m.Groups[1].Value))
        {
            var viaHelp = await Orchctl.RunAsync("help", command);
            var viaFlag = await Orchctl.RunAsync(command, "--help");
            Assert.True(viaHelp.Code == 0 && viaFlag.Code == 0, $"{command}: {viaHelp.All}{viaFlag.All}");
            Assert.Equal(viaHelp.Out, viaFlag.Out);
            Assert.Contains("Usage:\n  orchctl " + command, viaHelp.Out, StringComparison.Ordinal);
            Assert.Matches(@"Examples:\n  (orchctl|source|cat) ", viaHelp.Out);
        }
    }

    /// <summary>
    /// apply --global -l: a compose file written for one device becomes the fleet's global app
    /// (dry run: what would be written); --stack keeps a deployment per service; a file with a
    /// count of its own is refused either way, saying why.
    /// </summary>
    [Fact(Timeout = 60_000)]
    public async Task Apply_global_with_node_labels_turns_a_compose_file_into_a_fleet_release()
    {
        var compose = _dir.Combine("docker-compose.yml");
        File.WriteAllText(compose, """
            name: sensors
            services:
              reader:
                image: busybox:latest
                command: sleep 1000
                init: true
              uploader:
                image: busybox:latest
                command: sleep 1000
                depends_on: [reader]
                deploy: {placement: {constraints: ["node.labels.site == lab"]}}
            """);
        var dry = await Ctl("apply", "-f", compose, "--global", "-l", "fleet=sensors", "--dry-run");
        Assert.True(dry.Code == 0, dry.All);
        Assert.Contains("deployment sensors: created (dry run)", dry.Out, StringComparison.Ordinal);
        var applied = await Ctl("apply", "-f", compose, "--global", "-l", "fleet=sensors");
        Assert.True(applied.Code == 0, applied.All);
        var app = Assert.Single(await new FleetClient(_connection).GetDeploymentsAsync()).Deployment;
        Assert.Equal("sensors", app.Name);
        Assert.Equal(Orchestrator.Api.Workloads.DeploymentMode.Global, app.Mode);
        Assert.Equal(new Dictionary<string, string> { ["fleet"] = "sensors", ["site"] = "lab" }, app.Selector);
        Assert.Equal(["reader", "uploader"], app.Template.Containers!.Select(c => c.Name));
        Assert.True(app.Template.Containers![0].Init);
        Assert.Equal("reader", Assert.Single(app.Template.Containers[1].DependsOn!).Name);
        // Applied again the same way: nothing to write.
        var again = await Ctl("apply", "-f", compose, "--global", "-l", "fleet=sensors", "--dry-run");
        Assert.Contains("0 to create, 0 to change, 1 unchanged", again.Out, StringComparison.Ordinal);

        // As a stack: a deployment per service, each with its own selector.
        var stack = await Ctl("apply", "-f", compose, "--global", "-l", "fleet=sensors", "--stack", "--dry-run");
        Assert.True(stack.Code == 0, stack.All);
        Assert.Contains("deployment reader: created (dry run)", stack.Out, StringComparison.Ordinal);
        Assert.Contains("deployment uploader: created (dry run)", stack.Out, StringComparison.Ordinal);

        File.WriteAllText(compose, "services:\n  web:\n    image: busybox\n    scale: 3\n");
        var counted = await Ctl("apply", "-f", compose, "--global");
        Assert.Equal(2, counted.Code);
        Assert.Contains("services.web: sets 3 replicas, but the file is one app that runs one copy of each service", counted.Err, StringComparison.Ordinal);
        var countedStack = await Ctl("apply", "-f", compose, "--global", "--stack");
        Assert.Equal(2, countedStack.Code);
        Assert.Contains("deployment 'web': --global runs one copy on every matching node, but it sets replicas 3", countedStack.Err, StringComparison.Ordinal);
        var badLabel = await Ctl("apply", "-f", compose, "--stack", "-l", "fleet!=x");
        Assert.Equal(2, badLabel.Code);
        Assert.Contains("apply takes node labels as key=value", badLabel.Err, StringComparison.Ordinal);
    }
}

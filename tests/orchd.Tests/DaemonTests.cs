using NATS.Client.Core;
using Orchestrator.Client;

namespace Orchestrator.Daemon.Tests;

/// <summary>
/// The published AOT orchd, started for real, observed through systemd's protocols
/// (NOTIFY_SOCKET, WATCHDOG_USEC, JOURNAL_STREAM) and a real nats-server.
/// </summary>
[Trait("Category", "Integration")]
public sealed class DaemonTests : IAsyncLifetime
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(15);
    private readonly NotifiedDaemons _daemons = new("orchd-daemon");

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _daemons.DisposeAsync();

    private DaemonProcess Start(IEnumerable<string> args, Dictionary<string, string?>? env = null, bool notify = true) => _daemons.Start(args, env, notify);

    private string[] Args(string natsUrl, string node = "node-a", params string[] more) =>
    [
        "--config", WriteConfig(""), "--node-name", node, "--state-dir", _daemons.Dir.Combine(node, "state"),
        "--run-dir", _daemons.Dir.Combine(node, "run"), "--nats-url", natsUrl, .. more,
    ];

    private string WriteConfig(string yaml)
    {
        var path = _daemons.Dir.Combine($"orchd-{Guid.NewGuid():N}.yaml");
        File.WriteAllText(path, yaml);
        return path;
    }

    [Fact(Timeout = 90_000)]
    public async Task Version_and_help_answer_and_exit_zero()
    {
        var version = Start(["--version"], notify: false);
        Assert.Equal(0, await version.WaitForExitAsync(s_wait));
        Assert.Matches(@"^orchd \d+\.\d+\.\d+\S* \(linux-(x64|arm64), \.NET \d+", version.Stdout.Single());

        var help = Start(["--help"], notify: false);
        Assert.Equal(0, await help.WaitForExitAsync(s_wait));
        Assert.Contains(help.Stdout, l => l.Contains("--node-name NAME", StringComparison.Ordinal));
        Assert.Contains(help.Stdout, l => l.Contains("ORCHD_NATS_URL", StringComparison.Ordinal));
    }

    [Fact(Timeout = 90_000)]
    public async Task Ready_after_state_then_watchdog_at_half_the_interval_then_clean_stop_on_sigterm()
    {
        await using var nats = await NatsServer.StartAsync();
        var orchd = Start(Args(nats.Url), new() { ["WATCHDOG_USEC"] = "300000" });

        var ready = await _daemons.Notify.WaitForAsync("READY=1", s_wait);
        // READY only once the state is loaded: the node id is on disk by then.
        Assert.True(File.Exists(_daemons.Dir.Combine("node-a", "state", "node-id")));
        await _daemons.Notify.WaitForAsync(m => m == $"STATUS=0 containers, connected to {nats.Url}", s_wait);

        // Six pings at 150 ms take 750 ms; allow a noisy machine some slack but insist on the cadence.
        var fifth = await _daemons.Notify.WaitForAsync(m => m == "WATCHDOG=1", s_wait, skip: 5);
        var pings = _daemons.Notify.Messages.Where(m => m.Message == "WATCHDOG=1" && m.At <= fifth).Select(m => m.At).ToArray();
        var gaps = pings.Zip(pings.Skip(1), (a, b) => (b - a).TotalMilliseconds).ToArray();
        Assert.InRange(gaps.Order().ElementAt(gaps.Length / 2), 75, 300);

        orchd.Signal(Signals.SIGTERM);
        await _daemons.Notify.WaitForAsync("STOPPING=1", s_wait);
        Assert.Equal(0, await orchd.WaitForExitAsync(s_wait));
        Assert.Contains(orchd.Stderr, l => l.Contains("stopped cleanly", StringComparison.Ordinal));
        Assert.DoesNotContain(orchd.Stderr, l => l.Contains("   at ", StringComparison.Ordinal));
        Assert.True(ready < fifth);
    }

    [Fact(Timeout = 90_000)]
    public async Task No_watchdog_pings_when_systemd_asked_another_pid()
    {
        await using var nats = await NatsServer.StartAsync();
        var orchd = Start(Args(nats.Url), new() { ["WATCHDOG_USEC"] = "100000", ["WATCHDOG_PID"] = "1" });
        await _daemons.Notify.WaitForAsync("READY=1", s_wait);
        await Task.Delay(400);
        Assert.DoesNotContain(_daemons.Notify.Messages, m => m.Message == "WATCHDOG=1");
        orchd.Signal(Signals.SIGTERM);
        Assert.Equal(0, await orchd.WaitForExitAsync(s_wait));
    }

    [Fact(Timeout = 90_000)]
    public async Task Bad_config_exits_78_before_ready_with_one_line_naming_file_line_and_key()
    {
        var path = WriteConfig("node_name: gw\nruntime: dockr\n");
        var orchd = Start(["--config", path, "--state-dir", _daemons.Dir.Combine("s"), "--run-dir", _daemons.Dir.Combine("r")]);
        Assert.Equal(78, await orchd.WaitForExitAsync(s_wait));
        Assert.Equal([$"orchd: config error: {path}:2:10: runtime: 'dockr' is not a runtime backend; use native, containerd or auto"], orchd.Stderr);
        Assert.DoesNotContain(_daemons.Notify.Messages, m => m.Message == "READY=1");
        Assert.False(Directory.Exists(_daemons.Dir.Combine("s")), "nothing is created before the config is good");
    }

    [Fact(Timeout = 90_000)]
    public async Task Bad_flag_exits_2_with_a_hint()
    {
        var orchd = Start(["--nats-urls", "nats://127.0.0.1:1"]);
        Assert.Equal(2, await orchd.WaitForExitAsync(s_wait));
        Assert.Equal(["orchd: unknown flag '--nats-urls'; did you mean --nats-url? (see orchd --help)"], orchd.Stderr);
    }

    [Fact(Timeout = 90_000)]
    public async Task Unreachable_nats_still_starts_logs_once_and_connects_when_the_server_appears()
    {
        var port = FreePort.Next();
        var url = $"nats://127.0.0.1:{port}";
        var orchd = Start(Args(url));
        await _daemons.Notify.WaitForAsync("READY=1", s_wait);
        await orchd.WaitForLogAsync($"cannot reach NATS at {url}", s_wait);
        await Task.Delay(2500); // several retries at 0.5 s, 1 s, 2 s…
        Assert.False(orchd.HasExited);
        Assert.Single(orchd.Stderr, l => l.Contains("cannot reach NATS", StringComparison.Ordinal));
        Assert.DoesNotContain(orchd.Stderr, l => l.Contains("   at ", StringComparison.Ordinal));

        await using var nats = await NatsServer.StartAsync(port: port);
        await _daemons.Notify.WaitForAsync($"STATUS=0 containers, connected to {url}", TimeSpan.FromSeconds(20));
        await using var client = new NatsConnection(new NatsOpts { Url = url });
        var info = await new FleetClient(client).GetNodeInfoAsync("node-a", TimeSpan.FromSeconds(5));
        Assert.NotNull(info);
    }

    [Fact(Timeout = 90_000)]
    public async Task Answers_node_info_over_nats_with_its_labels_and_stable_id()
    {
        await using var nats = await NatsServer.StartAsync();
        var orchd = Start(Args(nats.Url, "edge-7", "--label", "zone=north", "--label", "hw=pi4"));
        await _daemons.Notify.WaitForAsync(m => m.StartsWith("STATUS=", StringComparison.Ordinal) && m.Contains(", connected", StringComparison.Ordinal), s_wait);

        await using var client = new NatsConnection(new NatsOpts { Url = nats.Url });
        var fleet = new FleetClient(client);
        var info = await fleet.GetNodeInfoAsync("edge-7", TimeSpan.FromSeconds(5));
        Assert.NotNull(info);
        Assert.Equal("edge-7", info.Node);
        Assert.Equal("north", info.Labels["zone"]);
        Assert.Equal("pi4", info.Labels["hw"]);
        Assert.Equal((await File.ReadAllTextAsync(_daemons.Dir.Combine("edge-7", "state", "node-id"))).Trim(), info.NodeId);
        var discovered = await fleet.DiscoverNodesAsync(TimeSpan.FromSeconds(3), TimeSpan.FromMilliseconds(300));
        Assert.Equal(["edge-7"], discovered.Select(n => n.Node));

        // orchctl, the operator's tool, sees the same node.
        var orchctl = DaemonProcess.Start(Repo.Binary("orchctl"), ["--server", nats.Url, "version"]);
        Assert.Equal(0, await orchctl.WaitForExitAsync(s_wait));
        Assert.Contains(orchctl.Stdout, l => l.StartsWith("edge-7 ", StringComparison.Ordinal));
        await orchctl.DisposeAsync();

        orchd.Signal(Signals.SIGTERM);
        Assert.Equal(0, await orchd.WaitForExitAsync(s_wait));
    }

    [Fact(Timeout = 90_000)]
    public async Task Reconnects_after_the_nats_server_restarts()
    {
        await using var nats = await NatsServer.StartAsync();
        var orchd = Start(Args(nats.Url));
        await _daemons.Notify.WaitForAsync(m => m.StartsWith("STATUS=", StringComparison.Ordinal) && m.Contains(", connected", StringComparison.Ordinal), s_wait);
        await nats.StopAsync();
        await _daemons.Notify.WaitForAsync(m => m.StartsWith("STATUS=", StringComparison.Ordinal) && m.Contains(", offline", StringComparison.Ordinal), s_wait);
        await nats.StartAgainAsync();
        await _daemons.Notify.WaitForAsync(m => m.StartsWith("STATUS=", StringComparison.Ordinal) && m.Contains(", connected", StringComparison.Ordinal), TimeSpan.FromSeconds(30), skip: 1);
        await orchd.WaitForLogAsync("reconnected to NATS", s_wait);
        Assert.False(orchd.HasExited);
    }

    [Fact(Timeout = 90_000)]
    public async Task State_dir_under_a_file_exits_78_naming_the_dir()
    {
        var file = _daemons.Dir.Combine("not-a-dir");
        await File.WriteAllTextAsync(file, "x");
        var orchd = Start(["--config", WriteConfig(""), "--state-dir", file + "/state", "--run-dir", _daemons.Dir.Combine("run"), "--nats-url", "nats://127.0.0.1:1"]);
        Assert.Equal(78, await orchd.WaitForExitAsync(s_wait));
        var line = Assert.Single(orchd.Stderr);
        Assert.StartsWith($"orchd: state dir '{file}/state' is not writable: ", line, StringComparison.Ordinal);
        Assert.EndsWith("set --state-dir", line, StringComparison.Ordinal);
        Assert.DoesNotContain(_daemons.Notify.Messages, m => m.Message == "READY=1");
    }

    [Fact(Timeout = 90_000)]
    [Trait("Category", "Privileged")]
    public async Task Read_only_state_dir_exits_78_with_erofs()
    {
        Requires.Root();
        var unshare = Requires.Program("unshare", "util-linux");
        var state = Directory.CreateDirectory(_daemons.Dir.Combine("ro-state")).FullName;
        // A read-only bind mount in a private mount namespace: root cannot write there either.
        var script = $"mount --bind '{state}' '{state}' && mount -o remount,bind,ro '{state}' && exec '{Repo.Binary("orchd")}' --config '{WriteConfig("")}' --state-dir '{state}' --run-dir '{_daemons.Dir.Combine("run")}'";
        var orchd = DaemonProcess.Start(unshare, ["-m", "--propagation", "private", "sh", "-c", script]);
        _daemons.Adopt(orchd);
        Assert.Equal(78, await orchd.WaitForExitAsync(s_wait));
        var line = Assert.Single(orchd.Stderr);
        Assert.Equal($"orchd: state dir '{state}' is not writable: read-only file system (EROFS); fix its permissions or mount, or set --state-dir", line);
    }

    [Fact(Timeout = 90_000)]
    public async Task Second_orchd_on_the_same_state_dir_is_refused_and_the_first_keeps_running()
    {
        await using var nats = await NatsServer.StartAsync();
        var first = Start(Args(nats.Url));
        await _daemons.Notify.WaitForAsync("READY=1", s_wait);
        var second = Start(Args(nats.Url), notify: false);
        Assert.Equal(78, await second.WaitForExitAsync(s_wait));
        Assert.Equal([$"orchd: state dir '{_daemons.Dir.Combine("node-a", "state")}' is in use by another orchd (pid {first.Pid}); stop it, or give this one its own --state-dir"], second.Stderr);
        Assert.False(first.HasExited);
    }

    [Fact(Timeout = 90_000)]
    public async Task Node_id_survives_restarts()
    {
        await using var nats = await NatsServer.StartAsync();
        string? firstId = null;
        for (var run = 0; run < 2; run++)
        {
            var orchd = Start(Args(nats.Url));
            await _daemons.Notify.WaitForAsync(m => m == "READY=1", s_wait, skip: run);
            var id = (await File.ReadAllTextAsync(_daemons.Dir.Combine("node-a", "state", "node-id"))).Trim();
            firstId ??= id;
            Assert.Equal(firstId, id);
            Assert.Matches("^[0-9a-f]{32}$", id);
            orchd.Signal(Signals.SIGTERM);
            Assert.Equal(0, await orchd.WaitForExitAsync(s_wait));
        }
    }

    [Fact(Timeout = 90_000)]
    public async Task Logs_in_journal_format_under_systemd_and_readable_text_otherwise()
    {
        await using var nats = await NatsServer.StartAsync();
        var journal = Start(Args(nats.Url, "journal-node"), new() { ["JOURNAL_STREAM"] = "8:12345" });
        var ready = await journal.WaitForLogAsync("ready: node journal-node", s_wait);
        Assert.StartsWith("<6>orchd[1001]: orchd ", ready, StringComparison.Ordinal);

        var text = Start(Args(nats.Url, "text-node"), notify: false);
        var line = await text.WaitForLogAsync("ready: node text-node", s_wait);
        Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info  orchd\[1001\]: orchd \S+ ready: node text-node ", line);
    }

    [Fact(Timeout = 90_000)]
    public async Task A_failing_service_ends_orchd_with_exit_code_1_so_systemd_restarts_it()
    {
        await using var nats = await NatsServer.StartAsync();
        var orchd = Start(Args(nats.Url), new() { ["ORCHD_FAILPOINT"] = "agent-crash" });
        await _daemons.Notify.WaitForAsync("READY=1", s_wait);
        Assert.Equal(1, await orchd.WaitForExitAsync(s_wait));
        Assert.Contains(orchd.Stderr, l => l.Contains("orchd failed: failpoint agent-crash", StringComparison.Ordinal));
        Assert.DoesNotContain(orchd.Stderr, l => l.Contains("stopped cleanly", StringComparison.Ordinal));
        Assert.DoesNotContain(orchd.Stderr, l => l.Contains("   at ", StringComparison.Ordinal));
    }

    [Fact(Timeout = 90_000)]
    public async Task An_absurd_duration_is_a_config_error_not_a_crash()
    {
        var orchd = Start(["--config", WriteConfig(""), "--check-config", "--shutdown-timeout", "99999999999h"], notify: false);
        Assert.Equal(78, await orchd.WaitForExitAsync(s_wait));
        Assert.Equal(["orchd: config error: flag --shutdown-timeout: shutdown_timeout: '99999999999h' is too long a duration; keep it under 10,000 days"], orchd.Stderr);
    }

    [Fact(Timeout = 90_000)]
    public async Task Check_config_prints_the_effective_settings_and_exits_zero()
    {
        var orchd = Start(["--config", WriteConfig("node_name: cfg\nlabels: {zone: z}\n"), "--check-config", "--nats-token", "s3cret"], notify: false);
        Assert.Equal(0, await orchd.WaitForExitAsync(s_wait));
        Assert.Contains("node_name: \"cfg\"", orchd.Stdout);
        Assert.Contains("  \"zone\": \"z\"", orchd.Stdout);
        Assert.DoesNotContain(orchd.Stdout, l => l.Contains("s3cret", StringComparison.Ordinal));
    }

    [Fact(Timeout = 90_000)]
    public async Task Orch_runc_is_a_binary_of_its_own_and_orchd_points_to_it()
    {
        // The runtime CLI starts for every container operation: it must not pay orchd's binary.
        var binary = Repo.Binary("orch-runc");
        Assert.Null(File.ResolveLinkTarget(binary, returnFinalTarget: false));
        Assert.True(new FileInfo(binary).Length < new FileInfo(Repo.Binary("orchd")).Length / 2, $"{binary} is not the small runtime binary");
        var runc = DaemonProcess.Start(binary, ["--version"]);
        _daemons.Adopt(runc);
        Assert.Equal(0, await runc.WaitForExitAsync(s_wait));
        Assert.StartsWith("orch-runc version ", runc.Stdout[0], StringComparison.Ordinal);

        var orchd = Start(["runc", "--version"], notify: false);
        Assert.Equal(2, await orchd.WaitForExitAsync(s_wait));
        Assert.Contains(orchd.Stderr, l => l.Contains("orch-runc binary", StringComparison.Ordinal));
    }
}

namespace Orchestrator.Daemon.Tests;

/// <summary>
/// orchd under the protocols systemd drives it with: STATUS= lines that `systemctl status`
/// shows, and the watchdog that restarts a daemon that hangs.
/// </summary>
[Trait("Category", "Integration")]
public sealed class SystemdIntegrationTests : IAsyncLifetime
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(20);
    private readonly NotifiedDaemons _daemons = new("orchd-systemd");

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _daemons.DisposeAsync();

    private DaemonProcess Start(string natsUrl, Dictionary<string, string?> env)
    {
        var config = _daemons.Dir.Combine("orchd.yaml");
        File.WriteAllText(config, "");
        return _daemons.Start(["--config", config, "--node-name", "sd-node", "--state-dir", _daemons.Dir.Combine("state"), "--run-dir", _daemons.Dir.Combine("run"),
             "--manifest-dir", "none", "--bridge", "none", "--nats-url", natsUrl], env);
    }

    [Fact(Timeout = 90_000)]
    public async Task Status_lines_carry_the_container_count_and_the_nats_connection()
    {
        var port = FreePort.Next();
        var url = $"nats://127.0.0.1:{port}";
        var orchd = Start(url, []);
        await _daemons.Notify.WaitForAsync("READY=1", s_wait);
        await _daemons.Notify.WaitForAsync(m => m.StartsWith($"STATUS=0 containers, offline: cannot reach {url}", StringComparison.Ordinal), s_wait);

        await using var nats = await NatsServer.StartAsync(port: port);
        await _daemons.Notify.WaitForAsync($"STATUS=0 containers, connected to {url}", TimeSpan.FromSeconds(30));
        // One line per change: the same status is never sent twice in a row.
        var statuses = _daemons.Notify.Messages.Where(m => m.Message.StartsWith("STATUS=", StringComparison.Ordinal)).Select(m => m.Message).ToArray();
        Assert.All(statuses.Zip(statuses.Skip(1)), pair => Assert.NotEqual(pair.First, pair.Second));

        orchd.Signal(Signals.SIGTERM);
        await _daemons.Notify.WaitForAsync("STOPPING=1", s_wait);
        Assert.Equal(0, await orchd.WaitForExitAsync(s_wait));
    }

    [Fact(Timeout = 90_000)]
    public async Task A_hung_orchd_stops_its_watchdog_pings_so_systemd_restarts_it()
    {
        await using var nats = await NatsServer.StartAsync();
        // WatchdogSec=400ms: a ping every 200 ms while healthy; the failpoint wedges every
        // thread-pool thread after the third, as a deadlock would.
        var orchd = Start(nats.Url, new() { ["WATCHDOG_USEC"] = "400000", ["ORCHD_FAILPOINT"] = "hang" });
        await _daemons.Notify.WaitForAsync("READY=1", s_wait);
        await _daemons.Notify.WaitForAsync(m => m == "WATCHDOG=1", s_wait, skip: 3);
        await orchd.WaitForLogAsync("failpoint hang", s_wait);

        // systemd would kill it after WatchdogSec= without a ping; give it five times that.
        var before = _daemons.Notify.Messages.Count(m => m.Message == "WATCHDOG=1");
        await Task.Delay(2000);
        var after = _daemons.Notify.Messages.Count(m => m.Message == "WATCHDOG=1");
        Assert.True(after - before <= 1, $"{after - before} pings after the hang; a hung orchd must stop pinging");
        Assert.False(orchd.HasExited, "the failpoint hangs orchd; it must not exit by itself");

        // Healthy, the same daemon pings on: the silence above is the hang, not the cadence.
        await orchd.DisposeAsync(); // as systemd does next: SIGABRT/SIGKILL, then a restart
        var healthy = Start(nats.Url, new() { ["WATCHDOG_USEC"] = "400000" });
        var start = _daemons.Notify.Now;
        await _daemons.Notify.WaitForAsync(m => m == "WATCHDOG=1", s_wait, skip: after + 5);
        Assert.True(_daemons.Notify.Now - start < TimeSpan.FromSeconds(15));
        healthy.Signal(Signals.SIGTERM);
        Assert.Equal(0, await healthy.WaitForExitAsync(s_wait));
    }
}

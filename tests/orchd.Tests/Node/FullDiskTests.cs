using System.Globalization;
using System.Net.Http;
using Orchestrator.Client;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// A full disk (issue #17): the node's log and workload directories on small tmpfs mounts the
/// test fills. Log lines that cannot be written are dropped, counted (a metric) and reported (an
/// event), never silently; the container neither blocks nor dies; `stop` stops; and once space is
/// back, logs flow again.
/// </summary>
[Trait("Category", "Privileged")]
public sealed class FullDiskTests
{
    private static async Task MountTmpfsAsync(string dir, string size)
    {
        Directory.CreateDirectory(dir);
        await using var mount = DaemonProcess.Start("/bin/mount", ["-t", "tmpfs", "-o", $"size={size}", "tmpfs", dir]);
        Assert.True(await mount.WaitForExitAsync(TimeSpan.FromSeconds(10)) == 0, mount.Output);
    }

    private static async Task UnmountAsync(string dir)
    {
        await using var umount = DaemonProcess.Start("/bin/umount", ["-l", dir]);
        await umount.WaitForExitAsync(TimeSpan.FromSeconds(10));
    }

    /// <summary>Writes zeros into the directory until the file system says ENOSPC.</summary>
    private static void Fill(string dir)
    {
        using var filler = new FileStream(Path.Combine(dir, "filler"), FileMode.Create, FileAccess.Write, FileShare.None, 1, FileOptions.WriteThrough);
        var block = new byte[16 * 1024];
        try
        {
            while (true)
            {
                filler.Write(block);
            }
        }
        catch (IOException)
        {
        }
    }

    [Fact(Timeout = 180_000)]
    public async Task Logs_on_a_full_disk_are_counted_and_reported_stop_still_stops_and_logs_resume()
    {
        var port = FreePort.Next();
        await using var node = await NodeHost.StartAsync(start: false);
        var logs = Path.Combine(node.StateDir, "logs");
        var workloads = Path.Combine(node.StateDir, "workloads");
        await MountTmpfsAsync(logs, "2m");
        await MountTmpfsAsync(workloads, "1m");
        try
        {
            await node.StartOrchdAsync(extraArgs: ["--metrics-listen", port.ToString(CultureInfo.InvariantCulture)]);
            var since = DateTimeOffset.UtcNow.AddSeconds(-1);
            await node.Client.RunAsync(NodeHost.Sh("chatty", "i=0; while :; do echo line-$i; i=$((i+1)); sleep 0.01; done"));
            await node.LogsUntilAsync("chatty", l => l.Count >= 20, TimeSpan.FromSeconds(30), "20 lines");

            Fill(logs);
            Fill(workloads);
            var pid = (await node.Client.InspectAsync("chatty")).Pid;

            // Dropped lines are counted and reported, and the container runs on, unblocked.
            using var http = new HttpClient();
            long dropped = 0;
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while (dropped == 0)
            {
                Assert.True(DateTime.UtcNow < deadline, "no orchd_container_log_dropped_bytes_total for chatty");
                await Task.Delay(500);
                var metrics = await http.GetStringAsync($"http://127.0.0.1:{port}/metrics");
                var line = metrics.Split('\n').FirstOrDefault(l => l.StartsWith("orchd_container_log_dropped_bytes_total{", StringComparison.Ordinal) && l.Contains("\"chatty\"", StringComparison.Ordinal));
                dropped = line is null ? 0 : long.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
            }
            await using var connection = new NATS.Client.Core.NatsConnection(new NATS.Client.Core.NatsOpts { Url = node.Nats!.Url });
            await connection.ConnectAsync();
            var fleet = new FleetClient(connection);
            var reported = new List<Orchestrator.Api.NodeEvent>();
            await foreach (var e in fleet.EventsAsync(since, watch: false))
            {
                reported.Add(e);
            }
            var drop = Assert.Single(reported, e => e.Kind == "container.logs-dropped" && e.Subject == "chatty");
            Assert.Contains("bytes of stdout dropped: the log cannot be written", drop.Message, StringComparison.Ordinal);
            Assert.Contains("no space left on device", drop.Message, StringComparison.OrdinalIgnoreCase);
            Assert.Equal(pid, (await node.Client.InspectAsync("chatty")).Pid);
            Assert.Equal(ContainerState.Running, (await node.Client.InspectAsync("chatty")).State);

            // stop works on a full disk (it failed with ENOSPC): the container stops, the reply says the stop is not saved.
            var stopped = await node.Client.StopAsync("chatty");
            Assert.Contains("stopped, but the stop is not saved", stopped.Message, StringComparison.Ordinal);
            await node.WaitForAsync("chatty", c => c.State is ContainerState.Stopped or ContainerState.Exited, TimeSpan.FromSeconds(20), "the stop");
            Assert.False(NodeHost.IsAlive(pid), "the container still runs after stop");

            // Space is back: it starts, and its lines reach the log again.
            File.Delete(Path.Combine(logs, "filler"));
            File.Delete(Path.Combine(workloads, "filler"));
            await node.Client.StartAsync("chatty");
            var after = DateTimeOffset.UtcNow;
            await node.LogsUntilAsync("chatty", l => l.Any(x => x.Time >= after), TimeSpan.FromSeconds(30), "a line after space came back");
            await node.Client.RemoveAsync("chatty");
        }
        finally
        {
            await node.KillOrchdAsync();
            await UnmountAsync(logs);
            await UnmountAsync(workloads);
        }
    }
}

using NATS.Client.Core;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Client;

using static Orchestrator.Daemon.Tests.Node.FleetHarness;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// Operators' variables (orchctl env) on real nodes: the fleet's, a label's and one device's over a
/// global deployment's env, the narrower winning; only the containers whose variables change are
/// restarted; a container restarted while NATS is down keeps them.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class VariablesTests
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(60);

    [Fact(Timeout = 300_000)]
    public async Task Fleet_label_and_device_variables_override_the_template_and_restart_only_what_they_change()
    {
        await using var nats = await NatsServer.StartAsync();
        var hosts = new List<NodeHost>();
        try
        {
            foreach (var site in (string[])["lab", "field"])
            {
                hosts.Add(await NodeHost.StartAsync(sharedNats: nats, name: $"v-{site}-{Guid.NewGuid().ToString("N")[..4]}", extraArgs: [.. Fast, "--label", "site=" + site]));
            }
            var (lab, field) = (hosts[0], hosts[1]);
            await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
            await connection.ConnectAsync();
            var fleet = new FleetClient(connection);
            var server = new[] { "--server", nats.Url };
            async Task EnvAsync(params string[] args)
            {
                var result = await Orchctl.RunAsync([.. server, "env", .. args]);
                Assert.True(result.Code == 0, result.All);
            }

            await EnvAsync("set", "API_URL=https://hub", "--fleet");
            var probe = new Deployment
            {
                Name = "probe", Mode = DeploymentMode.Global,
                Template = NodeHost.Sh("", "echo \"site=$SITE_ID api=$API_URL\"; exec sleep 3600", w => w.Env = new() { ["SITE_ID"] = "default" }),
            };
            await fleet.ApplyAsync([probe]);

            // Each node's copy, whichever index it was given.
            async Task<string> CopyAsync(NodeHost host)
            {
                var deadline = DateTime.UtcNow + s_wait;
                while (true)
                {
                    if ((await host.Client.ListAsync()).FirstOrDefault(c => c.Name.StartsWith("probe-", StringComparison.Ordinal)) is { } copy)
                    {
                        return copy.Name;
                    }
                    Assert.True(DateTime.UtcNow < deadline, $"a copy of probe on {host.NodeName}");
                    await Task.Delay(200);
                }
            }
            async Task<ContainerStatus> ShowsAsync(NodeHost host, string line)
            {
                var name = await CopyAsync(host);
                await host.LogsUntilAsync(name, lines => lines.Count > 0 && lines[^1].Text == line, s_wait, line);
                return await host.Client.InspectAsync(name);
            }
            await ShowsAsync(lab, "site=default api=https://hub");
            var fieldBefore = await ShowsAsync(field, "site=default api=https://hub");

            // A label's variable: the lab node's container restarts with it, the field node's is left alone.
            await EnvAsync("set", "SITE_ID=lab", "-l", "site=lab");
            await ShowsAsync(lab, "site=lab api=https://hub");
            await Task.Delay(3000);
            Assert.Equal(fieldBefore.Restarts, (await field.Client.InspectAsync(fieldBefore.Name)).Restarts);

            // One device's own, for this deployment only: it beats the label's and the fleet's.
            await EnvAsync("set", "SITE_ID=gw-7", "API_URL=https://gw-7", "--device", field.NodeName, "--deployment", "probe");
            await ShowsAsync(field, "site=gw-7 api=https://gw-7");
            await EnvAsync("unset", "API_URL", "--device", field.NodeName, "--deployment", "probe");
            await ShowsAsync(field, "site=gw-7 api=https://hub");

            var listed = await Orchctl.RunAsync([.. server, "env", "ls", "--device", lab.NodeName]);
            Assert.True(listed.Code == 0, listed.All);
            Assert.Contains("API_URL", listed.Out, StringComparison.Ordinal);
            Assert.Contains("label site=lab", listed.Out, StringComparison.Ordinal);
            Assert.DoesNotContain("gw-7", listed.Out, StringComparison.Ordinal); // not a scope of the lab node

            // Bad input: one clear error each, nothing written.
            var bad = await Orchctl.RunAsync([.. server, "env", "set", "1BAD=x", "--fleet"]);
            Assert.Equal(1, bad.Code);
            Assert.Contains("'1BAD' is not a variable name", bad.All, StringComparison.Ordinal);
            var noScope = await Orchctl.RunAsync([.. server, "env", "set", "X=1"]);
            Assert.Equal(2, noScope.Code);
            Assert.Contains("say whose variables these are", noScope.All, StringComparison.Ordinal);

            // NATS down: the lab container is killed and its node starts it again with its variables.
            var before = await lab.Client.InspectAsync(await CopyAsync(lab));
            await nats.RestartAsync(whileDown: () => KillAndWaitForOfflineRestartAsync(lab, before, s_wait));
            // The node answers again once it has reconnected (with backoff).
            await WaitReachableAsync(lab, s_wait);
            await lab.WaitForAsync(before.Name, c => c.Restarts == before.Restarts + 1 && c.State == ContainerState.Running, s_wait, "restarted");
            await lab.LogsUntilAsync(before.Name, lines => lines.Count(l => l.Text == "site=lab api=https://hub") >= 2, s_wait, "its variables after the offline restart");
        }
        finally
        {
            await DisposeAllAsync(hosts);
        }
    }
}

using System.Text.RegularExpressions;
using System.Text.Json;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// orchctl against a real fleet: one nats-server and two orchd nodes, every command in one
/// sequence (apply, rollout status -w, get containers/images across nodes, describe, top, logs and
/// exec without -n, scale, cordon/drain/uncordon, events, completion names, delete -f).
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class OrchctlFleetTests
{
    private static readonly string[] s_fast = ["--heartbeat", "1s", "--unreachable-after", "3s", "--lost-after", "6s"];

    [Fact(Timeout = 300_000)]
    public async Task Every_command_works_against_two_real_nodes()
    {
        await using var nats = await NatsServer.StartAsync();
        var suffix = Guid.NewGuid().ToString("N")[..4];
        await using var a = await NodeHost.StartAsync(sharedNats: nats, name: $"ca-{suffix}", extraArgs: [.. s_fast, "--label", "zone=a"]);
        await using var b = await NodeHost.StartAsync(sharedNats: nats, name: $"cb-{suffix}", extraArgs: [.. s_fast, "--label", "zone=b"]);
        var log = new List<string>();
        async Task<Orchctl.Result> Ctl(params string[] args)
        {
            var result = await Orchctl.RunAsync(["--server", nats.Url, .. args], null);
            log.Add($"$ orchctl {string.Join(' ', args)} → {result.Code}\n{result.All}");
            Assert.DoesNotContain('\u001b', result.All);
            return result;
        }
        async Task<Orchctl.Result> Ok(params string[] args)
        {
            var result = await Ctl(args);
            Assert.True(result.Code == 0, string.Join("\n", log));
            return result;
        }
        Task Until(Func<Task<bool>> condition, string what)
            => Eventually.TrueAsync(what, condition, TimeSpan.FromSeconds(60), () => "not yet; orchctl said:\n" + string.Join("\n", log.TakeLast(6)), TimeSpan.FromMilliseconds(300));

        var version = await Ok("version");
        Assert.Contains(version.Out.Split('\n'), l => l.StartsWith(a.NodeName + " ", StringComparison.Ordinal));
        Assert.Contains(version.Out.Split('\n'), l => l.StartsWith(b.NodeName + " ", StringComparison.Ordinal));
        await Until(async () => (await Ctl("get", "nodes")).Out.Split('\n').Count(l => l.Contains(" ready ", StringComparison.Ordinal)) == 2
            && (await Ctl("get", "nodes")).Out.Contains("scheduler", StringComparison.Ordinal), "two ready nodes and a scheduler");
        Assert.Equal(a.NodeName + "\n", (await Ok("get", "nodes", "-l", "zone=a", "-o", "name")).Out);

        var manifest = a.Dir.Combine("hi.yaml");
        File.WriteAllText(manifest, """
            kind: Deployment
            name: hi
            replicas: 2
            antiAffinity: true
            template:
              image: busybox:latest
              command: [sh, -c, "echo hello from the fleet; exec sleep 100000"]
              network: none
              stopGracePeriodSeconds: 0
              labels: {app: hi}
            """);
        Assert.Contains("deployment hi: created (dry run)", (await Ok("apply", "-f", manifest, "--dry-run")).Out, StringComparison.Ordinal);
        Assert.Equal("deployment hi: created (revision 1)\n", (await Ok("apply", "-f", manifest)).Out);

        // rollout status -w: plain lines off a terminal, exit 0 when the revision is complete.
        var rollout = await Ok("rollout", "status", "hi", "-w", "--wait-timeout", "60s");
        Assert.EndsWith("deployment hi: rollout of revision 1 complete\n", rollout.Out, StringComparison.Ordinal);

        // wait, as kubectl wait: one line per object as it meets the condition; exit 3 on timeout
        // with what was last seen; 2 for a condition the kind does not have; 1 for no such object.
        Assert.Equal("deployment/hi condition met\n", (await Ok("wait", "deployment/hi", "--for=condition=complete", "--wait-timeout", "60s")).Out);
        Assert.Equal("container/hi-0 condition met\ncontainer/hi-1 condition met\n", (await Ok("wait", "container", "hi-0", "hi-1", "--for=condition=ready", "--wait-timeout", "60s")).Out);
        Assert.Equal($"node/{a.NodeName} condition met\n", (await Ok("wait", $"node/{a.NodeName}", "--for=condition=ready")).Out);
        var late = await Ctl("wait", "container/hi-0", "--for=condition=exited", "--wait-timeout", "1s");
        Assert.Equal(3, late.Code);
        Assert.Equal("orchctl: timed out after 1s waiting for container/hi-0 to be exited (last seen: running, ready)\n", late.Err);
        var badCondition = await Ctl("wait", "deployment/hi", "--for=condition=ready");
        Assert.Equal(2, badCondition.Code);
        Assert.Equal("orchctl: --for=condition=ready: a deployment has complete\n", badCondition.Err);
        Assert.Equal(1, (await Ctl("wait", "deployment/nope", "--for=condition=complete")).Code);

        // get containers: every node's, with the NODE column; JSON carries the node too.
        var containers = await Ok("get", "containers", "-l", "app=hi");
        var rows = containers.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("NAME", rows[0], StringComparison.Ordinal);
        Assert.Equal(["hi-0", "hi-1"], rows.Skip(1).Select(r => r.Split(' ')[0]));
        Assert.Equal(new[] { a.NodeName, b.NodeName }.Order(), rows.Skip(1).Select(r => r.Split("  ", StringSplitOptions.RemoveEmptyEntries)[1].Trim()).Order());
        Orchctl.AssertAligned(containers.Out);
        using (var json = JsonDocument.Parse((await Ok("get", "containers", "-o", "json")).Out))
        {
            var hi = json.RootElement.EnumerateArray().Where(c => c.GetProperty("name").GetString()!.StartsWith("hi-", StringComparison.Ordinal)).ToList();
            Assert.Equal(2, hi.Count);
            Assert.All(hi, c => Assert.Equal("running", c.GetProperty("state").GetString()));
            Assert.Equal(new[] { a.NodeName, b.NodeName }.Order(), hi.Select(c => c.GetProperty("node").GetString()).Order());
        }
        var onA = (await Ok("get", "containers", "-n", a.NodeName, "-o", "yaml")).Out;
        Assert.Contains($"node: {a.NodeName}", onA, StringComparison.Ordinal);
        Assert.DoesNotContain(b.NodeName, onA, StringComparison.Ordinal);
        // ps: one node's, with -o and -l as get has them.
        var nodeOfHi0Row = rows.Single(r => r.StartsWith("hi-0", StringComparison.Ordinal)).Split("  ", StringSplitOptions.RemoveEmptyEntries)[1].Trim();
        Assert.Equal("hi-0\n", (await Ok("ps", "-n", nodeOfHi0Row, "-l", "app=hi", "-o", "name")).Out);
        Assert.Equal("", (await Ok("ps", "-n", nodeOfHi0Row, "-l", "app=other", "-o", "name")).Out);
        var psWide = (await Ok("ps", "-n", nodeOfHi0Row, "-o", "wide")).Out;
        Assert.Contains("SOURCE", psWide.Split('\n')[0], StringComparison.Ordinal);
        Assert.Matches(@"hi-0 .* fleet\s+app=hi", psWide);
        Orchctl.AssertAligned(psWide);
        using (var json = JsonDocument.Parse((await Ok("ps", "-n", nodeOfHi0Row, "-o", "json")).Out))
        {
            var only = Assert.Single(json.RootElement.EnumerateArray(), c => c.GetProperty("name").GetString() == "hi-0");
            Assert.Equal(nodeOfHi0Row, only.GetProperty("node").GetString());
        }
        Assert.Equal(2, (await Ctl("ps", "-n", nodeOfHi0Row, "-o", "xml")).Code);
        var images = (await Ok("get", "images")).Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, images.Count(l => l.StartsWith(NodeHost.StoredImage, StringComparison.Ordinal)));

        // describe, top.
        var nodeOfHi0 = rows.Single(r => r.StartsWith("hi-0", StringComparison.Ordinal)).Split("  ", StringSplitOptions.RemoveEmptyEntries)[1].Trim();
        var describeNode = (await Ok("describe", "node", a.NodeName)).Out;
        Assert.Contains("Capacity:", describeNode, StringComparison.Ordinal);
        Assert.Contains("zone=a", describeNode, StringComparison.Ordinal);
        var describeDeployment = (await Ok("describe", "deployment", "hi")).Out;
        Assert.Matches(@"hi-0\s+" + nodeOfHi0 + @"\s+ready\s+running\s+yes", describeDeployment);
        Assert.Contains("Phase:              complete", describeDeployment, StringComparison.Ordinal);
        var describeContainer = (await Ok("describe", "container", "hi-0")).Out;
        Assert.Contains($"Node:                 {nodeOfHi0}", describeContainer, StringComparison.Ordinal);
        Assert.Contains("Source:               fleet (deployment hi)", describeContainer, StringComparison.Ordinal);
        Assert.Equal(3, (await Ok("top", "nodes")).Out.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.Contains((await Ok("top", "containers")).Out.Split('\n'), l => l.StartsWith("hi-1 ", StringComparison.Ordinal));

        // logs and exec find the container's node; exec exits with the command's code.
        await Until(async () => (await Ctl("logs", "hi-0", "--tail", "5")).Out.Contains("hello from the fleet", StringComparison.Ordinal), "hi-0's log line");
        var exec = await Ctl("exec", "hi-1", "--", "sh", "-c", "echo out; echo err >&2; exit 7");
        Assert.Equal(7, exec.Code);
        Assert.Equal("out\n", exec.Out);
        Assert.Equal("err\n", exec.Err);
        // logs -l: every matching replica on either node, each line prefixed; -f merges them as
        // they come, Ctrl-C (SIGINT) ends it with exit 0.
        await Until(async () => (await Ctl("logs", "-l", "app=hi")).Out.Split('\n').Count(l => l.EndsWith("hello from the fleet", StringComparison.Ordinal)) == 2, "both replicas' lines");
        Assert.Equal("[hi-0] hello from the fleet\n[hi-1] hello from the fleet\n", (await Ok("logs", "-l", "app=hi")).Out);
        Assert.Equal("", (await Ok("logs", "-l", "app=none")).Out);
        Assert.Equal(2, (await Ctl("logs", "hi-0", "-l", "app=hi")).Code);
        await using (var follow = DaemonProcess.Start(Repo.Binary("orchctl"), ["--server", nats.Url, "logs", "-l", "app in (hi)", "-f", "--tail", "1"]))
        {
            await follow.WaitForLogAsync("[hi-1] hello from the fleet", TimeSpan.FromSeconds(30));
            await Ok("exec", "hi-0", "--", "sh", "-c", "echo late line > /proc/1/fd/1");
            await follow.WaitForLogAsync("[hi-0] late line", TimeSpan.FromSeconds(30));
            follow.Signal(2);
            Assert.Equal(0, await follow.WaitForExitAsync(TimeSpan.FromSeconds(10)));
        }
        var ambiguous = await Ctl("logs", "hi");
        Assert.Equal(2, ambiguous.Code);
        Assert.Contains("'hi' is a deployment; name one of its replicas: hi-0", ambiguous.Err, StringComparison.Ordinal);
        Assert.Equal(1, (await Ctl("logs", "ghost")).Code);

        // scale past what anti-affinity allows: the reason shows in get deployments.
        var scaled = await Ctl("scale", "hi", "3");
        Assert.Equal(0, scaled.Code);
        Assert.Contains("scaled to 3", scaled.Out, StringComparison.Ordinal);
        Assert.Contains("runs one replica per node (antiAffinity) and 2 node(s) can take one (ready and uncordoned): 1 replica(s) stay unscheduled", scaled.Err, StringComparison.Ordinal);
        await Until(async () => (await Ctl("get", "deployments")).Out.Contains("hi-2: node", StringComparison.Ordinal), "hi-2 reported unschedulable");
        Assert.Contains("already runs a replica (antiAffinity)", (await Ok("describe", "deployment", "hi")).Out.Split("Unschedulable:")[1], StringComparison.Ordinal);
        await Ok("scale", "hi", "2");

        // cordon, drain, uncordon.
        await Ok("cordon", a.NodeName);
        Assert.Contains("ready,cordoned", (await Ok("get", "nodes", a.NodeName)).Out, StringComparison.Ordinal);
        await Ok("drain", b.NodeName);
        Assert.Contains("ready,draining", (await Ok("get", "nodes", b.NodeName)).Out, StringComparison.Ordinal);
        await Ok("uncordon", a.NodeName);
        await Ok("uncordon", b.NodeName);
        Assert.DoesNotContain("cordoned", (await Ok("get", "nodes")).Out, StringComparison.Ordinal);

        Assert.Contains("REVISION", (await Ok("rollout", "history", "hi")).Out, StringComparison.Ordinal);
        await Until(async () => (await Ctl("events", "--for", "hi")).Out.Contains("container.started", StringComparison.Ordinal), "hi's container.started events");
        Assert.Contains("container.started", (await Ok("get", "events", "-o", "json")).Out, StringComparison.Ordinal);

        // The names shell completion asks for.
        Assert.Equal(new[] { a.NodeName, b.NodeName }.Order(), (await Ok("__complete", "nodes")).Out.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("hi-0", (await Ok("__complete", "containers")).Out.Split('\n'));

        // delete container: a fleet replica is removed on its node and its deployment runs it again;
        // delete node: a ready one is refused.
        // get containers -w: the list, then a line per change from every node (events wake it).
        await using var watch = Orchctl.Start("--server", nats.Url, "get", "containers", "-l", "app=hi", "-w");
        await watch.WaitForLineAsync(l => l.StartsWith("hi-1 ", StringComparison.Ordinal), "hi-1's row");
        Assert.Equal(["NAME", "hi-0", "hi-1"], watch.Stdout.Select(l => l.Split(' ')[0]));
        // The state column is as wide as its longest state from the start (a later "stopping" or
        // "deleted" under a list of "running" rows once pushed the columns right of it).
        var header = watch.Stdout[0];
        Assert.True(header.IndexOf("READY", StringComparison.Ordinal) - header.IndexOf("STATE", StringComparison.Ordinal) >= "stopping".Length + 2, header);
        var hi1Before = (await Ok("get", "containers", "hi-1", "-o", "json")).Out;
        Assert.Matches($"^container hi-1: deleted on ({a.NodeName}|{b.NodeName}); its deployment runs it again\n$", (await Ok("delete", "container", "hi-1")).Out);
        await Until(async () => (await Ctl("get", "containers", "hi-1", "-o", "json")).Out is var now && now.Contains("\"running\"", StringComparison.Ordinal) && now != hi1Before, "hi-1 run again");
        Assert.Equal(1, (await Ctl("delete", "node", a.NodeName)).Code);
        Assert.Equal(1, (await Ctl("delete", "container", "ghost")).Code);
        Assert.Equal("container ghost: not found (ignored)\n", (await Ok("delete", "container", "ghost", "--ignore-not-found")).Out);

        // hi-1 removed and run again: at least one line for it after the list, the last one running.
        await watch.WaitForLineAsync(l => Regex.IsMatch(l, @"^hi-1\s+\S+\s+\S+\s+running\s"), "hi-1 running again", skip: 3);
        Assert.Equal("deployment hi: deleted\n", (await Ok("delete", "-f", manifest)).Out);
        var gone0 = await watch.WaitForLineAsync(l => Regex.IsMatch(l, @"^hi-0\s+\S+\s+\S+\s+deleted\s"), "hi-0 deleted", skip: 3);
        await watch.WaitForLineAsync(l => Regex.IsMatch(l, @"^hi-1\s+\S+\s+\S+\s+deleted\s"), "hi-1 deleted", skip: 3);
        watch.Signal(Signals.SIGINT);
        Assert.Equal(0, await watch.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Orchctl.AssertAligned(string.Join('\n', watch.Stdout) + "\n");
        Assert.True(gone0 > 3, string.Join('\n', watch.Stdout));
        Assert.Equal("container/hi-0 deleted\ncontainer/hi-1 deleted\n", (await Ok("wait", "container/hi-0", "container/hi-1", "--for=delete", "--wait-timeout", "60s")).Out);
        await Until(async () => !(await Ctl("get", "containers")).All.Contains("hi-", StringComparison.Ordinal), "hi's replicas removed");
    }
}

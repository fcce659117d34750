using System.Security.Cryptography;
using System.Text;
using Orchestrator.Api;

namespace Orchestrator.Daemon.Tests;

/// <summary>
/// orchd's self-update across a small fleet: releases signed and published with `orchd release`,
/// rolled out in waves to nodes that each run under a stand-in for systemd (ExecStartPre= the
/// update guard, Restart=on-failure with RestartForceExitStatus=75), from their own copy of the
/// binary so that the swap is real.
/// </summary>
[Trait("Category", "Integration")]
public sealed class SelfUpdateTests : IAsyncLifetime
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(90);
    private readonly TempDir _dir = new("orchd-update");
    private readonly List<ServiceLoop> _services = [];

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        foreach (var service in _services)
        {
            await service.DisposeAsync();
        }
        _dir.Dispose();
    }

    /// <summary>What systemd does with orchd.service, reduced to the parts an update relies on.</summary>
    private sealed class ServiceLoop : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly List<DaemonProcess> _runs = [];
        private readonly Task _loop;

        public ServiceLoop(string exe, string stateDir, string[] args)
        {
            Exe = exe;
            _loop = Task.Run(async () =>
            {
                for (var start = 0; start < 15 && !_stop.IsCancellationRequested; start++)
                {
                    var guard = DaemonProcess.Start("/bin/sh", [Path.Combine(Repo.Root, "packaging", "update", "orchd-update-guard"), stateDir]);
                    await guard.WaitForExitAsync(TimeSpan.FromSeconds(10));
                    lock (_runs)
                    {
                        _runs.Add(guard);
                    }
                    var run = DaemonProcess.Start(exe, args, new Dictionary<string, string?> { ["ORCHD_UPDATE_CONFIRM_SECONDS"] = "20" });
                    lock (_runs)
                    {
                        _runs.Add(run);
                    }
                    int code;
                    try
                    {
                        code = await run.WaitForExitAsync(TimeSpan.FromMinutes(10), drainOutput: false).WaitAsync(_stop.Token);
                    }
                    catch (OperationCanceledException)
                    {
                        return;
                    }
                    lock (Exits)
                    {
                        Exits.Add(code);
                    }
                    if (code is 0 or 78)
                    {
                        return; // Restart=on-failure, RestartPreventExitStatus=78
                    }
                    await Task.Delay(200); // RestartSec=
                }
            });
        }

        public string Exe { get; }
        public List<int> Exits { get; } = [];
        public string Output { get { lock (_runs) { return string.Join("\n", _runs.Select(r => r.Output)); } } }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            try
            {
                await _loop;
            }
            catch (OperationCanceledException)
            {
            }
            foreach (var run in _runs)
            {
                await run.DisposeAsync();
            }
        }
    }

    private static string Sha(string path) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));

    private static async Task<DaemonProcess> ReleaseAsync(NatsServer nats, params string[] args)
    {
        var process = DaemonProcess.Start(Repo.Binary("orchd"), ["release", .. args, "--config", "/dev/null", "--nats-url", nats.Url]);
        await process.WaitForExitAsync(s_wait);
        return process;
    }

    [Fact(Timeout = 300_000)]
    public async Task A_signed_release_rolls_out_in_waves_and_a_broken_one_is_rolled_back_and_stops_the_rollout()
    {
        await using var nats = await NatsServer.StartAsync();
        var (seed, publicKey) = ManifestSigning.CreateKey();
        var keyFile = _dir.Combine("operator.nk");
        await File.WriteAllTextAsync(keyFile, seed + "\n");

        foreach (var node in new[] { "upd-a", "upd-b" })
        {
            var bin = Directory.CreateDirectory(_dir.Combine(node, "bin")).FullName;
            var exe = Path.Combine(bin, "orchd");
            File.Copy(Repo.Binary("orchd"), exe);
            var state = _dir.Combine(node, "state");
            _services.Add(new ServiceLoop(exe, state,
                ["--config", "/dev/null", "--node-name", node, "--state-dir", state, "--run-dir", _dir.Combine(node, "run"), "--nats-url", nats.Url,
                 "--trusted-key", publicKey, "--manifest-dir", "none", "--bridge", "none"]));
        }
        var original = Sha(Repo.Binary("orchd"));

        // Release 2: orchd with bytes appended (a different digest; the ELF loader ignores the tail).
        var v2 = _dir.Combine("orchd-v2");
        File.Copy(Repo.Binary("orchd"), v2);
        await File.AppendAllTextAsync(v2, "\nrelease 2.0.0\n");
        var publish = await ReleaseAsync(nats, "publish", v2, "--version", "2.0.0", "--arch", "amd64", "--sign-key", keyFile);
        Assert.True(publish.Stdout.Any(l => l.StartsWith("published orchd 2.0.0 (amd64", StringComparison.Ordinal)), publish.Output);

        var status = await WaitForStatusAsync(nats, 2);
        Assert.All(new[] { "upd-a", "upd-b" }, n => Assert.Contains(status.Stdout, l => l.StartsWith(n, StringComparison.Ordinal) && l.Contains(original[..12], StringComparison.Ordinal)));

        var rollout = await ReleaseAsync(nats, "rollout", "2.0.0", "--waves", "1,100%", "--nodes", "upd-a,upd-b", "--timeout", "60s");
        Assert.True(rollout.Stdout.Contains("rollout of 2.0.0 complete: 2 nodes") && rollout.Stderr.Count == 0, rollout.Output + "\n" + string.Join("\n", _services.Select(s => s.Output)));
        Assert.Equal(["wave 1: upd-a", "wave 2: upd-b"], rollout.Stdout.Where(l => l.StartsWith("wave ", StringComparison.Ordinal)));
        foreach (var service in _services)
        {
            Assert.Equal(Sha(v2), Sha(service.Exe));
            Assert.False(File.Exists(service.Exe + ".prev"), "a confirmed update removes the previous binary");
            lock (service.Exits)
            {
                Assert.Equal([75], service.Exits); // one restart, onto the new binary
            }
        }

        // A release signed by a key the nodes do not trust is refused before anything is swapped.
        var (otherSeed, _) = ManifestSigning.CreateKey();
        var otherKey = _dir.Combine("other.nk");
        await File.WriteAllTextAsync(otherKey, otherSeed + "\n");
        await ReleaseAsync(nats, "publish", Repo.Binary("orchd"), "--version", "2.0.1-forged", "--arch", "amd64", "--sign-key", otherKey);
        var forged = await ReleaseAsync(nats, "rollout", "2.0.1-forged", "--nodes", "upd-a,upd-b", "--timeout", "30s");
        Assert.Equal(1, await forged.WaitForExitAsync(s_wait));
        Assert.Contains(forged.Stderr, l => l.Contains("stopped at node 'upd-a'", StringComparison.Ordinal) && l.Contains("not among this node's fleet.trusted_keys", StringComparison.Ordinal));
        Assert.Equal(Sha(v2), Sha(_services[0].Exe));

        // Release 3 is signed but broken: it exits at once. systemd restarts it, the guard puts
        // release 2 back after three starts, and the rollout stops at the first wave.
        var v3 = _dir.Combine("orchd-v3");
        await File.WriteAllTextAsync(v3, "#!/bin/sh\necho broken release >&2\nexit 1\n");
        await ReleaseAsync(nats, "publish", v3, "--version", "3.0.0", "--arch", "amd64", "--sign-key", keyFile);
        var broken = await ReleaseAsync(nats, "rollout", "3.0.0", "--waves", "1,100%", "--nodes", "upd-a,upd-b", "--timeout", "60s");
        Assert.Equal(1, await broken.WaitForExitAsync(s_wait));
        Assert.Contains(broken.Stderr, l => l.Contains("stopped: node 'upd-a' rolled back", StringComparison.Ordinal));
        Assert.DoesNotContain(broken.Stdout, l => l.StartsWith("wave 2", StringComparison.Ordinal));
        Assert.Equal(Sha(v2), Sha(_services[0].Exe));
        Assert.Equal(Sha(v2), Sha(_services[1].Exe));
        lock (_services[0].Exits)
        {
            Assert.Equal([75, 75, 1, 1, 1], _services[0].Exits.Take(5)); // the swap, three failed starts, then release 2 again
        }
        Assert.Contains("put the previous binary back", _services[0].Output, StringComparison.Ordinal);
        var after = await ReleaseAsync(nats, "status", "--nodes", "upd-a,upd-b");
        Assert.Contains(after.Stdout, l => l.StartsWith("upd-a", StringComparison.Ordinal) && l.Contains("rolled-back 3.0.0", StringComparison.Ordinal));
        Assert.Contains(after.Stdout, l => l.StartsWith("upd-b", StringComparison.Ordinal) && l.Contains("updated 2.0.0", StringComparison.Ordinal));
    }

    private async Task<DaemonProcess> WaitForStatusAsync(NatsServer nats, int nodes)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            var status = await ReleaseAsync(nats, "status", "--nodes", "upd-a,upd-b");
            if (status.Stdout.Count(l => l.StartsWith("upd-", StringComparison.Ordinal) && !l.Contains("no answer", StringComparison.Ordinal)) == nodes)
            {
                return status;
            }
            Assert.True(DateTime.UtcNow < deadline, status.Output + "\n" + string.Join("\n", _services.Select(s => s.Output)));
            await Task.Delay(500);
        }
    }
}

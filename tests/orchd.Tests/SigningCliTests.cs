using NATS.Client.Core;
using Orchestrator.Client;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Daemon.Tests;

/// <summary>orchctl keys / sign / apply --sign-key, as an operator runs them, against a real nats-server.</summary>
[Trait("Category", "Integration")]
public sealed class SigningCliTests : IDisposable
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);
    private readonly TempDir _dir = new("orchctl-sign");

    public void Dispose() => _dir.Dispose();

    private static async Task<(int Code, DaemonProcess Process)> OrchctlAsync(params string[] args)
    {
        var process = DaemonProcess.Start(Repo.Binary("orchctl"), args);
        var code = await process.WaitForExitAsync(s_wait);
        return (code, process);
    }

    [Fact(Timeout = 120_000)]
    public async Task Keys_sign_and_apply_produce_deployments_the_nodes_can_verify_and_a_tampered_file_is_refused()
    {
        var seedFile = _dir.Combine("op.nk");
        var (created, create) = await OrchctlAsync("keys", "create", "-o", seedFile);
        Assert.Equal(0, created);
        var publicKey = Assert.Single(create.Stdout);
        Assert.StartsWith("U", publicKey, StringComparison.Ordinal);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(seedFile));
        Assert.Equal(1, (await OrchctlAsync("keys", "create", "-o", seedFile)).Code); // never overwrites a key
        Assert.Equal(publicKey, Assert.Single((await OrchctlAsync("keys", "show", seedFile)).Process.Stdout));

        // sign: a file that loads as a manifest and verifies against the public key.
        var signedFile = _dir.Combine("web.signed.yaml");
        var (signedCode, sign) = await OrchctlAsync("sign", "-f", Path.Combine(Repo.Root, "examples", "web-deployment.yaml"), "--key", seedFile, "-o", signedFile);
        Assert.True(signedCode == 0, sign.Output);
        var signed = Assert.Single(ManifestLoader.ParseDeployments(File.ReadAllText(signedFile), signedFile));
        Assert.Null(ManifestSigning.Verify(signed.Name, signed.Selector, signed.Template, signed.Signature, [publicKey]));

        await using var nats = await NatsServer.StartAsync();
        var (appliedCode, apply) = await OrchctlAsync("--server", nats.Url, "apply", "-f", signedFile);
        Assert.True(appliedCode == 0, apply.Output);
        await using var connection = new NatsConnection(new NatsOpts { Url = nats.Url });
        await connection.ConnectAsync();
        var stored = (await new FleetClient(connection).GetDeploymentsAsync()).Single().Deployment;
        Assert.Null(ManifestSigning.Verify(stored.Name, stored.Selector, stored.Template, stored.Signature, [publicKey]));

        // A signed file edited afterwards: apply refuses it before it reaches the fleet.
        var tampered = _dir.Combine("tampered.yaml");
        File.WriteAllText(tampered, File.ReadAllText(signedFile).Replace("busybox:latest", "evil:latest", StringComparison.Ordinal));
        var (tamperedCode, refused) = await OrchctlAsync("--server", nats.Url, "apply", "-f", tampered);
        Assert.Equal(1, tamperedCode);
        Assert.Contains("does not match its content", refused.Output, StringComparison.Ordinal);

        // apply --sign-key signs on the way; a missing key file is one clear error.
        var (keyCode, withKey) = await OrchctlAsync("--server", nats.Url, "apply", "-f", Path.Combine(Repo.Root, "examples", "web-deployment.yaml"), "--sign-key", seedFile);
        Assert.True(keyCode == 0, withKey.Output);
        var resigned = (await new FleetClient(connection).GetDeploymentsAsync()).Single().Deployment;
        Assert.True(resigned.Signature!.Serial > stored.Signature!.Serial);
        var (missingCode, missing) = await OrchctlAsync("--server", nats.Url, "apply", "-f", signedFile, "--sign-key", _dir.Combine("nope.nk"));
        Assert.Equal(1, missingCode);
        Assert.Contains("cannot be read", missing.Output, StringComparison.Ordinal);
    }
}

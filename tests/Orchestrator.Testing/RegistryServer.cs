namespace Orchestrator.Testing;

/// <summary>
/// Debian's docker-registry (the CNCF distribution registry) on a free 127.0.0.1 port with its
/// storage in a temp dir; optionally with htpasswd (basic) auth. Images go in with skopeo.
/// </summary>
public sealed class RegistryServer : IAsyncDisposable
{
    private readonly TempDir _dir = new("orch-registry");
    private DaemonProcess? _process;

    public int Port { get; private set; }
    public string Host => $"127.0.0.1:{Port}";

    /// <summary>
    /// With <paramref name="tokenRealm"/> and <paramref name="tokenCertificatePem"/>: bearer-token
    /// auth, tokens signed by that certificate's key and issued at that realm (TokenServer).
    /// </summary>
    public static async Task<RegistryServer> StartAsync(string? user = null, string? password = null, string? tokenRealm = null, string? tokenCertificatePem = null)
    {
        var binary = Requires.Program("docker-registry", "docker-registry");
        var server = new RegistryServer { Port = FreePort.Next() };
        var auth = "";
        if (tokenRealm is not null)
        {
            await File.WriteAllTextAsync(server._dir.Combine("token-root.pem"), tokenCertificatePem);
            auth = $"""
                auth:
                  token:
                    realm: {tokenRealm}
                    service: orch-registry
                    issuer: orch-test-issuer
                    rootcertbundle: {server._dir.Combine("token-root.pem")}
                """;
        }
        else if (user is not null)
        {
            var htpasswd = Requires.Program("htpasswd", "apache2-utils");
            var make = DaemonProcess.Start(htpasswd, ["-Bbn", user, password ?? ""]);
            if (await make.WaitForExitAsync(TimeSpan.FromSeconds(30)) != 0)
            {
                throw new InvalidOperationException(make.Output);
            }
            await File.WriteAllTextAsync(server._dir.Combine("htpasswd"), string.Join("\n", make.Stdout) + "\n");
            auth = $"""
                auth:
                  htpasswd:
                    realm: orch-test
                    path: {server._dir.Combine("htpasswd")}
                """;
        }
        var config = server._dir.Combine("config.yml");
        await File.WriteAllTextAsync(config, $"""
            version: 0.1
            log:
              level: warn
            storage:
              filesystem:
                rootdirectory: {server._dir.Combine("storage")}
              delete:
                enabled: true
            http:
              addr: 127.0.0.1:{server.Port}
            {auth}
            """);
        server._process = DaemonProcess.Start(binary, ["serve", config]);
        await FreePort.WaitListeningAsync(server.Port, TimeSpan.FromSeconds(15), () => !server._process.HasExited);
        return server;
    }

    /// <summary>Pushes an OCI layout (all its manifests) with skopeo.</summary>
    public async Task PushAsync(string layoutRef, string repository, string tag, string? user = null, string? password = null)
    {
        var skopeo = Requires.Program("skopeo", "skopeo");
        string[] creds = user is null ? [] : ["--dest-creds", $"{user}:{password}"];
        var push = DaemonProcess.Start(skopeo, ["copy", "--all", "--dest-tls-verify=false", .. creds, $"oci:{layoutRef}", $"docker://{Host}/{repository}:{tag}"]);
        var code = await push.WaitForExitAsync(TimeSpan.FromSeconds(120));
        if (code != 0)
        {
            throw new InvalidOperationException($"skopeo push failed: {push.Output}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is not null)
        {
            await _process.DisposeAsync();
            _process = null;
        }
        _dir.Dispose();
    }
}

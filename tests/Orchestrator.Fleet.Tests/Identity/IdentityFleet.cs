using Microsoft.Extensions.Logging.Abstractions;
using NATS.Client.Core;
using NATS.NKeys;
using Orchestrator.Api;
using Orchestrator.Client;
using Orchestrator.Client.Identity;
using Orchestrator.Fleet.Identity;

namespace Orchestrator.Fleet.Tests.Identity;

/// <summary>
/// A real nats-server in operator mode (resolver: full) configured from `orchctl identity init`'s
/// output, and a running identity service: what the identity tests enrol devices against.
/// </summary>
internal sealed class IdentityFleet : IAsyncDisposable
{
    public required TempDir Dir { get; init; }
    public required NatsServer Server { get; init; }
    public required IdentityInfo Info { get; init; }
    public required NatsConnection Admin { get; init; }
    private NatsConnection? _service, _system;
    private CancellationTokenSource? _stop;
    private Task? _serving;

    /// <param name="leafPort">also listen for leaf servers on this port</param>
    public static async Task<IdentityFleet> StartAsync(TimeSpan? jwtLifetime = null, IReadOnlyList<string>? trustedKeys = null, int? leafPort = null)
    {
        var dir = new TempDir("orch-identity");
        var info = IdentitySetup.Init(dir.Combine("fleet"), "test-fleet", trustedKeys ?? [], DateTimeOffset.UtcNow);
        var conf = await File.ReadAllTextAsync(Path.Combine(dir.Combine("fleet"), "server", "nats-server.conf"));
        if (leafPort is { } lp)
        {
            conf += $"leafnodes {{ listen: \"127.0.0.1:{lp}\" }}\n";
        }
        var server = await NatsServer.StartAsync(conf);
        var admin = Connect(server.Url, Path.Combine(dir.Combine("fleet"), "admin.creds"));
        await admin.ConnectAsync();
        var fleet = new IdentityFleet { Dir = dir, Server = server, Info = info, Admin = admin };
        await fleet.StartServiceAsync(jwtLifetime);
        return fleet;
    }

    /// <summary>A path in the identity directory `orchctl identity init` made.</summary>
    public string FleetPath(params string[] parts) => System.IO.Path.Combine([Dir.Combine("fleet"), .. parts]);

    public async Task StartServiceAsync(TimeSpan? jwtLifetime = null)
    {
        var service = FleetPath("service");
        _service = Connect(Server.Url, System.IO.Path.Combine(service, "service.creds"));
        _system = Connect(Server.Url, System.IO.Path.Combine(service, "sys.creds"));
        await _service.ConnectAsync();
        await _system.ConnectAsync();
        var identity = new IdentityService(_service, _system, IdentitySetup.ReadInfo(service),
            IdentitySetup.ReadSeed(System.IO.Path.Combine(service, "account-signing.nk"), 'A'),
            IdentitySetup.ReadSeed(System.IO.Path.Combine(service, "operator-signing.nk"), 'O'),
            TimeProvider.System, NullLogger.Instance, jwtLifetime);
        _stop = new CancellationTokenSource();
        _serving = Task.Run(() => identity.RunAsync(_stop.Token));
        // Serving once its subscription answers.
        for (var i = 0; i < 100; i++)
        {
            try
            {
                var reply = await Admin.RequestAsync<byte[], byte[]>(IdentitySubjects.Revoke, """{"node":"-"}"""u8.ToArray(), replyOpts: new NatsSubOpts { Timeout = TimeSpan.FromSeconds(1) });
                if (reply.Data is { Length: > 0 })
                {
                    return;
                }
            }
            catch (NatsException)
            {
            }
            if (_serving.IsCompleted)
            {
                try
                {
                    await _serving; // its failure
                }
                catch (Exception e)
                {
                    throw new InvalidOperationException($"the identity service failed: {e.Message}; the server's log:\n{await File.ReadAllTextAsync(Server.LogFile)}", e);
                }
            }
            await Task.Delay(100);
        }
        throw new TimeoutException("the identity service did not answer in 10 s");
    }

    /// <summary>Stops the service (its connections too) and starts it again.</summary>
    public async Task RestartServiceAsync()
    {
        _stop?.Cancel();
        try
        {
            await _serving!;
        }
        catch (OperationCanceledException)
        {
        }
        await _service!.DisposeAsync();
        await _system!.DisposeAsync();
        await StartServiceAsync();
    }

    public static NatsConnection Connect(string url, string creds, string? inboxPrefix = null) => new(NatsOpts.Default with
    {
        Url = url, AuthOpts = NatsAuthOpts.Default with { CredsFile = creds }, InboxPrefix = inboxPrefix ?? NatsOpts.Default.InboxPrefix,
        MaxReconnectRetry = -1, ReconnectWaitMin = TimeSpan.FromMilliseconds(200), ReconnectWaitMax = TimeSpan.FromMilliseconds(500),
    });

    /// <summary>An admin request; the reply's body (an error reply too).</summary>
    public async Task<string> AskAsync(string subject, string json)
    {
        var reply = await Admin.RequestAsync<byte[], byte[]>(subject, System.Text.Encoding.UTF8.GetBytes(json), replyOpts: new NatsSubOpts { Timeout = TimeSpan.FromSeconds(10) });
        return System.Text.Encoding.UTF8.GetString(reply.Data ?? []);
    }

    public async Task<string> CreateTokenAsync(string json = """{"labels":{"site":"lab"},"uses":1,"ttlSeconds":3600}""")
    {
        var reply = await AskAsync(IdentitySubjects.TokenCreate, json);
        var parsed = System.Text.Json.JsonSerializer.Deserialize(reply, IdentityJsonContext.Default.TokenCreateReply);
        Assert.True(parsed is { Token.Length: > 0 }, reply);
        return parsed!.Token;
    }

    public NatsSettings Settings => new() { Urls = [Server.Url] };

    public async ValueTask DisposeAsync()
    {
        _stop?.Cancel();
        if (_serving is not null)
        {
            try
            {
                await _serving;
            }
            catch (OperationCanceledException)
            {
            }
        }
        foreach (var c in new[] { _service, _system, Admin })
        {
            if (c is not null)
            {
                await c.DisposeAsync();
            }
        }
        await Server.DisposeAsync();
        Dir.Dispose();
    }
}

using NATS.Client.Core;

namespace Orchestrator.Fleet.Agent;

/// <summary>How to reach NATS. Immutable; built by orchd from its configuration.</summary>
public sealed record NatsSettings
{
    public IReadOnlyList<string> Urls { get; init; } = ["nats://127.0.0.1:4222"];
    public string? CredsFile { get; init; }
    public string? User { get; init; }
    public string? Password { get; init; }
    public string? Token { get; init; }

    /// <summary>Longest wait between two attempts to reach NATS.</summary>
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The urls for logs, without any user:password part.</summary>
    public string DisplayUrls => string.Join(",", Urls.Select(Redact));

    public NatsOpts ToNatsOpts(string clientName) => NatsOpts.Default with
    {
        Url = string.Join(",", Urls),
        Name = clientName,
        AuthOpts = NatsAuthOpts.Default with
        {
            CredsFile = CredsFile,
            Username = User,
            Password = Password,
            Token = Token,
        },
        // The agent owns the first connection's retries (to log them its way); after that the
        // client reconnects forever: an edge node never gives up on its fleet.
        RetryOnInitialConnect = false,
        MaxReconnectRetry = -1,
        ReconnectWaitMin = TimeSpan.FromMilliseconds(500),
        ReconnectWaitMax = MaxBackoff,
        ConnectTimeout = TimeSpan.FromSeconds(5),
    };

    private static string Redact(string url)
        => Uri.TryCreate(url, UriKind.Absolute, out var uri) && uri.UserInfo.Length > 0
            ? url.Replace(uri.UserInfo + "@", "***@", StringComparison.Ordinal)
            : url;
}

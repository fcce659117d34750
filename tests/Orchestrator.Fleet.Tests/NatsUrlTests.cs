using Orchestrator.Client;
using Xunit;

namespace Orchestrator.Fleet.Tests;

/// <summary>The one rule for a NATS server url, shared by orchd's configuration and orchctl's --server.</summary>
public sealed class NatsUrlTests
{
    [Theory]
    [InlineData("nats://127.0.0.1:4222")]
    [InlineData("nats://127.0.0.1")]
    [InlineData("tls://nats.example:4443")]
    [InlineData("ws://127.0.0.1:8080")]
    [InlineData("wss://127.0.0.1")]
    [InlineData("nats://user:secret@127.0.0.1:4222")]
    [InlineData("nats://[::1]:4222")]
    public void A_nats_url_is_accepted(string url) => Assert.Null(NatsSettings.UrlProblem(url));

    [Theory]
    [InlineData("http://127.0.0.1:4222", "'http://127.0.0.1:4222' is not a NATS url (http:// is not a NATS scheme)")]
    [InlineData("https://127.0.0.1:4222", "'https://127.0.0.1:4222' is not a NATS url (https:// is not a NATS scheme)")]
    [InlineData("nats://127.0.0.1:port", "'nats://127.0.0.1:port' is not a NATS url")]
    [InlineData("nats://127.0.0.1:99999", "'nats://127.0.0.1:99999' is not a NATS url")]
    [InlineData("nats://127.0.0.1:0", "'nats://127.0.0.1:0' has no valid port")]
    [InlineData("127.0.0.1:4222", "is not a NATS url")]
    [InlineData("", "'' is not a NATS url")]
    [InlineData("http://user:secret@127.0.0.1", "'http://***@127.0.0.1' is not a NATS url")]
    public void Anything_else_is_refused_with_the_fix(string url, string expected)
    {
        var problem = NatsSettings.UrlProblem(url);
        Assert.NotNull(problem);
        Assert.Contains(expected, problem, StringComparison.Ordinal);
        Assert.EndsWith("; write it as nats://host:4222 (or tls://, ws://, wss://)", problem, StringComparison.Ordinal);
        Assert.DoesNotContain("secret", problem, StringComparison.Ordinal);
    }
}

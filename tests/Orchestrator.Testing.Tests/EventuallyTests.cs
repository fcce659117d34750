using Xunit.Sdk;

namespace Orchestrator.Testing.Tests;

public sealed class EventuallyTests
{
    [Fact]
    public async Task Returns_the_first_value_that_satisfies_the_condition()
    {
        var calls = 0;
        var value = await Eventually.ValueAsync("three calls", () => Task.FromResult(++calls), n => n >= 3, TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(1));
        Assert.Equal(3, value);
    }

    [Fact]
    public async Task Fails_naming_what_was_awaited_and_the_last_value_seen()
    {
        var e = await Assert.ThrowsAsync<XunitException>(() => Eventually.ValueAsync("the answer", () => Task.FromResult(41), n => n == 42, TimeSpan.FromMilliseconds(50), TimeSpan.FromMilliseconds(5)));
        Assert.StartsWith("waited 0.1 s for the answer; last seen: 41", e.Message, StringComparison.Ordinal);
        var listed = await Assert.ThrowsAsync<XunitException>(() => Eventually.ValueAsync("b", () => Task.FromResult(new[] { "a" }), l => l.Contains("b"), TimeSpan.Zero));
        Assert.EndsWith("last seen: [a]", listed.Message, StringComparison.Ordinal);
        var told = await Assert.ThrowsAsync<XunitException>(() => Eventually.TrueAsync("ready", () => false, TimeSpan.Zero, () => "state starting"));
        Assert.EndsWith("last seen: state starting", told.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Transient_exceptions_are_not_yet_and_others_fail_at_once()
    {
        var calls = 0;
        var value = await Eventually.ValueAsync("up", () => ++calls < 3 ? throw new TimeoutException("down") : Task.FromResult(calls), n => true,
            TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(1), transient: typeof(TimeoutException));
        Assert.Equal(3, value);
        Func<Task<int>> down = () => throw new TimeoutException("down");
        var e = await Assert.ThrowsAsync<XunitException>(() => Eventually.ValueAsync("up", down, n => true, TimeSpan.Zero, transient: typeof(TimeoutException)));
        Assert.EndsWith("last seen: TimeoutException: down", e.Message, StringComparison.Ordinal);
        Func<Task<int>> broken = () => throw new InvalidOperationException();
        await Assert.ThrowsAsync<InvalidOperationException>(() => Eventually.ValueAsync("up", broken, n => true, TimeSpan.FromSeconds(10)));
    }
}

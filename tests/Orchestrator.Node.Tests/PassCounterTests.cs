using Orchestrator.Node.Reconcile;

namespace Orchestrator.Node.Tests;

public sealed class PassCounterTests
{
    [Fact]
    public async Task A_waiter_completes_after_exactly_the_passes_it_asked_for()
    {
        var passes = new PassCounter();
        passes.PassCompleted();
        var two = passes.WaitForPassesAsync(2);
        passes.PassCompleted();
        Assert.False(two.IsCompleted, "one pass of two");
        passes.PassCompleted();
        await two.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(3, passes.Completed);
    }

    [Fact]
    public async Task Waiting_can_be_cancelled()
    {
        var passes = new PassCounter();
        using var cancel = new CancellationTokenSource();
        var wait = passes.WaitForPassesAsync(1, cancel.Token);
        cancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => wait);
        Assert.Throws<ArgumentOutOfRangeException>(() => { _ = passes.WaitForPassesAsync(0); });
    }
}

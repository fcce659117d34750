using System.Threading.Channels;

namespace Orchestrator.Node.Reconcile;

/// <summary>
/// The node's one mailbox: every change to the <see cref="Supervisor"/>'s state (API calls,
/// exits, probe results, the resync, the image service's reads of what uses an image) runs here,
/// one at a time, so that state needs no locks. The parts that watch from other threads (exit
/// watchers, probe loops, timers) post here and never touch that state themselves.
/// </summary>
internal sealed class Mailbox(Action afterEach)
{
    private readonly Channel<Func<Task>> _work = Channel.CreateUnbounded<Func<Task>>(new UnboundedChannelOptions { SingleReader = true });

    /// <summary>Runs <paramref name="work"/> on the loop; completes when it has run.</summary>
    public Task<bool> Post(Func<Task> work) => Post(async () =>
    {
        await work().ConfigureAwait(false);
        return true;
    });

    /// <summary>Runs <paramref name="work"/> on the loop and returns its result (or its exception).</summary>
    public Task<T> Post<T>(Func<Task<T>> work)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_work.Writer.TryWrite(async () =>
        {
            try
            {
                var result = await work().ConfigureAwait(false);
                afterEach(); // whoever asked sees its own change in the next ps
                done.TrySetResult(result);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                afterEach();
                done.TrySetException(e);
            }
        }))
        {
            done.TrySetException(new InvalidOperationException("orchd is stopping; try again once it is back"));
        }
        return done.Task;
    }

    public Task<T> Post<T>(Func<T> work) => Post(() => Task.FromResult(work()));

    /// <summary>Runs what is posted, in order, until cancelled.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var work in _work.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                await work().ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Refuses what is posted from now on (orchd is stopping).</summary>
    public void Complete() => _work.Writer.TryComplete();
}

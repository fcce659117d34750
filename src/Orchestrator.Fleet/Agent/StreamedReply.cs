using System.Threading.Channels;
using NATS.Client.Core;

namespace Orchestrator.Fleet.Agent;

/// <summary>
/// Answers one request with a series of replies on its inbox (logs -f, a streamed exec, a pull
/// with progress): what a producer writes is sent in batches of at most
/// <see cref="NodeApiResponder.MaxReplyBytes"/> (each a reply with <c>more: true</c>), then the
/// producer's last reply. While it runs, the node asks the client's alive subject every few seconds
/// and cancels the producer when nobody answers (the client quit, was killed or lost its
/// connection): a publish to a forgotten inbox does not fail, so nothing else would tell.
/// </summary>
/// <typeparam name="TItem">What the producer hands over (log lines, output chunks, progress).</typeparam>
internal sealed class StreamedReply<TItem>
{
    /// <summary>How often the client's alive subject is asked; it has as long again to answer.</summary>
    public static readonly TimeSpan AliveInterval = TimeSpan.FromSeconds(3);

    /// <summary>About how many bytes an item takes in a reply (it decides where batches split).</summary>
    public required Func<TItem, int> SizeOf { get; init; }

    /// <summary>A reply with <c>more: true</c> carrying the items.</summary>
    public required Func<IReadOnlyList<TItem>, byte[]> Batch { get; init; }

    /// <summary>The last reply when the producer was stopped (the client went away, orchd stops) rather than finished.</summary>
    public required Func<byte[]> Stopped { get; init; }

    /// <summary>Items held between the producer and the sender; a full buffer holds the producer back.</summary>
    public int Capacity { get; init; } = 1024;

    /// <summary>
    /// Runs <paramref name="produce"/>, which writes items and returns the last reply (or throws a
    /// node API error, sent as an <c>{"error": …}</c> reply), and sends everything in order.
    /// </summary>
    public async Task RunAsync(INatsConnection connection, NatsMsg<byte[]> msg, string? aliveSubject,
        Func<ChannelWriter<TItem>, CancellationToken, Task<byte[]>> produce, CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var alive = aliveSubject is { Length: > 0 } subject ? WatchAliveAsync(connection, subject, stop) : Task.CompletedTask;
        var channel = Channel.CreateBounded<TItem>(new BoundedChannelOptions(Capacity) { SingleReader = true, SingleWriter = false });
        var producer = Task.Run(async () =>
        {
            try
            {
                return await produce(channel.Writer, stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return Stopped();
            }
            catch (Exception e) when (NodeApiResponder.IsRequestError(e))
            {
                return NodeApiResponder.Error(e);
            }
            finally
            {
                channel.Writer.TryComplete();
            }
        }, CancellationToken.None);
        try
        {
            var batch = new List<TItem>();
            while (await channel.Reader.WaitToReadAsync(stop.Token).ConfigureAwait(false))
            {
                var size = 0;
                while (size < NodeApiResponder.MaxReplyBytes && channel.Reader.TryPeek(out var item)
                       && (batch.Count == 0 || size + SizeOf(item) <= NodeApiResponder.MaxReplyBytes))
                {
                    channel.Reader.TryRead(out _);
                    batch.Add(item);
                    size += SizeOf(item);
                }
                await msg.ReplyAsync(Batch(batch), cancellationToken: stop.Token).ConfigureAwait(false);
                batch.Clear();
            }
        }
        catch (Exception e) when (e is OperationCanceledException or NatsException)
        {
        }
        // Drained (the producer is done) or stopped: either way the producer ends now.
        await stop.CancelAsync().ConfigureAwait(false);
        var last = await producer.ConfigureAwait(false);
        try
        {
            await msg.ReplyAsync(last, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is NatsException or OperationCanceledException)
        {
        }
        await alive.ConfigureAwait(false);
    }

    private static Task WatchAliveAsync(INatsConnection connection, string subject, CancellationTokenSource stop) => Task.Run(async () =>
    {
        try
        {
            while (!stop.IsCancellationRequested)
            {
                await Task.Delay(AliveInterval, stop.Token).ConfigureAwait(false);
                try
                {
                    await connection.RequestAsync<byte[], byte[]>(subject, [], replyOpts: new NatsSubOpts { Timeout = AliveInterval }, cancellationToken: stop.Token).ConfigureAwait(false);
                }
                catch (Exception e) when (e is NatsNoRespondersException or NatsNoReplyException or NatsException)
                {
                    await stop.CancelAsync().ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }, CancellationToken.None);
}

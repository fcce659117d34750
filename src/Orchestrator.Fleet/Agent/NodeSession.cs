using System.Text.Json;
using NATS.Client.Core;
using Orchestrator.Api;

namespace Orchestrator.Fleet.Agent;

/// <summary>
/// A node API operation that goes on after its answer (cp, port-forward): a subject of its own
/// under the request's (orch.node.NODE.OP.ID, which the node's own subscription to
/// orch.node.NODE.* does not take), subscribed before the open is answered with it, and frames
/// that are each a request the node answers. A session ends when its work does, or when the
/// client has sent nothing for a while (it went away: a forgotten session must not hold a
/// container's root or a socket open).
/// </summary>
internal static class NodeSession
{
    /// <summary>Subscribes the session's subject, answers the open with it (<see cref="SessionOpened"/>), runs <paramref name="serve"/> on its frames, then unsubscribes.</summary>
    public static async Task RunAsync(INatsConnection connection, NatsMsg<byte[]> open, Func<INatsSub<byte[]>, Task> serve, CancellationToken cancellationToken)
    {
        var session = $"{open.Subject}.{Guid.NewGuid():N}";
        var frames = await connection.SubscribeCoreAsync<byte[]>(session, cancellationToken: cancellationToken).ConfigureAwait(false);
        try
        {
            await connection.PingAsync(cancellationToken).ConfigureAwait(false); // the server has the SUB before the client hears of it
            await open.ReplyAsync(JsonSerializer.SerializeToUtf8Bytes(new SessionOpened { Session = session }, FleetJsonContext.Default.SessionOpened), cancellationToken: cancellationToken).ConfigureAwait(false);
            await serve(frames).ConfigureAwait(false);
        }
        finally
        {
            await frames.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>The next frame; null when the client sent none for <paramref name="idleSeconds"/>, published one without a reply subject (quit), or the node stops.</summary>
    public static async Task<NatsMsg<byte[]>?> NextAsync(INatsSub<byte[]> frames, int idleSeconds, CancellationToken cancellationToken)
    {
        using var idle = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        idle.CancelAfter(TimeSpan.FromSeconds(idleSeconds));
        try
        {
            var frame = await frames.Msgs.ReadAsync(idle.Token).ConfigureAwait(false);
            return frame.ReplyTo is null ? null : frame;
        }
        catch (Exception e) when (e is OperationCanceledException or System.Threading.Channels.ChannelClosedException)
        {
            return null;
        }
    }
}

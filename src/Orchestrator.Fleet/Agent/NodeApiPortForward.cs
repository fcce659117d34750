using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using NATS.Client.Core;
using Orchestrator.Api;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Fleet.Agent;

/// <summary>
/// The node's side of `orchctl port-forward` (<see cref="PortForwardRequest"/>,
/// <see cref="ForwardFrames"/>): one TCP connection per session, from the node to a container's
/// port on its bridge (or a port of the node itself, as its policy allows), carried over NATS in
/// frames that each side answers. What the target sends is read ahead into a pipe of at most
/// 1 MiB and handed over on the client's Read frames; what the client sends is written to the
/// socket before it is acked. So a fast side waits for a slow one at every step and neither
/// holds more than a MiB or so for a connection, however much goes through it.
/// </summary>
internal sealed class NodeApiPortForward(Supervisor supervisor)
{
    private static readonly byte[] s_ack = [ForwardFrames.Ack];
    private static readonly byte[] s_end = [ForwardFrames.End];
    private static readonly byte[] s_empty = [ForwardFrames.Data];
    private static readonly PipeOptions s_pipe = new(pauseWriterThreshold: 1 << 20, resumeWriterThreshold: 512 << 10, useSynchronizationContext: false);

    /// <param name="endpointOnly">connect (another node for a deployment's name): only a ready replica of a fleet deployment.</param>
    public async Task ServeAsync(INatsConnection connection, NatsMsg<byte[]> msg, PortForwardRequest request, CancellationToken cancellationToken, bool endpointOnly = false)
    {
        Socket socket;
        try
        {
            socket = await ConnectAsync(request, endpointOnly, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (NodeApiResponder.IsRequestError(e))
        {
            await msg.ReplyAsync(NodeApiResponder.Error(e), cancellationToken: cancellationToken).ConfigureAwait(false);
            return;
        }
        using (socket)
        {
            await NodeSession.RunAsync(connection, msg, frames => RelayAsync(socket, frames, cancellationToken), cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task<Socket> ConnectAsync(PortForwardRequest request, bool endpointOnly, CancellationToken cancellationToken)
    {
        if (request.Port is < 1 or > 65535)
        {
            throw new NodeApiException($"{(endpointOnly ? "connect" : "port-forward")} needs a port from 1 to 65535, not {request.Port}");
        }
        IPAddress address;
        string what;
        if (endpointOnly)
        {
            (address, what) = (await supervisor.EndpointTargetAsync(request.Name).ConfigureAwait(false), $"replica '{request.Name}'");
        }
        else if (string.IsNullOrEmpty(request.Name))
        {
            await supervisor.CheckHostForwardAsync(request.Port).ConfigureAwait(false);
            (address, what) = (IPAddress.Loopback, "this node");
        }
        else
        {
            (address, what) = (await supervisor.ForwardTargetAsync(request.Name).ConfigureAwait(false), $"container '{request.Name}'");
        }
        var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(5));
        try
        {
            await socket.ConnectAsync(new IPEndPoint(address, request.Port), timeout.Token).ConfigureAwait(false);
            return socket;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            socket.Dispose();
            var why = e is SocketException { SocketErrorCode: SocketError.ConnectionRefused } ? "nothing listens there (connection refused)"
                : e is OperationCanceledException ? "no answer within 5 s" : ((SocketException)e).Message;
            throw new NodeApiException(ErrorKind.Unavailable, $"cannot connect to port {request.Port} of {what} ({address}:{request.Port}): {why}");
        }
    }

    private static async Task RelayAsync(Socket socket, INatsSub<byte[]> frames, CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var fromTarget = new Pipe(s_pipe);
        var reading = Task.Run(() => ReadTargetAsync(socket, fromTarget.Writer, stop.Token), CancellationToken.None);
        var answering = Task.CompletedTask;
        try
        {
            while (await NodeSession.NextAsync(frames, ForwardFrames.IdleSeconds, stop.Token).ConfigureAwait(false) is { } frame)
            {
                switch (frame.Data)
                {
                    case [ForwardFrames.Data, ..]:
                        try
                        {
                            await socket.SendAsync(frame.Data.AsMemory(1), SocketFlags.None, stop.Token).ConfigureAwait(false);
                        }
                        catch (SocketException e)
                        {
                            await frame.ReplyAsync(Error($"the connection to the target broke: {e.Message}"), cancellationToken: stop.Token).ConfigureAwait(false);
                            return;
                        }
                        await frame.ReplyAsync(s_ack, cancellationToken: stop.Token).ConfigureAwait(false);
                        break;
                    case [ForwardFrames.End, ..]:
                        // The client is done writing; the target may still answer.
                        try
                        {
                            socket.Shutdown(SocketShutdown.Send);
                        }
                        catch (SocketException)
                        {
                        }
                        await frame.ReplyAsync(s_ack, cancellationToken: stop.Token).ConfigureAwait(false);
                        break;
                    case [ForwardFrames.Read, ..]:
                        // Answered on its own: a read may wait for the target while the client's
                        // data frames keep coming (a request and its answer cross all the time).
                        await answering.ConfigureAwait(false); // a client asks one read at a time
                        var read = frame;
                        answering = Task.Run(async () => await read.ReplyAsync(await TakeAsync(fromTarget.Reader, stop.Token).ConfigureAwait(false), cancellationToken: stop.Token).ConfigureAwait(false), CancellationToken.None);
                        break;
                    case [ForwardFrames.Quit, ..]:
                        return;
                    default:
                        await frame.ReplyAsync(Error("a forward frame starts with D, E, R or Q"), cancellationToken: stop.Token).ConfigureAwait(false);
                        return;
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            try
            {
                await answering.ConfigureAwait(false);
            }
            catch (Exception)
            {
                // the client is gone or the node stops
            }
            await fromTarget.Reader.CompleteAsync().ConfigureAwait(false);
            try
            {
                await reading.ConfigureAwait(false);
            }
            catch (Exception)
            {
                // the connection is going anyway
            }
        }
    }

    /// <summary>The target's bytes into the pipe as they come (held back while the pipe is full), then its end.</summary>
    private static async Task ReadTargetAsync(Socket socket, PipeWriter pipe, CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                var memory = pipe.GetMemory(64 * 1024);
                var n = await socket.ReceiveAsync(memory, SocketFlags.None, cancellationToken).ConfigureAwait(false);
                if (n == 0)
                {
                    break;
                }
                pipe.Advance(n);
                var flushed = await pipe.FlushAsync(cancellationToken).ConfigureAwait(false);
                if (flushed.IsCompleted)
                {
                    return;
                }
            }
            await pipe.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
        {
            await pipe.CompleteAsync(e is SocketException ? e : null).ConfigureAwait(false);
        }
    }

    /// <summary>What the target has sent (up to a frame), an empty Data after a while without any, or End.</summary>
    private static async Task<byte[]> TakeAsync(PipeReader pipe, CancellationToken cancellationToken)
    {
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        wait.CancelAfter(TimeSpan.FromSeconds(ForwardFrames.ReadWaitSeconds));
        ReadResult read;
        try
        {
            read = await pipe.ReadAsync(wait.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return s_empty; // nothing for a while: the client asks again
        }
        catch (SocketException e)
        {
            return Error($"the connection to the target broke: {e.Message}");
        }
        if (read.Buffer.IsEmpty && read.IsCompleted)
        {
            return s_end;
        }
        var piece = read.Buffer.Slice(0, Math.Min(read.Buffer.Length, ForwardFrames.MaxData));
        var data = new byte[piece.Length + 1];
        data[0] = ForwardFrames.Data;
        piece.CopyTo(data.AsSpan(1));
        pipe.AdvanceTo(piece.End);
        return data;
    }

    private static byte[] Error(string message) => [ForwardFrames.Error, .. NodeApiResponder.Error(message, ErrorKind.Unavailable)];
}

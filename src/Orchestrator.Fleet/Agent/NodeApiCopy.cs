using System.Buffers;
using System.IO.Pipelines;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using NATS.Client.Core;
using Orchestrator.Api;
using Orchestrator.Node.Copy;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Fleet.Agent;

/// <summary>
/// The node's side of `orchctl cp` (<see cref="CopyRequest"/>, <see cref="CopyFrames"/>): opens the
/// container's root, answers the open with a session subject of its own, then moves the tar
/// stream frame by frame between the session and <see cref="ContainerFiles"/>, through a pipe of
/// a few MiB. Every data frame is a request the other side answers, so a slow side holds the
/// other back instead of dropping frames (a publish to a slow consumer would), and memory stays
/// bounded on both. The client going quiet for <see cref="CopyFrames.IdleSeconds"/> ends it.
/// </summary>
internal sealed class NodeApiCopy(Supervisor supervisor)
{
    private static readonly byte[] s_ack = [CopyFrames.Ack];
    private static readonly PipeOptions s_pipe = new(pauseWriterThreshold: 4 << 20, resumeWriterThreshold: 2 << 20, useSynchronizationContext: false);

    public async Task ServeAsync(INatsConnection connection, NatsMsg<byte[]> msg, CopyRequest request, CancellationToken cancellationToken)
    {
        SafeFileHandle root;
        try
        {
            if (string.IsNullOrWhiteSpace(request.Path) || request.Direction is not (CopyFrames.From or CopyFrames.To))
            {
                throw new NodeApiException("cp needs {\"name\": …, \"path\": \"/in/the/container\", \"direction\": \"from\" or \"to\"}");
            }
            root = await supervisor.OpenRootAsync(request.Name).ConfigureAwait(false);
        }
        catch (Exception e) when (NodeApiResponder.IsRequestError(e))
        {
            await msg.ReplyAsync(NodeApiResponder.Error(e), cancellationToken: cancellationToken).ConfigureAwait(false);
            return;
        }
        using (root)
        {
            await NodeSession.RunAsync(connection, msg, frames => ServeSessionAsync(request, root, frames, cancellationToken), cancellationToken).ConfigureAwait(false);
        }
    }

    private static async Task ServeSessionAsync(CopyRequest request, SafeFileHandle root, INatsSub<byte[]> frames, CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var pipe = new Pipe(s_pipe);
        if (request.Direction == CopyFrames.From)
        {
            var archiving = Task.Run(async () =>
            {
                try
                {
                    var done = await ContainerFiles.ArchiveAsync(root, request.Path, pipe.Writer.AsStream(leaveOpen: true), stop.Token).ConfigureAwait(false);
                    await pipe.Writer.CompleteAsync().ConfigureAwait(false);
                    return done;
                }
                catch (Exception e)
                {
                    await pipe.Writer.CompleteAsync(e).ConfigureAwait(false);
                    throw;
                }
            }, CancellationToken.None);
            try
            {
                await SendAsync(frames, pipe.Reader, archiving, stop.Token).ConfigureAwait(false);
            }
            finally
            {
                await stop.CancelAsync().ConfigureAwait(false);
                await pipe.Reader.CompleteAsync().ConfigureAwait(false);
                await Quietly(archiving).ConfigureAwait(false);
            }
        }
        else
        {
            var extracting = Task.Run(async () =>
            {
                try
                {
                    var done = await ContainerFiles.ExtractAsync(root, request.Path, pipe.Reader.AsStream(leaveOpen: true), request.KeepOwners, stop.Token).ConfigureAwait(false);
                    await pipe.Reader.CompleteAsync().ConfigureAwait(false);
                    return done;
                }
                catch (Exception e)
                {
                    await pipe.Reader.CompleteAsync(e).ConfigureAwait(false);
                    throw;
                }
            }, CancellationToken.None);
            try
            {
                await ReceiveAsync(frames, pipe.Writer, extracting, stop.Token).ConfigureAwait(false);
            }
            finally
            {
                await stop.CancelAsync().ConfigureAwait(false);
                await pipe.Writer.CompleteAsync().ConfigureAwait(false);
                await Quietly(extracting).ConfigureAwait(false);
            }
        }
    }

    /// <summary>from: each request from the client gets the next piece of the archive, then its end.</summary>
    private static async Task SendAsync(INatsSub<byte[]> frames, PipeReader archive, Task<CopyDone> archiving, CancellationToken cancellationToken)
    {
        while (await NodeSession.NextAsync(frames, CopyFrames.IdleSeconds, cancellationToken).ConfigureAwait(false) is { } frame)
        {
            if (frame.Data is [CopyFrames.Quit, ..])
            {
                return;
            }
            ReadResult read;
            try
            {
                read = await archive.ReadAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                await frame.ReplyAsync(ErrorFrame(await Failure(archiving, e).ConfigureAwait(false)), cancellationToken: cancellationToken).ConfigureAwait(false);
                return;
            }
            if (read.Buffer.IsEmpty && read.IsCompleted)
            {
                var done = await archiving.ConfigureAwait(false);
                byte[] end = [CopyFrames.End, .. JsonSerializer.SerializeToUtf8Bytes(done, FleetJsonContext.Default.CopyDone)];
                await frame.ReplyAsync(end, cancellationToken: cancellationToken).ConfigureAwait(false);
                return;
            }
            var piece = read.Buffer.Slice(0, Math.Min(read.Buffer.Length, CopyFrames.MaxData));
            var data = new byte[piece.Length + 1];
            data[0] = CopyFrames.Data;
            piece.CopyTo(data.AsSpan(1));
            archive.AdvanceTo(piece.End);
            await frame.ReplyAsync(data, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>to: each data frame goes into the pipe the extraction reads (acked once it is in); End waits for the extraction.</summary>
    private static async Task ReceiveAsync(INatsSub<byte[]> frames, PipeWriter archive, Task<CopyDone> extracting, CancellationToken cancellationToken)
    {
        while (await NodeSession.NextAsync(frames, CopyFrames.IdleSeconds, cancellationToken).ConfigureAwait(false) is { } frame)
        {
            switch (frame.Data)
            {
                case [CopyFrames.Quit, ..]:
                    return;
                case [CopyFrames.Data, ..]:
                    var flushed = await archive.WriteAsync(frame.Data.AsMemory(1), cancellationToken).ConfigureAwait(false);
                    if (flushed.IsCompleted || extracting.IsFaulted)
                    {
                        // The extraction stopped (refused an entry, a full disk): say why, once.
                        await frame.ReplyAsync(ErrorFrame(await Failure(extracting, null).ConfigureAwait(false)), cancellationToken: cancellationToken).ConfigureAwait(false);
                        return;
                    }
                    await frame.ReplyAsync(s_ack, cancellationToken: cancellationToken).ConfigureAwait(false);
                    break;
                case [CopyFrames.End, ..]:
                    await archive.CompleteAsync().ConfigureAwait(false);
                    byte[] reply;
                    try
                    {
                        var done = await extracting.ConfigureAwait(false);
                        reply = [CopyFrames.End, .. JsonSerializer.SerializeToUtf8Bytes(done, FleetJsonContext.Default.CopyDone)];
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        reply = ErrorFrame(e);
                    }
                    await frame.ReplyAsync(reply, cancellationToken: cancellationToken).ConfigureAwait(false);
                    return;
                default:
                    await frame.ReplyAsync(ErrorFrame(new NodeApiException("a copy frame starts with D (data), E (end) or Q (quit)")), cancellationToken: cancellationToken).ConfigureAwait(false);
                    return;
            }
        }
    }

    /// <summary>Why the worker stopped: its own exception when it has one, else what the pipe said.</summary>
    private static async Task<Exception> Failure(Task<CopyDone> worker, Exception? seen)
    {
        try
        {
            await worker.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not TimeoutException)
        {
            return e;
        }
        catch (TimeoutException)
        {
        }
        return seen ?? new NodeApiException(ErrorKind.Internal, "the copy stopped");
    }

    private static byte[] ErrorFrame(Exception e)
        => [CopyFrames.Error, .. NodeApiResponder.IsRequestError(e) ? NodeApiResponder.Error(e) : NodeApiResponder.Error($"the copy failed: {e.Message}", ErrorKind.Internal)];

    private static async Task Quietly(Task task)
    {
        try
        {
            await task.ConfigureAwait(false);
        }
        catch (Exception)
        {
            // already answered (or nobody is listening any more)
        }
    }
}

using System.Buffers;
using System.Buffers.Binary;
using System.Text.Json;
using System.Threading.Channels;
using NATS.Client.Core;
using Orchestrator.Api;
using Orchestrator.Node.Drivers;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Fleet.Agent;

/// <summary>
/// The node's side of `orchctl exec -i` / `-t` (<see cref="ExecRequest.Interactive"/>,
/// <see cref="ExecFrames"/>): a process in the container whose input comes from the client's
/// Data frames and whose output is read ahead (at most 64 reads of up to 16 KiB, then the
/// process waits on its next write) and handed over on Read frames, as much as is there (up to
/// 256 KiB) in one answer, in a session as port-forward's. The process is killed when the client quits, goes quiet for
/// <see cref="ForwardFrames.IdleSeconds"/> (it went away) or orchd stops.
/// </summary>
internal sealed class NodeApiExec(Supervisor supervisor)
{
    private static readonly byte[] s_ack = [ExecFrames.Ack];
    private static readonly byte[] s_empty = [ExecFrames.Data];

    public Task ServeAsync(INatsConnection connection, NatsMsg<byte[]> msg, ExecRequest request, CancellationToken cancellationToken)
        => ServeAsync(connection, msg, request.Rows, request.Cols,
            options => supervisor.ExecInteractiveAsync(request.Name, request.Command, options with { Stdin = request.Stdin, Tty = request.Tty }, cancellationToken), cancellationToken);

    /// <summary>attach: the same session over the container's own process (Quit detaches; see Supervisor.AttachAsync).</summary>
    public Task ServeAttachAsync(INatsConnection connection, NatsMsg<byte[]> msg, AttachRequest request, CancellationToken cancellationToken)
        => ServeAsync(connection, msg, request.Rows, request.Cols,
            options => supervisor.AttachAsync(request.Name, options with { Stdin = request.Stdin, Tty = request.Tty }), cancellationToken);

    private static async Task ServeAsync(INatsConnection connection, NatsMsg<byte[]> msg, int rows, int cols,
        Func<InteractiveOptions, Task<InteractiveProcess>> open, CancellationToken cancellationToken)
    {
        InteractiveProcess process;
        try
        {
            if (rows is < 0 or > ushort.MaxValue || cols is < 0 or > ushort.MaxValue)
            {
                throw new NodeApiException($"a terminal of {rows} rows and {cols} columns cannot be made; give 1 to 65535 of each (or 0 for 24 × 80)");
            }
            process = await open(new InteractiveOptions(false, false, (ushort)rows, (ushort)cols)).ConfigureAwait(false);
        }
        catch (Exception e) when (NodeApiResponder.IsRequestError(e))
        {
            await msg.ReplyAsync(NodeApiResponder.Error(e), cancellationToken: cancellationToken).ConfigureAwait(false);
            return;
        }
        await using (process.ConfigureAwait(false))
        {
            await NodeSession.RunAsync(connection, msg, frames => RelayAsync(process, frames, cancellationToken), cancellationToken).ConfigureAwait(false);
        }
    }

    private static async Task RelayAsync(InteractiveProcess process, INatsSub<byte[]> frames, CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var output = Channel.CreateBounded<byte[]>(new BoundedChannelOptions(64) { SingleReader = true, SingleWriter = true });
        var pump = process.PumpOutputAsync(
            (kind, data, ct) => output.Writer.WriteAsync([kind == ExecOutputKind.Stderr ? ExecFrames.Stderr : ExecFrames.Data, .. data.Span], ct), stop.Token);
        var finished = FinishAsync(process, pump, output.Writer);
        var answering = Task.CompletedTask;
        try
        {
            while (await NodeSession.NextAsync(frames, ForwardFrames.IdleSeconds, stop.Token).ConfigureAwait(false) is { } frame)
            {
                switch (frame.Data)
                {
                    case [ExecFrames.Data, ..]:
                        if (process.Input < 0)
                        {
                            await frame.ReplyAsync(Error("the command has no stdin: exec (or attach) with -i to send it input"), cancellationToken: stop.Token).ConfigureAwait(false);
                            return;
                        }
                        // Written before the ack (a command that does not read holds the client back);
                        // on the thread pool, as a write may wait for it. A command that closed its
                        // stdin (or exited) takes no more: the rest is dropped, as a shell's would be.
                        var data = frame.Data;
                        _ = await Task.Run(() => process.Write(data.AsSpan(1), stop.Token), stop.Token).ConfigureAwait(false);
                        await frame.ReplyAsync(s_ack, cancellationToken: stop.Token).ConfigureAwait(false);
                        break;
                    case [ExecFrames.End, ..]:
                        process.CloseInput();
                        await frame.ReplyAsync(s_ack, cancellationToken: stop.Token).ConfigureAwait(false);
                        break;
                    case [ExecFrames.Resize, _, _, _, _]:
                        process.Resize(BinaryPrimitives.ReadUInt16BigEndian(frame.Data.AsSpan(1)), BinaryPrimitives.ReadUInt16BigEndian(frame.Data.AsSpan(3)));
                        await frame.ReplyAsync(s_ack, cancellationToken: stop.Token).ConfigureAwait(false);
                        break;
                    case [ExecFrames.Read, ..]:
                        // Answered on its own: a read waits for output while input keeps coming.
                        await answering.ConfigureAwait(false); // a client asks one read at a time
                        var read = frame;
                        answering = Task.Run(async () => await read.ReplyAsync(await TakeAsync(output.Reader, process, stop.Token).ConfigureAwait(false), cancellationToken: stop.Token).ConfigureAwait(false), CancellationToken.None);
                        break;
                    case [ExecFrames.Quit, ..]:
                        return;
                    default:
                        await frame.ReplyAsync(Error("an exec frame starts with D, E, W (and 4 bytes), R or Q"), cancellationToken: stop.Token).ConfigureAwait(false);
                        return;
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        finally
        {
            process.Kill(); // quit, gone quiet, or done: nothing of the session keeps running
            await stop.CancelAsync().ConfigureAwait(false);
            foreach (var task in (Task[])[answering, finished])
            {
                try
                {
                    await task.ConfigureAwait(false);
                }
                catch (Exception)
                {
                    // the client is gone or the node stops
                }
            }
        }
    }

    /// <summary>Completes the output once it is drained and the process has exited.</summary>
    private static async Task FinishAsync(InteractiveProcess process, Task pump, ChannelWriter<byte[]> output)
    {
        try
        {
            await pump.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            try
            {
                await process.Exited.ConfigureAwait(false);
            }
            finally
            {
                output.TryComplete();
            }
        }
    }

    /// <summary>The next piece of output (Data or Stderr), an empty Data after a while without any, or End with the exit code.</summary>
    private static async Task<byte[]> TakeAsync(ChannelReader<byte[]> output, InteractiveProcess process, CancellationToken cancellationToken)
    {
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        wait.CancelAfter(TimeSpan.FromSeconds(ForwardFrames.ReadWaitSeconds));
        try
        {
            if (await output.WaitToReadAsync(wait.Token).ConfigureAwait(false) && output.TryRead(out var piece))
            {
                // Whatever else of the same stream is read ahead goes in the same answer (up to
                // 256 KiB): a command that writes a line at a time is not a round trip per line.
                if (!output.TryPeek(out var next) || next[0] != piece[0])
                {
                    return piece;
                }
                var joined = new ArrayBufferWriter<byte>(64 * 1024);
                joined.Write(piece);
                while (joined.WrittenCount < ForwardFrames.MaxData && output.TryPeek(out next) && next[0] == piece[0] && output.TryRead(out next))
                {
                    joined.Write(next.AsSpan(1));
                }
                return joined.WrittenSpan.ToArray();
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return s_empty; // nothing for a while: the client asks again
        }
        int code;
        try
        {
            code = await process.Exited.ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return Error($"the command's exit could not be read: {e.Message}");
        }
        return [ExecFrames.End, .. JsonSerializer.SerializeToUtf8Bytes(new ExecStreamReply { More = false, ExitCode = code }, FleetJsonContext.Default.ExecStreamReply)];
    }

    private static byte[] Error(string message) => [ExecFrames.Error, .. NodeApiResponder.Error(message, ErrorKind.Invalid)];
}

using System.Text.Json;
using System.Threading.Channels;
using NATS.Client.Core;
using Orchestrator.Api;
using Orchestrator.Images.Registry;
using Orchestrator.Node.Drivers;
using Orchestrator.Node.Logs;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Fleet.Agent;

/// <summary>
/// The node API's streamed answers, each a <see cref="StreamedReply{TItem}"/>: logs -f (new lines
/// as they are written; a previous run's log does not grow, so follow with previous gets the
/// one-reply answer), exec with stream (output as the command writes it, then the exit code),
/// pull with progress (a message per blob, then the image), cp (a session of its own,
/// <see cref="NodeApiCopy"/>). A request asks for one by naming its
/// alive subject; without it the same operation gets the one-reply answer of
/// <see cref="NodeApiResponder"/>, which is what older clients send.
/// </summary>
public sealed class NodeApiStreams(Supervisor supervisor)
{
    private readonly NodeApiCopy _copy = new(supervisor);
    private readonly NodeApiPortForward _forward = new(supervisor);
    private readonly NodeApiExec _interactive = new(supervisor);

    /// <summary>Serves <paramref name="msg"/> when it asks for a streamed answer and says what it served (for the log); null (nothing sent) otherwise.</summary>
    public async Task<string?> TryServeAsync(INatsConnection connection, NatsMsg<byte[]> msg, string op, CancellationToken cancellationToken)
    {
        switch (op)
        {
            case NodeOps.Logs when TryParse(msg.Data, FleetJsonContext.Default.LogsRequest) is { Follow: true, Previous: false, Run: null, AliveSubject.Length: > 0 } logs:
                await s_followLogs.RunAsync(connection, msg, logs.AliveSubject, (writer, stop) => FollowLogsAsync(logs, writer, stop), cancellationToken).ConfigureAwait(false);
                return $"logs -f of {logs.Name}";
            case NodeOps.Exec when TryParse(msg.Data, FleetJsonContext.Default.ExecRequest) is { Interactive: true } interactive:
                await _interactive.ServeAsync(connection, msg, interactive, cancellationToken).ConfigureAwait(false);
                return $"exec{(interactive.Stdin ? " -i" : "")}{(interactive.Tty ? " -t" : "")} in {interactive.Name}";
            case NodeOps.Exec when TryParse(msg.Data, FleetJsonContext.Default.ExecRequest) is { Stream: true, AliveSubject.Length: > 0 } exec:
                await s_exec.RunAsync(connection, msg, exec.AliveSubject, (writer, stop) => ExecAsync(exec, writer, stop), cancellationToken).ConfigureAwait(false);
                return $"exec in {exec.Name}";
            case NodeOps.Attach when TryParse(msg.Data, FleetJsonContext.Default.AttachRequest) is { } attach:
                await _interactive.ServeAttachAsync(connection, msg, attach, cancellationToken).ConfigureAwait(false);
                return $"attach{(attach.Stdin ? " -i" : "")}{(attach.Tty ? " -t" : "")} to {attach.Name}";
            case NodeOps.Copy when TryParse(msg.Data, FleetJsonContext.Default.CopyRequest) is { } copy:
                await _copy.ServeAsync(connection, msg, copy, cancellationToken).ConfigureAwait(false);
                return $"cp {copy.Direction} {copy.Name}:{copy.Path}";
            case NodeOps.PortForward when TryParse(msg.Data, FleetJsonContext.Default.PortForwardRequest) is { } forward:
                await _forward.ServeAsync(connection, msg, forward, cancellationToken).ConfigureAwait(false);
                return $"port-forward to {(forward.Name.Length > 0 ? forward.Name : "the node")}:{forward.Port}";
            case NodeOps.Connect when TryParse(msg.Data, FleetJsonContext.Default.PortForwardRequest) is { } connect:
                await _forward.ServeAsync(connection, msg, connect, cancellationToken, endpointOnly: true).ConfigureAwait(false);
                return $"connect to {connect.Name}:{connect.Port}";
            case NodeOps.Pull when TryParse(msg.Data, FleetJsonContext.Default.PullRequest) is { Progress: true, AliveSubject.Length: > 0 } pull:
                await s_pull.RunAsync(connection, msg, pull.AliveSubject, (writer, stop) => PullAsync(pull, writer, stop), cancellationToken).ConfigureAwait(false);
                return $"pull of {pull.Reference}";
            default:
                return null;
        }
    }

    private static readonly StreamedReply<LogLine> s_followLogs = new()
    {
        SizeOf = line => line.Text.Length + 100,
        Batch = lines => NodeApiResponder.Reply(new LogsReply { Lines = lines, More = true }, FleetJsonContext.Default.LogsReply),
        Stopped = () => NodeApiResponder.Reply(new LogsReply { Lines = [], More = false }, FleetJsonContext.Default.LogsReply),
        Capacity = 10_000,
    };

    /// <summary>The tail, then new lines until the client goes away or orchd stops (a followed log has no end of its own).</summary>
    private async Task<byte[]> FollowLogsAsync(LogsRequest request, ChannelWriter<LogLine> writer, CancellationToken stop)
    {
        var lines = await supervisor.FollowLogsAsync(request.Name, request.Tail, request.Since, stop).ConfigureAwait(false);
        await foreach (var line in lines.WithCancellation(stop).ConfigureAwait(false))
        {
            await writer.WriteAsync(line, stop).ConfigureAwait(false);
        }
        return s_followLogs.Stopped();
    }

    private static readonly StreamedReply<ExecOutputChunk> s_exec = new()
    {
        // base64 grows the bytes by a third.
        SizeOf = chunk => chunk.Data.Length / 3 * 4 + 64,
        Batch = chunks => NodeApiResponder.Reply(new ExecStreamReply { Output = chunks, More = true }, FleetJsonContext.Default.ExecStreamReply),
        // Only sent when the client went away or orchd stops: the command was killed.
        Stopped = () => NodeApiResponder.Reply(new ExecStreamReply { More = false, ExitCode = 137 }, FleetJsonContext.Default.ExecStreamReply),
        Capacity = 64,
    };

    /// <summary>The command's output as it comes, then its exit code; the client going away kills it.</summary>
    private async Task<byte[]> ExecAsync(ExecRequest request, ChannelWriter<ExecOutputChunk> writer, CancellationToken stop)
    {
        var exit = await supervisor.ExecStreamAsync(request.Name, request.Command,
            (stream, data, cancellationToken) => writer.WriteAsync(new ExecOutputChunk { Stream = stream == ExecOutputKind.Stderr ? "stderr" : "stdout", Data = data.ToArray() }, cancellationToken),
            TimeSpan.FromSeconds(Math.Clamp(request.TimeoutSeconds, 0.1, 3600)), stop).ConfigureAwait(false);
        return NodeApiResponder.Reply(new ExecStreamReply { More = false, ExitCode = exit.ExitCode, TimedOut = exit.TimedOut }, FleetJsonContext.Default.ExecStreamReply);
    }

    private static readonly StreamedReply<PullProgress> s_pull = new()
    {
        SizeOf = _ => 200,
        // The latest progress says it all: a batch sends only that.
        Batch = progress => NodeApiResponder.Reply(Progress(progress[^1]), FleetJsonContext.Default.PullStreamReply),
        Stopped = () => NodeApiResponder.Error("the pull was cancelled (the client went away or orchd stops)", ErrorKind.Unavailable),
        Capacity = 256,
    };

    /// <summary>A message per blob stored, then the pulled image; the client going away cancels the pull.</summary>
    private async Task<byte[]> PullAsync(PullRequest request, ChannelWriter<PullProgress> writer, CancellationToken stop)
    {
        if (string.IsNullOrWhiteSpace(request.Reference))
        {
            throw new NodeApiException("pull needs a reference: {\"reference\": \"registry/name:tag\"} (or nats:NAME)");
        }
        var image = await supervisor.Images.PullAsync(request.Reference, stop, new Furthest(writer)).ConfigureAwait(false);
        return NodeApiResponder.Reply(new PullStreamReply { More = false, Image = image }, FleetJsonContext.Default.PullStreamReply);
    }

    private static PullStreamReply Progress(PullProgress p) => new()
    {
        LayersDone = p.LayersDone,
        LayersTotal = p.LayersTotal,
        BytesDone = p.BytesDone,
        BytesTotal = p.BytesTotal,
        More = true,
    };

    /// <summary>
    /// Passes on the furthest progress seen. Blob downloads report from their own tasks, so two
    /// reports can cross (4/5 after 5/5, bytes counted by the other task): taking the maximum of
    /// each count keeps what the client sees from going backwards and ends at the totals. A pull
    /// through containerd reports every read: bytes alone go on at most every 200 ms, a blob done
    /// at once. A full buffer drops a report; the next one carries it.
    /// </summary>
    private sealed class Furthest(ChannelWriter<PullProgress> writer) : IProgress<PullProgress>
    {
        private static readonly long s_bytesEvery = TimeSpan.FromMilliseconds(200).Ticks;
        private readonly Lock _lock = new();
        private PullProgress _furthest = new(0, 0, 0, 0);
        private long _sentAt;

        public void Report(PullProgress value)
        {
            lock (_lock)
            {
                var next = new PullProgress(Math.Max(_furthest.LayersDone, value.LayersDone), Math.Max(_furthest.LayersTotal, value.LayersTotal),
                    Math.Max(_furthest.BytesDone, value.BytesDone), Math.Max(_furthest.BytesTotal, value.BytesTotal));
                var blobs = next.LayersDone != _furthest.LayersDone || next.LayersTotal != _furthest.LayersTotal;
                var now = DateTime.UtcNow.Ticks;
                if (next != _furthest && (blobs || now - _sentAt >= s_bytesEvery))
                {
                    writer.TryWrite(next);
                    _sentAt = now;
                }
                _furthest = next;
            }
        }
    }

    private static T? TryParse<T>(byte[]? body, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) where T : class
    {
        try
        {
            return body is { Length: > 0 } ? JsonSerializer.Deserialize(body, type) : null;
        }
        catch (JsonException)
        {
            return null; // the one-reply path answers with the error
        }
    }
}

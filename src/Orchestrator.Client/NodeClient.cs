using System.Text.Json;
using System.Threading.Channels;
using NATS.Client.Core;
using Orchestrator.Api;

namespace Orchestrator.Client;

/// <summary>
/// A node answered a request with an error (the message is the node's sentence, the kind its
/// code), or no node answered (unavailable), or the fleet's state refused the request.
/// </summary>
public sealed class NodeRequestException : OrchestratorException
{
    public NodeRequestException() : base(ErrorKind.Internal, "the request failed") { }
    public NodeRequestException(string message) : base(ErrorKind.Internal, message) { }
    public NodeRequestException(string message, Exception inner) : base(KindOf(inner), message, inner) { }
    public NodeRequestException(ErrorKind kind, string message, Exception? inner = null) : base(kind, message, inner) { }

    /// <summary>No responders, no reply, a timeout: nobody answered (unavailable); else the inner error's own kind.</summary>
    private static ErrorKind KindOf(Exception inner)
        => inner is NatsNoRespondersException or NatsNoReplyException or TimeoutException ? ErrorKind.Unavailable : ErrorKinds.Of(inner) ?? ErrorKind.Internal;
}

/// <summary>One node's API (docs/protocol.md), typed: what orchctl and the tests call.</summary>
public sealed class NodeClient(INatsConnection connection, string node, TimeSpan? timeout = null)
{
    private readonly TimeSpan _timeout = timeout ?? TimeSpan.FromSeconds(30);

    public Task<Orchestrator.Api.ContainerStatus> RunAsync(Orchestrator.Api.Workloads.Workload workload, CancellationToken cancellationToken = default)
        => RequestAsync(NodeOps.Run, JsonSerializer.SerializeToUtf8Bytes(workload, Orchestrator.Api.Workloads.WorkloadJsonContext.Default.Workload), FleetJsonContext.Default.ContainerStatus, cancellationToken);

    public Task<Orchestrator.Api.ContainerStatus> StopAsync(string name, CancellationToken cancellationToken = default)
        => RequestAsync(NodeOps.Stop, NameBody(name), FleetJsonContext.Default.ContainerStatus, cancellationToken);

    public Task<Orchestrator.Api.ContainerStatus> StartAsync(string name, CancellationToken cancellationToken = default)
        => RequestAsync(NodeOps.Start, NameBody(name), FleetJsonContext.Default.ContainerStatus, cancellationToken);

    public Task<Orchestrator.Api.ContainerStatus> RestartAsync(string name, CancellationToken cancellationToken = default)
        => RequestAsync(NodeOps.Restart, NameBody(name), FleetJsonContext.Default.ContainerStatus, cancellationToken);

    public Task<OkReply> RemoveAsync(string name, CancellationToken cancellationToken = default)
        => RequestAsync(NodeOps.Remove, NameBody(name), FleetJsonContext.Default.OkReply, cancellationToken);

    public async Task<IReadOnlyList<Orchestrator.Api.ContainerStatus>> ListAsync(CancellationToken cancellationToken = default)
        => (await RequestAsync(NodeOps.List, [], FleetJsonContext.Default.ContainerListReply, cancellationToken).ConfigureAwait(false)).Containers;

    public Task<Orchestrator.Api.ContainerStatus> InspectAsync(string name, CancellationToken cancellationToken = default)
        => RequestAsync(NodeOps.Inspect, NameBody(name), FleetJsonContext.Default.ContainerStatus, cancellationToken);

    /// <summary>
    /// The last lines, then new ones as the container writes them, until cancelled. The node keeps
    /// sending while this client answers its alive subject (asked every 3 s), so walking away
    /// (cancelling, or losing the connection) stops the node's side within seconds.
    /// </summary>
    public async IAsyncEnumerable<Orchestrator.Api.LogLine> FollowLogsAsync(string name, int? tail = null, DateTimeOffset? since = null,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await foreach (var data in StreamAsync(NodeOps.Logs, alive => JsonSerializer.SerializeToUtf8Bytes(
            new LogsRequest { Name = name, Tail = tail, Since = since, Follow = true, AliveSubject = alive }, FleetJsonContext.Default.LogsRequest), cancellationToken).ConfigureAwait(false))
        {
            var reply = JsonSerializer.Deserialize(data, FleetJsonContext.Default.LogsReply);
            foreach (var line in reply?.Lines ?? [])
            {
                yield return line;
            }
            if (reply is not { More: true })
            {
                yield break;
            }
        }
    }

    /// <summary>
    /// Runs a command in a container and hands its output to <paramref name="output"/> as the command
    /// writes it (raw bytes, stdout and stderr apart, in order); returns the last message, with the
    /// exit code. Cancelling (or losing the connection) makes the node kill the command within seconds.
    /// </summary>
    public async Task<ExecStreamReply> ExecStreamAsync(string name, IReadOnlyList<string> command, Func<ExecOutputChunk, ValueTask> output,
        double timeoutSeconds = 30, CancellationToken cancellationToken = default)
    {
        await foreach (var data in StreamAsync(NodeOps.Exec, alive => JsonSerializer.SerializeToUtf8Bytes(
            new ExecRequest { Name = name, Command = command, TimeoutSeconds = timeoutSeconds, Stream = true, AliveSubject = alive }, FleetJsonContext.Default.ExecRequest), cancellationToken).ConfigureAwait(false))
        {
            if (HasProperty(data, "stdout"))
            {
                // A node from before streaming ignores "stream" and answers once, buffered.
                var whole = JsonSerializer.Deserialize(data, FleetJsonContext.Default.ExecReply)!;
                await output(new ExecOutputChunk { Stream = "stdout", Data = System.Text.Encoding.UTF8.GetBytes(whole.Stdout) }).ConfigureAwait(false);
                await output(new ExecOutputChunk { Stream = "stderr", Data = System.Text.Encoding.UTF8.GetBytes(whole.Stderr) }).ConfigureAwait(false);
                return new ExecStreamReply { ExitCode = whole.ExitCode, TimedOut = whole.TimedOut };
            }
            var reply = JsonSerializer.Deserialize(data, FleetJsonContext.Default.ExecStreamReply) ?? throw new NodeRequestException($"node '{node}' sent an empty reply to exec");
            foreach (var chunk in reply.Output)
            {
                await output(chunk).ConfigureAwait(false);
            }
            if (!reply.More)
            {
                return reply;
            }
        }
        throw new NodeRequestException($"node '{node}' ended exec without an exit code; it may have stopped");
    }

    /// <summary>Pulls an image on the node, calling <paramref name="progress"/> as blobs arrive; returns the image. Cancelling cancels the pull.</summary>
    public async Task<Orchestrator.Api.ImageSummary> PullAsync(string reference, Action<PullStreamReply> progress, CancellationToken cancellationToken = default)
    {
        await foreach (var data in StreamAsync(NodeOps.Pull, alive => JsonSerializer.SerializeToUtf8Bytes(
            new PullRequest { Reference = reference, Progress = true, AliveSubject = alive }, FleetJsonContext.Default.PullRequest), cancellationToken).ConfigureAwait(false))
        {
            if (HasProperty(data, "manifestDigest"))
            {
                return JsonSerializer.Deserialize(data, FleetJsonContext.Default.ImageSummary)!; // a node from before progress: the image, no progress
            }
            var reply = JsonSerializer.Deserialize(data, FleetJsonContext.Default.PullStreamReply) ?? throw new NodeRequestException($"node '{node}' sent an empty reply to pull");
            if (!reply.More)
            {
                return reply.Image ?? throw new NodeRequestException($"node '{node}' finished the pull of '{reference}' without the image");
            }
            progress(reply);
        }
        throw new NodeRequestException($"node '{node}' ended the pull of '{reference}' without an answer; it may have stopped");
    }

    /// <summary>
    /// The replies of a streamed request (docs/protocol.md, streamed answers), error replies thrown.
    /// The node asks the alive subject given to <paramref name="request"/> every few seconds: this
    /// client answers for as long as it reads, and takes a node that stops asking for gone.
    /// </summary>
    private async IAsyncEnumerable<byte[]> StreamAsync(string op, Func<string, byte[]> request,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var aliveSubject = connection.NewInbox();
        var alive = await connection.SubscribeCoreAsync<byte[]>(aliveSubject, cancellationToken: cancellationToken).ConfigureAwait(false);
        await using var _ = alive.ConfigureAwait(false);
        using var lost = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var lastAsked = Environment.TickCount64;
        var answering = Task.Run(async () =>
        {
            try
            {
                await foreach (var ping in alive.Msgs.ReadAllAsync(lost.Token).ConfigureAwait(false))
                {
                    Volatile.Write(ref lastAsked, Environment.TickCount64);
                    await ping.ReplyAsync<byte[]>([], cancellationToken: lost.Token).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException)
            {
            }
        }, CancellationToken.None);
        // The node asks every 3 s: four missed questions mean it stopped or lost its connection.
        var watching = Task.Run(async () =>
        {
            try
            {
                while (Environment.TickCount64 - Volatile.Read(ref lastAsked) < s_nodeSilence.TotalMilliseconds)
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), lost.Token).ConfigureAwait(false);
                }
                await lost.CancelAsync().ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }, CancellationToken.None);
        var replies = connection.RequestManyAsync<byte[], byte[]>(Subjects.NodeOp(node, op), request(aliveSubject),
            replyOpts: new NatsSubOpts { Timeout = Timeout.InfiniteTimeSpan }, cancellationToken: lost.Token).GetAsyncEnumerator(lost.Token);
        try
        {
            while (true)
            {
                try
                {
                    if (!await replies.MoveNextAsync().ConfigureAwait(false))
                    {
                        break;
                    }
                }
                catch (OperationCanceledException e) when (!cancellationToken.IsCancellationRequested)
                {
                    throw new NodeRequestException($"node '{node}' stopped answering during {op} (it stopped or lost its connection); `orchctl get nodes` shows it", new TimeoutException(e.Message, e));
                }
                catch (NatsNoRespondersException e)
                {
                    throw new NodeRequestException($"no node '{node}' is connected to the fleet; `orchctl get nodes` lists the nodes that are", e);
                }
                var msg = replies.Current;
                if (msg.HasNoResponders)
                {
                    throw new NodeRequestException($"no node '{node}' is connected to the fleet; `orchctl get nodes` lists the nodes that are", new NatsNoRespondersException());
                }
                var data = msg.Data ?? [];
                ThrowIfError(data);
                yield return data;
            }
        }
        finally
        {
            await replies.DisposeAsync().ConfigureAwait(false);
            await lost.CancelAsync().ConfigureAwait(false);
            await alive.UnsubscribeAsync().ConfigureAwait(false);
            await Task.WhenAll(answering, watching).ConfigureAwait(false);
        }
    }

    private static readonly TimeSpan s_nodeSilence = TimeSpan.FromSeconds(12);

    /// <summary>How long a forwarded connection's data may wait for a target that does not read.</summary>
    private static readonly TimeSpan s_stalledTarget = TimeSpan.FromHours(1);

    /// <summary>A container's log lines, oldest first, gathered from as many reply messages as the node sends.</summary>
    /// <param name="previous">Only the container's last exited run (kubectl logs --previous).</param>
    /// <param name="run">Only this run of a job (its number in ContainerStatus.Runs).</param>
    public async Task<IReadOnlyList<Orchestrator.Api.LogLine>> LogsAsync(string name, int? tail = null, DateTimeOffset? since = null, bool previous = false, int? run = null, CancellationToken cancellationToken = default)
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(new LogsRequest { Name = name, Tail = tail, Since = since, Previous = previous, Run = run }, FleetJsonContext.Default.LogsRequest);
        var lines = new List<Orchestrator.Api.LogLine>();
        try
        {
            await foreach (var msg in connection.RequestManyAsync<byte[], byte[]>(Subjects.NodeOp(node, NodeOps.Logs), body,
                replyOpts: new NatsSubOpts { Timeout = _timeout, IdleTimeout = _timeout }, cancellationToken: cancellationToken).ConfigureAwait(false))
            {
                if (msg.HasNoResponders)
                {
                    throw new NodeRequestException($"no node '{node}' is connected to the fleet; `orchctl get nodes` lists the nodes that are");
                }
                var data = msg.Data ?? [];
                ThrowIfError(data);
                var reply = JsonSerializer.Deserialize(data, FleetJsonContext.Default.LogsReply) ?? throw new NodeRequestException($"node '{node}' sent an empty reply to logs");
                lines.AddRange(reply.Lines);
                if (!reply.More)
                {
                    return lines;
                }
            }
        }
        catch (NatsNoRespondersException e)
        {
            throw new NodeRequestException($"no node '{node}' is connected to the fleet; `orchctl get nodes` lists the nodes that are", e);
        }
        throw new NodeRequestException($"node '{node}' did not finish sending logs within {_timeout.TotalSeconds:0.#}s; try --tail N");
    }

    public Task<ExecReply> ExecAsync(string name, IReadOnlyList<string> command, double timeoutSeconds = 30, CancellationToken cancellationToken = default)
        => RequestAsync(NodeOps.Exec, JsonSerializer.SerializeToUtf8Bytes(new ExecRequest { Name = name, Command = command, TimeoutSeconds = timeoutSeconds }, FleetJsonContext.Default.ExecRequest),
            FleetJsonContext.Default.ExecReply, cancellationToken);

    public async Task<IReadOnlyList<Orchestrator.Api.ContainerStats>> StatsAsync(string? name = null, CancellationToken cancellationToken = default)
        => (await RequestAsync(NodeOps.Stats, JsonSerializer.SerializeToUtf8Bytes(new StatsRequest { Name = name }, FleetJsonContext.Default.StatsRequest),
            FleetJsonContext.Default.StatsReply, cancellationToken).ConfigureAwait(false)).Containers;

    public async Task<IReadOnlyList<Orchestrator.Api.ImageSummary>> ImagesAsync(CancellationToken cancellationToken = default)
        => (await RequestAsync(NodeOps.Images, [], FleetJsonContext.Default.ImageListReply, cancellationToken).ConfigureAwait(false)).Images;

    public Task<Orchestrator.Api.ImageSummary> InspectImageAsync(string name, CancellationToken cancellationToken = default)
        => RequestAsync(NodeOps.ImageInspect, NameBody(name), FleetJsonContext.Default.ImageSummary, cancellationToken);

    public Task<Orchestrator.Api.ImageSummary> PullAsync(string reference, CancellationToken cancellationToken = default)
        => RequestAsync(NodeOps.Pull, JsonSerializer.SerializeToUtf8Bytes(new PullRequest { Reference = reference }, FleetJsonContext.Default.PullRequest), FleetJsonContext.Default.ImageSummary, cancellationToken);

    public Task<OkReply> RemoveImageAsync(string name, CancellationToken cancellationToken = default)
        => RequestAsync(NodeOps.RemoveImage, NameBody(name), FleetJsonContext.Default.OkReply, cancellationToken);

    public Task<Orchestrator.Api.ImageGcResult> GcImagesAsync(CancellationToken cancellationToken = default)
        => RequestAsync(NodeOps.ImageGc, [], FleetJsonContext.Default.ImageGcResult, cancellationToken);

    public Task<Orchestrator.Api.NodeStatus> StatusAsync(CancellationToken cancellationToken = default)
        => RequestAsync(NodeOps.Status, [], FleetJsonContext.Default.NodeStatus, cancellationToken);

    /// <summary>
    /// cp out of a running container: <paramref name="path"/> there (a file, a directory with
    /// everything under it, or a symlink itself) as a tar stream into <paramref name="output"/>.
    /// </summary>
    public async Task<CopyDone> CopyFromAsync(string name, string path, Stream output, CancellationToken cancellationToken = default)
    {
        var session = await OpenCopyAsync(new CopyRequest { Name = name, Path = path, Direction = CopyFrames.From }, cancellationToken).ConfigureAwait(false);
        var finished = false;
        try
        {
            while (true)
            {
                var frame = await SessionFrameAsync(session, [], cancellationToken).ConfigureAwait(false);
                if (frame[0] == CopyFrames.End)
                {
                    finished = true;
                    return JsonSerializer.Deserialize(frame.AsSpan(1), FleetJsonContext.Default.CopyDone) ?? new CopyDone();
                }
                await output.WriteAsync(frame.AsMemory(1), cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            if (!finished)
            {
                await QuitSessionAsync(session).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// cp into a running container: the tar stream <paramref name="tar"/> unpacked at
    /// <paramref name="path"/> there (into it when it is a directory, else as it); the owners kept
    /// with <paramref name="keepOwners"/>, else the container's root's.
    /// </summary>
    public async Task<CopyDone> CopyToAsync(string name, string path, Stream tar, bool keepOwners = false, CancellationToken cancellationToken = default)
    {
        var session = await OpenCopyAsync(new CopyRequest { Name = name, Path = path, Direction = CopyFrames.To, KeepOwners = keepOwners }, cancellationToken).ConfigureAwait(false);
        var finished = false;
        try
        {
            var buffer = new byte[CopyFrames.MaxData + 1];
            buffer[0] = CopyFrames.Data;
            while (true)
            {
                // A full frame where the input allows (stdin hands over a little at a time).
                var filled = 1;
                int n;
                while (filled < buffer.Length && (n = await tar.ReadAsync(buffer.AsMemory(filled), cancellationToken).ConfigureAwait(false)) > 0)
                {
                    filled += n;
                }
                if (filled > 1)
                {
                    await SessionFrameAsync(session, buffer[..filled], cancellationToken).ConfigureAwait(false);
                }
                if (filled < buffer.Length)
                {
                    break; // the end of the input
                }
            }
            var end = await SessionFrameAsync(session, [CopyFrames.End], cancellationToken).ConfigureAwait(false);
            finished = true;
            return JsonSerializer.Deserialize(end.AsSpan(1), FleetJsonContext.Default.CopyDone) ?? new CopyDone();
        }
        finally
        {
            if (!finished)
            {
                await QuitSessionAsync(session).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Forwards one TCP connection, <paramref name="local"/>, to <paramref name="port"/> of a
    /// container (<paramref name="name"/>) or of the node itself (null), until both sides have
    /// finished writing, either side fails, or <paramref name="cancellationToken"/> ends it.
    /// </summary>
    public async Task ForwardAsync(string? name, int port, System.Net.Sockets.Socket local, CancellationToken cancellationToken = default)
        => await RelayAsync(await OpenForwardAsync(NodeOps.PortForward, name ?? "", port, cancellationToken).ConfigureAwait(false), local, cancellationToken).ConfigureAwait(false);

    /// <summary>
    /// Opens a <c>connect</c> session to <paramref name="port"/> of <paramref name="container"/>, a
    /// ready replica of a fleet deployment on the node (what another node's service proxy does for
    /// a container that dialled the deployment's name); <see cref="RelayAsync"/> carries it. Apart,
    /// so that a replica that cannot be reached can be passed over before a byte moved.
    /// </summary>
    public Task<string> OpenConnectAsync(string container, int port, CancellationToken cancellationToken = default)
        => OpenForwardAsync(NodeOps.Connect, container, port, cancellationToken);

    private async Task<string> OpenForwardAsync(string op, string name, int port, CancellationToken cancellationToken)
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(new PortForwardRequest { Name = name, Port = port }, FleetJsonContext.Default.PortForwardRequest);
        return (await RequestAsync(op, body, FleetJsonContext.Default.SessionOpened, cancellationToken).ConfigureAwait(false)).Session;
    }

    /// <summary>
    /// Carries <paramref name="local"/> over an open forward <paramref name="session"/> until both
    /// sides have finished writing, either side fails, or <paramref name="cancellationToken"/> ends it.
    /// </summary>
    public async Task RelayAsync(string session, System.Net.Sockets.Socket local, CancellationToken cancellationToken = default)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        async Task UpAsync()
        {
            while (true)
            {
                // A connection that sends nothing holds no buffer: wait until there is something to
                // read (or the end), then borrow one (a node's proxy carries many idle connections).
                await local.ReceiveAsync(Memory<byte>.Empty, System.Net.Sockets.SocketFlags.None, stop.Token).ConfigureAwait(false);
                var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(ForwardFrames.MaxData + 1);
                try
                {
                    buffer[0] = ForwardFrames.Data;
                    var n = await local.ReceiveAsync(buffer.AsMemory(1, ForwardFrames.MaxData), System.Net.Sockets.SocketFlags.None, stop.Token).ConfigureAwait(false);
                    if (n == 0)
                    {
                        await SessionFrameAsync(session, [ForwardFrames.End], stop.Token).ConfigureAwait(false);
                        return;
                    }
                    // Acked once the target took it: a target that reads slowly (or not for minutes) holds
                    // this back, which is the flow control. The reads below notice a node that went.
                    await SessionFrameAsync(session, buffer[..(n + 1)], stop.Token, s_stalledTarget).ConfigureAwait(false);
                }
                finally
                {
                    System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
                }
            }
        }
        async Task DownAsync()
        {
            while (true)
            {
                var reply = await SessionFrameAsync(session, [ForwardFrames.Read], stop.Token).ConfigureAwait(false);
                if (reply[0] == ForwardFrames.End)
                {
                    local.Shutdown(System.Net.Sockets.SocketShutdown.Send);
                    return;
                }
                if (reply.Length > 1)
                {
                    await local.SendAsync(reply.AsMemory(1), System.Net.Sockets.SocketFlags.None, stop.Token).ConfigureAwait(false);
                }
            }
        }
        var up = UpAsync();
        var down = DownAsync();
        try
        {
            // Both directions end on their own; the first to fail ends the other.
            var first = await Task.WhenAny(up, down).ConfigureAwait(false);
            if (first.IsFaulted || first.IsCanceled)
            {
                await stop.CancelAsync().ConfigureAwait(false);
            }
            await Task.WhenAll(up, down).ConfigureAwait(false);
        }
        catch (Exception) when (stop.IsCancellationRequested && !cancellationToken.IsCancellationRequested && (up.IsFaulted || down.IsFaulted))
        {
            // The one that failed says why.
            await (up.IsFaulted ? up : down).ConfigureAwait(false);
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            await QuitSessionAsync(session).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// exec -i / -t (<see cref="ExecFrames"/>): runs <paramref name="command"/> in the container with
    /// <paramref name="input"/> as its stdin (none: /dev/null) and, with <paramref name="tty"/>, on a
    /// terminal of <paramref name="rows"/> × <paramref name="cols"/> that follows
    /// <paramref name="resizes"/>. Its output goes to <paramref name="output"/> as it comes (true:
    /// stderr, which a terminal does not have apart); returns its exit code. Input is sent as it is
    /// read and acked once the command took it, so a command that does not read holds it back.
    /// </summary>
    public async Task<int> ExecInteractiveAsync(string name, IReadOnlyList<string> command, Stream? input, bool tty, int rows, int cols,
        Func<bool, ReadOnlyMemory<byte>, ValueTask> output, ChannelReader<(int Rows, int Cols)>? resizes = null, CancellationToken cancellationToken = default)
    {
        var request = new ExecRequest { Name = name, Command = command, Interactive = true, Stdin = input is not null, Tty = tty, Rows = rows, Cols = cols };
        var session = (await RequestAsync(NodeOps.Exec, JsonSerializer.SerializeToUtf8Bytes(request, FleetJsonContext.Default.ExecRequest), FleetJsonContext.Default.SessionOpened, cancellationToken).ConfigureAwait(false)).Session;
        if (string.IsNullOrEmpty(session))
        {
            // An orchd from before exec -i/-t takes the request as a plain exec and answers with its output.
            throw new NodeRequestException($"node '{node}' ran the command without a terminal or input and opened no session: its orchd predates exec -i/-t; upgrade it (`orchctl get nodes -o wide` shows each node's version)");
        }
        // Without a detach token the session only ends with the command's exit code (or an error).
        return await InteractiveSessionAsync(session, input, output, resizes, CancellationToken.None, cancellationToken).ConfigureAwait(false)
            ?? throw new System.Diagnostics.UnreachableException("an exec session ended as a detach");
    }

    /// <summary>
    /// attach (<see cref="AttachRequest"/>): joins a running container's own first process, as
    /// <c>docker attach</c> and <c>kubectl attach</c>, in the session exec -i/-t has. Its output from
    /// now on goes to <paramref name="output"/> (true: stderr, which a terminal does not have apart);
    /// <paramref name="input"/> (none: nothing is sent) goes to its stdin, and its end stops the
    /// input without closing the container's stdin; with <paramref name="tty"/> its terminal takes
    /// <paramref name="rows"/> × <paramref name="cols"/> and follows <paramref name="resizes"/>.
    /// Returns the exit code once the container's process exits, or null once
    /// <paramref name="detach"/> is cancelled: the client leaves and the container runs on.
    /// Cancelling <paramref name="cancellationToken"/> also leaves the container running, and throws.
    /// </summary>
    public async Task<int?> AttachAsync(string name, Stream? input, bool tty, int rows, int cols, Func<bool, ReadOnlyMemory<byte>, ValueTask> output,
        ChannelReader<(int Rows, int Cols)>? resizes = null, CancellationToken detach = default, CancellationToken cancellationToken = default)
    {
        var request = new AttachRequest { Name = name, Stdin = input is not null, Tty = tty, Rows = rows, Cols = cols };
        string session;
        try
        {
            session = (await RequestAsync(NodeOps.Attach, JsonSerializer.SerializeToUtf8Bytes(request, FleetJsonContext.Default.AttachRequest), FleetJsonContext.Default.SessionOpened, cancellationToken).ConfigureAwait(false)).Session;
        }
        catch (NodeRequestException e) when (e.Message.StartsWith($"'{NodeOps.Attach}' is not a node operation", StringComparison.Ordinal))
        {
            // NodeApiResponder's answer to an operation it does not have.
            throw new NodeRequestException(ErrorKind.Internal, $"node '{node}' does not know attach: its orchd predates attach; upgrade it (`orchctl get nodes -o wide` shows each node's version)", e);
        }
        if (string.IsNullOrEmpty(session))
        {
            throw new NodeRequestException($"node '{node}' answered attach without a session");
        }
        return await InteractiveSessionAsync(session, input, output, resizes, detach, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The session of exec -i/-t and attach (<see cref="ExecFrames"/>): input sent as it is read and
    /// acked once the process took it (so one that does not read holds it back), resizes, output
    /// polled with Read until End and the exit code. Null when <paramref name="detach"/> ended it
    /// first. Quit is sent however it ends (a session that already ended ignores it).
    /// </summary>
    private async Task<int?> InteractiveSessionAsync(string session, Stream? input, Func<bool, ReadOnlyMemory<byte>, ValueTask> output,
        ChannelReader<(int Rows, int Cols)>? resizes, CancellationToken detach, CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, detach);
        async Task UpAsync(Stream from)
        {
            var buffer = new byte[64 * 1024 + 1];
            buffer[0] = ExecFrames.Data;
            while (true)
            {
                var n = await from.ReadAsync(buffer.AsMemory(1), stop.Token).ConfigureAwait(false);
                if (n == 0)
                {
                    await SessionFrameAsync(session, [ExecFrames.End], stop.Token).ConfigureAwait(false);
                    return;
                }
                await SessionFrameAsync(session, buffer[..(n + 1)], stop.Token, s_stalledTarget).ConfigureAwait(false);
            }
        }
        async Task ResizeAsync(ChannelReader<(int Rows, int Cols)> sizes)
        {
            await foreach (var (r, c) in sizes.ReadAllAsync(stop.Token).ConfigureAwait(false))
            {
                var frame = new byte[5];
                frame[0] = ExecFrames.Resize;
                System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(1), (ushort)Math.Clamp(r, 1, ushort.MaxValue));
                System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(3), (ushort)Math.Clamp(c, 1, ushort.MaxValue));
                await SessionFrameAsync(session, frame, stop.Token).ConfigureAwait(false);
            }
        }
        // Reading the input (a terminal) cannot be cancelled: once the command is done, that read is
        // left behind rather than waited for, and what it fails with is observed here.
        var up = input is null ? Task.CompletedTask : UpAsync(input);
        var resizing = resizes is null ? Task.CompletedTask : ResizeAsync(resizes);
        _ = up.ContinueWith(t => t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        _ = resizing.ContinueWith(t => t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        try
        {
            while (true)
            {
                if (up.IsFaulted)
                {
                    await up.ConfigureAwait(false); // the node refused the input: say why
                }
                var reply = await SessionFrameAsync(session, [ExecFrames.Read], stop.Token, TimeSpan.FromSeconds(ForwardFrames.ReadWaitSeconds + 20)).ConfigureAwait(false);
                switch (reply[0])
                {
                    case ExecFrames.End:
                        return JsonSerializer.Deserialize(reply.AsSpan(1), FleetJsonContext.Default.ExecStreamReply)?.ExitCode ?? 0;
                    case ExecFrames.Data or ExecFrames.Stderr when reply.Length > 1:
                        await output(reply[0] == ExecFrames.Stderr, reply.AsMemory(1)).ConfigureAwait(false);
                        break;
                }
            }
        }
        catch (OperationCanceledException) when (detach.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return null; // detached: the Quit below leaves the process running (attach)
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            await QuitSessionAsync(session).ConfigureAwait(false);
        }
    }

    /// <summary>Changes the node's own labels (kept on the node, carried by its heartbeat).</summary>
    public Task<LabelReply> LabelAsync(LabelRequest request, CancellationToken cancellationToken = default)
        => RequestAsync(NodeOps.Label, JsonSerializer.SerializeToUtf8Bytes(request, FleetJsonContext.Default.LabelRequest), FleetJsonContext.Default.LabelReply, cancellationToken);

    private async Task<string> OpenCopyAsync(CopyRequest request, CancellationToken cancellationToken)
        => (await RequestAsync(NodeOps.Copy, JsonSerializer.SerializeToUtf8Bytes(request, FleetJsonContext.Default.CopyRequest), FleetJsonContext.Default.SessionOpened, cancellationToken).ConfigureAwait(false)).Session;

    /// <summary>One frame and the node's answer to it: data, ack or end; an error frame is thrown as the node's error.</summary>
    /// <param name="timeout">How long the answer may take; the client's timeout by default.</param>
    private async Task<byte[]> SessionFrameAsync(string session, byte[] frame, CancellationToken cancellationToken, TimeSpan? timeout = null)
    {
        byte[] reply;
        try
        {
            reply = (await connection.RequestAsync<byte[], byte[]>(session, frame, replyOpts: new NatsSubOpts { Timeout = timeout ?? _timeout }, cancellationToken: cancellationToken).ConfigureAwait(false)).Data ?? [];
        }
        catch (Exception e) when (e is NatsNoRespondersException or NatsNoReplyException)
        {
            throw new NodeRequestException($"node '{node}' stopped answering (it restarted, or the connection was lost); the session (cp, port-forward, exec or attach) ended there", e);
        }
        if (reply.Length == 0)
        {
            throw new NodeRequestException($"node '{node}' sent an empty frame");
        }
        if (reply[0] == CopyFrames.Error)
        {
            ThrowIfError(reply[1..]);
            throw new NodeRequestException($"node '{node}' ended the session with an error it did not name");
        }
        return reply;
    }

    /// <summary>Tells the node to end the session now (best effort: it also ends one that goes quiet).</summary>
    private async Task QuitSessionAsync(string session)
    {
        try
        {
            await connection.PublishAsync<byte[]>(session, [CopyFrames.Quit]).ConfigureAwait(false);
        }
        catch (NatsException)
        {
        }
    }

    /// <summary>Sends raw bytes to an operation and returns the raw reply (for protocol tests and any-client use).</summary>
    public async Task<byte[]> RawAsync(string op, byte[] body, CancellationToken cancellationToken = default)
    {
        try
        {
            var reply = await connection.RequestAsync<byte[], byte[]>(Subjects.NodeOp(node, op), body,
                replyOpts: new NatsSubOpts { Timeout = _timeout }, cancellationToken: cancellationToken).ConfigureAwait(false);
            return reply.Data ?? [];
        }
        catch (NatsNoRespondersException e)
        {
            throw new NodeRequestException($"no node '{node}' is connected to the fleet; `orchctl get nodes` lists the nodes that are", e);
        }
        catch (NatsNoReplyException e)
        {
            throw new NodeRequestException($"node '{node}' did not answer {op} within {_timeout.TotalSeconds:0.#}s; it may be overloaded or cut off", e);
        }
    }

    private async Task<T> RequestAsync<T>(string op, byte[] body, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, CancellationToken cancellationToken)
    {
        var data = await RawAsync(op, body, cancellationToken).ConfigureAwait(false);
        ThrowIfError(data);
        return JsonSerializer.Deserialize(data, type) ?? throw new NodeRequestException($"node '{node}' sent an empty reply to {op}");
    }

    private static bool HasProperty(byte[] data, string name)
    {
        using var doc = JsonDocument.Parse(data);
        return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty(name, out _);
    }

    private static void ThrowIfError(byte[] data)
    {
        using var doc = JsonDocument.Parse(data);
        if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("error", out var error))
        {
            // A node from before error codes sends none: internal, which orchctl treats as it always did.
            var code = doc.RootElement.TryGetProperty("code", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() : null;
            throw new NodeRequestException(ErrorKinds.Parse(code), error.GetString() ?? "the node reported an error");
        }
    }

    private static byte[] NameBody(string name) => JsonSerializer.SerializeToUtf8Bytes(new NameRequest { Name = name }, FleetJsonContext.Default.NameRequest);
}

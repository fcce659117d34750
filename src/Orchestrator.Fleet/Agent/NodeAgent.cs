using System.Text.Json;
using Microsoft.Extensions.Logging;
using NATS.Client.Core;
using Orchestrator.Api;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Fleet.Agent;

/// <summary>Who this node is, as the fleet sees it.</summary>
public sealed record NodeIdentity
{
    public required string NodeName { get; init; }
    public required string NodeId { get; init; }
    public required string Version { get; init; }
    public required string Runtime { get; init; }
    /// <summary>The configured labels (with the built-in arch), as the node started.</summary>
    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>();
    /// <summary>The labels as they are now, with the operator's changes (`orchctl label node`); null: the configured ones only.</summary>
    public NodeLabels? LabelStore { get; init; }
    /// <summary>What the heartbeat carries and selectors are checked against.</summary>
    public IReadOnlyDictionary<string, string> CurrentLabels => LabelStore?.Current ?? Labels;
    public DateTimeOffset StartedAt { get; init; } = DateTimeOffset.UtcNow;

    /// <summary>This machine's architecture as <see cref="NodeInfo.Arch"/> reports it: x64, arm64, arm.</summary>
    public static string ThisArch => System.Runtime.InteropServices.RuntimeInformation.OSArchitecture.ToString().ToLowerInvariant();

    /// <summary>
    /// The configured labels plus the built-in <c>arch</c> label (the node's own architecture, as
    /// <see cref="NodeInfo.Arch"/> has it), so that a deployment's <c>selector: {arch: arm64}</c>
    /// lands on the arm64 nodes of a mixed fleet without labelling each node by hand. A
    /// configured <c>arch</c> label wins.
    /// </summary>
    public static IReadOnlyDictionary<string, string> WithBuiltInLabels(IReadOnlyDictionary<string, string> configured, string arch)
    {
        if (configured.ContainsKey("arch"))
        {
            return configured;
        }
        var labels = new SortedDictionary<string, string>(StringComparer.Ordinal) { ["arch"] = arch };
        foreach (var (key, value) in configured)
        {
            labels[key] = value;
        }
        return labels;
    }
}

/// <summary>
/// The node's presence on the fleet: keeps a NATS connection (coming up offline and retrying
/// with backoff, because an edge node must start without its network) and answers the
/// per-node and fleet-wide command subjects.
/// </summary>
public sealed partial class NodeAgent : IAsyncDisposable
{
    private readonly NodeIdentity _identity;
    private readonly NatsSettings _nats;
    private readonly ILogger _logger;
    private readonly NodeApiResponder? _api;
    private readonly NodeApiStreams? _streams;
    private readonly Orchestrator.Node.Reconcile.Supervisor? _supervisor;
    private NatsConnection? _connection;
    private readonly TaskCompletionSource<NatsConnection> _connected = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _opens;
    private readonly TimeSpan _refusedFor;
    private readonly TimeProvider _clock;
    private DateTimeOffset? _refusedSince;
    private int _disowned;
    private int _attempts;
    private bool _serving;

    public NodeAgent(NodeIdentity identity, NatsSettings nats, ILogger<NodeAgent> logger, Orchestrator.Node.Reconcile.Supervisor? supervisor = null, FleetOptions? fleet = null)
    {
        _identity = identity;
        _nats = nats;
        _logger = logger;
        _supervisor = supervisor;
        var options = fleet ?? new FleetOptions();
        _refusedFor = options.EffectiveFenceAfter;
        _clock = options.Clock;
        _api = supervisor is null ? null : new NodeApiResponder(supervisor);
        _streams = supervisor is null ? null : new NodeApiStreams(supervisor);
        Member = supervisor is null ? null : new FleetMember(identity, supervisor, options, logger);
        var warnings = new List<string>();
        if (!nats.HasAuthentication)
        {
            warnings.Add("NATS without authentication: anyone who reaches the server can send this node work; give it credentials (nats.creds_file, docs/nats-security.md)");
        }
        if (supervisor is not null && (fleet?.TrustedKeys ?? []).Count == 0)
        {
            warnings.Add("no fleet.trusted_keys: deployments are not checked for a signature; set the fleet's public key (docs/nats-security.md)");
        }
        Warnings = warnings;
    }

    /// <summary>What makes this node unsafe to run as it is configured (logged at start, and in every heartbeat).</summary>
    public IReadOnlyList<string> Warnings { get; }

    /// <summary>The node's part in the fleet (heartbeats, assignments, the scheduler lease); null without a supervisor.</summary>
    public FleetMember? Member { get; }

    /// <summary>Raised with a one-line status whenever the connection state changes (for sd_notify STATUS=).</summary>
    public event Action<string>? StatusChanged;

    /// <summary>True while connected to a NATS server with the node's subscriptions in place.</summary>
    /// <summary>
    /// The agent's connection once its first connect succeeded (the NATS client reconnects it by
    /// itself from then on), for orchd's other NATS services (metrics, self-update): one
    /// connection per node, not one per service. Waits while the node has not reached NATS yet.
    /// </summary>
    public Task<NatsConnection> ConnectionAsync(CancellationToken cancellationToken) => _connected.Task.WaitAsync(cancellationToken);

    public bool IsConnected => Volatile.Read(ref _serving) && _connection?.ConnectionState == NatsConnectionState.Open;

    /// <summary>Connects (retrying until cancelled), then serves requests until cancelled.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        // Fencing runs from the start, connected or not: a node that boots without its network
        // has had no contact with the fleet either.
        foreach (var warning in Warnings)
        {
            LogUnsafe(_logger, warning);
        }
        if (_identity.LabelStore?.Warning is { } labels)
        {
            LogLabelsLost(_logger, labels);
        }
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var guard = Member?.GuardAsync(stop.Token) ?? Task.CompletedTask;
        try
        {
            await ConnectAndServeAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            await guard.ConfigureAwait(false);
        }
    }

    private async Task ConnectAndServeAsync(CancellationToken cancellationToken)
    {
        var connection = await ConnectWithBackoffAsync(cancellationToken).ConfigureAwait(false);
        if (connection is null)
        {
            return;
        }
        _connection = connection;
        _connected.TrySetResult(connection);
        connection.ServerError += OnServerErrorAsync;

        // Subscribe, then round-trip a PING: once the PONG is back the server has our SUBs, so
        // anyone who sees "connected" can ask this node something and get an answer.
        var nodeSub = await connection.SubscribeCoreAsync<byte[]>(Subjects.NodeAll(_identity.NodeName), cancellationToken: cancellationToken).ConfigureAwait(false);
        var fleetSub = await connection.SubscribeCoreAsync<byte[]>(Subjects.FleetInfo, cancellationToken: cancellationToken).ConfigureAwait(false);
        try
        {
            await connection.PingAsync(cancellationToken).ConfigureAwait(false);
            Volatile.Write(ref _serving, true);
            LogConnected(_logger, connection.ServerInfo?.Name ?? "?", _nats.DisplayUrls, _attempts);
            StatusChanged?.Invoke($"connected to {_nats.DisplayUrls}");

            await Task.WhenAll(ServeAsync(nodeSub, cancellationToken), ServeAsync(fleetSub, cancellationToken),
                Member?.RunAsync(connection, Describe, cancellationToken) ?? Task.CompletedTask).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        finally
        {
            Volatile.Write(ref _serving, false);
            await nodeSub.DisposeAsync().ConfigureAwait(false);
            await fleetSub.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// "User Authentication Revoked" is the server closing this node's connection because an
    /// operator revoked it (orchctl node revoke): the fleet's replicas here are removed at once.
    /// Any other error (an expired JWT, a permission violation) is left to the client's reconnects
    /// and to fencing: a node that only lost contact keeps running.
    /// </summary>
    private ValueTask OnServerErrorAsync(object? sender, NatsServerErrorEventArgs e)
    {
        if (e.Error.Contains("Authentication Revoked", StringComparison.OrdinalIgnoreCase))
        {
            Disown($"the server said '{e.Error.Trim()}'");
        }
        else
        {
            NoteRefusal(e.Error);
        }
        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// The servers refuse this node's credentials ("Authorization Violation": revoked while this
    /// node was away, or its JWT expired while it was offline). Refused for fence_after without one
    /// connect in between, the node is no longer part of the fleet, which took it for lost and
    /// moved its replicas long ago: it removes them too, so nothing runs twice. (A node that only
    /// cannot reach the servers keeps running: that is the edge default.)
    /// </summary>
    private void NoteRefusal(string error)
    {
        if (!error.Contains("Authorization Violation", StringComparison.OrdinalIgnoreCase) && !error.Contains("Authentication Expired", StringComparison.OrdinalIgnoreCase))
        {
            return;
        }
        var now = _clock.GetUtcNow();
        _refusedSince ??= now;
        if (now - _refusedSince.Value >= _refusedFor)
        {
            Disown($"the servers have refused this node's credentials since {_refusedSince.Value:u} ({error.Trim()}: revoked or expired; enrol it again)");
        }
    }

    private void Disown(string why)
    {
        if (Member is not { } member || Interlocked.Exchange(ref _disowned, 1) == 1)
        {
            return;
        }
        _ = Task.Run(async () =>
        {
            try
            {
                await member.DisownAsync(why).ConfigureAwait(false);
            }
            catch (Exception x) when (x is not OutOfMemoryException)
            {
                Interlocked.Exchange(ref _disowned, 0);
                LogUnsafe(_logger, $"removing the fleet's replicas after revocation failed: {x.Message}");
            }
        });
    }

    private async Task<NatsConnection?> ConnectWithBackoffAsync(CancellationToken cancellationToken)
    {
        var opts = _nats.ToNatsOpts($"orchd/{_identity.NodeName}");
        var delay = TimeSpan.FromMilliseconds(500);
        string? lastReason = null;
        for (var attempt = 1; !cancellationToken.IsCancellationRequested; attempt++)
        {
            var connection = new NatsConnection(opts);
            // Attached before connecting so that no event is missed; the first "opened" is this connect.
            Interlocked.Exchange(ref _opens, 0);
            connection.ConnectionDisconnected += OnDisconnectedAsync;
            connection.ConnectionOpened += OnReconnectedAsync;
            var connecting = connection.ConnectAsync().AsTask();
            try
            {
                await connecting.WaitAsync(cancellationToken).ConfigureAwait(false);
                _attempts = attempt;
                _refusedSince = null;
                return connection;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                // The connect attempt has no cancellation of its own (it ends within ConnectTimeout):
                // dispose the connection once it has, without holding up the stop.
                _ = connecting.ContinueWith(_ => DisposeQuietlyAsync(connection).AsTask(), CancellationToken.None,
                    TaskContinuationOptions.None, TaskScheduler.Default).Unwrap();
                return null;
            }
            catch (Exception e)
            {
                await DisposeQuietlyAsync(connection).ConfigureAwait(false);
                var reason = Reason(e);
                NoteRefusal(reason);
                // One warning when the situation changes, then a reminder every 20 attempts:
                // a node offline for a day must not fill its disk with the same line.
                if (reason != lastReason || attempt % 20 == 0)
                {
                    LogUnreachable(_logger, _nats.DisplayUrls, reason, delay.TotalSeconds, attempt);
                    StatusChanged?.Invoke($"offline: cannot reach {_nats.DisplayUrls} ({reason}); retrying");
                }
                lastReason = reason;
            }

            try
            {
                // Jitter spreads a fleet's reconnects after a server restart.
                var jitter = TimeSpan.FromMilliseconds(Random.Shared.Next(0, (int)(delay.TotalMilliseconds / 4) + 1));
                await Task.Delay(delay + jitter, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return null;
            }
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _nats.MaxBackoff.Ticks));
        }
        return null;
    }

    private async Task ServeAsync(INatsSub<byte[]> subscription, CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var msg in subscription.Msgs.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                if (msg.ReplyTo is null)
                {
                    continue;
                }
                // Each request on its own: a slow exec or stop must not hold up a ps.
                _ = Task.Run(() => AnswerAsync(msg, cancellationToken), CancellationToken.None);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private async Task AnswerAsync(NatsMsg<byte[]> msg, CancellationToken cancellationToken)
    {
        try
        {
            var op = msg.Subject == Subjects.FleetInfo ? NodeOps.Info : msg.Subject[(msg.Subject.LastIndexOf('.') + 1)..];
            byte[] reply;
            if (op == NodeOps.Info)
            {
                var status = _supervisor is null ? null : await _supervisor.NodeStatusAsync().ConfigureAwait(false);
                reply = JsonSerializer.SerializeToUtf8Bytes(Describe() with { Status = status }, FleetJsonContext.Default.NodeInfo);
            }
            else if (op == NodeOps.Label)
            {
                reply = Label(msg.Data);
            }
            else if (_streams is not null && await _streams.TryServeAsync(_connection!, msg, op, cancellationToken).ConfigureAwait(false) is { } streamed)
            {
                LogStreamEnded(_logger, streamed);
                return;
            }
            else if (_api is null)
            {
                reply = NodeApiResponder.Error($"node '{_identity.NodeName}' runs no workloads (no supervisor); only 'info' is served", ErrorKind.NotFound);
            }
            else
            {
                var replies = await _api.HandleManyAsync(op, msg.Data ?? [], cancellationToken).ConfigureAwait(false);
                for (var i = 0; i < replies.Count - 1; i++)
                {
                    await msg.ReplyAsync(replies[i], cancellationToken: cancellationToken).ConfigureAwait(false);
                }
                reply = replies[^1];
            }
            await msg.ReplyAsync(reply, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            LogRequestFailed(_logger, Orchestrator.Node.ErrorLevels.Of(e), msg.Subject, e.Message);
            try
            {
                await msg.ReplyAsync(NodeApiResponder.Error($"node '{_identity.NodeName}' failed to serve {msg.Subject}: {e.Message}", NodeApiResponder.KindOf(e)), cancellationToken: cancellationToken).ConfigureAwait(false);
            }
            catch (Exception) when (!cancellationToken.IsCancellationRequested)
            {
            }
        }
    }

    /// <summary>This node's current <see cref="NodeInfo"/>.</summary>
    /// <summary>`orchctl label node`: the node's own labels changed, kept in its state dir, in the next heartbeat.</summary>
    private byte[] Label(byte[]? body)
    {
        try
        {
            if (_identity.LabelStore is not { } store)
            {
                return NodeApiResponder.Error($"node '{_identity.NodeName}' keeps no labels of its own (no state dir); set them in its configuration (--label)", ErrorKind.Unavailable);
            }
            var request = (body is { Length: > 0 } ? JsonSerializer.Deserialize(body, FleetJsonContext.Default.LabelRequest) : null)
                ?? throw new NodeApiException("label needs {\"set\": {\"key\": \"value\"}, \"remove\": [\"key\"], \"overwrite\": false}");
            var changed = store.Change(request.Set, request.Remove, request.Overwrite);
            if (changed)
            {
                LogLabelled(_logger, string.Join(", ", store.Current.Select(kv => $"{kv.Key}={kv.Value}")));
            }
            return JsonSerializer.SerializeToUtf8Bytes(new LabelReply { Changed = changed, Labels = store.Current }, FleetJsonContext.Default.LabelReply);
        }
        catch (JsonException e)
        {
            return NodeApiResponder.Error($"label's body is not JSON of the form {{\"set\": {{…}}, \"remove\": […]}}: {e.Message}", ErrorKind.Invalid);
        }
        catch (Exception e) when (NodeApiResponder.IsRequestError(e))
        {
            return NodeApiResponder.Error(e);
        }
    }

    public NodeInfo Describe() => new()
    {
        Node = _identity.NodeName,
        NodeId = _identity.NodeId,
        Version = _identity.Version,
        Arch = NodeIdentity.ThisArch,
        Kernel = Environment.OSVersion.Version.ToString(),
        Runtime = _identity.Runtime,
        Labels = _identity.CurrentLabels,
        StartedAt = _identity.StartedAt,
        UptimeSeconds = Math.Round((DateTimeOffset.UtcNow - _identity.StartedAt).TotalSeconds, 3),
        Warnings = Warnings.Count > 0 ? Warnings : null,
    };

    private async ValueTask DisposeQuietlyAsync(NatsConnection connection)
    {
        connection.ConnectionDisconnected -= OnDisconnectedAsync;
        connection.ConnectionOpened -= OnReconnectedAsync;
        await connection.DisposeAsync().ConfigureAwait(false);
    }

    private ValueTask OnDisconnectedAsync(object? sender, NatsEventArgs args)
    {
        if (Volatile.Read(ref _opens) == 0)
        {
            return ValueTask.CompletedTask; // a failed first connect, already logged as unreachable
        }
        LogDisconnected(_logger, _nats.DisplayUrls);
        StatusChanged?.Invoke($"offline: lost {_nats.DisplayUrls}; reconnecting");
        return ValueTask.CompletedTask;
    }

    private ValueTask OnReconnectedAsync(object? sender, NatsEventArgs args)
    {
        _refusedSince = null; // accepted again: whatever refused it is over
        if (Interlocked.Increment(ref _opens) == 1)
        {
            return ValueTask.CompletedTask; // the first connect, logged by ConnectWithBackoffAsync
        }
        LogReconnected(_logger, _nats.DisplayUrls);
        Member?.ConnectionRestored();
        StatusChanged?.Invoke($"connected to {_nats.DisplayUrls}");
        return ValueTask.CompletedTask;
    }

    private static string Reason(Exception e)
    {
        // NATS wraps socket errors; the innermost message is the one a person can act on.
        var inner = e;
        while (inner.InnerException is not null)
        {
            inner = inner.InnerException;
        }
        var text = inner.Message.TrimEnd('.');
        return text.Length == 0 ? e.GetType().Name : char.ToLowerInvariant(text[0]) + text[1..];
    }

    public async ValueTask DisposeAsync()
    {
        if (_connection is { } connection)
        {
            await DisposeQuietlyAsync(connection).ConfigureAwait(false);
        }
        Member?.Dispose();
    }

    [LoggerMessage(EventId = 2006, Level = LogLevel.Debug, Message = "{What} ended (it finished, the client went away or orchd stops)")]
    private static partial void LogStreamEnded(ILogger logger, string what);

    [LoggerMessage(EventId = 2030, Level = LogLevel.Information, Message = "labels changed by an operator, now: {Labels}")]
    private static partial void LogLabelled(ILogger logger, string labels);

    [LoggerMessage(EventId = 2031, Level = LogLevel.Warning, Message = "{Problem}")]
    private static partial void LogLabelsLost(ILogger logger, string problem);

    [LoggerMessage(EventId = 2005, Message = "request on {Subject} failed: {Reason}")]
    private static partial void LogRequestFailed(ILogger logger, LogLevel level, string subject, string reason);

    [LoggerMessage(EventId = 2020, Level = LogLevel.Warning, Message = "unsafe: {Warning}")]
    private static partial void LogUnsafe(ILogger logger, string warning);

    [LoggerMessage(EventId = 2001, Level = LogLevel.Information, Message = "connected to NATS server {Server} at {Urls} (attempt {Attempt})")]
    private static partial void LogConnected(ILogger logger, string server, string urls, int attempt);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Warning, Message = "cannot reach NATS at {Urls}: {Reason}; running offline and retrying every {Delay}s or more (attempt {Attempt})")]
    private static partial void LogUnreachable(ILogger logger, string urls, string reason, double delay, int attempt);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Warning, Message = "lost the connection to NATS at {Urls}; containers keep running, reconnecting")]
    private static partial void LogDisconnected(ILogger logger, string urls);

    [LoggerMessage(EventId = 2004, Level = LogLevel.Information, Message = "reconnected to NATS at {Urls}")]
    private static partial void LogReconnected(ILogger logger, string urls);
}

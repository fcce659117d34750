using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using NATS.Client.Core;
using NATS.Client.KeyValueStore;
using Orchestrator.Api;
using Orchestrator.Client;
using Orchestrator.Node.Network;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Fleet.Agent;

/// <summary>
/// Deployment names across nodes (docs/node.md, "Names across nodes"). Each node writes its
/// endpoints (ready replicas of fleet deployments on its bridge) to the endpoints bucket when
/// they change, and watches everyone's. A deployment with ready replicas only on other nodes gets
/// a service address here (<see cref="ServiceAddresses"/>) that its name takes in every
/// container's /etc/hosts; the bridge sends TCP to the services range to one listener of this
/// class on the gateway, which reads the address a connection was for (SO_ORIGINAL_DST) and
/// carries it to a replica elsewhere through that node's <c>connect</c> session over NATS, the
/// one path every node has (also behind NAT, where nodes reach only the hub). Replicas are taken
/// in turn; one whose node does not answer is passed over (for 10 s) before a byte moved.
/// </summary>
public sealed partial class ServiceProxy : IDisposable
{
    private static readonly TimeSpan s_open = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Connections carried at once, from all of the node's containers: one more is closed at once
    /// (a container that opens thousands must not take the gateway's memory with it).
    /// </summary>
    public const int MaxConnections = 256;

    private int _carried;
    private long _refusedLogged;

    private readonly string _node;
    private readonly Supervisor _supervisor;
    private readonly BridgeNetwork _bridge;
    private readonly ServiceAddresses _addresses;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Channel<bool> _changed = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly EndpointTable _table;
    private Socket? _listener;

    public ServiceProxy(string node, Supervisor supervisor, BridgeNetwork bridge, string servicesCidr, ILogger logger, TimeProvider? clock = null)
    {
        _node = node;
        _supervisor = supervisor;
        _bridge = bridge;
        _addresses = new ServiceAddresses(servicesCidr);
        _logger = logger;
        _table = new EndpointTable(node, clock ?? TimeProvider.System);
        supervisor.RemoteServices = Remote;
        supervisor.EndpointsChanged += _ => _changed.Writer.TryWrite(true);
    }

    /// <summary>The connection that carries connections to other nodes (the current one).</summary>
    public INatsConnection? Connection { get; set; }

    /// <summary>The port the listener took on the gateway (0 before any deployment ran elsewhere only).</summary>
    public int Port => _listener?.LocalEndPoint is IPEndPoint end ? end.Port : 0;

    /// <summary>Deployments with ready replicas on other nodes, each with its service address here.</summary>
    public IReadOnlyList<RemoteService> Remote()
        => _table.Deployments().Select(d => new RemoteService(d, _addresses.For(d).ToString())).ToList();

    /// <summary>
    /// Follows the endpoints bucket until cancelled: after each change the listener is made if
    /// needed and the names written again. Changes are applied once the watch has caught up (the
    /// entry with nothing pending) and, in any case, within half a second of the last one.
    /// </summary>
    public async Task WatchAsync(INatsKVStore bucket, CancellationToken cancellationToken)
    {
        var seen = new Dictionary<string, IReadOnlyList<Endpoint>>(StringComparer.Ordinal);
        var pending = 0;
        Dictionary<string, IReadOnlyList<Endpoint>> Snapshot()
        {
            lock (seen)
            {
                Volatile.Write(ref pending, 0);
                return new Dictionary<string, IReadOnlyList<Endpoint>>(seen, StringComparer.Ordinal);
            }
        }
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var settle = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(500), stop.Token).ConfigureAwait(false);
                if (Volatile.Read(ref pending) != 0)
                {
                    await ApplyAsync(Snapshot()).ConfigureAwait(false);
                }
            }
        }, CancellationToken.None);
        try
        {
            var opts = new NatsKVWatchOpts { OnNoData = async _ => { await ApplyAsync(Snapshot()).ConfigureAwait(false); return false; } };
            await foreach (var entry in bucket.WatchAsync<byte[]>(">", opts: opts, cancellationToken: cancellationToken).ConfigureAwait(false))
            {
                lock (seen)
                {
                    seen.Remove(entry.Key);
                    if (entry.Operation == NatsKVOperation.Put && entry.Value is { Length: > 0 } value)
                    {
                        try
                        {
                            var list = JsonSerializer.Deserialize(value, FleetJsonContext.Default.NodeEndpoints);
                            if (list is not null && list.Node == entry.Key)
                            {
                                seen[entry.Key] = list.Endpoints;
                            }
                        }
                        catch (JsonException)
                        {
                            // A damaged entry names nothing.
                        }
                    }
                    Volatile.Write(ref pending, 1);
                }
                if (entry.Delta == 0)
                {
                    await ApplyAsync(Snapshot()).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            try
            {
                await settle.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    private string _elsewhere = "";

    private async Task ApplyAsync(Dictionary<string, IReadOnlyList<Endpoint>> seen)
    {
        _table.Replace(seen);
        var elsewhere = string.Join(", ", _table.Deployments());
        if (Interlocked.Exchange(ref _elsewhere, elsewhere) != elsewhere)
        {
            LogElsewhere(_logger, elsewhere.Length > 0 ? elsewhere : "none");
        }
        if (elsewhere.Length > 0)
        {
            try
            {
                EnsureListener();
            }
            catch (Exception e) when (e is NetworkException or SocketException)
            {
                LogListenerFailed(_logger, e.Message);
            }
        }
        await _supervisor.ServicesChangedAsync().ConfigureAwait(false);
    }

    /// <summary>Writes this node's endpoints at once and again whenever they change, until cancelled.</summary>
    public async Task PublishAsync(INatsKVStore bucket, CancellationToken cancellationToken)
    {
        byte[]? written = null;
        while (true)
        {
            var now = JsonSerializer.SerializeToUtf8Bytes(new NodeEndpoints { Node = _node, Endpoints = _supervisor.Endpoints }, FleetJsonContext.Default.NodeEndpoints);
            if (written is null || !now.AsSpan().SequenceEqual(written))
            {
                await bucket.PutAsync(_node, now, cancellationToken: cancellationToken).ConfigureAwait(false);
                written = now;
            }
            await _changed.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private void EnsureListener()
    {
        lock (_lock)
        {
            if (_listener is not null)
            {
                return;
            }
            _bridge.EnsureBridge();
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                socket.Bind(new IPEndPoint(_bridge.Gateway, 0));
                socket.Listen(512);
                var port = ((IPEndPoint)socket.LocalEndPoint!).Port;
                _bridge.RedirectServices(_addresses.Cidr, port);
                LogListening(_logger, _addresses.Cidr, _bridge.Gateway.ToString(), port);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
            _listener = socket;
            _ = Task.Run(() => AcceptAsync(socket, _stop.Token), CancellationToken.None);
        }
    }

    private async Task AcceptAsync(Socket listener, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException)
            {
                continue; // a connection reset before it was taken
            }
            if (Interlocked.Increment(ref _carried) > MaxConnections)
            {
                Interlocked.Decrement(ref _carried);
                client.Dispose();
                var now = Environment.TickCount64;
                var last = Interlocked.Read(ref _refusedLogged);
                if (now - last > 10_000 && Interlocked.CompareExchange(ref _refusedLogged, now, last) == last)
                {
                    LogTooMany(_logger, MaxConnections);
                }
                continue;
            }
            _ = Task.Run(async () =>
            {
                try
                {
                    await CarryAsync(client, cancellationToken).ConfigureAwait(false);
                }
                finally
                {
                    Interlocked.Decrement(ref _carried);
                }
            }, CancellationToken.None);
        }
    }

    /// <summary>One connection a container opened to a service address: to a replica elsewhere, or closed when none answers.</summary>
    private async Task CarryAsync(Socket client, CancellationToken cancellationToken)
    {
        using (client)
        {
            client.NoDelay = true;
            if (OriginalDestination(client) is not { } target || _addresses.DeploymentAt(target.Address) is not { } deployment || Connection is not { } connection)
            {
                return;
            }
            foreach (var (node, container) in _table.Candidates(deployment))
            {
                string session;
                try
                {
                    session = await new NodeClient(connection, node, s_open).OpenConnectAsync(container, target.Port, cancellationToken).ConfigureAwait(false);
                }
                catch (Exception e) when (e is OrchestratorException or NatsException or TimeoutException or JsonException)
                {
                    _table.PassOver(node, container);
                    LogPassedOver(_logger, deployment, target.Port, container, node, e.Message);
                    continue;
                }
                try
                {
                    // The relay with the client's usual timeout: a read frame waits up to
                    // ForwardFrames.ReadWaitSeconds for an idle target, which the open's 5 s would cut.
                    await new NodeClient(connection, node).RelayAsync(session, client, cancellationToken).ConfigureAwait(false);
                }
                catch (Exception e) when (e is OrchestratorException or NatsException or SocketException or TimeoutException or OperationCanceledException or ObjectDisposedException)
                {
                    LogCarryEnded(_logger, deployment, target.Port, container, node, e.Message);
                }
                return;
            }
            LogNoReplica(_logger, deployment, target.Port);
        }
    }

    /// <summary>Where the connection was going before the bridge's redirect (SO_ORIGINAL_DST of IPv4 netfilter).</summary>
    private static IPEndPoint? OriginalDestination(Socket socket)
    {
        Span<byte> address = stackalloc byte[16]; // struct sockaddr_in
        try
        {
            if (socket.GetRawSocketOption(0 /* SOL_IP */, 80 /* SO_ORIGINAL_DST */, address) < 8)
            {
                return null;
            }
        }
        catch (SocketException)
        {
            return null; // not redirected (someone dialled the listener itself)
        }
        return new IPEndPoint(new IPAddress(address[4..8]), address[2] << 8 | address[3]);
    }

    private int _disposed;

    /// <summary>Stops the listener and every connection it carries (once; the fleet member may be disposed more than once).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _stop.Cancel();
        _listener?.Dispose();
        _stop.Dispose();
    }

    [LoggerMessage(EventId = 4016, Level = LogLevel.Information, Message = "services: deployments that run on other nodes answer at their addresses in {Range}, carried by {Gateway}:{Port}")]
    private static partial void LogListening(ILogger logger, string range, string gateway, int port);

    [LoggerMessage(EventId = 4017, Level = LogLevel.Warning, Message = "services: cannot listen for deployments that run on other nodes: {Reason}; their names are given but connections fail")]
    private static partial void LogListenerFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 4018, Level = LogLevel.Information, Message = "services: {Deployment}:{Port}: passed over {Container} on {Node}: {Reason}")]
    private static partial void LogPassedOver(ILogger logger, string deployment, int port, string container, string node, string reason);

    [LoggerMessage(EventId = 4019, Level = LogLevel.Debug, Message = "services: {Deployment}:{Port} to {Container} on {Node} ended: {Reason}")]
    private static partial void LogCarryEnded(ILogger logger, string deployment, int port, string container, string node, string reason);

    [LoggerMessage(EventId = 4021, Level = LogLevel.Information, Message = "services: deployments with ready replicas on other nodes: {Deployments}")]
    private static partial void LogElsewhere(ILogger logger, string deployments);

    [LoggerMessage(EventId = 4022, Level = LogLevel.Warning, Message = "services: {Max} connections to deployments on other nodes are carried already; more are closed at once (the next such line comes in 10 s at the earliest)")]
    private static partial void LogTooMany(ILogger logger, int max);

    [LoggerMessage(EventId = 4020, Level = LogLevel.Warning, Message = "services: a connection to {Deployment}:{Port} found no replica that answers; closed")]
    private static partial void LogNoReplica(ILogger logger, string deployment, int port);
}

using System.Net;
using System.Net.Sockets;

namespace Orchestrator.Testing;

/// <summary>
/// A TCP relay on 127.0.0.1 that a test can cut and restore: the link between one node and
/// NATS, without touching the others. Cut closes every relayed connection and stops
/// listening (new connections are refused, as when a cable is pulled and the host answers
/// with RST); Restore listens again on the same port.
/// </summary>
public sealed class TcpProxy : IAsyncDisposable
{
    private readonly Func<CancellationToken, Task<TcpClient>> _connect;
    private readonly List<TcpClient> _open = [];
    private readonly Lock _lock = new();
    private TcpListener? _listener;
    private CancellationTokenSource _cts = new();

    public TcpProxy(int targetPort)
        : this(FreePort.Next(), async cancellationToken =>
        {
            var outbound = new TcpClient();
            try
            {
                await outbound.ConnectAsync(IPAddress.Loopback, targetPort, cancellationToken);
                return outbound;
            }
            catch
            {
                outbound.Dispose();
                throw;
            }
        })
    {
    }

    /// <summary>
    /// A relay on 127.0.0.1:<paramref name="port"/> whose outbound connections <paramref name="connect"/>
    /// makes (for instance into a network namespace: <see cref="NetNs.ConnectAsync"/>).
    /// </summary>
    public TcpProxy(int port, Func<CancellationToken, Task<Socket>> connect)
        : this(port, async cancellationToken => new TcpClient { Client = await connect(cancellationToken) })
    {
    }

    private TcpProxy(int port, Func<CancellationToken, Task<TcpClient>> connect)
    {
        _connect = connect;
        Port = port;
        Restore();
    }

    public int Port { get; }
    public string NatsUrl => $"nats://127.0.0.1:{Port}";
    public bool IsCut => _listener is null;

    public void Restore()
    {
        if (_listener is not null)
        {
            return;
        }
        _cts = new CancellationTokenSource();
        var listener = new TcpListener(IPAddress.Loopback, Port);
        listener.Server.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        listener.Start();
        _listener = listener;
        _ = AcceptAsync(listener, _cts.Token);
    }

    public void Cut()
    {
        _cts.Cancel();
        _listener?.Stop();
        _listener = null;
        lock (_lock)
        {
            foreach (var client in _open)
            {
                client.Dispose();
            }
            _open.Clear();
        }
    }

    private async Task AcceptAsync(TcpListener listener, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            TcpClient inbound;
            try
            {
                inbound = await listener.AcceptTcpClientAsync(cancellationToken);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }
            TcpClient outbound;
            try
            {
                outbound = await _connect(cancellationToken);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or IOException)
            {
                inbound.Dispose();
                continue;
            }
            lock (_lock)
            {
                _open.Add(inbound);
                _open.Add(outbound);
            }
            _ = PumpAsync(inbound, outbound, cancellationToken);
            _ = PumpAsync(outbound, inbound, cancellationToken);
        }
    }

    private static async Task PumpAsync(TcpClient from, TcpClient to, CancellationToken cancellationToken)
    {
        try
        {
            await from.GetStream().CopyToAsync(to.GetStream(), cancellationToken);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException or SocketException)
        {
        }
        from.Dispose();
        to.Dispose();
    }

    public ValueTask DisposeAsync()
    {
        Cut();
        return ValueTask.CompletedTask;
    }
}

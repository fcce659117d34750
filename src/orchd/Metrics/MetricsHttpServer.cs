using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Orchestrator.Daemon.Metrics;

/// <summary>
/// A minimal HTTP/1.1 server for one thing, GET /metrics, on a plain socket: no ASP.NET and no
/// HttpListener in the AOT binary. One request per connection (Connection: close), a request
/// head of at most 8 KiB read within 5 s, one connection served at a time: a scraper every few
/// seconds needs no more, and nothing a client sends can make orchd hold more than that.
/// </summary>
public sealed class MetricsHttpServer : IAsyncDisposable
{
    private const int MaxHead = 8192;
    private static readonly TimeSpan s_readTimeout = TimeSpan.FromSeconds(5);
    private readonly Socket _listener;
    private readonly Func<Task<string>> _collect;
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;

    private MetricsHttpServer(Socket listener, Func<Task<string>> collect)
    {
        _listener = listener;
        _collect = collect;
    }

    public IPEndPoint LocalEndPoint => (IPEndPoint)_listener.LocalEndPoint!;

    /// <summary>Binds and listens; throws <see cref="SocketException"/> when the address is taken or not local.</summary>
    public static MetricsHttpServer Start(IPEndPoint endpoint, Func<Task<string>> collect)
    {
        var listener = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            listener.Bind(endpoint);
            listener.Listen(16);
        }
        catch
        {
            listener.Dispose();
            throw;
        }
        var server = new MetricsHttpServer(listener, collect);
        server._loop = server.AcceptLoopAsync();
        return server;
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException)
            {
                continue; // a connection reset before accept: the next one
            }
            using (client)
            {
                try
                {
                    await ServeAsync(client).ConfigureAwait(false);
                }
                catch (Exception e) when (e is SocketException or IOException or OperationCanceledException)
                {
                    // The client went away or was too slow: nothing to answer.
                }
            }
        }
    }

    private async Task ServeAsync(Socket client)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        timeout.CancelAfter(s_readTimeout);
        var buffer = new byte[MaxHead];
        var length = 0;
        int end;
        while ((end = HeadEnd(buffer, length)) < 0)
        {
            if (length == buffer.Length)
            {
                await RespondAsync(client, 431, "Request Header Fields Too Large", "request head over 8 KiB\n", timeout.Token).ConfigureAwait(false);
                return;
            }
            var n = await client.ReceiveAsync(buffer.AsMemory(length), SocketFlags.None, timeout.Token).ConfigureAwait(false);
            if (n == 0)
            {
                return;
            }
            length += n;
        }
        var requestLine = Encoding.ASCII.GetString(buffer, 0, Array.IndexOf(buffer, (byte)'\r', 0, end)).Split(' ');
        if (requestLine.Length != 3 || !requestLine[2].StartsWith("HTTP/1.", StringComparison.Ordinal))
        {
            await RespondAsync(client, 400, "Bad Request", "not an HTTP/1.x request\n", timeout.Token).ConfigureAwait(false);
            return;
        }
        var (method, target) = (requestLine[0], requestLine[1]);
        var path = target.Split('?', 2)[0];
        if (path != "/metrics")
        {
            await RespondAsync(client, 404, "Not Found", "orchd serves only /metrics\n", timeout.Token).ConfigureAwait(false);
            return;
        }
        if (method is not ("GET" or "HEAD"))
        {
            await RespondAsync(client, 405, "Method Not Allowed", "use GET /metrics\n", timeout.Token, allow: true).ConfigureAwait(false);
            return;
        }
        var body = await _collect().ConfigureAwait(false);
        await RespondAsync(client, 200, "OK", body, timeout.Token, contentType: PrometheusWriter.ContentType, headOnly: method == "HEAD").ConfigureAwait(false);
    }

    private static int HeadEnd(byte[] buffer, int length)
    {
        for (var i = 3; i < length; i++)
        {
            if (buffer[i - 3] == '\r' && buffer[i - 2] == '\n' && buffer[i - 1] == '\r' && buffer[i] == '\n')
            {
                return i + 1;
            }
        }
        return -1;
    }

    private static async Task RespondAsync(Socket client, int code, string reason, string body, CancellationToken cancellationToken,
        string contentType = "text/plain; charset=utf-8", bool headOnly = false, bool allow = false)
    {
        var payload = Encoding.UTF8.GetBytes(body);
        var head = new StringBuilder()
            .Append("HTTP/1.1 ").Append(code).Append(' ').Append(reason).Append("\r\n")
            .Append("Content-Type: ").Append(contentType).Append("\r\n")
            .Append("Content-Length: ").Append(payload.Length).Append("\r\n")
            .Append(allow ? "Allow: GET, HEAD\r\n" : "")
            .Append("Connection: close\r\n\r\n");
        await client.SendAsync(Encoding.ASCII.GetBytes(head.ToString()), SocketFlags.None, cancellationToken).ConfigureAwait(false);
        if (!headOnly)
        {
            await client.SendAsync(payload, SocketFlags.None, cancellationToken).ConfigureAwait(false);
        }
        client.Shutdown(SocketShutdown.Send);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        if (_loop is not null)
        {
            await _loop.ConfigureAwait(false);
        }
        _stop.Dispose();
    }
}

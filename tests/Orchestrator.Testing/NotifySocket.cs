using System.Diagnostics;
using System.Net.Sockets;
using System.Text;

namespace Orchestrator.Testing;

/// <summary>
/// The listening end of systemd's sd_notify protocol: a datagram socket whose path is given to
/// the service as NOTIFY_SOCKET. Records every message with the time it arrived.
/// </summary>
public sealed class NotifySocket : IDisposable
{
    private readonly Socket _socket;
    private readonly TempDir _dir = new("orch-notify");
    private readonly List<(TimeSpan At, string Message)> _messages = [];
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _reader;
    private readonly SemaphoreSlim _arrived = new(0);

    public NotifySocket()
    {
        Path = _dir.Combine("notify.sock");
        _socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        _socket.Bind(new UnixDomainSocketEndPoint(Path));
        _reader = Task.Run(ReadLoopAsync);
    }

    public string Path { get; }

    /// <summary>Time since this socket was made; compare with message times.</summary>
    public TimeSpan Now => _clock.Elapsed;

    /// <summary>Every line of every message so far ("READY=1", "STATUS=…"), with arrival times.</summary>
    public IReadOnlyList<(TimeSpan At, string Message)> Messages
    {
        get
        {
            lock (_messages)
            {
                return _messages.ToArray();
            }
        }
    }

    /// <summary>Waits for a line matching the predicate; returns its arrival time, or throws with what did arrive.</summary>
    public async Task<TimeSpan> WaitForAsync(Func<string, bool> match, TimeSpan timeout, int skip = 0)
    {
        var deadline = _clock.Elapsed + timeout;
        while (true)
        {
            var found = Messages.Where(m => match(m.Message)).Skip(skip).Select(m => (TimeSpan?)m.At).FirstOrDefault();
            if (found is { } at)
            {
                return at;
            }
            var left = deadline - _clock.Elapsed;
            if (left <= TimeSpan.Zero)
            {
                throw new TimeoutException($"no matching sd_notify message in {timeout}; got: [{string.Join(", ", Messages.Select(m => m.Message))}]");
            }
            await _arrived.WaitAsync(left);
        }
    }

    public Task<TimeSpan> WaitForAsync(string exact, TimeSpan timeout) => WaitForAsync(m => m == exact, timeout);

    private async Task ReadLoopAsync()
    {
        var buffer = new byte[4096];
        while (!_stop.IsCancellationRequested)
        {
            int n;
            try
            {
                n = await _socket.ReceiveAsync(buffer, SocketFlags.None, _stop.Token);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            var at = _clock.Elapsed;
            lock (_messages)
            {
                foreach (var line in Encoding.UTF8.GetString(buffer, 0, n).Split('\n', StringSplitOptions.RemoveEmptyEntries))
                {
                    _messages.Add((at, line));
                }
            }
            _arrived.Release();
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _socket.Dispose();
        try
        {
            _reader.Wait(TimeSpan.FromSeconds(1));
        }
        catch (AggregateException)
        {
        }
        _stop.Dispose();
        _dir.Dispose();
    }
}

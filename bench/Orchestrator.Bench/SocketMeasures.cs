using System.Diagnostics;
using System.Net.Sockets;
using Orchestrator.Testing;

namespace Orchestrator.Bench;

/// <summary>
/// What the network benches measure on a connected socket, whichever path it takes (direct, a
/// port-forward, a deployment's name): a 100 MB download's MB/s and 1-byte round trips.
/// </summary>
internal static class SocketMeasures
{
    /// <summary>GET /big over <paramref name="socket"/> (HTTP/1.0: the server closes at the end); MB/s.</summary>
    public static async Task<double> DownloadAsync(Socket socket, string what)
    {
        await socket.SendAsync("GET /big HTTP/1.0\r\n\r\n"u8.ToArray(), SocketFlags.None);
        var buffer = new byte[256 * 1024];
        long total = 0;
        var clock = Stopwatch.StartNew();
        int n;
        while ((n = await socket.ReceiveAsync(buffer, SocketFlags.None)) > 0)
        {
            total += n;
        }
        clock.Stop();
        if (total < 100_000_000)
        {
            throw new InvalidOperationException($"download from {what} ended after {total} bytes");
        }
        return total / 1e6 / clock.Elapsed.TotalSeconds;
    }

    /// <summary><paramref name="count"/> 1-byte round trips to an echo (after 20 that warm both paths up); p50 and p99 in µs.</summary>
    public static async Task<(double P50, double P99)> RoundTripsAsync(Socket socket, int count, string what)
    {
        var one = new byte[1];
        var times = new List<double>(count);
        for (var i = 0; i < count + 20; i++)
        {
            var clock = Stopwatch.StartNew();
            await socket.SendAsync(one, SocketFlags.None);
            if (await socket.ReceiveAsync(one, SocketFlags.None) != 1)
            {
                throw new InvalidOperationException($"the echo on {what} closed");
            }
            if (i >= 20)
            {
                times.Add(clock.Elapsed.TotalMicroseconds);
            }
        }
        times.Sort();
        return (times[count / 2], times[count * 99 / 100]);
    }

    public static double Median(List<double> values) => values.Order().ToList()[values.Count / 2];

    /// <summary>Runs a tool to its end (cleanup: its failure is not the bench's).</summary>
    public static async Task Run(string binary, string[] args)
    {
        if (!File.Exists(binary))
        {
            return;
        }
        await using var process = DaemonProcess.Start(binary, args);
        await process.WaitForExitAsync(TimeSpan.FromSeconds(60));
    }
}

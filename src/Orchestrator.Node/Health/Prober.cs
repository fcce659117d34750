using System.Globalization;
using System.Net.Sockets;
using Orchestrator.Node.Drivers;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Node.Health;

/// <summary>One probe result: passed or not, and what was seen.</summary>
public readonly record struct ProbeResult(bool Ok, string Detail);

/// <summary>Runs one probe once: exec in the container, HTTP GET, or a TCP connect, each within the probe's timeout.</summary>
public sealed class Prober(ITaskDriver driver) : IDisposable
{
    private readonly HttpClient _http = new(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false, PooledConnectionLifetime = TimeSpan.Zero });

    public async Task<ProbeResult> RunAsync(Probe probe, string containerId, string host, CancellationToken cancellationToken)
    {
        var timeout = TimeSpan.FromSeconds(probe.TimeoutSeconds);
        try
        {
            if (probe.Exec is { } exec)
            {
                var result = await driver.ExecAsync(containerId, exec.Command, timeout, cancellationToken).ConfigureAwait(false);
                if (result.TimedOut)
                {
                    return new ProbeResult(false, $"exec {string.Join(' ', exec.Command)} timed out after {timeout.TotalSeconds:0.###}s");
                }
                var output = (result.Stdout + result.Stderr).Trim();
                output = output.Length > 200 ? output[..200] : output;
                return new ProbeResult(result.ExitCode == 0, $"exec {string.Join(' ', exec.Command)} exited {result.ExitCode}{(output.Length > 0 ? ": " + output : "")}");
            }
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            cts.CancelAfter(timeout);
            if (probe.HttpGet is { } http)
            {
                var url = new Uri(string.Create(CultureInfo.InvariantCulture, $"http://{FormatHost(http.Host ?? host)}:{http.Port}{http.Path}"));
                using var response = await _http.GetAsync(url, HttpCompletionOption.ResponseHeadersRead, cts.Token).ConfigureAwait(false);
                var code = (int)response.StatusCode;
                return new ProbeResult(code is >= 200 and < 400, $"GET {url} answered {code}");
            }
            if (probe.TcpSocket is { } tcp)
            {
                using var client = new TcpClient(System.Net.Sockets.AddressFamily.InterNetwork);
                await client.ConnectAsync(tcp.Host ?? host, tcp.Port, cts.Token).ConfigureAwait(false);
                return new ProbeResult(true, $"tcp {tcp.Host ?? host}:{tcp.Port} connected");
            }
            return new ProbeResult(false, "the probe has no action");
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return new ProbeResult(false, $"no answer within {timeout.TotalSeconds:0.###}s");
        }
        catch (Exception e) when (e is HttpRequestException or SocketException or IOException or InvalidOperationException)
        {
            return new ProbeResult(false, e.Message);
        }
    }

    private static string FormatHost(string host) => host.Contains(':', StringComparison.Ordinal) ? $"[{host}]" : host;

    public void Dispose() => _http.Dispose();
}

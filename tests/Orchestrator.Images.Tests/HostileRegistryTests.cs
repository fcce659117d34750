using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Orchestrator.Images.Registry;
using Orchestrator.Images.Store;

namespace Orchestrator.Images.Tests;

/// <summary>
/// A registry that attacks the puller: a loopback HTTP server written by the test that answers
/// every manifest request with the body it is told to (endless, declared huge, larger than its
/// index says). The puller must refuse each one quickly and without buffering it.
/// </summary>
public sealed class HostileRegistryTests : IDisposable
{
    private readonly TempDir _dir = new("hostile-registry");

    public void Dispose() => _dir.Dispose();

    /// <summary>Serves "/v2/" with 200 and every other GET with <paramref name="answer"/>, until disposed.</summary>
    private sealed class HostileServer : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _accepting;

        public HostileServer(Func<NetworkStream, string, CancellationToken, Task> answer)
        {
            _listener.Start();
            _accepting = Task.Run(async () =>
            {
                while (!_stop.IsCancellationRequested)
                {
                    TcpClient client;
                    try
                    {
                        client = await _listener.AcceptTcpClientAsync(_stop.Token);
                    }
                    catch (OperationCanceledException)
                    {
                        return;
                    }
                    _ = Task.Run(async () =>
                    {
                        using (client)
                        {
                            try
                            {
                                var stream = client.GetStream();
                                var path = await ReadRequestAsync(stream);
                                await answer(stream, path, _stop.Token);
                            }
                            catch (Exception e) when (e is IOException or OperationCanceledException or SocketException)
                            {
                                // the client hung up: what a refusing puller does
                            }
                        }
                    });
                }
            });
        }

        public string Host => $"127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";

        private static async Task<string> ReadRequestAsync(NetworkStream stream)
        {
            var head = new StringBuilder();
            var one = new byte[1];
            while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal) && await stream.ReadAsync(one) == 1)
            {
                head.Append((char)one[0]);
            }
            return head.ToString().Split(' ')[1];
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Stop();
            await _accepting;
            _stop.Dispose();
        }
    }

    private static Task WriteAsync(NetworkStream stream, string text) => stream.WriteAsync(Encoding.ASCII.GetBytes(text)).AsTask();

    private async Task<ImageException> PullFailsQuickly(HostileServer server, string reference)
    {
        var store = new ImageStore(_dir.Combine("store"));
        using var client = new RegistryClient(store, new RegistryOptions { Attempts = 1 });
        var watch = Stopwatch.StartNew();
        var pull = client.PullAsync($"{server.Host}/{reference}");
        Assert.Same(pull, await Task.WhenAny(pull, Task.Delay(TimeSpan.FromSeconds(60))));
        var error = await Assert.ThrowsAsync<ImageException>(() => pull);
        Assert.Empty(store.List());
        return error;
    }

    [Fact(Timeout = 120_000)]
    public async Task A_manifest_that_never_ends_is_refused_at_the_limit()
    {
        await using var server = new HostileServer(async (stream, path, stop) =>
        {
            if (path == "/v2/")
            {
                await WriteAsync(stream, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                return;
            }
            await WriteAsync(stream, "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nTransfer-Encoding: chunked\r\n\r\n");
            var chunk = Encoding.ASCII.GetBytes("10000\r\n" + new string(' ', 0x10000) + "\r\n");
            while (!stop.IsCancellationRequested)
            {
                await stream.WriteAsync(chunk, stop);
            }
        });
        var error = await PullFailsQuickly(server, "evil:1");
        Assert.Contains($"the manifest 1 goes on past the 4 MiB a manifest may have ({RegistryClient.MaxManifestBytes} bytes); it is refused", error.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = 120_000)]
    public async Task A_manifest_declared_larger_than_the_limit_is_refused_before_it_is_read()
    {
        await using var server = new HostileServer(async (stream, path, stop) =>
        {
            if (path == "/v2/")
            {
                await WriteAsync(stream, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                return;
            }
            await WriteAsync(stream, "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 3000000000\r\n\r\n");
            await Task.Delay(Timeout.Infinite, stop); // sends nothing: the header alone must be enough
        });
        var error = await PullFailsQuickly(server, "evil:1");
        Assert.Contains("the manifest 1 is 3000000000 bytes, more than the 4 MiB a manifest may have", error.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = 120_000)]
    public async Task A_manifest_larger_than_its_index_declares_is_refused_at_the_declared_size()
    {
        var child = "sha256:" + new string('a', 64);
        var index = $"{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[{{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"{child}\",\"size\":300,\"platform\":{{\"architecture\":\"{Orchestrator.Images.Oci.Platform.Current.Architecture}\",\"os\":\"linux\"}}}}]}}";
        await using var server = new HostileServer(async (stream, path, stop) =>
        {
            if (path == "/v2/")
            {
                await WriteAsync(stream, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                return;
            }
            if (path.EndsWith("/manifests/1", StringComparison.Ordinal))
            {
                await WriteAsync(stream, $"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nContent-Length: {index.Length}\r\n\r\n{index}");
                return;
            }
            var body = new string(' ', 1 << 20);
            await WriteAsync(stream, $"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nTransfer-Encoding: chunked\r\n\r\n{body.Length:x}\r\n{body}\r\n0\r\n\r\n");
        });
        var error = await PullFailsQuickly(server, "evil:1");
        Assert.Contains($"the manifest {child} goes on past the size its index declares (300 bytes)", error.Message, StringComparison.Ordinal);
    }

    [Theory(Timeout = 120_000)]
    [InlineData("file:///etc/passwd")]
    [InlineData("ftp://127.0.0.1/blob")]
    [InlineData("http://127.0.0.1:1/blob")]
    public async Task A_blob_redirected_to_another_scheme_or_nowhere_is_one_clear_error(string location)
    {
        var image = BusyboxImage.CreateLayout(_dir.Combine("layout"));
        var blobs = _dir.Combine("layout", "blobs", "sha256");
        var manifest = await File.ReadAllBytesAsync(Path.Combine(blobs, image.ManifestDigest[7..]));
        var config = await File.ReadAllBytesAsync(Path.Combine(blobs, image.ConfigDigest[7..]));
        await using var server = new HostileServer(async (stream, path, stop) =>
        {
            if (path == "/v2/")
            {
                await WriteAsync(stream, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            }
            else if (path.EndsWith("/manifests/1", StringComparison.Ordinal))
            {
                await WriteAsync(stream, $"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {manifest.Length}\r\n\r\n");
                await stream.WriteAsync(manifest, stop);
            }
            else if (path.EndsWith(image.ConfigDigest, StringComparison.Ordinal))
            {
                await WriteAsync(stream, $"HTTP/1.1 200 OK\r\nContent-Length: {config.Length}\r\n\r\n");
                await stream.WriteAsync(config, stop);
            }
            else
            {
                await WriteAsync(stream, $"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n");
            }
        });
        var error = await PullFailsQuickly(server, "evil:1");
        Assert.Contains(image.LayerDigest, error.Message + (error.InnerException?.Message ?? ""), StringComparison.Ordinal);
        Assert.DoesNotContain("internal", error.Message, StringComparison.OrdinalIgnoreCase);
    }
}

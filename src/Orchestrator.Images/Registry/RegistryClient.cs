using Orchestrator.Api;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Orchestrator.Images.Oci;
using Orchestrator.Images.Store;

namespace Orchestrator.Images.Registry;

/// <summary>How far a pull got: reported to whoever asked.</summary>
public sealed record PullProgress(int LayersDone, int LayersTotal, long BytesDone, long BytesTotal);

public sealed record RegistryCredentials(string User, string Password);

public sealed record RegistryOptions
{
    /// <summary>Registries spoken to over plain HTTP (loopback always is).</summary>
    public IReadOnlySet<string> Insecure { get; init; } = new HashSet<string>();
    public IReadOnlyDictionary<string, RegistryCredentials> Credentials { get; init; } = new Dictionary<string, RegistryCredentials>();
    public int ConcurrentLayers { get; init; } = 3;
    public int Attempts { get; init; } = 3;
}

/// <summary>A reference resolved to this platform's manifest: what a pull into another store starts from.</summary>
/// <param name="MediaType">The manifest's media type (OCI or Docker schema 2).</param>
public sealed record ResolvedImage(ImageReference Reference, string ManifestDigest, string MediaType, byte[] ManifestBytes, ImageManifest Manifest);

/// <summary>
/// Pulls images by the OCI distribution spec: manifests (indexes resolved to this platform),
/// then layers in parallel into the content store, where every byte is verified. Anonymous,
/// basic and bearer-token auth (the WWW-Authenticate challenge flow).
/// Without an image store (<paramref name="images"/> null) it only resolves and opens blobs,
/// for a pull into someone else's store (containerd's content service).
/// </summary>
public sealed class RegistryClient(ImageStore? images, RegistryOptions options, HttpMessageHandler? handler = null) : IDisposable
{
    private static readonly string[] s_accept = [MediaTypes.OciIndex, MediaTypes.OciManifest, MediaTypes.DockerManifestList, MediaTypes.DockerManifest];
    private readonly HttpClient _http = new(handler ?? new SocketsHttpHandler { AllowAutoRedirect = true }) { Timeout = TimeSpan.FromMinutes(10) };
    private readonly Dictionary<string, AuthenticationHeaderValue> _auth = new(StringComparer.Ordinal);

    public async Task<ImageRecord> PullAsync(string reference, Platform? platform = null, IProgress<PullProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var store = images ?? throw new InvalidOperationException("this registry client has no image store to pull into");
        platform ??= Platform.Current;
        var (image, manifestDigest, _, _, manifest) = await ResolveAsync(reference, platform, (bytes, digest, ct) => store.Content.WriteAsync(bytes, digest, ct), cancellationToken).ConfigureAwait(false);
        var blobs = manifest.Layers.Prepend(manifest.Config).ToList();
        var total = blobs.Sum(b => b.Size);
        long done = 0;
        var layersDone = 0;
        using var gate = new SemaphoreSlim(Math.Max(1, options.ConcurrentLayers));
        await Task.WhenAll(blobs.Select(async blob =>
        {
            await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                if (!store.Content.Contains(blob.Digest))
                {
                    await FetchBlobAsync(store, image, blob, cancellationToken).ConfigureAwait(false);
                }
                progress?.Report(new PullProgress(Interlocked.Increment(ref layersDone), blobs.Count, Interlocked.Add(ref done, blob.Size), total));
            }
            finally
            {
                gate.Release();
            }
        })).ConfigureAwait(false);
        return store.Tag(image.ToString(), manifestDigest, platform);
    }

    /// <summary>
    /// Fetches the reference's manifest (through an index to <paramref name="platform"/>'s entry),
    /// each one verified against its digest; <paramref name="keep"/> sees every manifest fetched.
    /// </summary>
    public async Task<ResolvedImage> ResolveAsync(string reference, Platform? platform = null,
        Func<byte[], string, CancellationToken, Task>? keep = null, CancellationToken cancellationToken = default)
    {
        var image = ImageReference.Parse(reference, out var fromNats);
        if (fromNats)
        {
            throw new ImageException($"'{reference}' comes from the fleet's NATS bucket, not a registry; pull it through orchd (orchd image pull, orchctl pull)");
        }
        platform ??= Platform.Current;
        var top = new Descriptor { Digest = image.Digest ?? "", MediaType = "" };
        var first = true;
        var mediaType = "";

        async Task<byte[]> FetchManifest(Descriptor d)
        {
            var reference = first ? image.Reference : d.Digest;
            first = false;
            using var response = await SendAsync(image, HttpMethod.Get, $"manifests/{reference}", s_accept, cancellationToken).ConfigureAwait(false);
            // A manifest or index the size its parent declares (when it declares one), and never
            // more than MaxManifestBytes: a registry cannot make the node buffer without end.
            var limit = d.Size > 0 ? Math.Min(d.Size, MaxManifestBytes) : MaxManifestBytes;
            var bytes = await ReadBoundedAsync(response.Content, limit, $"image '{image}': the manifest {reference}",
                d.Size > 0 && d.Size <= MaxManifestBytes ? "the size its index declares" : $"the {MaxManifestBytes >> 20} MiB a manifest may have", cancellationToken).ConfigureAwait(false);
            var actual = ContentStore.DigestOf(bytes);
            var expected = d.Digest.Length > 0 ? d.Digest : response.Headers.TryGetValues("Docker-Content-Digest", out var values) ? values.First() : actual;
            if (actual != expected)
            {
                throw new DigestMismatchException(expected, actual, bytes.Length);
            }
            d.Digest = actual;
            d.MediaType = mediaType = response.Content.Headers.ContentType?.MediaType ?? "";
            if (keep is not null)
            {
                await keep(bytes, actual, cancellationToken).ConfigureAwait(false);
            }
            return bytes;
        }

        var (manifestDigest, manifestBytes) = await ImageStore.ResolvePlatformAsync(top, platform, FetchManifest, $"image '{image}'").ConfigureAwait(false);
        var manifest = JsonSerializer.Deserialize(manifestBytes, OciJsonContext.Default.ImageManifest)
            ?? throw new ImageException($"image '{image}': its manifest {manifestDigest} is empty");
        if (mediaType.Length == 0 || MediaTypes.IsIndex(mediaType))
        {
            mediaType = manifest.MediaType is { Length: > 0 } declared ? declared : MediaTypes.OciManifest;
        }
        return new ResolvedImage(image, manifestDigest, mediaType, manifestBytes, manifest);
    }

    /// <summary>
    /// A blob's bytes as the registry sends them, unverified (the reader checks the digest, as
    /// containerd's content service does on commit). The caller disposes the stream.
    /// </summary>
    public async Task<Stream> OpenBlobAsync(ImageReference image, string digest, CancellationToken cancellationToken = default)
    {
        var response = await SendAsync(image, HttpMethod.Get, $"blobs/{digest}", [], cancellationToken).ConfigureAwait(false);
        try
        {
            return new ResponseStream(response, await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false));
        }
        catch
        {
            response.Dispose();
            throw;
        }
    }

    /// <summary>A response body that takes its response with it when disposed.</summary>
    private sealed class ResponseStream(HttpResponseMessage response, Stream inner) : Stream
    {
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => response.Content.Headers.ContentLength ?? throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(buffer, cancellationToken);
        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => inner.ReadAsync(buffer, offset, count, cancellationToken);
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
                response.Dispose();
            }
            base.Dispose(disposing);
        }
    }

    private async Task FetchBlobAsync(ImageStore store, ImageReference image, Descriptor blob, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                HttpResponseMessage? response = null;
                try
                {
                    await store.Content.WriteResumableAsync(async (offset, ct) =>
                    {
                        // After a broken transfer, ask only for the rest (registries serve ranges).
                        response = await SendAsync(image, HttpMethod.Get, $"blobs/{blob.Digest}", [], ct, rangeFrom: offset).ConfigureAwait(false);
                        var stream = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
                        return (stream, response.StatusCode == HttpStatusCode.PartialContent ? offset : 0);
                    }, blob.Digest, blob.Size, cancellationToken).ConfigureAwait(false);
                }
                finally
                {
                    response?.Dispose();
                }
                return;
            }
            catch (Exception e) when (attempt < options.Attempts && e is HttpRequestException or IOException or DigestMismatchException && e is not DiskBudgetExceededException)
            {
                // A dropped connection resumes where it broke; a corrupt transfer starts again
                // (the store kept nothing of it).
                await Task.Delay(TimeSpan.FromMilliseconds(200 * attempt), cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private Uri Url(ImageReference image, string path)
    {
        var host = image.Registry == "docker.io" ? "registry-1.docker.io" : image.Registry;
        var plain = options.Insecure.Contains(image.Registry) || host.StartsWith("127.", StringComparison.Ordinal) || host.StartsWith("localhost", StringComparison.Ordinal) || host.StartsWith("[::1]", StringComparison.Ordinal);
        return new Uri($"{(plain ? "http" : "https")}://{host}/v2/{image.Repository}/{path}");
    }

    /// <summary>The most a manifest or index may hold (containerd's limit is 4 MiB too).</summary>
    public const long MaxManifestBytes = 4 << 20;

    /// <summary>The most a token service's answer may hold.</summary>
    public const long MaxTokenBytes = 1 << 20;

    /// <summary>
    /// A response body of at most <paramref name="max"/> bytes: refused as soon as its declared
    /// length or the bytes read pass it (a body that never ends is not buffered without end).
    /// </summary>
    internal static async Task<byte[]> ReadBoundedAsync(HttpContent content, long max, string what, string limit, CancellationToken cancellationToken)
    {
        if (content.Headers.ContentLength is { } declared && declared > max)
        {
            throw new ImageException($"{what} is {declared} bytes, more than {limit} ({max} bytes); it is refused");
        }
        var stream = await content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        await using (stream.ConfigureAwait(false))
        {
            var buffer = new MemoryStream();
            var chunk = new byte[64 * 1024];
            int read;
            while ((read = await stream.ReadAsync(chunk, cancellationToken).ConfigureAwait(false)) > 0)
            {
                if (buffer.Length + read > max)
                {
                    throw new ImageException($"{what} goes on past {limit} ({max} bytes); it is refused");
                }
                buffer.Write(chunk, 0, read);
            }
            return buffer.ToArray();
        }
    }

    private async Task<HttpResponseMessage> SendAsync(ImageReference image, HttpMethod method, string path, string[] accept, CancellationToken cancellationToken, long rangeFrom = 0)
    {
        var url = Url(image, path);
        for (var round = 0; ; round++)
        {
            using var request = new HttpRequestMessage(method, url);
            foreach (var type in accept)
            {
                request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(type));
            }
            if (_auth.TryGetValue(image.Registry, out var auth))
            {
                request.Headers.Authorization = auth;
            }
            if (rangeFrom > 0)
            {
                request.Headers.Range = new RangeHeaderValue(rangeFrom, null);
            }
            HttpResponseMessage response;
            try
            {
                response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
            }
            catch (HttpRequestException e)
            {
                throw new ImageException(ErrorKind.Unavailable, $"cannot reach registry {image.Registry} ({url.GetLeftPart(UriPartial.Authority)}) for {path}: {e.Message}; check the address, or that it is up", e);
            }
            catch (Exception e) when (e is UriFormatException or NotSupportedException or InvalidOperationException or ArgumentException)
            {
                // A redirect the client cannot follow (file://, a malformed Location): found by a
                // hostile registry test; it used to surface as an internal error.
                throw new ImageException($"registry {image.Registry} answered {path} with a redirect that cannot be followed ({e.Message}); the image is refused", e);
            }
            if (response.StatusCode == HttpStatusCode.Unauthorized && round == 0)
            {
                var challenge = response.Headers.WwwAuthenticate.FirstOrDefault();
                response.Dispose();
                _auth[image.Registry] = await AuthenticateAsync(image, challenge, cancellationToken).ConfigureAwait(false);
                continue;
            }
            if (!response.IsSuccessStatusCode)
            {
                var status = (int)response.StatusCode;
                response.Dispose();
                throw new ImageException(status switch
                {
                    401 or 403 => $"registry {image.Registry} refused access to {image.Repository} ({status}); check the credentials configured for it",
                    404 => $"{path.Split('/')[0][..^1]} {path[(path.IndexOf('/', StringComparison.Ordinal) + 1)..]} of {image.Repository} was not found on {image.Registry} (404); check the name and tag",
                    _ => $"registry {image.Registry} answered {status} for {url.AbsolutePath}",
                });
            }
            return response;
        }
    }

    /// <summary>Basic: the configured credentials. Bearer: a token from the realm the challenge names.</summary>
    private async Task<AuthenticationHeaderValue> AuthenticateAsync(ImageReference image, AuthenticationHeaderValue? challenge, CancellationToken cancellationToken)
    {
        options.Credentials.TryGetValue(image.Registry, out var credentials);
        var basic = credentials is null ? null : new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{credentials.User}:{credentials.Password}")));
        if (challenge is null || challenge.Scheme.Equals("Basic", StringComparison.OrdinalIgnoreCase))
        {
            return basic ?? throw new ImageException($"registry {image.Registry} wants credentials and none are configured for it");
        }
        if (!challenge.Scheme.Equals("Bearer", StringComparison.OrdinalIgnoreCase))
        {
            throw new ImageException($"registry {image.Registry} asks for '{challenge.Scheme}' authentication, which is not supported (basic and bearer are)");
        }
        var parameters = ParseChallenge(challenge.Parameter ?? "");
        if (!parameters.TryGetValue("realm", out var realm))
        {
            throw new ImageException($"registry {image.Registry} sent a bearer challenge without a realm");
        }
        var query = new List<string>();
        if (parameters.TryGetValue("service", out var service))
        {
            query.Add("service=" + Uri.EscapeDataString(service));
        }
        query.Add("scope=" + Uri.EscapeDataString(parameters.GetValueOrDefault("scope") ?? $"repository:{image.Repository}:pull"));
        using var request = new HttpRequestMessage(HttpMethod.Get, $"{realm}?{string.Join("&", query)}");
        request.Headers.Authorization = basic;
        using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw new ImageException($"the token service of {image.Registry} ({realm}) refused a token ({(int)response.StatusCode}); check the credentials");
        }
        using var doc = JsonDocument.Parse(await ReadBoundedAsync(response.Content, MaxTokenBytes, $"the token service of {image.Registry} ({realm})", "the 1 MiB a token answer may have", cancellationToken).ConfigureAwait(false));
        var token = doc.RootElement.TryGetProperty("token", out var t) ? t.GetString()
            : doc.RootElement.TryGetProperty("access_token", out var a) ? a.GetString() : null;
        return new AuthenticationHeaderValue("Bearer", token ?? throw new ImageException($"the token service of {image.Registry} answered without a token"));
    }

    /// <summary>realm="https://auth",service="registry",scope="repository:x:pull" → a dictionary.</summary>
    internal static Dictionary<string, string> ParseChallenge(string parameter)
    {
        var result = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        var i = 0;
        while (i < parameter.Length)
        {
            var eq = parameter.IndexOf('=', i);
            if (eq < 0)
            {
                break;
            }
            var key = parameter[i..eq].Trim(' ', ',');
            string value;
            if (eq + 1 < parameter.Length && parameter[eq + 1] == '"')
            {
                var end = parameter.IndexOf('"', eq + 2);
                end = end < 0 ? parameter.Length : end;
                value = parameter[(eq + 2)..end];
                i = end + 1;
            }
            else
            {
                var end = parameter.IndexOf(',', eq + 1);
                end = end < 0 ? parameter.Length : end;
                value = parameter[(eq + 1)..end];
                i = end;
            }
            result[key] = value;
            while (i < parameter.Length && parameter[i] is ',' or ' ')
            {
                i++;
            }
        }
        return result;
    }

    public void Dispose() => _http.Dispose();
}

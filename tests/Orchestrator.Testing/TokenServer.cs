using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Nodes;

namespace Orchestrator.Testing;

/// <summary>
/// A bearer-token issuer for the registry's token auth, as Docker Hub's auth service is: it
/// checks the basic credentials a client sends to the realm and answers with a JWT (RS256,
/// x5c header) that the real registry verifies against this server's certificate.
/// </summary>
public sealed class TokenServer : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly RSA _key = RSA.Create(2048);
    private readonly X509Certificate2 _certificate;
    private readonly string _user;
    private readonly string _password;
    private readonly Task _loop;
    private int _issued;

    public TokenServer(string user, string password)
    {
        _user = user;
        _password = password;
        var request = new CertificateRequest("CN=orch-test-token-issuer", _key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        _certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        Port = FreePort.Next();
        _listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
        _listener.Start();
        _loop = Task.Run(ServeAsync);
    }

    public int Port { get; }
    public string Realm => $"http://127.0.0.1:{Port}/token";
    public string CertificatePem => _certificate.ExportCertificatePem();

    /// <summary>Tokens handed out so far (a client that skipped the flow got none).</summary>
    public int Issued => Volatile.Read(ref _issued);

    private async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception) when (!_listener.IsListening)
            {
                return;
            }
            var response = context.Response;
            var auth = context.Request.Headers["Authorization"];
            var expected = "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes($"{_user}:{_password}"));
            if (auth != expected)
            {
                response.StatusCode = 401;
                response.Close();
                continue;
            }
            var scope = context.Request.QueryString["scope"] ?? "";
            var parts = scope.Split(':');
            var access = parts.Length == 3
                ? new JsonArray(new JsonObject { ["type"] = parts[0], ["name"] = parts[1], ["actions"] = new JsonArray(parts[2].Split(',').Select(a => (JsonNode)a).ToArray()) })
                : new JsonArray();
            var body = new JsonObject { ["token"] = Mint(context.Request.QueryString["service"] ?? "", access) }.ToJsonString();
            var bytes = Encoding.UTF8.GetBytes(body);
            response.ContentType = "application/json";
            await response.OutputStream.WriteAsync(bytes);
            response.Close();
            Interlocked.Increment(ref _issued);
        }
    }

    private string Mint(string audience, JsonArray access)
    {
        static string B64(byte[] data) => Convert.ToBase64String(data).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var header = new JsonObject { ["alg"] = "RS256", ["typ"] = "JWT", ["x5c"] = new JsonArray(Convert.ToBase64String(_certificate.RawData)) };
        var claims = new JsonObject
        {
            ["iss"] = "orch-test-issuer", ["sub"] = _user, ["aud"] = audience,
            ["exp"] = now + 300, ["nbf"] = now - 10, ["iat"] = now, ["jti"] = Guid.NewGuid().ToString("N"),
            ["access"] = access,
        };
        var signingInput = B64(Encoding.UTF8.GetBytes(header.ToJsonString())) + "." + B64(Encoding.UTF8.GetBytes(claims.ToJsonString()));
        var signature = _key.SignData(Encoding.ASCII.GetBytes(signingInput), HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        return signingInput + "." + B64(signature);
    }

    public void Dispose()
    {
        _listener.Stop();
        _listener.Close();
        try
        {
            _loop.Wait(TimeSpan.FromSeconds(2));
        }
        catch (AggregateException)
        {
        }
        _certificate.Dispose();
        _key.Dispose();
    }
}

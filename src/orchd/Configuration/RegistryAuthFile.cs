using System.Text;
using System.Text.Json;
using Orchestrator.Images.Registry;

namespace Orchestrator.Daemon.Configuration;

/// <summary>
/// registry.auth_file: credentials per registry in the form docker and podman write
/// (<c>{"auths": {"registry.local:5000": {"auth": "base64(user:password)"}}}</c>, or
/// <c>"username"</c>/<c>"password"</c> instead of <c>"auth"</c>), so an existing
/// <c>~/.docker/config.json</c> or <c>auth.json</c> serves as it is. Read once at start.
/// </summary>
internal static class RegistryAuthFile
{
    public static Dictionary<string, RegistryCredentials> Load(string path)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            throw new ConfigException($"registry.auth_file '{path}' cannot be read as JSON ({e.Message}); give a docker-style config.json with an \"auths\" object");
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("auths", out var auths) || auths.ValueKind != JsonValueKind.Object)
            {
                throw new ConfigException($"registry.auth_file '{path}' has no \"auths\" object; write {{\"auths\": {{\"HOST\": {{\"auth\": \"base64(user:password)\"}}}}}}");
            }
            var result = new Dictionary<string, RegistryCredentials>(StringComparer.Ordinal);
            foreach (var entry in auths.EnumerateObject())
            {
                result[Host(entry.Name)] = Credentials(path, entry);
            }
            return result;
        }
    }

    /// <summary>"https://index.docker.io/v1/" → docker.io; "registry.local:5000" stays; a scheme or path is dropped.</summary>
    internal static string Host(string key)
    {
        var host = key.Contains("://", StringComparison.Ordinal) ? key[(key.IndexOf("://", StringComparison.Ordinal) + 3)..] : key;
        host = host.Split('/')[0];
        return host is "index.docker.io" or "registry-1.docker.io" ? "docker.io" : host;
    }

    private static RegistryCredentials Credentials(string path, JsonProperty entry)
    {
        var value = entry.Value;
        if (value.ValueKind == JsonValueKind.Object && value.TryGetProperty("auth", out var auth) && auth.GetString() is { Length: > 0 } encoded)
        {
            string decoded;
            try
            {
                decoded = Encoding.UTF8.GetString(Convert.FromBase64String(encoded));
            }
            catch (FormatException)
            {
                throw new ConfigException($"registry.auth_file '{path}': the auth of '{entry.Name}' is not base64; it is base64 of user:password");
            }
            var colon = decoded.IndexOf(':', StringComparison.Ordinal);
            return colon > 0
                ? new RegistryCredentials(decoded[..colon], decoded[(colon + 1)..])
                : throw new ConfigException($"registry.auth_file '{path}': the auth of '{entry.Name}' does not decode to user:password");
        }
        if (value.ValueKind == JsonValueKind.Object && value.TryGetProperty("username", out var user) && user.GetString() is { Length: > 0 } name
            && value.TryGetProperty("password", out var password) && password.ValueKind == JsonValueKind.String)
        {
            return new RegistryCredentials(name, password.GetString()!);
        }
        throw new ConfigException($"registry.auth_file '{path}': '{entry.Name}' has neither \"auth\" nor \"username\" and \"password\"");
    }
}

using System.Globalization;
using System.Net;
using Orchestrator.Daemon.Configuration;

namespace Orchestrator.Daemon.Metrics;

/// <summary>The metrics listener's address: `none` (off), `PORT` (on 127.0.0.1), or `ADDRESS:PORT`.</summary>
internal static class ListenAddress
{
    public static string? Parse(string value)
    {
        var text = value.Trim();
        if (text is "none" or "")
        {
            return null;
        }
        return Endpoint(text) is { } endpoint
            ? endpoint.ToString()
            : throw new ConfigValueException($"'{value}' is not a listen address; use a port (9464, on 127.0.0.1), an address and port (127.0.0.1:9464, [::1]:9464) or none");
    }

    /// <summary>The endpoint of a value <see cref="Parse"/> accepted.</summary>
    public static IPEndPoint? Endpoint(string text)
    {
        if (ushort.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port > 0)
        {
            return new IPEndPoint(IPAddress.Loopback, port);
        }
        if (text.StartsWith("localhost:", StringComparison.Ordinal))
        {
            text = "127.0.0.1:" + text["localhost:".Length..];
        }
        return IPEndPoint.TryParse(text, out var endpoint) && endpoint.Port > 0 && text.Contains(':', StringComparison.Ordinal)
               && (endpoint.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6 || text.StartsWith('['))
            ? endpoint
            : null;
    }
}

using System.Globalization;
using System.Net;

namespace Orchestrator.Fleet.Agent;

/// <summary>
/// The service addresses of deployment names on this node: one address of the services range
/// per deployment, first tried at a hash of its name (so the same name mostly gets the same
/// address on every node and after a restart), the next free one on a clash. Once given, an
/// address stays with its name for the life of the process: a client that looked a name up
/// never finds another deployment behind it.
/// </summary>
public sealed class ServiceAddresses
{
    private readonly uint _network;
    private readonly uint _size;
    private readonly Dictionary<string, uint> _byName = new(StringComparer.Ordinal);
    private readonly Dictionary<uint, string> _byAddress = [];

    /// <param name="cidr">The range, an IPv4 network from /8 to /30 (network.services).</param>
    public ServiceAddresses(string cidr)
    {
        var slash = cidr.IndexOf('/', StringComparison.Ordinal);
        if (slash <= 0 || !IPAddress.TryParse(cidr[..slash], out var ip) || ip.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork
            || !int.TryParse(cidr[(slash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var prefix) || prefix is < 8 or > 30)
        {
            throw new ArgumentException($"network.services '{cidr}' is not an IPv4 network from /8 to /30, like 10.89.0.0/16", nameof(cidr));
        }
        _network = ToUInt(ip) & (uint.MaxValue << (32 - prefix));
        _size = 1u << (32 - prefix);
        Cidr = $"{ToAddress(_network)}/{prefix}";
    }

    /// <summary>The range, normalised (what the redirect rule matches).</summary>
    public string Cidr { get; }

    /// <summary>The address of <paramref name="deployment"/>, given now if it had none.</summary>
    public IPAddress For(string deployment)
    {
        lock (_byName)
        {
            if (_byName.TryGetValue(deployment, out var kept))
            {
                return ToAddress(kept);
            }
            var hosts = _size - 2; // not the network's own address, not its broadcast
            if (_byName.Count >= hosts)
            {
                throw new InvalidOperationException($"the services range {Cidr} has no address left for '{deployment}'; use a larger network.services");
            }
            var hash = 2166136261u;
            foreach (var c in deployment)
            {
                hash = (hash ^ c) * 16777619u;
            }
            var offset = hash % hosts;
            while (_byAddress.ContainsKey(_network + 1 + offset))
            {
                offset = (offset + 1) % hosts;
            }
            var address = _network + 1 + offset;
            _byName[deployment] = address;
            _byAddress[address] = deployment;
            return ToAddress(address);
        }
    }

    /// <summary>The deployment given <paramref name="address"/>, or null.</summary>
    public string? DeploymentAt(IPAddress address)
    {
        lock (_byName)
        {
            return address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork && _byAddress.TryGetValue(ToUInt(address), out var name) ? name : null;
        }
    }

    private static uint ToUInt(IPAddress ip)
    {
        var b = ip.GetAddressBytes();
        return (uint)(b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3]);
    }

    private static IPAddress ToAddress(uint value) => new([(byte)(value >> 24), (byte)(value >> 16), (byte)(value >> 8), (byte)value]);
}

using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Node.Network;

/// <summary>Bridge networking could not be set up; the message names the step and the fix.</summary>
public sealed class NetworkException : OrchestratorException
{
    public NetworkException() : base(ErrorKind.Internal, "network error") { }
    public NetworkException(string message) : base(ErrorKind.Internal, message) { }
    public NetworkException(string message, Exception inner) : base(ErrorKind.Internal, message, inner) { }
}

/// <summary>The node's bridge: its name, its IPv4 subnet, and the nftables table orchd owns.</summary>
public sealed record BridgeOptions(string Bridge, string Cidr, string NodeId)
{
    public static BridgeOptions Default(string nodeId) => new("orch0", "10.88.0.0/24", nodeId);

    /// <summary>One table per node, named after it, holding every rule orchd makes (and nothing else).</summary>
    public string Table => "orchd_" + NodeId[..Math.Min(8, NodeId.Length)];
}

/// <summary>
/// Containers on a Linux bridge (Docker's default network, done the same way): a veth pair per
/// container with an address from the node's subnet, a default route through the bridge,
/// masquerade outward, and published ports as nftables DNAT maps (one element per port, so a
/// container's ports come and go without touching any rule). Everything lives in one nftables
/// table of orchd's own; rules survive orchd restarts, so published ports keep answering while
/// orchd is down. The commands are iproute2's `ip` and `nft`: the kernel interfaces Docker and
/// CNI plugins use too, spelled the way an operator can check by hand.
/// </summary>
public sealed class BridgeNetwork(BridgeOptions options)
{
    private readonly (uint Network, int Prefix) _subnet = ParseCidr(options.Cidr);
    private bool _ready;

    public BridgeOptions Options => options;

    public IPAddress Gateway => ToAddress(_subnet.Network + 1);

    /// <summary>Creates the bridge, its address, forwarding and the NAT table (idempotent).</summary>
    public void EnsureBridge()
    {
        if (_ready)
        {
            return;
        }
        var bridge = options.Bridge;
        if (!Run("ip", ["link", "show", bridge], check: false).Ok)
        {
            Run("ip", ["link", "add", bridge, "type", "bridge"]);
        }
        var gateway = $"{Gateway}/{_subnet.Prefix}";
        if (!Run("ip", ["-4", "addr", "show", "dev", bridge]).Output.Contains(gateway, StringComparison.Ordinal))
        {
            Run("ip", ["addr", "add", gateway, "dev", bridge]);
        }
        Run("ip", ["link", "set", bridge, "up"]);
        WriteSysctl("net/ipv4/ip_forward", "1");
        // Published ports answer on 127.0.0.1 too: DNAT of locally made packets to the bridge.
        WriteSysctl($"net/ipv4/conf/{bridge}/route_localnet", "1");
        var table = options.Table;
        var rules = $$"""
            table ip {{table}} {
              map tcp_ports { type inet_service : ipv4_addr . inet_service; }
              map udp_ports { type inet_service : ipv4_addr . inet_service; }
              chain prerouting {
                type nat hook prerouting priority dstnat; policy accept;
                fib daddr type local dnat ip to tcp dport map @tcp_ports
                fib daddr type local dnat ip to udp dport map @udp_ports
              }
              chain output {
                type nat hook output priority -100; policy accept;
                fib daddr type local dnat ip to tcp dport map @tcp_ports
                fib daddr type local dnat ip to udp dport map @udp_ports
              }
              chain postrouting {
                type nat hook postrouting priority srcnat; policy accept;
                ip saddr {{options.Cidr}} oifname != "{{bridge}}" masquerade
                oifname "{{bridge}}" ip saddr 127.0.0.0/8 masquerade
              }
              chain forward {
                type filter hook forward priority filter; policy accept;
                iifname "{{bridge}}" accept
                oifname "{{bridge}}" accept
              }
            }
            """;
        if (!Run("nft", ["list", "table", "ip", table], check: false).Ok)
        {
            RunNft(rules);
        }
        _ready = true;
    }

    /// <summary>The lowest free address of the subnet (the gateway and broadcast excluded).</summary>
    public IPAddress Allocate(IEnumerable<string> inUse)
    {
        var used = inUse.Select(a => IPAddress.TryParse(a, out var ip) ? ToUInt(ip) : 0).ToHashSet();
        var size = 1u << (32 - _subnet.Prefix);
        for (var host = 2u; host < size - 1; host++)
        {
            if (!used.Contains(_subnet.Network + host))
            {
                return ToAddress(_subnet.Network + host);
            }
        }
        throw new NetworkException($"network {options.Cidr} has no free address for another container; use a larger network.cidr");
    }

    /// <summary>Plugs the container (its network namespace, by pid) into the bridge with <paramref name="address"/>.</summary>
    public void Attach(int pid, string name, IPAddress address)
    {
        EnsureBridge();
        // The host side is named after the address: unique on the node, at most 15 characters.
        var hostSide = "vo" + ToUInt(address).ToString("x8", CultureInfo.InvariantCulture);
        var peer = "vp" + ToUInt(address).ToString("x8", CultureInfo.InvariantCulture);
        Run("ip", ["link", "del", hostSide], check: false); // a leftover of a container that died with orchd away
        // The MAC follows from the address (as Docker's did): an address handed to a new container
        // keeps its MAC, so no neighbour's ARP cache points at a veth that is gone.
        var bytes = address.GetAddressBytes();
        var mac = string.Create(CultureInfo.InvariantCulture, $"02:42:{bytes[0]:x2}:{bytes[1]:x2}:{bytes[2]:x2}:{bytes[3]:x2}");
        Run("ip", ["link", "add", hostSide, "type", "veth", "peer", "name", peer, "address", mac]);
        Run("ip", ["link", "set", peer, "netns", pid.ToString(CultureInfo.InvariantCulture)]);
        Run("ip", ["link", "set", hostSide, "master", options.Bridge, "up"]);
        var ns = $"--net=/proc/{pid}/ns/net";
        InNamespace(ns, ["link", "set", "lo", "up"]);
        InNamespace(ns, ["link", "set", peer, "name", "eth0"]);
        InNamespace(ns, ["addr", "add", $"{address}/{_subnet.Prefix}", "dev", "eth0"]);
        InNamespace(ns, ["link", "set", "eth0", "up"]);
        InNamespace(ns, ["route", "add", "default", "via", Gateway.ToString()]);
        _ = name;
    }

    /// <summary>Only loopback, up (network none).</summary>
    public static void LoopbackOnly(int pid) => InNamespace($"--net=/proc/{pid}/ns/net", ["link", "set", "lo", "up"]);

    /// <summary>Publishes (or, with <paramref name="add"/> false, withdraws) the container's ports.</summary>
    public void Publish(IPAddress address, IEnumerable<PortMapping> ports, bool add)
    {
        var elements = ports.Select(p => (Map: p.Protocol == "udp" ? "udp_ports" : "tcp_ports", Element: $"{p.HostPort ?? p.ContainerPort} : {address} . {p.ContainerPort}")).ToList();
        if (elements.Count == 0)
        {
            return;
        }
        EnsureBridge();
        if (!add)
        {
            // One command per element: a missing one (the table was flushed) must not keep the others.
            foreach (var (map, element) in elements)
            {
                RunNft($"delete element ip {options.Table} {map} {{ {element} }}\n", check: false);
            }
            return;
        }
        var script = string.Concat(elements.Select(e => $"add element ip {options.Table} {e.Map} {{ {e.Element} }}\n"));
        var result = RunNft(script, check: false);
        if (!result.Ok && !Run("nft", ["list", "table", "ip", options.Table], check: false).Ok)
        {
            // Someone flushed the ruleset (`systemctl restart nftables` does): make the table again.
            _ready = false;
            EnsureBridge();
            result = RunNft(script, check: false);
        }
        if (!result.Ok)
        {
            var hint = result.Output.Contains("exists", StringComparison.OrdinalIgnoreCase)
                ? "a host port is already published by another container; pick another hostPort"
                : "check `nft list table ip " + options.Table + "`";
            throw new NetworkException($"cannot publish ports ({string.Join(", ", elements.Select(e => e.Element))}): {result.Output.Trim()}; {hint}");
        }
    }

    /// <summary>
    /// Sends every TCP connection a container on the bridge opens to an address of
    /// <paramref name="servicesCidr"/> (the deployments' service addresses, which no interface
    /// has) to <paramref name="port"/> on the gateway, where orchd's service proxy reads the
    /// address it was meant for (SO_ORIGINAL_DST) and carries it on. A chain of its own in orchd's
    /// table, made again at each call: the proxy's port changes with each orchd run.
    /// </summary>
    public void RedirectServices(string servicesCidr, int port)
    {
        EnsureBridge();
        var table = options.Table;
        RunNft($$"""
            add chain ip {{table}} services { type nat hook prerouting priority dstnat - 10; policy accept; }
            flush chain ip {{table}} services
            add rule ip {{table}} services iifname "{{options.Bridge}}" ip daddr {{servicesCidr}} meta l4proto tcp redirect to :{{port}}

            """);
    }

    /// <summary>Removes the bridge and orchd's table (tests, and `orchd` uninstall).</summary>
    public void Teardown()
    {
        Run("nft", ["delete", "table", "ip", options.Table], check: false);
        Run("ip", ["link", "del", options.Bridge], check: false);
        _ready = false;
    }

    private static void InNamespace(string ns, string[] ipArgs) => Run("nsenter", [ns, "ip", .. ipArgs]);

    private static void WriteSysctl(string key, string value)
    {
        var path = "/proc/sys/" + key;
        try
        {
            if (File.ReadAllText(path).Trim() != value)
            {
                File.WriteAllText(path, value);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new NetworkException($"cannot set {key.Replace('/', '.')}={value}: {e.Message}; bridge networking needs it (or use network: host)", e);
        }
    }

    private static (bool Ok, string Output) RunNft(string script, bool check = true)
    {
        var file = Path.Combine(Path.GetTempPath(), $"orchd-nft-{Environment.ProcessId}-{Guid.NewGuid():N}.nft");
        File.WriteAllText(file, script);
        try
        {
            return Run("nft", ["-f", file], check);
        }
        finally
        {
            File.Delete(file);
        }
    }

    private static (bool Ok, string Output) Run(string program, string[] args, bool check = true)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            psi.ArgumentList.Add(arg);
        }
        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new NetworkException($"{program} did not start");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            var package = program == "nft" ? "nftables" : program == "nsenter" ? "util-linux" : "iproute2";
            throw new NetworkException($"bridge networking needs `{program}`, which is not installed: apt-get install {package} (or use network: host)", e);
        }
        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEnd();
            process.WaitForExit();
            var output = stdout.GetAwaiter().GetResult() + stderr;
            if (check && process.ExitCode != 0)
            {
                throw new NetworkException($"`{program} {string.Join(' ', args)}` failed: {stderr.Trim()}");
            }
            return (process.ExitCode == 0, output);
        }
    }

    private static (uint Network, int Prefix) ParseCidr(string cidr)
    {
        var slash = cidr.IndexOf('/', StringComparison.Ordinal);
        if (slash > 0 && IPAddress.TryParse(cidr[..slash], out var ip) && ip.AddressFamily == AddressFamily.InterNetwork
            && int.TryParse(cidr[(slash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var prefix) && prefix is >= 8 and <= 29)
        {
            var mask = prefix == 0 ? 0 : uint.MaxValue << (32 - prefix);
            return (ToUInt(ip) & mask, prefix);
        }
        throw new NetworkException($"network.cidr '{cidr}' is not an IPv4 network from /8 to /29, like 10.88.0.0/24");
    }

    private static uint ToUInt(IPAddress ip)
    {
        var bytes = ip.GetAddressBytes();
        return (uint)(bytes[0] << 24 | bytes[1] << 16 | bytes[2] << 8 | bytes[3]);
    }

    private static IPAddress ToAddress(uint value) => new([(byte)(value >> 24), (byte)(value >> 16), (byte)(value >> 8), (byte)value]);
}

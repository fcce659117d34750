using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Orchestrator.Api;

namespace Orchestrator.Ctl;

/// <summary>
/// `orchctl port-forward TARGET [LOCAL:]REMOTE…`: local TCP ports that lead to a container's
/// port (or a node's own, as its policy allows) through NATS, as kubectl port-forward: each
/// connection accepted here is a session of its own on the node (NodeClient.ForwardAsync), so
/// several run at once and one that fails leaves the others alone. Until Ctrl-C (exit 0).
/// </summary>
internal static class PortForwardCommand
{
    public static async Task<int> RunAsync(ParsedArgs parsed, CommandContext context)
    {
        if (parsed.Positional.Count < 2)
        {
            throw new UsageException($"port-forward needs a target and at least one port: orchctl {Commands.Find("port-forward")!.Usage}");
        }
        var (node, container) = Target(parsed.Positional[0]);
        var specs = parsed.Positional.Skip(1).Select(Spec).ToList();
        var addressText = parsed.Value("--address") ?? "127.0.0.1";
        var address = addressText == "localhost" ? IPAddress.Loopback
            : IPAddress.TryParse(addressText, out var parsedAddress) ? parsedAddress
            : throw new UsageException($"--address '{addressText}' is not an IP address (127.0.0.1, the default, or ::1, 0.0.0.0)");
        node ??= container is not null ? await context.FindContainerNodeAsync(container).ConfigureAwait(false) : context.RequireNode("port-forward");
        var client = context.Node(node);
        if (container is not null)
        {
            // Said now, not at the first connection: no such container, or not running.
            var status = await client.InspectAsync(container).ConfigureAwait(false);
            if (status.State != ContainerState.Running)
            {
                throw new NodeRequestException(ErrorKind.Conflict, $"container '{container}' on {node} is {WireNames.Of(status.State)}; port-forward reaches a running container (start it first)");
            }
        }

        var listeners = new List<(TcpListener Listener, int Remote)>();
        try
        {
            foreach (var (local, remote) in specs)
            {
                var listener = new TcpListener(address, local);
                try
                {
                    listener.Start();
                }
                catch (SocketException e)
                {
                    throw new NodeRequestException(ErrorKind.Conflict, $"cannot listen on {address}:{local}: {e.Message}; pick another local port (LOCAL:{remote}, or :{remote} for any)");
                }
                listeners.Add((listener, remote));
                Console.Out.WriteLine($"Forwarding from {Endpoint(listener)} -> {remote}");
            }
            Console.Out.Flush();
            using var interrupted = new CancellationTokenSource();
            using var onInterrupt = Terminal.OnInterrupt(interrupted);
            var what = container is null ? $"node {node}" : $"{container} on {node}";
            await Task.WhenAll(listeners.Select(l => AcceptAsync(l.Listener, l.Remote, client, container, what, interrupted.Token))).ConfigureAwait(false);
            return 0;
        }
        finally
        {
            foreach (var (listener, _) in listeners)
            {
                listener.Stop();
            }
        }
    }

    private static async Task AcceptAsync(TcpListener listener, int remote, Orchestrator.Client.NodeClient client, string? container, string what, CancellationToken cancellationToken)
    {
        var connections = new List<Task>();
        var local = ((IPEndPoint)listener.LocalEndpoint).Port;
        try
        {
            while (true)
            {
                var socket = await listener.AcceptSocketAsync(cancellationToken).ConfigureAwait(false);
                socket.NoDelay = true;
                Console.Out.WriteLine($"Handling connection for {local}");
                connections.RemoveAll(c => c.IsCompleted);
                connections.Add(Task.Run(async () =>
                {
                    using (socket)
                    {
                        try
                        {
                            await client.ForwardAsync(container, remote, socket, cancellationToken).ConfigureAwait(false);
                        }
                        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                        {
                        }
                        catch (Exception e) when (e is OrchestratorException or SocketException or IOException)
                        {
                            // One connection failing (nothing listens, the client reset) leaves the forward running.
                            Output.Error($"connection for {local} -> {what}:{remote}: {e.Message}");
                        }
                    }
                }, CancellationToken.None));
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        await Task.WhenAll(connections).ConfigureAwait(false);
    }

    private static string Endpoint(TcpListener listener)
        => listener.LocalEndpoint is IPEndPoint { Address.AddressFamily: AddressFamily.InterNetworkV6 } v6 ? $"[{v6.Address}]:{v6.Port}" : listener.LocalEndpoint.ToString()!;

    /// <summary>node/NODE (the node's own ports), container/NAME or NAME (found), NODE/NAME.</summary>
    private static (string? Node, string? Container) Target(string text)
    {
        var slash = text.IndexOf('/', StringComparison.Ordinal);
        if (slash < 0)
        {
            return (null, text);
        }
        var (kind, name) = (text[..slash], text[(slash + 1)..]);
        if (kind.Length == 0 || name.Length == 0 || name.Contains('/', StringComparison.Ordinal))
        {
            throw new UsageException($"'{text}' is not a target: write CONTAINER, NODE/CONTAINER, container/NAME or node/NODE");
        }
        return kind switch
        {
            "node" or "no" => (name, null),
            "container" or "ct" => (null, name),
            _ => (kind, name),
        };
    }

    /// <summary>LOCAL:REMOTE, PORT (the same both sides) or :REMOTE (any free local port).</summary>
    private static (int Local, int Remote) Spec(string text)
    {
        static int Port(string part, string text, bool zeroOk)
            => int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port <= 65535 && (port > 0 || zeroOk)
                ? port : throw new UsageException($"'{text}' is not a port mapping: write LOCAL:REMOTE (8080:80), PORT or :REMOTE, ports 1-65535");
        var colon = text.IndexOf(':', StringComparison.Ordinal);
        return colon < 0 ? (Port(text, text, false), Port(text, text, false))
            : (colon == 0 ? 0 : Port(text[..colon], text, false), Port(text[(colon + 1)..], text, false));
    }
}

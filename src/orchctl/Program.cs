using System.Globalization;
using System.Reflection;
using NATS.Client.Core;
using Orchestrator.Ctl;
using Orchestrator.Fleet.Client;

// orchctl: the operator's command line. Today: version, and one node's containers (run, ps,
// logs, exec, …). Issue 8 grows it into the full tool; exit codes are the documented ones.
const int Ok = 0, Failure = 1, Usage = 2, Unreachable = 3;

var server = Environment.GetEnvironmentVariable("ORCH_SERVER") is { Length: > 0 } s ? s : "nats://127.0.0.1:4222";
var connectionFlags = ConnectionFlags.FromEnvironment();
var timeout = TimeSpan.FromSeconds(2);
var rest = new List<string>();
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--server" or "-s" when i + 1 < args.Length:
            server = args[++i];
            break;
        case var _ when connectionFlags.TryTake(args, ref i):
            break;
        case "--timeout" when i + 1 < args.Length && double.TryParse(args[i + 1], NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds):
            timeout = TimeSpan.FromSeconds(seconds);
            i++;
            break;
        case "-h" or "--help":
            rest.Insert(0, "help");
            break;
        default:
            rest.Add(args[i]);
            break;
    }
}

NatsOpts natsOpts;
try
{
    natsOpts = connectionFlags.ToNatsOpts(server, timeout);
}
catch (UsageException e)
{
    Console.Error.WriteLine($"orchctl: {e.Message}");
    return Usage;
}
var version = typeof(FleetClient).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";
version = version.IndexOf('+', StringComparison.Ordinal) is var plus and >= 0 && version.Length - plus > 13 ? version[..(plus + 13)] : version;
switch (rest.FirstOrDefault())
{
    case null or "help":
        Console.Out.Write($$"""
            orchctl: drive an Orchestrator fleet over NATS.

            Usage: orchctl [--server URL] [--creds FILE | --nkey FILE] [--tls-ca FILE] [--timeout SECONDS] COMMAND

            Commands:
              version                    this client's version and every reachable node's
            {{NodeCommands.Help}}
            {{FleetCommands.Help}}
            {{KeyCommands.Help}}

            Global flags:
              --server URL      NATS server (env ORCH_SERVER, default nats://127.0.0.1:4222)
            {{ConnectionFlags.Help}}
              --timeout SECONDS how long to wait for answers (default 2)

            Exit codes: 0 ok, 1 failure, 2 usage, 3 timeout or NATS unreachable.

            Examples:
              orchctl --server nats://127.0.0.1:4222 version
              orchctl run -n gw-01 -f examples/hello.yaml
              orchctl ps -n gw-01
              orchctl logs -n gw-01 hello --tail 20
              orchctl exec -n gw-01 hello -- cat /etc/hostname

            """);
        return rest.Count == 0 ? Usage : Ok;
    case "version":
        Console.Out.WriteLine($"client: orchctl {version}");
        await using (var connection = new NatsConnection(natsOpts))
        {
            try
            {
                await connection.ConnectAsync().ConfigureAwait(false);
            }
            catch (NATS.Client.JetStream.NatsJSException e)
            {
                Console.Error.WriteLine($"orchctl: the fleet's state needs JetStream on {server}: {e.Message}; start nats-server with -js");
                return Failure;
            }
            catch (NatsException e)
            {
                Console.Error.WriteLine($"orchctl: cannot reach NATS at {server}: {e.InnerException?.Message ?? e.Message}; start nats-server or pass --server");
                return Unreachable;
            }
            var nodes = await new FleetClient(connection).DiscoverNodesAsync(timeout, TimeSpan.FromMilliseconds(300)).ConfigureAwait(false);
            if (nodes.Count == 0)
            {
                Console.Out.WriteLine($"nodes:  none answered on {server} within {timeout.TotalSeconds:0.#}s");
                return Ok;
            }
            var width = Math.Max(4, nodes.Max(n => n.Node.Length));
            Console.Out.WriteLine($"{"NODE".PadRight(width)}  VERSION              ARCH    RUNTIME     UPTIME");
            foreach (var node in nodes)
            {
                Console.Out.WriteLine($"{node.Node.PadRight(width)}  {node.Version,-20} {node.Arch,-7} {node.Runtime,-11} {TimeSpan.FromSeconds(Math.Floor(node.UptimeSeconds))}");
            }
        }
        return Ok;
    case { } command when KeyCommands.Names.Contains(command):
        try
        {
            return KeyCommands.Run(command, rest.Skip(1).ToList());
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"orchctl: {e.Message}");
            return Usage;
        }
        catch (Exception e) when (e is Orchestrator.Node.Workloads.ManifestException or Orchestrator.Fleet.Protocol.ManifestSignatureException or IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine(e is IOException or UnauthorizedAccessException ? $"orchctl: {e.Message}" : e.Message);
            return Failure;
        }
    case { } command when NodeCommands.Names.Contains(command) || FleetCommands.Names.Contains(command):
        await using (var connection = new NatsConnection(natsOpts))
        {
            try
            {
                await connection.ConnectAsync().ConfigureAwait(false);
                return FleetCommands.Names.Contains(command)
                    ? await FleetCommands.RunAsync(command, rest.Skip(1).ToList(), connection).ConfigureAwait(false)
                    : await NodeCommands.RunAsync(command, rest.Skip(1).ToList(), connection, timeout).ConfigureAwait(false);
            }
            catch (UsageException e)
            {
                Console.Error.WriteLine($"orchctl: {e.Message}");
                return Usage;
            }
            catch (NodeRequestException e) when (e.InnerException is NatsNoRespondersException or NatsNoReplyException)
            {
                Console.Error.WriteLine($"orchctl: {e.Message}");
                return Unreachable;
            }
            catch (NodeRequestException e)
            {
                Console.Error.WriteLine($"orchctl: {e.Message}");
                return Failure;
            }
            catch (NatsException e)
            {
                Console.Error.WriteLine($"orchctl: cannot reach NATS at {server}: {e.InnerException?.Message ?? e.Message}; start nats-server or pass --server");
                return Unreachable;
            }
        }
    default:
        Console.Error.WriteLine($"orchctl: unknown command '{rest[0]}'; see orchctl --help");
        return Usage;
}

using System.Reflection;
using NATS.Client.Core;
using Orchestrator.Ctl;
using Orchestrator.Client;
using Orchestrator.Syntax;

// orchctl: the operator's command line (docs/orchctl.md). Global flags may stand anywhere before
// `--`; every command's flags, help and completions come from the table in Commands.cs.
const int Ok = ExitCodes.Ok, Failure = ExitCodes.Failure, Usage = ExitCodes.Usage, Unreachable = ExitCodes.Unreachable; // docs/orchctl.md, "Exit codes"

// .NET's console streams switch a terminal's keypad mode before their first write (an escape
// sequence in front of any output); writers on the bare file descriptors print only what we write.
var utf8 = new System.Text.UTF8Encoding(encoderShouldEmitUTF8Identifier: false);
Console.SetOut(new StreamWriter(new StandardStream(1), utf8) { AutoFlush = true });
Console.SetError(new StreamWriter(new StandardStream(2), utf8) { AutoFlush = true });

var settings = new ConnectionFlags();
List<string> rest;
bool help;
try
{
    var global = ArgumentParser.Parse(args, ConnectionFlags.GlobalFlags(), ConnectionFlags.GlobalRules);
    settings.Take(global);
    help = global.Has("--help");
    Terminal.NoColorFlag = global.Has("--no-color");
    rest = global.AfterDashDash is { } after ? [.. global.Positional, "--", .. after] : global.Positional;
}
catch (UsageException e)
{
    Output.Error(e.Message);
    return Usage;
}

var version = typeof(FleetClient).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";
version = version.IndexOf('+', StringComparison.Ordinal) is var plus and >= 0 && version.Length - plus > 13 ? version[..(plus + 13)] : version;

var command = rest.FirstOrDefault();
if (command is null or "help" || help)
{
    var topic = command == "help" ? rest.ElementAtOrDefault(1) ?? (help ? "help" : null) : command;
    if (topic is null)
    {
        Console.Out.Write(Commands.Overview());
        return help || command == "help" ? Ok : Usage;
    }
    if (Commands.Find(topic) is not { } spec)
    {
        Output.Error($"no command '{topic}'; `orchctl help` lists them");
        return Usage;
    }
    Console.Out.Write(Commands.HelpFor(spec));
    return Ok;
}
if (command != "__complete" && Commands.Find(command) is null)
{
    // A prefix first (`depl`), then a typo (`aply`, `rollot`): two edits at most, one for a short word.
    var names = Commands.All.Select(c => c.Name).ToList();
    var near = names.FirstOrDefault(n => n.StartsWith(command, StringComparison.Ordinal) || command.StartsWith(n, StringComparison.Ordinal))
        ?? EditDistance.Closest(command, names, maxDistance: command.Length <= 3 ? 1 : 2);
    Output.Error($"unknown command '{command}'{(near is null ? "" : $"; did you mean '{near}'?")} (orchctl help lists the commands)");
    return Usage;
}
var commandArgs = rest.Skip(1).ToList();

try
{
    settings.Resolve();
    switch (command)
    {
        case "completion":
            Console.Out.Write(Completion.Script(commandArgs.FirstOrDefault() ?? throw new UsageException("completion needs a shell: bash, zsh or fish")));
            return Ok;
        case "config":
            return ConfigCommands.Run(commandArgs, settings);
        case "keys" or "sign":
            return KeyCommands.Run(command, commandArgs, settings);
        case "identity" when commandArgs.FirstOrDefault() == "init":
            return IdentityCommands.Init(commandArgs);
    }
}
catch (UsageException e)
{
    Output.Error(e.Message);
    return Usage;
}
catch (OrchestratorException e)
{
    Report(e);
    return ExitCodes.ForOrchctl(e.Kind);
}
catch (Exception e) when (e is IOException or UnauthorizedAccessException)
{
    Output.Error(e.Message);
    return Failure;
}

// Everything else talks to the fleet. What can be checked before it is (the URL, apply's files) is.
NatsOpts natsOpts;
ApplyCommands.Prepared? prepared = null;
try
{
    natsOpts = settings.ToNatsOpts();
    if (command is "apply" or "delete")
    {
        prepared = ApplyCommands.Prepare(command, commandArgs);
    }
    else if (command != "__complete" && Commands.Find(command) is { } spec && spec.Flags.Any(f => f.Names == "-o|--output"))
    {
        _ = ParsedArgs.Parse(command, commandArgs).Format(); // flags and -o's template, before NATS is asked
    }
    else if (command == "attach")
    {
        _ = AttachCommand.Options.From(ParsedArgs.Parse(command, commandArgs)); // flags, the name and --detach-keys, before NATS is asked
    }
}
catch (UsageException e)
{
    if (command == "__complete")
    {
        return Failure;
    }
    Output.Error(e.Message);
    return Usage;
}
catch (Exception e) when (e is IOException or UnauthorizedAccessException)
{
    Output.Error(e.Message);
    return Failure;
}
var server = settings.Server;
await using var connection = new NatsConnection(natsOpts);
try
{
    await connection.ConnectAsync().ConfigureAwait(false);
    var context = new CommandContext(connection, settings, version);
    return command switch
    {
        "__complete" => await QueryCommands.CompleteAsync(commandArgs.FirstOrDefault() ?? "", context).ConfigureAwait(false),
        "version" => await QueryCommands.VersionAsync(context).ConfigureAwait(false),
        "get" or "describe" or "top" => await QueryCommands.RunAsync(command, commandArgs, context).ConfigureAwait(false),
        "apply" or "delete" => await ApplyCommands.RunAsync(prepared!, context).ConfigureAwait(false),
        "wait" => await WaitCommand.RunAsync(commandArgs, context).ConfigureAwait(false),
        "label" => await LabelCommand.RunAsync(commandArgs, context).ConfigureAwait(false),
        "secret" or "configmap" => await SecretCommands.RunAsync(command, commandArgs, context).ConfigureAwait(false),
        "env" => await EnvCommand.RunAsync(commandArgs, context).ConfigureAwait(false),
        "node" or "identity" => await IdentityCommands.RunAsync(command, commandArgs, context).ConfigureAwait(false),
        _ when NodeCommands.Names.Contains(command) => await NodeCommands.RunAsync(command, commandArgs, context).ConfigureAwait(false),
        _ => await FleetCommands.RunAsync(command, commandArgs, context).ConfigureAwait(false),
    };
}
catch (Exception) when (command == "__complete")
{
    return Failure;
}
catch (UsageException e)
{
    Output.Error(e.Message);
    return Usage;
}
catch (OrchestratorException e)
{
    Report(e);
    return ExitCodes.ForOrchctl(e.Kind);
}
catch (UnreachableException e)
{
    Output.Error(e.Message);
    return Unreachable;
}
catch (NATS.Client.JetStream.NatsJSApiNoResponseException)
{
    Output.Error($"the fleet's state needs JetStream, which {server} does not answer for; start nats-server with -js");
    return Unreachable;
}
catch (NATS.Client.JetStream.NatsJSException e)
{
    Output.Error($"the fleet's state needs JetStream on {server}: {e.Message}; start nats-server with -js");
    return Failure;
}
catch (NatsException e)
{
    Output.Error($"cannot reach NATS at {server}: {e.InnerException?.Message ?? e.Message}; start nats-server, or pass --server URL (or pick a context: orchctl config use-context NAME)");
    return Unreachable;
}
catch (TimeoutException e)
{
    Output.Error($"{e.Message}; try a longer --timeout");
    return Unreachable;
}
catch (Exception e) when (e is IOException or UnauthorizedAccessException)
{
    Output.Error(e.Message);
    return Failure;
}

// A manifest's and a signature's sentences name their file and place first: printed as they are.
static void Report(OrchestratorException e)
{
    if (e is Orchestrator.Api.Workloads.ManifestException or ManifestSignatureException)
    {
        Console.Error.WriteLine(e.Message);
    }
    else
    {
        Output.Error(e.Message);
    }
}

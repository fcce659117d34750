using Orchestrator.Runtime.Cli;

namespace Orchestrator.Daemon;

/// <summary>orch-runc: the runtime's runc-compatible command line, in the same binary.</summary>
internal static class RuncCommand
{
    public static int Run(string[] args) => RuncCli.Run(args, Console.Out, Console.Error);
}

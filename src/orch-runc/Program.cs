using Orchestrator.Runtime.Cli;

// orch-runc: runc's command line over the runtime library (src/Orchestrator.Runtime/Cli).
return RuncCli.Run(args, Console.Out, Console.Error);

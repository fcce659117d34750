namespace Orchestrator.Daemon;

/// <summary>
/// The runc-compatible command line (orch-runc). Today it answers --version and --help; the
/// OCI lifecycle commands arrive with the native runtime.
/// </summary>
internal static class RuncCommand
{
    public static int Run(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.Out.WriteLine("orch-runc: Orchestrator's runc-compatible OCI runtime command line.");
            Console.Out.WriteLine("Usage: orch-runc [global flags] COMMAND [flags]  (commands as runc's)");
            return args.Length == 0 ? 1 : 0;
        }
        if (args[0] is "-v" or "--version" or "version")
        {
            Console.Out.WriteLine($"orch-runc version {BuildInfo.Version}");
            Console.Out.WriteLine("spec: 1.2.0");
            return 0;
        }
        Console.Error.WriteLine($"orch-runc: command '{args[0]}' is not available in this build: the native runtime is not implemented yet");
        return 1;
    }
}

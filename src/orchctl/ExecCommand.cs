using Orchestrator.Client;

namespace Orchestrator.Ctl;

/// <summary>
/// exec -i / -t, as kubectl and docker have them: orchctl's stdin goes to the command; with -t the
/// command runs on a terminal in the container, orchctl's own terminal is put in raw mode (every
/// key, Ctrl-C included, goes to the command; it is restored however orchctl ends) and its size
/// follows the window (SIGWINCH). Exits with the command's exit code.
/// </summary>
internal static class ExecCommand
{
    public static async Task<int> RunAsync(NodeClient client, string name, IReadOnlyList<string> command, bool stdin, bool tty)
    {
        using var interrupted = new CancellationTokenSource();
        // Without a terminal Ctrl-C ends orchctl, and the node kills the command.
        using var terminal = InteractiveTerminal.Open(tty, raw: true, interrupted);
        try
        {
            return await client.ExecInteractiveAsync(name, command, stdin ? InteractiveTerminal.Input() : null, terminal.Tty, terminal.Rows, terminal.Cols,
                terminal.WriteAsync, terminal.Resizes, interrupted.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (interrupted.IsCancellationRequested)
        {
            return 130;
        }
    }
}

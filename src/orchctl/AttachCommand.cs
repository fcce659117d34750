using Orchestrator.Client;

namespace Orchestrator.Ctl;

/// <summary>
/// `orchctl attach CONTAINER [-i] [-t] [--detach-keys KEYS]`, as docker attach and kubectl attach:
/// the container's own first process's output from now on, orchctl's stdin to its stdin with -i,
/// and with -t its terminal (orchctl's in raw mode when -i sends the keys, its size following the
/// window). The detach keys (ctrl-p,ctrl-q) leave it running: "read escape sequence", exit 0; so
/// does Ctrl-C unless the keys go to the container. Exits with its exit code when it exits.
/// </summary>
internal static class AttachCommand
{
    /// <summary>What attach was asked: the container, -i, -t, and the detach keys' bytes (empty: off).</summary>
    internal sealed record Options(string Name, bool Stdin, bool Tty, byte[] DetachKeys)
    {
        /// <summary>attach's arguments, checked (usage errors) before anything is asked of the fleet.</summary>
        public static Options From(ParsedArgs parsed)
        {
            if (parsed.AfterDashDash is not null || parsed.Positional.Count > 1)
            {
                throw new UsageException("attach joins the container's own process and runs no command; to run one: orchctl exec -it CONTAINER -- sh");
            }
            var name = parsed.Positional.Count == 1 ? parsed.Positional[0] : throw new UsageException($"attach needs a container name: orchctl {Commands.Find("attach")!.Usage}");
            return new Options(name, parsed.Has("--stdin"), parsed.Has("--tty"), Ctl.DetachKeys.Parse(parsed.Value("--detach-keys") ?? Ctl.DetachKeys.Default));
        }
    }

    public static async Task<int> RunAsync(ParsedArgs parsed, CommandContext context)
    {
        var options = Options.From(parsed);
        var client = context.Node(await context.FindContainerNodeAsync(options.Name).ConfigureAwait(false));
        return await RunAsync(client, options).ConfigureAwait(false);
    }

    private static async Task<int> RunAsync(NodeClient client, Options options)
    {
        using var detach = new CancellationTokenSource();
        var keysRead = false;
        int? exitCode;
        // Raw only when the keys are read and sent (-it); otherwise Ctrl-C detaches.
        using (var terminal = InteractiveTerminal.Open(options.Tty, raw: options.Stdin, detach))
        {
            using var input = options.Stdin ? new DetachingInput(InteractiveTerminal.Input(), options.DetachKeys, () =>
            {
                keysRead = true;
                detach.Cancel();
            }) : null;
            exitCode = await client.AttachAsync(options.Name, input, terminal.Tty, terminal.Rows, terminal.Cols, terminal.WriteAsync, terminal.Resizes,
                detach.Token).ConfigureAwait(false);
        }
        if (exitCode is { } code)
        {
            return code;
        }
        if (keysRead)
        {
            // docker's sentence, once the terminal is itself again.
            Console.Error.WriteLine("read escape sequence");
        }
        return 0;
    }
}

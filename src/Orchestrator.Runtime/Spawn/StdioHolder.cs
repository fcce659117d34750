using System.Globalization;
using System.Runtime.InteropServices;
using Orchestrator.Linux;

namespace Orchestrator.Runtime.Spawn;

/// <summary>
/// A container's stdin and terminal, held by a process of their own (<c>orchd stdio-holder</c>,
/// orch_spawn.c's orch_stdio_relay) so that they outlive orchd as the container does: a
/// terminal whose master closed would hang its shell up (SIGHUP), and a stdin FIFO whose last
/// writer closed would read end-of-file. The holder takes the terminal's master from orchd with
/// pidfd_getfd(2), relays it through FIFOs in the container's run directory (tty.fifo out,
/// stdin.fifo in, resize.fifo for sizes), and exits once the container's first process has.
/// Its pid and start time are in <c>DIR/stdio-holder.pid</c>.
/// </summary>
public static partial class StdioHolder
{
    public const string Argument = "stdio-holder";
    public const string PidFile = "stdio-holder.pid";

    /// <summary>The holder's work, for a build whose main is managed (JIT): the AOT build runs it from its C main.</summary>
    public static int Run(IReadOnlyList<string> args)
    {
        if (args.Count != 4 || !int.TryParse(args[1], CultureInfo.InvariantCulture, out var source)
            || !int.TryParse(args[2], CultureInfo.InvariantCulture, out var master) || !int.TryParse(args[3], CultureInfo.InvariantCulture, out var container))
        {
            Console.Error.WriteLine("usage: orchd stdio-holder DIR ORCHD_PID MASTER_FD CONTAINER_PID (started by orchd for a container with tty or stdin)");
            return 2;
        }
        return Relay(args[0], source, master, container);
    }

    [LibraryImport("orchspawn", EntryPoint = "orch_stdio_relay", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Relay(string dir, int sourcePid, int masterFd, int containerPid);

    /// <summary>
    /// Starts the holder of <paramref name="dir"/>'s FIFOs for the container whose first process
    /// is <paramref name="containerPid"/>, taking <paramref name="masterFd"/> (a descriptor of this
    /// process; -1 without a terminal) from us. Returns once it holds them (the caller may then
    /// close its master); throws IOException saying why it could not.
    /// </summary>
    public static int Start(string binary, string dir, int masterFd, int containerPid)
    {
        var info = new System.Diagnostics.ProcessStartInfo(binary) { UseShellExecute = false, RedirectStandardOutput = true };
        foreach (var argument in (string[])[Argument, dir, Environment.ProcessId.ToString(CultureInfo.InvariantCulture),
            masterFd.ToString(CultureInfo.InvariantCulture), containerPid.ToString(CultureInfo.InvariantCulture)])
        {
            info.ArgumentList.Add(argument);
        }
        using var process = System.Diagnostics.Process.Start(info)
            ?? throw new IOException($"cannot start '{binary} {Argument}' for the container's stdin and terminal");
        var line = process.StandardOutput.ReadLineAsync();
        if (!line.Wait(TimeSpan.FromSeconds(10)) || line.Result != "ok")
        {
            if (!process.HasExited)
            {
                process.Kill();
            }
            process.WaitForExit();
            throw new IOException($"'{binary} {Argument}' could not take the container's stdin and terminal (exit {process.ExitCode}: "
                + (process.ExitCode switch
                {
                    3 => "the container's process is gone",
                    4 or 5 => "pidfd_getfd(2) refused; it needs Linux 5.6 and the right to trace orchd",
                    6 => "its FIFOs are missing",
                    _ => "see orchd's log",
                }) + ")");
        }
        ProcessStat.WritePidFile(Path.Combine(dir, PidFile), process.Id);
        return process.Id;
    }

    /// <summary>The holder at work for <paramref name="dir"/>, or null.</summary>
    public static int? Running(string dir) => ProcessStat.ReadPidFile(Path.Combine(dir, PidFile));

    /// <summary>
    /// Ends the holder of <paramref name="dir"/>, if one runs (the container was removed, or starts
    /// again): a holder whose container has exited is given a second to pass on its last output.
    /// </summary>
    public static void Stop(string dir)
    {
        for (var waited = 0; Running(dir) is { } pid; waited++)
        {
            if (waited == 10)
            {
                Libc.kill(pid, 9);
                break;
            }
            Thread.Sleep(100);
        }
        File.Delete(Path.Combine(dir, PidFile));
    }
}

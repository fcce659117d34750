using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Orchestrator.Linux;
using Orchestrator.Runtime.Spawn;
using Orchestrator.Runtime.Spec;
using static Orchestrator.Linux.Libc;

namespace Orchestrator.Runtime;

/// <summary>
/// OCI hooks that run in the runtime's namespace: prestart and createRuntime (the container
/// exists, before pivot_root), poststart (after start) and poststop (after delete). Each gets
/// the container's state JSON on stdin.
/// </summary>
internal static class Hooks
{
    /// <summary>
    /// Runs the hooks in order (config.md#posix-platform-hooks: "Hooks MUST be called in the
    /// listed order"). Creation hooks: the first that fails or times out throws, which aborts the
    /// container. With <paramref name="warnOnly"/> (poststart, poststop: runtime.md#lifecycle
    /// "the runtime MUST log a warning, but the remaining hooks and lifecycle continue as if the
    /// hook had succeeded") each failure is a warning on stderr and the next hook still runs.
    /// </summary>
    public static void Run(string phase, IReadOnlyList<HookSpec>? hooks, ContainerStateSpec state, bool warnOnly = false)
    {
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(state, SpecJsonContext.Default.ContainerStateSpec));
        foreach (var hook in hooks ?? [])
        {
            try
            {
                RunOne(phase, hook, json);
            }
            catch (InvalidOperationException e) when (warnOnly)
            {
                Console.Error.WriteLine($"warning: {e.Message}");
            }
        }
    }

    /// <summary>
    /// One hook: `path` is executed with `args` as its argv exactly (args[0] is argv[0], as execv
    /// takes it; docker's network hook relies on that), `env` as its environment when given.
    /// Process.Start cannot do that (it makes argv[0] the path), so the C shim posix_spawns it.
    /// </summary>
    private static unsafe void RunOne(string phase, HookSpec hook, byte[] state)
    {
        using var arena = new NativeArena();
        var argv = arena.Strings(hook.Args is { Count: > 0 } args ? args : [hook.Path]);
        var envp = hook.Env is null ? null : arena.Strings(hook.Env);
        var stdin = stackalloc int[2];
        var output = stackalloc int[2];
        if (pipe2(stdin, O_CLOEXEC) != 0)
        {
            throw LinuxException.FromLastError("pipe2");
        }
        if (pipe2(output, O_CLOEXEC) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            close(stdin[0]);
            close(stdin[1]);
            throw new LinuxException("pipe2", "", errno);
        }
        var pid = NativeSpawn.SpawnHook(hook.Path, argv, envp, stdin[0], output[1]);
        var spawnErrno = Marshal.GetLastPInvokeError();
        close(stdin[0]);
        close(output[1]);
        using var outputStream = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(output[0], ownsHandle: true), FileAccess.Read, 1);
        if (pid < 0)
        {
            close(stdin[1]);
            throw new InvalidOperationException($"hooks.{phase}: '{hook.Path}' could not run: {Errno.Describe(spawnErrno)}");
        }
        var pidfd = NativeSpawn.PidfdOpen(pid);
        using var process = new SpawnedProcess(pid, pidfd);
        var captured = Task.Run(() =>
        {
            using var reader = new StreamReader(outputStream);
            return reader.ReadToEnd();
        });
        fixed (byte* bytes = state)
        {
            // A hook need not read its stdin (it may have exited already: EPIPE, as .NET ignores SIGPIPE).
            for (var written = 0; written < state.Length;)
            {
                var n = write(stdin[1], bytes + written, (nuint)(state.Length - written));
                if (n <= 0)
                {
                    break;
                }
                written += (int)n;
            }
        }
        close(stdin[1]);
        var timeout = TimeSpan.FromSeconds(hook.Timeout is > 0 ? hook.Timeout.Value : 60);
        if (!WaitForExit(pidfd, timeout))
        {
            kill(pid, 9);
            process.WaitForExit();
            throw new InvalidOperationException($"hooks.{phase}: '{hook.Path}' did not finish within {timeout.TotalSeconds:0} s (its timeout)");
        }
        var status = process.WaitForExit();
        if (status != 0)
        {
            // The output is only wanted for the error (a daemon the hook left may hold the pipe: do not wait long).
            var text = captured.Wait(TimeSpan.FromSeconds(2)) ? captured.Result.Trim() : "";
            throw new InvalidOperationException($"hooks.{phase}: '{hook.Path}' exited with {status}: {text}");
        }
    }

    /// <summary>Waits until the process behind <paramref name="pidfd"/> exits (it becomes readable) or the time is up.</summary>
    private static unsafe bool WaitForExit(int pidfd, TimeSpan timeout)
    {
        var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        var fds = new pollfd { fd = pidfd, events = POLLIN };
        while (true)
        {
            var left = (int)Math.Max(0, deadline - Environment.TickCount64);
            var n = poll(&fds, 1, left);
            if (n > 0)
            {
                return true;
            }
            if (n == 0)
            {
                return false;
            }
            if (Marshal.GetLastPInvokeError() != Errno.EINTR)
            {
                return true; // let waitid report what is wrong
            }
        }
    }
}

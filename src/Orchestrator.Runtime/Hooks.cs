using System.Diagnostics;
using System.Text.Json;
using Orchestrator.Runtime.Spec;

namespace Orchestrator.Runtime;

/// <summary>
/// OCI hooks that run in the runtime's namespace: prestart and createRuntime (the container
/// exists, before pivot_root), poststart (after start) and poststop (after delete). Each gets
/// the container's state JSON on stdin.
/// </summary>
internal static class Hooks
{
    /// <summary>Runs the hooks in order; the first that fails or times out throws (creation hooks abort the container).</summary>
    public static void Run(string phase, IReadOnlyList<HookSpec>? hooks, ContainerStateSpec state)
    {
        foreach (var hook in hooks ?? [])
        {
            var psi = new ProcessStartInfo(hook.Path)
            {
                RedirectStandardInput = true,
                RedirectStandardError = true,
                RedirectStandardOutput = true,
                UseShellExecute = false,
            };
            // args[0] is the hook's argv[0], as execve takes it.
            foreach (var arg in (hook.Args ?? []).Skip(1))
            {
                psi.ArgumentList.Add(arg);
            }
            if (hook.Env is not null)
            {
                psi.Environment.Clear();
                foreach (var entry in hook.Env)
                {
                    var eq = entry.IndexOf('=', StringComparison.Ordinal);
                    if (eq > 0)
                    {
                        psi.Environment[entry[..eq]] = entry[(eq + 1)..];
                    }
                }
            }
            using var process = Process.Start(psi) ?? throw new InvalidOperationException($"hooks.{phase}: '{hook.Path}' did not start");
            var stderr = process.StandardError.ReadToEndAsync();
            var stdout = process.StandardOutput.ReadToEndAsync();
            try
            {
                process.StandardInput.Write(JsonSerializer.Serialize(state, SpecJsonContext.Default.ContainerStateSpec));
                process.StandardInput.Close();
            }
            catch (IOException)
            {
                // A hook need not read its stdin (it may even have exited already): its exit status decides.
            }
            var timeout = TimeSpan.FromSeconds(hook.Timeout is > 0 ? hook.Timeout.Value : 60);
            if (!process.WaitForExit(timeout))
            {
                process.Kill();
                throw new InvalidOperationException($"hooks.{phase}: '{hook.Path}' did not finish within {timeout.TotalSeconds:0} s (its timeout)");
            }
            if (process.ExitCode != 0)
            {
                throw new InvalidOperationException($"hooks.{phase}: '{hook.Path}' exited with {process.ExitCode}: {stderr.Result.Trim()}");
            }
            _ = stdout.Result;
        }
    }
}

using System.Diagnostics;

namespace Orchestrator.Testing;

/// <summary>What a client command returned.</summary>
public readonly record struct CliResult(int Code, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {Code}\nstdout: {Stdout}\nstderr: {Stderr}";
}

/// <summary>
/// A docker-compatible client (Debian's docker or podman) on private state, driving a named
/// OCI runtime: "orch" (orch-runc from ORCH_BIN_DIR) or "runc" (Debian's, the reference).
/// </summary>
public interface IContainerEngine : IAsyncDisposable
{
    string Name { get; }

    /// <summary>The busybox image the engine holds (imported at start, never pulled).</summary>
    string Image { get; }

    /// <summary>The cgroup path containers are created under (a private one, removed at dispose).</summary>
    string CgroupParent { get; }

    /// <summary>True when `inspect` reports .State.OOMKilled (podman 4.3 with conmon 2.1.6 on cgroup v1 does not, with runc either).</summary>
    bool ReportsOomKilled { get; }

    /// <summary>
    /// Runs the client. For `run` and `create`, <paramref name="runtime"/> selects the OCI runtime
    /// and the engine adds the flags its sandbox needs; other commands act on containers, which
    /// remember their runtime.
    /// </summary>
    Task<CliResult> Cli(string runtime, params string[] args);

    /// <summary>The same command line as one shell string (for script(1), which gives it a tty).</summary>
    string CommandLine(string runtime, params string[] args);
}

/// <summary>Helpers the engines share: running a client with a timeout, private cgroups, leftover mounts.</summary>
public static class EngineSupport
{
    public static async Task<CliResult> RunAsync(string program, IEnumerable<string> args, TimeSpan timeout)
    {
        var process = DaemonProcess.Start(program, args);
        try
        {
            var code = await process.WaitForExitAsync(timeout);
            return new CliResult(code, string.Join("\n", process.Stdout), string.Join("\n", process.Stderr));
        }
        finally
        {
            await process.DisposeAsync();
        }
    }

    public static string Quote(string arg)
        => arg.Length > 0 && arg.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or '/' or ':' or '=' or ',' or '@')
            ? arg
            : "'" + arg.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    /// <summary>Removes a cgroup subtree (empty by now) from every v1 hierarchy and the unified one, deepest first.</summary>
    public static void RemoveCgroupTree(string relative)
    {
        var roots = new List<string> { "/sys/fs/cgroup" };
        roots.AddRange(Directory.Exists("/sys/fs/cgroup") ? Directory.GetDirectories("/sys/fs/cgroup") : []);
        foreach (var root in roots)
        {
            var top = Path.Join(root, relative);
            if (!Directory.Exists(top) || new FileInfo(root).LinkTarget is not null)
            {
                continue;
            }
            foreach (var dir in Directory.GetDirectories(top, "*", SearchOption.AllDirectories).OrderByDescending(d => d.Length).Append(top))
            {
                try
                {
                    Directory.Delete(dir); // rmdir: a cgroup's files are not real files
                }
                catch (IOException)
                {
                }
                catch (UnauthorizedAccessException)
                {
                }
            }
        }
    }

    /// <summary>Lazily unmounts everything mounted under <paramref name="dir"/> (netns binds, overlay snapshots), deepest first.</summary>
    public static async Task UnmountUnder(string dir)
    {
        foreach (var line in File.ReadAllLines("/proc/self/mountinfo").Reverse())
        {
            var mountPoint = line.Split(' ')[4];
            if (mountPoint.StartsWith(dir + "/", StringComparison.Ordinal))
            {
                using var umount = Process.Start("umount", ["-l", mountPoint]);
                await umount!.WaitForExitAsync();
            }
        }
    }
}

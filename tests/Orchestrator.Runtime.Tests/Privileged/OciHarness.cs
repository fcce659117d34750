using System.Text.Json.Nodes;

namespace Orchestrator.Runtime.Tests.Privileged;

/// <summary>
/// What the OCI conformance classes share: the published orch-runc on a private state root, and
/// runc (Debian's, /usr/sbin/runc) on another, to run the same bundle through both where the
/// spec leaves a choice and runc's behaviour is the reference. Everything a test starts is
/// deleted when the class instance is disposed.
/// </summary>
public abstract class OciHarness : IDisposable
{
    protected static readonly TimeSpan Wait = TimeSpan.FromSeconds(60);
    private readonly TempDir _state = new("orch-oci-root");
    private readonly TempDir _runcState = new("runc-oci-root");

    protected OciHarness() => Requires.Root();

    protected string StateRoot => _state.Path;

    public void Dispose()
    {
        foreach (var (binary, root) in new[] { (Repo.Binary("orch-runc"), _state.Path), ("/usr/sbin/runc", _runcState.Path) })
        {
            foreach (var dir in Directory.Exists(root) && File.Exists(binary) ? Directory.GetDirectories(root) : [])
            {
                using var delete = System.Diagnostics.Process.Start(binary, ["--root", root, "delete", "--force", Path.GetFileName(dir)]);
                delete.WaitForExit(10_000);
            }
        }
        _state.Dispose();
        _runcState.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>orch-runc with this class's state root.</summary>
    protected Task<(int Code, string Stdout, string Stderr)> Runc(params string[] args) => Run(Repo.Binary("orch-runc"), _state.Path, args);

    /// <summary>runc 1.1 (Debian) on the same kind of bundle: the reference outcome.</summary>
    protected Task<(int Code, string Stdout, string Stderr)> ReferenceRunc(params string[] args)
        => Run(Requires.Program("runc", "runc"), _runcState.Path, args);

    private static async Task<(int Code, string Stdout, string Stderr)> Run(string binary, string root, string[] args)
    {
        var process = DaemonProcess.Start(binary, ["--root", root, .. args]);
        // create leaves the container holding the runtime's stdout: do not wait for EOF.
        var detached = args[0] == "create" || (args[0] == "run" && args.Contains("-d"));
        var code = await process.WaitForExitAsync(Wait, drainOutput: !detached);
        var result = (code, string.Join("\n", process.Stdout), string.Join("\n", process.Stderr));
        await process.DisposeAsync();
        return result;
    }

    protected static OciBundle Shell(string script) => OciBundle.CreateBusybox("sh", "-c", script);

    protected async Task<string> RunOk(OciBundle bundle, string id = "t")
    {
        var (code, stdout, stderr) = await Runc("run", "--bundle", bundle.Path, id);
        Assert.True(code == 0, $"exit {code}\nstdout: {stdout}\nstderr: {stderr}");
        return stdout;
    }

    protected async Task<string> RunFails(OciBundle bundle, string id = "t")
    {
        var (code, stdout, stderr) = await Runc("run", "--bundle", bundle.Path, id);
        Assert.True(code != 0, $"expected a failure, got exit 0\nstdout: {stdout}\nstderr: {stderr}");
        Assert.Empty(Directory.GetDirectories(_state.Path)); // runtime.md#errors: as if never attempted
        return stderr;
    }

    /// <summary>/proc/self/status lines of the given keys, as key → value.</summary>
    protected static Dictionary<string, string> StatusFields(string output)
        => output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.Contains(':', StringComparison.Ordinal))
            .Select(l => l.Split(':', 2)).ToDictionary(p => p[0].Trim(), p => p[1].Trim());

    /// <summary>Waits for a file a detached container writes.</summary>
    protected static async Task<string> WaitForFile(string path)
    {
        for (var i = 0; i < 300; i++)
        {
            if (File.Exists(path) && new FileInfo(path).Length > 0)
            {
                await Task.Delay(50); // the writer may still be writing
                return (await File.ReadAllTextAsync(path)).Trim();
            }
            await Task.Delay(50);
        }
        throw new TimeoutException($"'{path}' never appeared");
    }

    protected static JsonArray Namespaces(params string[] types) => new([.. types.Select(t => (JsonNode)new JsonObject { ["type"] = t })]);

    protected static string HostNs(string name) => new FileInfo($"/proc/self/ns/{name}").LinkTarget!;
}

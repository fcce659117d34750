using System.Diagnostics;

namespace Orchestrator.Daemon.Tests;

/// <summary>
/// orchctl's standard output shared with others, as shells share it: a redirect that other
/// commands write to before and after, and two orchctl appending to one file. Every byte lands,
/// in order (orchctl used to pwrite at its own offset 0 through a FileStream and overwrite).
/// </summary>
public sealed class OrchctlOutputTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orchctl-out-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static async Task ShAsync(string script)
    {
        var psi = new ProcessStartInfo("/bin/sh", ["-c", script]) { UseShellExecute = false, RedirectStandardError = true };
        psi.Environment["ORCHCTL"] = Repo.Binary("orchctl");
        psi.Environment["ORCH_CONFIG"] = "/nonexistent/orchctl-config.yaml";
        using var sh = Process.Start(psi)!;
        var err = await sh.StandardError.ReadToEndAsync();
        await sh.WaitForExitAsync();
        Assert.True(sh.ExitCode == 0, $"sh -c '{script}' exited {sh.ExitCode}: {err}");
    }

    private static async Task<string> VersionTextAsync()
    {
        var result = await Orchctl.RunAsync("help", "version");
        Assert.Equal(0, result.Code);
        Assert.NotEmpty(result.Out);
        return result.Out;
    }

    [Fact(Timeout = 60_000)]
    public async Task Output_redirected_between_other_commands_keeps_every_byte_in_order()
    {
        var version = await VersionTextAsync();
        var file = Path.Combine(_dir, "f");
        await ShAsync($"(echo before; \"$ORCHCTL\" help version; echo after) > '{file}'");
        Assert.Equal("before\n" + version + "after\n", await File.ReadAllTextAsync(file));
    }

    [Fact(Timeout = 60_000)]
    public async Task Two_orchctl_appending_to_one_file_keep_both_outputs()
    {
        var version = await VersionTextAsync();
        var file = Path.Combine(_dir, "f");
        await ShAsync($"echo first > '{file}'; \"$ORCHCTL\" help version >> '{file}'; \"$ORCHCTL\" help version >> '{file}'");
        Assert.Equal("first\n" + version + version, await File.ReadAllTextAsync(file));
    }
}

using System.Diagnostics;
using Orchestrator.Runtime.Cgroups;

namespace Orchestrator.Runtime.Tests.Privileged;

/// <summary>
/// The v2 driver on a real cgroup2 filesystem. This machine runs v1 controllers, so the
/// hierarchy has no controllers to enable: what is tested is what v2 always has, namely create,
/// attach, list, freeze/thaw (cgroup.freeze and cgroup.events), kill and remove.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(HostState.Collection)]
public sealed class CgroupV2MountTests : IDisposable
{
    private readonly TempDir _mount = new("cgroup2");

    public CgroupV2MountTests()
    {
        Requires.Root();
        Run("mount", "-t", "cgroup2", "none", _mount.Path);
    }

    public void Dispose()
    {
        Run("umount", _mount.Path);
        _mount.Dispose();
    }

    private static void Run(string program, params string[] args)
    {
        using var p = Process.Start(program, args);
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{program} {string.Join(' ', args)} failed");
    }

    [Fact(Timeout = 60_000)]
    public async Task Create_attach_freeze_thaw_and_remove_on_a_real_cgroup2_hierarchy()
    {
        var path = $"/orch-test-{Guid.NewGuid():N}/c1";
        var cgroup = CgroupFactory.Open(path, _mount.Path);
        Assert.Equal("CgroupV2", cgroup.GetType().Name);
        cgroup.Create(null);
        var dir = Path.Join(_mount.Path, path);
        Assert.True(File.Exists(Path.Combine(dir, "cgroup.procs")));

        using var sleeper = Process.Start("sleep", "60");
        cgroup.Attach(sleeper.Id);
        Assert.Equal([sleeper.Id], cgroup.Pids());
        Assert.Contains($"0::{path}", await File.ReadAllTextAsync($"/proc/{sleeper.Id}/cgroup"), StringComparison.Ordinal);

        cgroup.Freeze();
        await WaitFor(() => File.ReadAllText(Path.Combine(dir, "cgroup.events")).Contains("frozen 1", StringComparison.Ordinal));
        cgroup.Thaw();
        await WaitFor(() => File.ReadAllText(Path.Combine(dir, "cgroup.events")).Contains("frozen 0", StringComparison.Ordinal));

        sleeper.Kill();
        await sleeper.WaitForExitAsync();
        await WaitFor(() => cgroup.Pids().Count == 0);
        cgroup.Remove();
        Assert.False(Directory.Exists(dir));
        Directory.Delete(Path.GetDirectoryName(dir)!);
    }

    [Fact(Timeout = 120_000)]
    public async Task On_cgroup_v2_the_container_is_born_in_its_cgroup_by_clone3()
    {
        using var state = new TempDir("orch-runc-v2");
        using var bundle = OciBundle.CreateBusybox("sleep", "30");
        var env = new Dictionary<string, string?> { ["ORCH_CGROUP_ROOT"] = _mount.Path };
        var id = $"v2-{Guid.NewGuid():N}"[..11];
        async Task<int> Runc(params string[] args)
        {
            await using var p = DaemonProcess.Start(Repo.Binary("orch-runc"), ["--root", state.Path, .. args], env);
            var code = await p.WaitForExitAsync(TimeSpan.FromSeconds(60), drainOutput: args[0] != "create");
            Assert.True(code == 0, p.Output);
            return code;
        }
        await Runc("create", "--bundle", bundle.Path, id);
        try
        {
            var record = System.Text.Json.Nodes.JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(state.Path, id, "state.json")))!;
            Assert.True((bool)record["bornInCgroup"]!, "clone3(CLONE_INTO_CGROUP) placed the process; no move afterwards");
            var pid = (int)record["pid"]!;
            Assert.Contains($"0::/orchestrator/{id}\n", await File.ReadAllTextAsync($"/proc/{pid}/cgroup"), StringComparison.Ordinal);
            var cgroup = CgroupFactory.Open($"/orchestrator/{id}", _mount.Path);
            Assert.Equal([pid], cgroup.Pids());
        }
        finally
        {
            await Runc("delete", "--force", id);
        }
        Assert.False(Directory.Exists(Path.Join(_mount.Path, "orchestrator", id)));
    }

    private static async Task WaitFor(Func<bool> condition)
    {
        for (var i = 0; i < 200 && !condition(); i++)
        {
            await Task.Delay(10);
        }
        Assert.True(condition());
    }
}

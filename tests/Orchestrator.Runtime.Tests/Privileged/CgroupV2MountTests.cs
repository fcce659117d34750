using System.Diagnostics;
using Orchestrator.Runtime.Cgroups;

namespace Orchestrator.Runtime.Tests.Privileged;

/// <summary>
/// The v2 driver on a real cgroup2 filesystem. This machine runs v1 controllers, so the
/// hierarchy has no controllers to enable: what is tested is what v2 always has, namely create,
/// attach, list, freeze/thaw (cgroup.freeze and cgroup.events), kill and remove.
/// </summary>
[Trait("Category", "Privileged")]
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

    private static async Task WaitFor(Func<bool> condition)
    {
        for (var i = 0; i < 200 && !condition(); i++)
        {
            await Task.Delay(10);
        }
        Assert.True(condition());
    }
}

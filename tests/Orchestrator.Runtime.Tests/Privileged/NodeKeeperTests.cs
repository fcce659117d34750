using Orchestrator.Runtime.Cgroups;

namespace Orchestrator.Runtime.Tests.Privileged;

/// <summary>
/// A node's helper (the scope's holder, the fence keeper) started into <c>PARENT/.keeper</c> on this
/// host's real cgroup hierarchies (v1 here: every hierarchy gets the cgroup). The systemd-scope
/// path is SystemdScopeTests' (a test bus) and tests/systemd/nspawn-e2e.sh's (a real systemd).
/// </summary>
[Trait("Category", "Privileged")]
[Collection(HostState.Collection)]
public sealed class NodeKeeperTests
{
    [Fact]
    public void A_helper_starts_in_the_keeper_cgroup_of_its_node()
    {
        Requires.Root();
        var parent = "/orchestrator-test-" + Guid.NewGuid().ToString("N")[..8];
        var started = NodeCgroup.StartKeeper("/bin/sleep", ["60"], "0123456789abcdef", parent, stopIfUnplaced: true);
        var keeper = CgroupFactory.Open($"{parent}/{NodeCgroup.KeeperName}");
        try
        {
            Assert.Null(started.Problem);
            var process = Assert.IsType<System.Diagnostics.Process>(started.Process);
            Assert.False(process.HasExited);
            Assert.True(NodeCgroup.IsInKeeper(process.Id, parent));
            Assert.False(NodeCgroup.IsInKeeper(process.Id, parent + "-other"));
            Assert.Equal([process.Id], keeper.Pids());
        }
        finally
        {
            if (started.Process is { } process)
            {
                process.Kill();
                process.WaitForExit();
                process.Dispose();
            }
            keeper.Remove();
            CgroupFactory.Open(parent).Remove();
        }
    }
}

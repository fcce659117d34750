using Orchestrator.Node.StateStore;

namespace Orchestrator.Node.Tests;

public sealed class NodeStateTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void First_open_creates_private_dirs_and_an_id_that_later_opens_keep()
    {
        string id;
        using (var state = NodeState.Open(_dir.Combine("state"), _dir.Combine("run")))
        {
            Assert.True(state.FirstBoot);
            Assert.Matches("^[0-9a-f]{32}$", state.NodeId);
            id = state.NodeId;
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(state.StateDir));
            Assert.Empty(Directory.GetFiles(state.StateDir, ".probe-*"));
        }
        using var again = NodeState.Open(_dir.Combine("state"), _dir.Combine("run"));
        Assert.False(again.FirstBoot);
        Assert.Equal(id, again.NodeId);
    }

    [Fact]
    public void A_second_open_of_the_same_state_is_refused_naming_the_holder()
    {
        using var first = NodeState.Open(_dir.Combine("state"), _dir.Combine("run"));
        var error = Assert.Throws<NodeStateException>(() => NodeState.Open(_dir.Combine("state"), _dir.Combine("run2")));
        Assert.Equal($"state dir '{first.StateDir}' is in use by another orchd (pid {Environment.ProcessId}); stop it, or give this one its own --state-dir", error.Message);
    }

    [Fact]
    public void The_lock_is_released_on_dispose()
    {
        NodeState.Open(_dir.Combine("state"), _dir.Combine("run")).Dispose();
        using var reopened = NodeState.Open(_dir.Combine("state"), _dir.Combine("run"));
        Assert.NotNull(reopened);
    }

    [Fact]
    public void A_corrupt_node_id_is_an_error_with_the_fix()
    {
        Directory.CreateDirectory(_dir.Combine("state"));
        File.WriteAllText(_dir.Combine("state", "node-id"), "not-an-id\n");
        var error = Assert.Throws<NodeStateException>(() => NodeState.Open(_dir.Combine("state"), _dir.Combine("run")));
        Assert.Equal($"'{_dir.Combine("state", "node-id")}' does not hold a node id (32 hex digits); delete it to make a new identity", error.Message);
    }

    [Fact]
    public void A_state_dir_that_is_a_file_is_an_error_with_the_fix()
    {
        File.WriteAllText(_dir.Combine("state"), "");
        var error = Assert.Throws<NodeStateException>(() => NodeState.Open(_dir.Combine("state"), _dir.Combine("run")));
        Assert.Equal($"state dir '{_dir.Combine("state")}' is a file, not a directory; remove it or set --state-dir", error.Message);
    }

    [Fact]
    public void A_run_dir_below_a_file_is_an_error_naming_the_run_dir()
    {
        File.WriteAllText(_dir.Combine("file"), "");
        var error = Assert.Throws<NodeStateException>(() => NodeState.Open(_dir.Combine("state"), _dir.Combine("file", "run")));
        Assert.StartsWith($"run dir '{_dir.Combine("file", "run")}' is not writable: ", error.Message, StringComparison.Ordinal);
        Assert.EndsWith("or set --run-dir", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Atomic_write_replaces_content_and_leaves_no_temp_file()
    {
        var path = _dir.Combine("f");
        AtomicFile.WriteAllText(path, "one");
        AtomicFile.WriteAllText(path, "two");
        Assert.Equal("two", File.ReadAllText(path));
        Assert.Single(Directory.GetFiles(_dir.Path));
    }
}

using Orchestrator.Runtime.Rootfs;

namespace Orchestrator.Runtime.Tests;

public sealed class SecureJoinTests : IDisposable
{
    private readonly TempDir _root = new("rootfs");

    public void Dispose() => _root.Dispose();

    [Fact]
    public void Plain_paths_join()
        => Assert.Equal(_root.Combine("a", "b"), SecureJoin.Resolve(_root.Path, "/a/b"));

    [Fact]
    public void Dot_dot_never_climbs_above_the_root()
        => Assert.Equal(_root.Combine("etc"), SecureJoin.Resolve(_root.Path, "/../../../etc"));

    [Fact]
    public void Absolute_symlinks_resolve_inside_the_root()
    {
        File.CreateSymbolicLink(_root.Combine("proc"), "/host/etc");
        Assert.Equal(_root.Combine("host", "etc"), SecureJoin.Resolve(_root.Path, "/proc"));
    }

    [Fact]
    public void Relative_symlinks_with_dot_dot_stay_inside()
    {
        Directory.CreateDirectory(_root.Combine("a"));
        File.CreateSymbolicLink(_root.Combine("a", "up"), "../../../../tmp");
        Assert.Equal(_root.Combine("tmp", "x"), SecureJoin.Resolve(_root.Path, "/a/up/x"));
    }

    [Fact]
    public void Symlink_loops_are_an_error()
    {
        File.CreateSymbolicLink(_root.Combine("loop"), "/loop");
        Assert.Throws<IOException>(() => SecureJoin.Resolve(_root.Path, "/loop/x"));
    }
}

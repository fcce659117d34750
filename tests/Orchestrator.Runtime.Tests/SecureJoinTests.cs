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

    [Fact]
    public void Refusing_escapes_names_what_led_out_instead_of_rerooting()
    {
        Directory.CreateDirectory(_root.Combine("blobs"));
        File.WriteAllText(_root.Combine("blobs", "layer"), "x");
        File.CreateSymbolicLink(_root.Combine("layer.tar"), "blobs/layer"); // docker 25: inside, followed
        File.CreateSymbolicLink(_root.Combine("shadow"), "/etc/shadow");
        File.CreateSymbolicLink(_root.Combine("up"), "../outside");
        File.CreateSymbolicLink(_root.Combine("loop"), "loop");
        Assert.Equal(new Linux.PathWalk.Result(_root.Combine("blobs", "layer"), Linux.PathWalk.Outcome.None), Linux.PathWalk.Resolve(_root.Path, "layer.tar", refuseEscape: true, 40));
        Assert.Equal(new Linux.PathWalk.Result(null, Linux.PathWalk.Outcome.AbsoluteLink, "shadow", "/etc/shadow"), Linux.PathWalk.Resolve(_root.Path, "shadow", refuseEscape: true, 40));
        Assert.Equal(Linux.PathWalk.Outcome.AboveRoot, Linux.PathWalk.Resolve(_root.Path, "up", refuseEscape: true, 40).Outcome);
        Assert.Equal(Linux.PathWalk.Outcome.AboveRoot, Linux.PathWalk.Resolve(_root.Path, "../etc/passwd", refuseEscape: true, 40).Outcome);
        Assert.Equal(Linux.PathWalk.Outcome.TooManyLinks, Linux.PathWalk.Resolve(_root.Path, "loop", refuseEscape: true, 40).Outcome);
        // The same paths, not refused, stay under the root (chroot's reading).
        Assert.Equal(_root.Combine("etc", "shadow"), Linux.PathWalk.Resolve(_root.Path, "shadow", refuseEscape: false, 40).Path);
        Assert.Equal(_root.Combine("outside"), Linux.PathWalk.Resolve(_root.Path, "up", refuseEscape: false, 40).Path);
    }

    [Fact]
    public void The_host_root_resolves_a_host_path_through_its_symlinks()
    {
        // NodePolicy's reading of a hostPath: "/" as the root, so an allowed directory's symlink to / is seen for what it is.
        File.CreateSymbolicLink(_root.Combine("escape"), "/");
        Assert.Equal("/etc", Linux.PathWalk.Resolve("/", _root.Combine("escape", "etc"), refuseEscape: false, 40).Path);
        Assert.Equal(_root.Combine("missing", "x"), Linux.PathWalk.Resolve("/", _root.Combine("missing", "x"), refuseEscape: false, 40).Path);
    }
}

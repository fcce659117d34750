using Orchestrator.Daemon.Configuration;
using Orchestrator.Syntax;

namespace Orchestrator.Daemon.Tests;

/// <summary>The split orchd image and orchd release share: own flags, orchd's flags, positionals.</summary>
public sealed class SubcommandArgsTests
{
    private static readonly Dictionary<string, string?> s_flags = new(StringComparer.Ordinal) { ["--name"] = null, ["--insecure"] = "a registry host" };

    [Fact]
    public void Splits_own_flags_switches_daemon_flags_and_positionals_in_any_order()
    {
        var split = SubcommandArgs.Split(
            ["--state-dir", "/s", "import", "--insecure", "a:5000", "dir", "--nats-url=nats://127.0.0.1:1", "--nats", "--insecure", "b", "--name", "x", "--name", "y"],
            s_flags, ["--nats"]);
        Assert.False(split.Help);
        Assert.Equal(["import", "dir"], split.Positional);
        Assert.Equal(["--state-dir", "/s", "--nats-url=nats://127.0.0.1:1"], split.DaemonFlags);
        Assert.Equal(["a:5000", "b"], split.Values("--insecure"));
        Assert.Equal("y", split.Value("--name"));
        Assert.True(split.Has("--nats"));
        Assert.False(split.Has("--unpack"));
        Assert.Null(split.Value("--budget"));
        // orchd's flags parse as orchd's command line.
        Assert.Equal(2, CommandLine.Parse(split.DaemonFlags).Flags.Count);
    }

    [Fact]
    public void A_missing_value_says_what_it_should_be()
    {
        Assert.Equal("flag --insecure needs a registry host", Assert.Throws<UsageException>(() => SubcommandArgs.Split(["pull", "--insecure"], s_flags, [])).Message);
        Assert.Equal("flag --name needs a value", Assert.Throws<UsageException>(() => SubcommandArgs.Split(["import", "--name"], s_flags, [])).Message);
    }

    [Fact]
    public void Help_stops_the_split()
    {
        var split = SubcommandArgs.Split(["list", "--help", "--name"], s_flags, []);
        Assert.True(split.Help);
    }
}

using Orchestrator.Syntax;

namespace Orchestrator.Syntax.Tests;

/// <summary>The grammar orchd, its subcommands, orchctl and orch-runc share.</summary>
public sealed class ArgumentParserTests
{
    private static readonly FlagSet s_flags = new FlagSet()
        .Value("-o", "--output").ValueNamed("--name", "a name").Switch("-w", "--watch").Help("-h", "--help");

    [Fact]
    public void Reads_values_switches_aliases_repeats_and_positionals_in_any_order()
    {
        var parsed = ArgumentParser.Parse(["get", "-o", "yaml", "nodes", "--output=json", "-w", "--name", "a", "--name=b=c", "-"], s_flags);
        Assert.Equal(["get", "nodes", "-"], parsed.Positional);
        Assert.Equal("json", parsed.Value("--output"));
        Assert.Equal(["yaml", "json"], parsed.Values("--output"));
        Assert.Equal(["a", "b=c"], parsed.Values("--name"));
        Assert.True(parsed.Has("--watch"));
        Assert.False(parsed.Has("--help"));
        Assert.Null(parsed.AfterDashDash);
        Assert.Null(parsed.Value("--missing"));
    }

    [Fact]
    public void Short_switches_go_together_as_getopt_takes_them_and_only_the_last_may_take_a_value()
    {
        var flags = new FlagSet().Switch("-i", "--stdin").Switch("-t", "--tty").Value("-n", "--node");
        var parsed = ArgumentParser.Parse(["-it", "web-0", "-ti", "-tn", "gw-01", "--", "sh"], flags);
        Assert.True(parsed.Has("--stdin"));
        Assert.True(parsed.Has("--tty"));
        Assert.Equal("gw-01", parsed.Value("--node"));
        Assert.Equal(["web-0"], parsed.Positional);
        Assert.Equal(["sh"], parsed.AfterDashDash);
        // Not a group: a value flag inside it, a letter no flag has, a long flag, a negative number.
        Assert.Throws<UsageException>(() => ArgumentParser.Parse(["-nt", "gw-01"], flags));
        Assert.Throws<UsageException>(() => ArgumentParser.Parse(["-ix"], flags));
        Assert.Throws<UsageException>(() => ArgumentParser.Parse(["-tn"], flags));
        Assert.Equal(["-12"], ArgumentParser.Parse(["-12"], flags, new ParseRules { Unknown = UnknownFlagRule.Positional }).Positional);
    }

    [Fact]
    public void Nothing_after_dash_dash_is_a_flag()
    {
        var parsed = ArgumentParser.Parse(["web-0", "--", "sh", "-c", "--output"], s_flags);
        Assert.Equal(["web-0"], parsed.Positional);
        Assert.Equal(["sh", "-c", "--output"], parsed.AfterDashDash);
    }

    [Fact]
    public void Errors_use_the_tools_sentences()
    {
        Assert.Equal("unknown flag '--frob'", Assert.Throws<UsageException>(() => ArgumentParser.Parse(["--frob=1"], s_flags)).Message);
        Assert.Equal("flag --name needs a name", Assert.Throws<UsageException>(() => ArgumentParser.Parse(["--name"], s_flags)).Message);
        var rules = new ParseRules { UnknownFlagMessage = n => $"get has no flag {n}", MissingValueMessage = (n, f) => $"{n} needs a value: {n} {f.ValueName}" };
        Assert.Equal("get has no flag -x", Assert.Throws<UsageException>(() => ArgumentParser.Parse(["-x"], s_flags, rules)).Message);
        Assert.Equal("-o needs a value: -o ", Assert.Throws<UsageException>(() => ArgumentParser.Parse(["-o"], s_flags, rules)).Message);
    }

    [Fact]
    public void Unknown_flags_can_stay_in_place_for_a_second_parse()
    {
        var parsed = ArgumentParser.Parse(["logs", "--tail", "5", "-w", "web"], s_flags, new ParseRules { Unknown = UnknownFlagRule.Positional });
        Assert.Equal(["logs", "--tail", "5", "web"], parsed.Positional);
        Assert.True(parsed.Has("--watch"));
    }

    [Fact]
    public void Unknown_double_dash_flags_can_be_collected_with_their_values()
    {
        var parsed = ArgumentParser.Parse(["--state-dir", "/s", "pull", "--nats-url=nats://x", "-q", "ref"], s_flags, new ParseRules { Unknown = UnknownFlagRule.Collect });
        Assert.Equal(["--state-dir", "/s", "--nats-url=nats://x"], parsed.Unknown);
        Assert.Equal(["pull", "-q", "ref"], parsed.Positional);
    }

    [Fact]
    public void Flags_can_end_at_the_first_positional_as_in_runc()
    {
        var parsed = ArgumentParser.Parse(["-w", "id", "sh", "-c", "--", "-o"], s_flags, new ParseRules { FlagsEndAtFirstPositional = true });
        Assert.Equal(["id", "sh", "-c", "--", "-o"], parsed.Positional);
        Assert.True(parsed.Has("--watch"));
        Assert.Null(parsed.AfterDashDash);
    }

    [Fact]
    public void Help_ends_the_parse()
    {
        var parsed = ArgumentParser.Parse(["list", "--help", "--name"], s_flags);
        Assert.True(parsed.Ended);
        Assert.True(parsed.Has("--help"));
    }
}

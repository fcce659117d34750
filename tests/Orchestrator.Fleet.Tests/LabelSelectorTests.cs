using Orchestrator.Api.Workloads;
using Xunit;

namespace Orchestrator.Fleet.Tests;

/// <summary>orchctl's -l in Kubernetes' grammar: what kubectl users type matches what it says, and the rest is refused.</summary>
public sealed class LabelSelectorTests
{
    private static readonly Dictionary<string, string> s_web = new(StringComparer.Ordinal) { ["app"] = "web", ["tier"] = "front", ["example.com/site"] = "lab-1" };
    private static readonly Dictionary<string, string> s_db = new(StringComparer.Ordinal) { ["app"] = "db" };

    [Theory]
    [InlineData("app=web", true, false)]
    [InlineData("app==web", true, false)]
    [InlineData("app = web", true, false)]
    [InlineData("app!=web", false, true)]
    [InlineData("tier!=front", false, true)] // absent counts as not equal, as in Kubernetes
    [InlineData("tier", true, false)]
    [InlineData("!tier", false, true)]
    [InlineData("app in (web)", true, false)]
    [InlineData("app in (web, db)", true, true)]
    [InlineData("app in (hello)", false, false)]
    [InlineData("app notin (web)", false, true)]
    [InlineData("tier notin (back)", true, true)] // absent is not in
    [InlineData("app in (web,db),tier", true, false)]
    [InlineData("app in (web,db), !tier", false, true)]
    [InlineData("example.com/site=lab-1", true, false)]
    [InlineData("app=web,tier=back", false, false)]
    public void Requirements_hold_as_in_kubernetes(string selector, bool web, bool db)
    {
        var parsed = LabelSelector.Parse(selector);
        Assert.Equal(web, parsed.Matches(s_web));
        Assert.Equal(db, parsed.Matches(s_db));
    }

    [Theory]
    [InlineData("app in (hello")]
    [InlineData("app in hello")]
    [InlineData("app in ()")]
    [InlineData("app in (a,,b)")]
    [InlineData("app exists")]
    [InlineData("app=we b")]
    [InlineData("=web")]
    [InlineData("app=web,")]
    [InlineData(",")]
    [InlineData("")]
    [InlineData("!")]
    [InlineData("app>1")]
    [InlineData("-app=web")]
    public void Anything_else_is_refused_naming_the_grammar(string selector)
    {
        var e = Assert.Throws<FormatException>(() => LabelSelector.Parse(selector));
        Assert.Contains("key in (a,b)", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void No_labels_match_only_requirements_of_absence()
    {
        Assert.True(LabelSelector.Parse("!app,tier notin (x),app!=web").Matches(null));
        Assert.False(LabelSelector.Parse("app").Matches(null));
        Assert.False(LabelSelector.Parse("app in (web)").Matches(new Dictionary<string, string>()));
    }
}

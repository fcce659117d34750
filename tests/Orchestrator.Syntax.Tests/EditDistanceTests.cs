using Orchestrator.Syntax;

namespace Orchestrator.Syntax.Tests;

public sealed class EditDistanceTests
{
    [Theory]
    [InlineData("", "", 0)]
    [InlineData("abc", "", 3)]
    [InlineData("labels", "labels", 0)]
    [InlineData("lables", "labels", 1)] // a swap of neighbours is one edit
    [InlineData("sever", "server", 1)]
    [InlineData("kitten", "sitting", 3)]
    public void Counts_edits(string a, string b, int expected)
    {
        Assert.Equal(expected, EditDistance.Between(a, b));
        Assert.Equal(expected, EditDistance.Between(b, a));
    }

    [Fact]
    public void Closest_takes_the_first_of_the_nearest_within_the_limit()
    {
        Assert.Equal("--node-name", EditDistance.Closest("--nod-name", ["--nats-url", "--node-name", "--node-names"], 2));
        Assert.Equal("get", EditDistance.Closest("gett", ["get", "set"], 1));
        Assert.Null(EditDistance.Closest("frobnicate", ["--node-name"], 3));
        Assert.Null(EditDistance.Closest("x", [], 3));
    }
}

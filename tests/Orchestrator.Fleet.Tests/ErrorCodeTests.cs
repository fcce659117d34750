using System.Text.Json;
using Orchestrator.Fleet.Agent;

namespace Orchestrator.Fleet.Tests;

/// <summary>Errors carry a kind end to end: the node's reply has a code, the client reads it back, each CLI maps it once.</summary>
public sealed class ErrorCodeTests
{
    /// <summary>The error reply as a client from before codes declared it: unknown fields are ignored.</summary>
    private sealed record OldErrorReply
    {
        public int SchemaVersion { get; init; }
        public string Error { get; init; } = "";
    }

    private static readonly JsonSerializerOptions OldClient = new(JsonSerializerDefaults.Web) { TypeInfoResolver = new System.Text.Json.Serialization.Metadata.DefaultJsonTypeInfoResolver() };

    private static JsonElement Reply(byte[] bytes) => JsonDocument.Parse(bytes).RootElement;

    [Theory]
    [InlineData(ErrorKind.NotFound, "not-found")]
    [InlineData(ErrorKind.Invalid, "invalid")]
    [InlineData(ErrorKind.Conflict, "conflict")]
    [InlineData(ErrorKind.Unavailable, "unavailable")]
    [InlineData(ErrorKind.Forbidden, "forbidden")]
    [InlineData(ErrorKind.Internal, "internal")]
    public void Each_kind_has_one_wire_code_and_reads_back(ErrorKind kind, string code)
    {
        var json = JsonSerializer.Serialize(new ErrorReply { Error = "x", Code = kind }, FleetJsonContext.Default.ErrorReply);
        Assert.Equal($$"""{"schemaVersion":1,"error":"x","code":"{{code}}"}""", json);
        Assert.Equal(kind, JsonSerializer.Deserialize(json, FleetJsonContext.Default.ErrorReply)!.Code);
        Assert.Equal(kind, ErrorKinds.Parse(code));
    }

    [Fact]
    public void A_code_from_a_newer_node_reads_as_internal_and_an_older_node_sends_none()
    {
        var newer = JsonSerializer.Deserialize("""{"schemaVersion":1,"error":"x","code":"rate-limited"}""", FleetJsonContext.Default.ErrorReply)!;
        Assert.Equal(ErrorKind.Internal, newer.Code);
        var older = JsonSerializer.Deserialize("""{"schemaVersion":1,"error":"x"}""", FleetJsonContext.Default.ErrorReply)!;
        Assert.Null(older.Code);
    }

    [Fact]
    public void A_client_from_before_codes_reads_the_new_reply()
    {
        var bytes = NodeApiResponder.Error("no container 'ghost' on this node; `ps` lists the ones there are", ErrorKind.NotFound);
        var old = JsonSerializer.Deserialize<OldErrorReply>(bytes, OldClient)!;
        Assert.Equal("no container 'ghost' on this node; `ps` lists the ones there are", old.Error);
        Assert.Equal(1, old.SchemaVersion);
    }

    [Fact]
    public async Task The_node_API_answers_with_the_kind_of_what_went_wrong()
    {
        var api = new NodeApiResponder(null!); // neither request reaches the supervisor
        var unknown = Reply(await api.HandleAsync("frobnicate", [], CancellationToken.None));
        Assert.Equal("not-found", unknown.GetProperty("code").GetString());
        Assert.StartsWith("'frobnicate' is not a node operation", unknown.GetProperty("error").GetString(), StringComparison.Ordinal);

        var badName = Reply(await api.HandleAsync(NodeOps.Stop, """{"name": "no such/name"}"""u8.ToArray(), CancellationToken.None));
        Assert.Equal("invalid", badName.GetProperty("code").GetString());
        Assert.Contains("is not a container name", badName.GetProperty("error").GetString(), StringComparison.Ordinal);

        var notJson = Reply(await api.HandleAsync(NodeOps.Stop, "{"u8.ToArray(), CancellationToken.None));
        Assert.Equal("invalid", notJson.GetProperty("code").GetString());
    }

    [Fact]
    public void Request_errors_are_the_classified_ones_and_internal_failures_are_not()
    {
        Assert.True(NodeApiResponder.IsRequestError(new Orchestrator.Node.Reconcile.NodeApiException(ErrorKind.NotFound, "no container 'x'")));
        Assert.True(NodeApiResponder.IsRequestError(new Orchestrator.Images.Store.ImageException("bad image")));
        Assert.True(NodeApiResponder.IsRequestError(new Orchestrator.Linux.LinuxException("open", "/x", 2)));
        Assert.False(NodeApiResponder.IsRequestError(new Orchestrator.Runtime.Cgroups.CgroupException("cgroup write failed")));
        Assert.False(NodeApiResponder.IsRequestError(new FormatException()));
        Assert.Equal(ErrorKind.Conflict, NodeApiResponder.KindOf(new InvalidOperationException("not running")));
        Assert.Equal(ErrorKind.Internal, NodeApiResponder.KindOf(new FormatException()));
    }

    [Fact]
    public void Errno_and_grpc_status_have_kinds()
    {
        Assert.Equal(ErrorKind.NotFound, new Orchestrator.Linux.LinuxException("open", "/x", 2).Kind);
        Assert.Equal(ErrorKind.Forbidden, new Orchestrator.Linux.LinuxException("open", "/x", 13).Kind);
        Assert.Equal(ErrorKind.Unavailable, new Orchestrator.Linux.LinuxException("write", "/x", 28).Kind);
        Assert.Equal(ErrorKind.Unavailable, new Orchestrator.Containerd.ContainerdException("down", Grpc.Core.StatusCode.Unavailable).Kind);
        Assert.Equal(ErrorKind.NotFound, new Orchestrator.Containerd.ContainerdException("gone", Grpc.Core.StatusCode.NotFound).Kind);
        Assert.Null(ErrorKinds.Of(new IOException("plain")));
    }

    [Fact]
    public void Each_command_maps_a_kind_to_its_documented_exit_code_once()
    {
        Assert.Equal(3, ExitCodes.ForOrchctl(ErrorKind.Unavailable));
        foreach (var kind in new[] { ErrorKind.NotFound, ErrorKind.Invalid, ErrorKind.Conflict, ErrorKind.Forbidden, ErrorKind.Internal })
        {
            Assert.Equal(1, ExitCodes.ForOrchctl(kind));
            Assert.Equal(78, ExitCodes.ForOrchdStartup(kind));
        }
        Assert.Equal(1, ExitCodes.ForOrchdStartup(ErrorKind.Unavailable));
        Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Error, Orchestrator.Node.ErrorLevels.Of(new FormatException()));
        Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Information, Orchestrator.Node.ErrorLevels.Of(ErrorKind.NotFound));
        Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Warning, Orchestrator.Node.ErrorLevels.Of(ErrorKind.Unavailable));
    }

    [Fact]
    public void Every_error_type_of_the_project_has_a_kind()
    {
        var assemblies = new[]
        {
            typeof(ErrorKind).Assembly, typeof(FleetClient).Assembly, typeof(Orchestrator.Linux.LinuxException).Assembly,
            typeof(Orchestrator.Runtime.Cgroups.CgroupException).Assembly, typeof(Orchestrator.Images.Store.ImageException).Assembly,
            typeof(Orchestrator.Containerd.ContainerdException).Assembly, typeof(Orchestrator.Node.ErrorLevels).Assembly, typeof(NodeApiResponder).Assembly,
        };
        var unkinded = assemblies.SelectMany(a => a.GetTypes())
            .Where(t => typeof(Exception).IsAssignableFrom(t) && !typeof(IKindedError).IsAssignableFrom(t))
            .Where(t => !t.Name.StartsWith("Usage", StringComparison.Ordinal)) // a command line's own usage error: exit 2 (orch-runc: 1), no kind
            .Select(t => t.FullName).ToList();
        Assert.Empty(unkinded);
    }
}

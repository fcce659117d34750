using System.Text;
using Orchestrator.Fleet.Agent;
using Orchestrator.Api;
using Orchestrator.Node.Reconcile;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Fleet.Tests;

/// <summary>
/// Seeded fuzzing of the node API's request parsing (what anyone who reaches NATS can send a
/// node): every mutant parses, or gets one NodeApiException; anything else would be an
/// "internal error" reply or a crash, and is a bug reported with its seed.
/// </summary>
public sealed class RequestFuzzTests
{
    private static readonly string[] s_jsonTokens =
    [
        "{", "}", "[", "]", ",", ":", "\"", "null", "true", "false", "-0", "1e309", "1.5", "\\u0000", "\\ud800", "\"name\":", "\"image\":", "\"env\":{",
        "\"volumes\":[{\"hostPath\":\"/\",\"target\":\"/h\"}]", "\"ports\":[{\"containerPort\":-1}]", "\"restart\":{\"policy\":null}", "\"probes\":{\"liveness\":{}}",
        "\"command\":[null]", "\"resources\":{\"memory\":\"1e99Gi\"}", "/*", "//", "\ufeff", "\"timeoutSeconds\":1e308",
    ];

    private static readonly byte[][] s_corpus =
    [
        Encoding.UTF8.GetBytes("""{"name":"web","image":"busybox:latest","command":["sh","-c","echo hi"],"env":{"A":"1"},"ports":[{"containerPort":80,"hostPort":8080}],"volumes":[{"name":"data","target":"/data"}],"resources":{"cpu":"0.5","memory":"64Mi","pids":64},"restart":{"policy":"on-failure","maxRetries":3},"probes":{"readiness":{"httpGet":{"path":"/","port":80}}}}"""),
        Encoding.UTF8.GetBytes("""{"name":"web"}"""),
        Encoding.UTF8.GetBytes("""{"name":"web","command":["ls","-l"],"timeoutSeconds":5}"""),
        Encoding.UTF8.GetBytes("""{"name":"web","tail":100,"since":"2026-01-01T00:00:00Z"}"""),
    ];

    [Fact]
    public void Node_api_requests()
        => Orchestrator.Testing.Mutator.Run("node-api-json", s_corpus, s_jsonTokens, Orchestrator.Testing.Mutator.Iterations(5000), input =>
        {
            var workload = NodeApiResponder.Parse(input, WorkloadJsonContext.Default.Workload, "a workload");
            _ = WorkloadValidator.Validate(workload); // what the supervisor does next
            _ = NodeApiResponder.Parse(input, FleetJsonContext.Default.NameRequest, "{\"name\": …}");
            _ = NodeApiResponder.Parse(input, FleetJsonContext.Default.ExecRequest, "{\"name\": …, \"command\": […]}");
            _ = NodeApiResponder.Parse(input, FleetJsonContext.Default.LogsRequest, "{\"name\": …}");
        }, e => e is NodeApiException);
}

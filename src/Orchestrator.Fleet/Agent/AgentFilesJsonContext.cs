using System.Text.Json.Serialization;

namespace Orchestrator.Fleet.Agent;

/// <summary>The node agent's own files (not the wire): the fence file and the signature ledger, with the wire's JSON options.</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(FenceFile))]
[JsonSerializable(typeof(Dictionary<string, SignatureLedger.Entry>))]
internal sealed partial class AgentFilesJsonContext : JsonSerializerContext;

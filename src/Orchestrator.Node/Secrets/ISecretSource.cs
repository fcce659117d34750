using Orchestrator.Api;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Node.Secrets;

/// <summary>
/// Where a node's secrets and configs come from: the fleet (sealed to this node's own key, kept
/// sealed on disk for starts without the network, opened only into memory). A node outside a fleet
/// has none.
/// </summary>
public interface ISecretSource
{
    /// <summary>The value of one version, in clear (memory only); an <c>OrchestratorException</c> that names the secret and the fix when it cannot be had.</summary>
    ValueTask<byte[]> OpenAsync(SecretKind kind, string name, long version, CancellationToken cancellationToken);
}

/// <summary>A workload's secrets and configs made ready for its start: files to bind-mount (on a memory file system), and variables (the operators' ones from orchctl env, then the secrets'), set over the template's env.</summary>
public sealed record ResolvedSecrets(IReadOnlyList<(string Source, string Target)> Files, IReadOnlyList<(string Name, string Value)> Env);

/// <summary>A secret or config that cannot be had (not sealed for this node, not signed by a trusted key, the fleet unreachable): one sentence with the fix.</summary>
public sealed class SecretException(ErrorKind kind, string message) : OrchestratorException(kind, message);

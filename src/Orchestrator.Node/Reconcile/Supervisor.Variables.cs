using System.Security.Cryptography;
using System.Text;
using Orchestrator.Api.Workloads;
using static Orchestrator.Node.Reconcile.SupervisorLog;

namespace Orchestrator.Node.Reconcile;

/// <summary>
/// Operators' variables (orchctl env: the fleet's, a label's, the device's own) over a fleet
/// container's env. They are read at each start (from the node's copy, so also offline) and a
/// container whose variables changed since it started is restarted, as balena does with device and
/// fleet variables. They are not part of the spec hash: the template is the same on every node.
/// </summary>
public sealed partial class Supervisor
{
    /// <summary>The operators' variables for a fleet container; null outside a fleet.</summary>
    public Func<Workload, IReadOnlyDictionary<string, string>>? Variables { get; set; }

    private IReadOnlyDictionary<string, string> VariablesOf(SupervisedContainer container)
        => (_fleetOwned.Contains(container.Record.Name) || Apps.AppOf(container.Workload) is { } app && _fleetOwned.Contains(app)) && Variables is { } source
            ? source(container.Workload) : new Dictionary<string, string>();

    private static string? VariablesHash(IReadOnlyDictionary<string, string> variables)
    {
        if (variables.Count == 0)
        {
            return null;
        }
        var text = new StringBuilder();
        foreach (var (k, v) in variables.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            text.Append(k).Append('=').Append(v).Append('\0');
        }
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())))[..16];
    }

    /// <summary>
    /// Restarts every fleet container whose variables are not the ones it started with (a variable
    /// set or unset, a label gained or lost). Cheap when nothing changed: the node calls it at every
    /// change of the bucket and when its labels change.
    /// </summary>
    public Task VariablesChangedAsync() => Post(async () =>
    {
        var restarted = false;
        foreach (var container in _containers.Values.Where(c => c.Handle is not null && !c.Stopping).ToList())
        {
            var now = VariablesHash(VariablesOf(container));
            if (now == container.Record.VariablesHash)
            {
                continue;
            }
            LogVariablesChanged(_logger, container.Record.Name);
            Emit("container.variables-changed", container.Record.Name, "restarted: its variables (orchctl env) changed");
            await StopAsync(container, "its variables changed").ConfigureAwait(false);
            container.Record.ConsecutiveFailures = 0;
            container.Record.State = Api.ContainerState.Created;
            container.Record.NextRestartAt = null;
            restarted = true;
        }
        if (restarted)
        {
            await ReconcileAsync().ConfigureAwait(false);
        }
    });
}

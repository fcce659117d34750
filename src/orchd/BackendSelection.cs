using Orchestrator.Api.Workloads;
using Orchestrator.Containerd;
using Orchestrator.Daemon.Configuration;
using Orchestrator.Node.Drivers;

namespace Orchestrator.Daemon;

/// <summary>What <c>runtime:</c> and the host made of the container backends, before READY.</summary>
/// <param name="Default">native or containerd: what workloads without runtime: get.</param>
/// <param name="Reason">Why, in a few words (shown in node status and the ready line).</param>
/// <param name="Containerd">A client on containerd's socket when containerd answered (default or not).</param>
/// <param name="Unavailable">Backend → why it cannot be used here, for workloads that ask for it.</param>
internal sealed record BackendChoice(WorkloadRuntime Default, string Reason, ContainerdClient? Containerd, string? ContainerdVersion,
    IReadOnlyList<string> NativeFailures, IReadOnlyDictionary<WorkloadRuntime, string> Unavailable)
{
    public string Description => $"{WireNames.Of(Default)} ({Reason})";
}

/// <summary>
/// <c>runtime: native | containerd | auto</c>. auto takes the native runtime when its checks pass
/// (root, namespaces, writable cgroups, overlayfs) and containerd when they fail and its socket
/// answers. containerd is also connected when it is not the default but answers, so a workload
/// may ask for it with <c>runtime: containerd</c>.
/// </summary>
internal static class BackendSelection
{
    public static async Task<BackendChoice> SelectAsync(OrchdConfig config, string nodeId, CancellationToken cancellationToken = default)
    {
        var nativeFailures = NativeChecks.Run();
        var unavailable = new Dictionary<WorkloadRuntime, string>();
        if (nativeFailures.Count > 0)
        {
            unavailable[WorkloadRuntime.Native] = string.Join("; ", nativeFailures);
        }
        var mustHaveContainerd = config.Runtime == RuntimeBackend.Containerd || (config.Runtime == RuntimeBackend.Auto && nativeFailures.Count > 0);
        ContainerdClient? client = null;
        string? version = null;
        if (mustHaveContainerd || File.Exists(config.ContainerdSocket))
        {
            client = new ContainerdClient(config.ContainerdSocket, Namespace(nodeId));
            try
            {
                // Only checked here: orchd's namespace is made by its first container, so a containerd
                // that merely answers (and is not the default) is left as it was.
                version = await client.CheckAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (ContainerdException e)
            {
                client.Dispose();
                client = null;
                unavailable[WorkloadRuntime.Containerd] = e.Message;
                if (config.Runtime == RuntimeBackend.Containerd)
                {
                    throw;
                }
                if (mustHaveContainerd)
                {
                    throw new ContainerdException(
                        $"runtime auto: orchd's native runtime cannot run here ({unavailable[WorkloadRuntime.Native]}) and containerd is no fallback: {e.Message}", e.Code, e);
                }
            }
        }
        else
        {
            unavailable[WorkloadRuntime.Containerd] = $"no containerd socket at {config.ContainerdSocket}";
        }
        return config.Runtime switch
        {
            RuntimeBackend.Native => new BackendChoice(WorkloadRuntime.Native, nativeFailures.Count == 0 ? "configured" : $"configured, although: {unavailable[WorkloadRuntime.Native]}",
                client, version, nativeFailures, unavailable),
            RuntimeBackend.Containerd => new BackendChoice(WorkloadRuntime.Containerd, $"configured, containerd {version}", client, version, nativeFailures, unavailable),
            _ when nativeFailures.Count == 0 => new BackendChoice(WorkloadRuntime.Native, "auto: its checks pass", client, version, nativeFailures, unavailable),
            _ => new BackendChoice(WorkloadRuntime.Containerd, $"auto: containerd {version}, because the native runtime cannot run here: {unavailable[WorkloadRuntime.Native]}",
                client, version, nativeFailures, unavailable),
        };
    }

    /// <summary>orchd's own containerd namespace, one per node (two orchd sharing a containerd never see each other's containers).</summary>
    public static string Namespace(string nodeId) => "orchd-" + nodeId[..Math.Min(12, nodeId.Length)];
}

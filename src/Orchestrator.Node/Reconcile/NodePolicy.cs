using Orchestrator.Api.Workloads;

namespace Orchestrator.Node.Reconcile;

/// <summary>
/// What this node lets a workload ask for beyond an isolated container, decided by the node's own
/// config (orchd.yaml `policy:`), whoever sends the workload: the node API, the fleet's scheduler
/// or the manifest directory. Secure by default: no host path, no host network, no unconfined
/// seccomp. Anyone who may send workloads to a node otherwise gets root on it.
/// </summary>
public sealed record NodePolicy
{
    /// <summary>Host directories (and what is under them) a hostPath volume may bind; empty: none.</summary>
    public IReadOnlyList<string> HostPaths { get; init; } = [];

    /// <summary>Whether `network: host` is allowed (the container shares the node's network stack).</summary>
    public bool HostNetwork { get; init; }

    /// <summary>Whether `seccomp: unconfined` is allowed (no system call filter at all).</summary>
    public bool UnconfinedSeccomp { get; init; }

    /// <summary>
    /// Whether port-forward may reach any port of the node itself; without it only the host ports
    /// the node's running containers publish (a container's own ports are always reachable, as exec is).
    /// </summary>
    public bool ForwardHostPorts { get; init; }

    /// <summary>Whether `privileged: true` is allowed (every capability and device, no seccomp: the node's root).</summary>
    public bool Privileged { get; init; }

    /// <summary>Capabilities (CAP_ names) a workload may add to the default set with capAdd; empty: none.</summary>
    public IReadOnlyList<string> Capabilities { get; init; } = [];

    /// <summary>
    /// Device paths or globs (/dev/ttyUSB*, /dev/serial/by-id/*; "*" any) a workload may map with
    /// devices; empty: none. A workload's path is allowed when it (or, for one path, the node it
    /// links to) matches one of them; a workload's glob when a pattern here matches it as written.
    /// </summary>
    public IReadOnlyList<string> Devices { get; init; } = [];

    /// <summary>Whether deviceCgroupRules are allowed (access to devices by number, which a privileged process in the container could then create).</summary>
    public bool DeviceCgroupRules { get; init; }

    /// <summary>Everything allowed: for tests and benchmarks that need it, never a default.</summary>
    public static NodePolicy Permissive { get; } = new()
    {
        HostPaths = ["/"], HostNetwork = true, UnconfinedSeccomp = true, ForwardHostPorts = true, Privileged = true, Capabilities = LinuxSettings.Capabilities,
        Devices = ["*"], DeviceCgroupRules = true,
    };

    /// <summary>One sentence per setting of <paramref name="w"/> this policy refuses, each naming the field and the setting that would allow it.</summary>
    public IReadOnlyList<string> Refusals(Workload w)
    {
        var refusals = new List<string>();
        var volumes = w.Volumes ?? [];
        for (var i = 0; i < volumes.Count; i++)
        {
            if (volumes[i].HostPath is { } hostPath && !HostPathAllowed(hostPath))
            {
                var real = RealPath(hostPath);
                refusals.Add($"volumes[{i}].hostPath: '{hostPath}'{(real is not null && real != hostPath ? $" (which is '{real}')" : "")} is not under a host path this node allows "
                    + $"(policy.host_paths: {(HostPaths.Count == 0 ? "none" : string.Join(", ", HostPaths))}); an operator of the node can add it in orchd.yaml (--allow-host-path)");
            }
        }
        if (w.Network == NetworkMode.Host && !HostNetwork)
        {
            refusals.Add("network: host is not allowed on this node (policy.host_network: false); use bridge, or an operator of the node sets policy.host_network: true (--allow-host-network)");
        }
        if (w.Seccomp == "unconfined" && !UnconfinedSeccomp)
        {
            refusals.Add("seccomp: unconfined is not allowed on this node (policy.unconfined_seccomp: false); use default, or an operator of the node sets policy.unconfined_seccomp: true (--allow-unconfined-seccomp)");
        }
        if (w.Privileged == true && !Privileged)
        {
            refusals.Add("privileged: true is not allowed on this node (policy.privileged: false); ask for the capabilities (capAdd) and devices it needs, or an operator of the node sets policy.privileged: true (--allow-privileged)");
        }
        var added = (w.CapAdd ?? []).Select(LinuxSettings.Capability).OfType<string>().Where(c => c != "ALL" && !SpecBuilder.DefaultCapabilities.Contains(c, StringComparer.Ordinal)).ToList();
        var refused = added.Where(c => !Capabilities.Select(LinuxSettings.Capability).Contains(c, StringComparer.Ordinal)).Distinct(StringComparer.Ordinal).ToList();
        if (refused.Count > 0)
        {
            refusals.Add($"capAdd: {string.Join(", ", refused)} {(refused.Count == 1 ? "is" : "are")} not allowed on this node (policy.capabilities: {(Capabilities.Count == 0 ? "none" : string.Join(", ", Capabilities))}); an operator of the node can add {(refused.Count == 1 ? "it" : "them")} in orchd.yaml (--allow-capability)");
        }
        var devices = w.Devices ?? [];
        for (var i = 0; i < devices.Count; i++)
        {
            if (devices[i]?.HostPath is { } device && !DeviceAllowed(device))
            {
                refusals.Add($"devices[{i}].hostPath: '{device}' is not a device this node allows (policy.devices: {(Devices.Count == 0 ? "none" : string.Join(", ", Devices))}); "
                    + "an operator of the node can add it or a glob of it in orchd.yaml (--allow-device)");
            }
        }
        if (w.DeviceCgroupRules is { Count: > 0 } && !DeviceCgroupRules)
        {
            refusals.Add("deviceCgroupRules are not allowed on this node (policy.device_cgroup_rules: false); map the devices by path (devices:), or an operator of the node sets policy.device_cgroup_rules: true (--allow-device-cgroup-rules)");
        }
        return refusals;
    }

    /// <summary>
    /// Whether a workload may map this device path or glob: a policy pattern matches it as written
    /// (a glob only by a pattern that covers it, /dev/ttyUSB* by /dev/ttyUSB* or /dev/*), or, for
    /// one path, the device it links to (/dev/serial/by-id/… → /dev/ttyUSB0).
    /// </summary>
    public bool DeviceAllowed(string path)
    {
        if (DeviceGlob.Problem(path) is not null)
        {
            return false;
        }
        foreach (var allowed in Devices)
        {
            if (allowed == "*" || DeviceGlob.Matches(allowed, path) || (!DeviceGlob.IsGlob(path) && RealPath(path) is { } real && DeviceGlob.Matches(allowed, real)))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>
    /// True when the host path, with every symlink on the host resolved, is one of the allowed
    /// directories or under one: a link inside an allowed directory (which a container that
    /// mounts it may have made) cannot lead a later bind to '/'.
    /// </summary>
    public bool HostPathAllowed(string hostPath)
    {
        if (!hostPath.StartsWith('/') || RealPath(hostPath) is not { } real)
        {
            return false;
        }
        foreach (var allowed in HostPaths)
        {
            var root = RealPath(allowed) ?? allowed;
            if (root == "/" || real == root || real.StartsWith(root.TrimEnd('/') + "/", StringComparison.Ordinal))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>The absolute path with every symlink resolved (up to 40 hops), or null when it loops; parts that do not exist stay as written.</summary>
    public static string? RealPath(string path)
        => path.StartsWith('/') ? Linux.PathWalk.Resolve("/", path, refuseEscape: false, maxLinks: 40).Path : null;
}

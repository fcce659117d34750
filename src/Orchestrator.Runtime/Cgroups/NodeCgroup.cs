namespace Orchestrator.Runtime.Cgroups;

/// <summary>
/// Where one node's containers live in the cgroup tree: a subtree per node (two orchd on one host
/// never collide), outside orchd.service's cgroup (so that systemd never counts them as the
/// daemon's processes, and a restart of orchd leaves them alone).
/// <list type="bullet">
/// <item>cgroup v1 and hybrid hosts, and v2 without systemd: <c>/orchestrator/ID12</c> in every
/// hierarchy, systemd's name=systemd and the hybrid cgroup2 one included (CgroupV1 joins them).</item>
/// <item>cgroup v2 under systemd: a transient scope <c>orchestrator-ID12.scope</c> in system.slice
/// with <c>Delegate=yes</c>, which systemd creates for us. v2 allows a program to manage only a
/// subtree delegated to it; a cgroup made at the root (as before) is outside every unit and is
/// systemd's to remove. A scope ends with its last process, so its first process is the node's
/// holder (<c>orchd scope-holder</c>, a few pages: orchd's C main, without the .NET runtime), which
/// stays in it through containers coming and going and orchd's restarts; v2's
/// no-internal-processes rule puts it in the leaf <c>.keeper</c>, beside the containers' leaves.</item>
/// </list>
/// </summary>
public static class NodeCgroup
{
    /// <summary>The cgroup of the node's helper processes (the scope's holder, the fence keeper) under its parent; no container name starts with a dot.</summary>
    public const string KeeperName = ".keeper";

    public const string Slice = "system.slice";

    private static string Short(string nodeId) => nodeId[..Math.Min(12, nodeId.Length)];

    /// <summary>The parent used on v1 and without systemd (and by every orchd before the scope).</summary>
    public static string LegacyParent(string nodeId) => $"/orchestrator/{Short(nodeId)}";

    public static string ScopeUnit(string nodeId) => $"orchestrator-{Short(nodeId)}.scope";

    /// <summary>
    /// True when this host's containers go into a delegated systemd scope: cgroup v2 with systemd
    /// as init. ORCH_CGROUP_SCOPE=0 turns it off (a host where orchd runs in a container of its own).
    /// </summary>
    public static bool UsesSystemdScope(string? mountRoot = null)
        => File.Exists(Path.Combine(mountRoot ?? CgroupFactory.DefaultRoot, "cgroup.controllers"))
            && SystemdScope.SystemdRuns
            && Environment.GetEnvironmentVariable("ORCH_CGROUP_SCOPE") != "0";

    /// <summary>The node's parent cgroup on this host (relative to the hierarchy's root).</summary>
    public static string ParentFor(string nodeId)
        => UsesSystemdScope() ? $"/{Slice}/{ScopeUnit(nodeId)}" : LegacyParent(nodeId);

    /// <summary>Every parent a node's containers may be under (an orchd before the scope used the legacy one).</summary>
    public static IReadOnlyList<string> AllParents(string nodeId)
        => UsesSystemdScope() ? [ParentFor(nodeId), LegacyParent(nodeId)] : [LegacyParent(nodeId)];

    /// <summary>True when the parent is a systemd scope (systemd removes its cgroup itself when it empties).</summary>
    public static bool IsScope(string parent) => parent.EndsWith(".scope", StringComparison.Ordinal);

    /// <summary>
    /// Puts a helper process <paramref name="pid"/> (the holder, the fence keeper) into
    /// <c>PARENT/.keeper</c>. For a scope that is not there yet, systemd first starts it with that
    /// process as its first. Throws
    /// CgroupException (naming systemd's answer) when neither works.
    /// </summary>
    public static void PlaceKeeper(string nodeId, string parent, int pid)
    {
        if (!IsScope(parent))
        {
            var cgroup = CgroupFactory.Open($"{parent}/{KeeperName}");
            cgroup.Create(null);
            cgroup.Attach(pid);
            return;
        }
        var root = CgroupFactory.DefaultRoot;
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                if (!Directory.Exists(Path.Join(root, parent)))
                {
                    var started = SystemdScope.Start(ScopeUnit(nodeId), Slice, $"Orchestrator node {Short(nodeId)}: its containers (orchd)", pid, TimeSpan.FromSeconds(10));
                    if ("/" + started.TrimStart('/') != parent)
                    {
                        throw new CgroupException($"systemd put scope {ScopeUnit(nodeId)} at '{started}', not at '{parent}'");
                    }
                }
                var keeper = Path.Join(root, parent, KeeperName);
                Directory.CreateDirectory(keeper);
                CgroupFactory.Write(Path.Combine(keeper, "cgroup.procs"), pid.ToString(System.Globalization.CultureInfo.InvariantCulture));
                return;
            }
            catch (Exception e) when (attempt == 0 && e is IOException or CgroupException && !Directory.Exists(Path.Join(root, parent)))
            {
                // The scope ended between the look and the move (its last process exited): start it again.
            }
        }
    }

    /// <summary>
    /// Starts one of the node's helpers (<c>BINARY ARGUMENTS</c>: the scope's holder, the fence
    /// keeper) and puts it into <c>PARENT/.keeper</c> (PlaceKeeper). The process is the caller's
    /// (null when it could not start); Problem is null, or the one sentence saying what went wrong.
    /// A helper that could not be placed is stopped when <paramref name="stopIfUnplaced"/> (it would
    /// hold nothing where it is), and otherwise keeps running in the caller's own cgroup.
    /// </summary>
    public static KeeperStart StartKeeper(string binary, IReadOnlyList<string> arguments, string nodeId, string parent, bool stopIfUnplaced)
    {
        var command = $"'{binary} {string.Join(' ', arguments)}'";
        var info = new System.Diagnostics.ProcessStartInfo(binary) { UseShellExecute = false };
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }
        System.Diagnostics.Process? process;
        try
        {
            process = System.Diagnostics.Process.Start(info);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return new KeeperStart(null, $"cannot start {command}: {e.Message}");
        }
        if (process is null)
        {
            return new KeeperStart(null, $"cannot start {command}");
        }
        try
        {
            PlaceKeeper(nodeId, parent, process.Id);
            return new KeeperStart(process, null);
        }
        catch (Exception e) when (e is CgroupException or IOException or UnauthorizedAccessException)
        {
            if (!stopIfUnplaced)
            {
                return new KeeperStart(process, $"{command} (pid {process.Id}) runs in orchd's own cgroup, not in {parent}/{KeeperName}: {e.Message}");
            }
            process.Kill();
            process.WaitForExit();
            process.Dispose();
            return new KeeperStart(null, $"{command} was stopped: it could not be put into {parent}/{KeeperName}: {e.Message}");
        }
    }

    /// <summary>True when process PID is in <c>PARENT/.keeper</c> in some hierarchy (its /proc/PID/cgroup).</summary>
    public static bool IsInKeeper(int pid, string parent)
    {
        var keeper = $"{parent}/{KeeperName}";
        try
        {
            return File.ReadAllLines($"/proc/{pid.ToString(System.Globalization.CultureInfo.InvariantCulture)}/cgroup")
                .Any(line => line.Split(':', 3) is [_, _, var path] && path == keeper);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}

/// <summary>What NodeCgroup.StartKeeper did: the helper's process (the caller's to dispose), and the problem, if any.</summary>
public readonly record struct KeeperStart(System.Diagnostics.Process? Process, string? Problem);

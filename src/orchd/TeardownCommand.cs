using System.Globalization;
using Orchestrator.Containerd.Api.Types;
using Orchestrator.Daemon.Configuration;
using Orchestrator.Fleet.Agent;
using Orchestrator.Linux;
using Orchestrator.Node.Network;
using Orchestrator.Node.Reconcile;
using Orchestrator.Runtime.Cgroups;

namespace Orchestrator.Daemon;

/// <summary>
/// <c>orchd teardown [--config FILE]</c>: what a removal of the package (<c>dpkg -r</c>, run by
/// its prerm) does to the host, and what an operator runs to take a node out of service. With
/// orchd stopped (it refuses while one holds the state lock), it stops every container of this
/// node cleanly (SIGTERM, then SIGKILL after <see cref="Grace"/>), both those of orchd's own
/// runtime (found by their cgroups, so a container whose record was lost goes too) and those in
/// orchd's containerd namespace; then it unmounts what orchd mounted under its state and run
/// dirs and removes the bridge, orchd's nftables table and its cgroups. It keeps the state dir:
/// the records, images and the node's identity stay, and an orchd started again later restarts
/// the containers as after a reboot (restart policies apply). Nothing is left running that
/// nothing manages. Exit 0 when all of it is gone, 1 (with one line per leftover) when not.
/// </summary>
internal static class TeardownCommand
{
    /// <summary>How long containers get between SIGTERM and SIGKILL (docker stop's 10 s).</summary>
    public static readonly TimeSpan Grace = TimeSpan.FromSeconds(10);

    public static async Task<int> RunAsync(OrchdConfig config)
    {
        // The state lock, as orchd holds it while it runs; the node id read, never made (a
        // teardown on a host where orchd never ran must not give it an identity).
        FileLock? held = null;
        var lockPath = Path.Combine(config.StateDir, "orchd.lock");
        if (Directory.Exists(config.StateDir))
        {
            try
            {
                held = FileLock.TryAcquire(lockPath, out var holder);
                if (held is null)
                {
                    Console.Error.WriteLine($"orchd teardown: orchd{(holder > 0 ? $" (pid {holder})" : "")} is running on state dir '{config.StateDir}'; stop it first (systemctl stop orchd), then run orchd teardown again");
                    return ExitCodes.Config;
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"orchd teardown: cannot lock '{lockPath}': {e.Message}; run it as root, with orchd's --state-dir");
                return ExitCodes.Config;
            }
        }
        using (held)
        {
            var problems = new List<string>();
            var said = new List<string>();
            StopFenceKeeper(config.RunDir);
            var nodeId = ReadNodeId(config.StateDir, problems);
            if (nodeId is { Length: > 0 })
            {
                // The node's cgroup parent on this host, and the one an orchd before the systemd scope used.
                var parents = NodeCgroup.AllParents(nodeId);
                var (stopped, killed) = StopNativeContainers(parents, problems);
                said.Add($"{stopped} container(s) of orchd's runtime stopped{(killed > 0 ? $" ({killed} killed after {Grace.TotalSeconds:0} s)" : "")}");
                if (File.Exists(config.ContainerdSocket))
                {
                    said.Add(await StopContainerdTasksAsync(config.ContainerdSocket, BackendSelection.Namespace(nodeId), problems).ConfigureAwait(false));
                }
                var unmounted = Unmount(config.StateDir, problems) + Unmount(config.RunDir, problems);
                said.Add($"{unmounted} mount(s) under {config.StateDir} and {config.RunDir} unmounted");
                foreach (var parent in parents)
                {
                    if (RemoveCgroupParents(parent, problems) is > 0 and var removed)
                    {
                        said.Add($"cgroup {parent} removed from {removed} hierarchy(ies)");
                    }
                }
                if (config.Bridge is { } bridge)
                {
                    var options = new BridgeOptions(bridge, config.BridgeCidr, nodeId);
                    new BridgeNetwork(options).Teardown();
                    if (Directory.Exists("/sys/class/net/" + bridge))
                    {
                        problems.Add($"bridge {bridge} is still there (ip link del {bridge} failed)");
                    }
                    said.Add($"bridge {bridge} and nftables table {options.Table} removed");
                }
            }
            else if (nodeId is null)
            {
                said.Add("orchd never ran with this state dir: nothing to stop");
            }
            if (said.Count > 0)
            {
                Console.Out.WriteLine("orchd teardown: " + string.Join("; ", said));
            }
            foreach (var problem in problems)
            {
                Console.Error.WriteLine($"orchd teardown: {problem}");
            }
            return problems.Count == 0 ? ExitCodes.Ok : ExitCodes.Failure;
        }
    }

    /// <summary>
    /// STATE_DIR/node-id, or null when it is missing (orchd never ran here). An unreadable one
    /// is a problem (and "" is returned): without it the node's cgroups and nft table cannot be
    /// told from another orchd's on the same host, and a teardown must not stop those.
    /// </summary>
    private static string? ReadNodeId(string stateDir, List<string> problems)
    {
        var path = Path.Combine(stateDir, "node-id");
        try
        {
            if (!File.Exists(path))
            {
                return null;
            }
            var id = File.ReadAllText(path).Trim();
            if (Orchestrator.Node.StateStore.NodeState.IsValidNodeId(id))
            {
                return id;
            }
            problems.Add($"'{path}' holds no node id (32 hex digits), so this node's containers, cgroups (/orchestrator/<its first 12 digits>) and nft table (orchd_<first 8>) cannot be told from another orchd's: put the id back, or stop them by hand");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            problems.Add($"cannot read '{path}': {e.Message}");
        }
        return "";
    }

    /// <summary>The fence keeper fences for an orchd that is down; with the containers gone it has nothing to keep.</summary>
    private static void StopFenceKeeper(string runDir)
    {
        if (FenceKeeper.Running(runDir) is { } pid)
        {
            _ = Libc.kill(pid, 9);
        }
        try
        {
            File.Delete(Path.Combine(runDir, FenceFile.Name));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    /// <summary>
    /// Every cgroup under the node's parent is a container of orchd's runtime: thawed (a paused
    /// container cannot act on SIGTERM), sent SIGTERM, given <see cref="Grace"/>, then killed.
    /// </summary>
    private static (int Stopped, int Killed) StopNativeContainers(IReadOnlyList<string> parents, List<string> problems)
    {
        // Every child but the keeper's (stopped already; its cgroup goes with the parent).
        var cgroups = parents.SelectMany(parent => ChildNames(parent).Where(name => name != NodeCgroup.KeeperName)
            .Select(name => CgroupFactory.Open($"{parent}/{name}"))).ToList();
        var running = cgroups.Where(c => CgroupProcesses.Live(c).Count > 0).ToList();
        foreach (var cgroup in running)
        {
            try
            {
                cgroup.Thaw();
            }
            catch (CgroupException)
            {
            }
            CgroupProcesses.Signal(cgroup, 15);
        }
        var deadline = DateTime.UtcNow + Grace;
        while (running.Any(c => CgroupProcesses.Live(c).Count > 0) && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(100);
        }
        var killed = 0;
        foreach (var cgroup in running.Where(c => CgroupProcesses.Live(c).Count > 0))
        {
            killed++;
            CgroupProcesses.KillAll(cgroup);
        }
        foreach (var cgroup in cgroups)
        {
            if (CgroupProcesses.Live(cgroup) is { Count: > 0 } left)
            {
                problems.Add($"container cgroup {cgroup.Path} still has processes {string.Join(' ', left)} after SIGKILL");
                continue;
            }
            try
            {
                cgroup.Remove();
            }
            catch (CgroupException e)
            {
                problems.Add(e.Message);
            }
        }
        // Last, the node's helpers (a scope's holder, a fence keeper started meanwhile): a scope
        // ends once they and the containers are gone.
        foreach (var parent in parents)
        {
            var helpers = CgroupFactory.Open($"{parent}/{NodeCgroup.KeeperName}");
            if (!CgroupProcesses.KillAll(helpers))
            {
                problems.Add($"cgroup {helpers.Path} still has processes {string.Join(' ', CgroupProcesses.Live(helpers))} after SIGKILL");
            }
        }
        return (running.Count, killed);
    }

    /// <summary>The hierarchies to look in: the cgroup v2 root, or each v1 hierarchy (controllers and systemd's tracking ones).</summary>
    private static IEnumerable<string> HierarchyRoots()
    {
        var root = CgroupFactory.DefaultRoot;
        if (File.Exists(Path.Combine(root, "cgroup.controllers")))
        {
            yield return root;
            yield break;
        }
        if (!Directory.Exists(root))
        {
            yield break;
        }
        foreach (var dir in Directory.EnumerateDirectories(root))
        {
            if (File.Exists(Path.Combine(dir, "cgroup.procs")))
            {
                yield return dir;
            }
        }
    }

    private static SortedSet<string> ChildNames(string parent)
    {
        var names = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var root in HierarchyRoots())
        {
            var dir = Path.Join(root, parent);
            if (Directory.Exists(dir))
            {
                foreach (var child in Directory.EnumerateDirectories(dir))
                {
                    names.Add(Path.GetFileName(child));
                }
            }
        }
        return names;
    }

    /// <summary>The node's parent cgroup and /orchestrator above it (when no other node's is left in it), in every hierarchy.</summary>
    private static int RemoveCgroupParents(string parent, List<string> problems)
    {
        var removed = 0;
        var top = "/" + parent.Split('/', StringSplitOptions.RemoveEmptyEntries)[0];
        foreach (var root in HierarchyRoots())
        {
            var dir = Path.Join(root, parent);
            if (!Directory.Exists(dir))
            {
                // A scope systemd removed already (it ends with its last process), or nothing there.
                removed += NodeCgroup.IsScope(parent) && File.Exists(Path.Combine(root, "cgroup.controllers")) ? 1 : 0;
                continue;
            }
            try
            {
                foreach (var child in Directory.EnumerateDirectories(dir).ToList())
                {
                    Directory.Delete(child); // the keeper's, or a container cgroup Remove did not reach (a hierarchy it does not know)
                }
                if (NodeCgroup.IsScope(parent))
                {
                    // systemd's own: with its last process gone, systemd stops the scope and removes it.
                    var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
                    while (Directory.Exists(dir) && DateTime.UtcNow < deadline)
                    {
                        Thread.Sleep(50);
                    }
                    if (Directory.Exists(dir))
                    {
                        problems.Add($"systemd did not remove the empty scope {dir}: systemctl stop {Path.GetFileName(dir)}");
                        continue;
                    }
                    removed++;
                    continue;
                }
                Directory.Delete(dir);
                removed++;
                var above = Path.Join(root, top);
                if (Directory.Exists(above) && !Directory.EnumerateDirectories(above).Any())
                {
                    Directory.Delete(above);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                problems.Add($"cannot remove cgroup {dir}: {e.Message}");
            }
        }
        return removed;
    }

    /// <summary>Tasks in orchd's containerd namespace: SIGTERM, the grace, SIGKILL, then the task and container deleted.</summary>
    private static async Task<string> StopContainerdTasksAsync(string socket, string ns, List<string> problems)
    {
        try
        {
            using var client = new Orchestrator.Containerd.ContainerdClient(socket, ns);
            await client.CheckAsync().ConfigureAwait(false);
            var tasks = client.ListTasks();
            foreach (var task in tasks.Where(t => t.Status is not Status.Stopped))
            {
                if (task.Status is Status.Paused or Status.Pausing)
                {
                    client.Resume(task.Id);
                }
                client.Kill(task.Id, 15, all: true);
            }
            var deadline = DateTime.UtcNow + Grace;
            while (client.ListTasks().Any(t => t.Status == Status.Running) && DateTime.UtcNow < deadline)
            {
                await Task.Delay(100).ConfigureAwait(false);
            }
            foreach (var task in client.ListTasks())
            {
                if (task.Status == Status.Running)
                {
                    client.Kill(task.Id, 9, all: true);
                    using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                    await client.WaitAsync(task.Id, cancellationToken: wait.Token).ConfigureAwait(false);
                }
                client.DeleteTask(task.Id);
            }
            var containers = client.ListContainers();
            foreach (var container in containers)
            {
                client.DeleteContainer(container.Id);
            }
            return $"{tasks.Count} containerd task(s) in namespace {ns} stopped, {containers.Count} container(s) deleted";
        }
        catch (Exception e) when (e is Orchestrator.Containerd.ContainerdException or OperationCanceledException)
        {
            problems.Add($"containerd namespace {ns}: {e.Message}; stop its tasks with `ctr -n {ns} tasks kill`");
            return $"containerd namespace {ns} not cleaned";
        }
    }

    /// <summary>Every mount below a directory, deepest first, detached (MNT_DETACH): container roots, volumes, secrets.</summary>
    private static int Unmount(string dir, List<string> problems)
    {
        var full = Path.GetFullPath(dir).TrimEnd('/');
        var count = 0;
        foreach (var mountPoint in MountPointsBelow(full).OrderByDescending(m => m.Length))
        {
            if (Libc.umount2(mountPoint, Libc.MNT_DETACH) == 0)
            {
                count++;
            }
            else
            {
                problems.Add($"cannot unmount {mountPoint}: {Errno.Describe(System.Runtime.InteropServices.Marshal.GetLastPInvokeError())}");
            }
        }
        return count;
    }

    private static List<string> MountPointsBelow(string dir)
    {
        var list = new List<string>();
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            var fields = line.Split(' ');
            if (fields.Length > 4)
            {
                var mountPoint = fields[4].Replace("\\040", " ", StringComparison.Ordinal);
                if (mountPoint.StartsWith(dir + "/", StringComparison.Ordinal))
                {
                    list.Add(mountPoint);
                }
            }
        }
        return list;
    }
}

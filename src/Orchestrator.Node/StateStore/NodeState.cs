using Orchestrator.Linux;

namespace Orchestrator.Node.StateStore;

/// <summary>
/// The node's on-disk state: the state directory (persistent, survives reboots), the run
/// directory (volatile, survives daemon restarts but not reboots), the lock that keeps a
/// second orchd off the same state, and the node's stable identity.
/// </summary>
public sealed class NodeState : IDisposable
{
    private readonly FileLock _lock;

    private NodeState(string stateDir, string runDir, string nodeId, bool firstBoot, FileLock fileLock)
    {
        StateDir = stateDir;
        RunDir = runDir;
        NodeId = nodeId;
        FirstBoot = firstBoot;
        _lock = fileLock;
    }

    public string StateDir { get; }
    public string RunDir { get; }

    /// <summary>A random id made on first boot and kept in the state dir (like Nomad's client id).</summary>
    public string NodeId { get; }

    /// <summary>True when this start created the node id.</summary>
    public bool FirstBoot { get; }

    /// <summary>
    /// Creates the directories if needed, proves they are writable, takes the state lock and
    /// loads (or makes) the node id. Every failure is a <see cref="NodeStateException"/> whose
    /// message names the directory and the fix.
    /// </summary>
    public static NodeState Open(string stateDir, string runDir)
    {
        stateDir = Path.GetFullPath(stateDir);
        runDir = Path.GetFullPath(runDir);
        EnsureWritableDirectory(stateDir, "state dir", "--state-dir", UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        EnsureWritableDirectory(runDir, "run dir", "--run-dir", UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);

        var lockPath = Path.Combine(stateDir, "orchd.lock");
        FileLock? fileLock;
        try
        {
            fileLock = FileLock.TryAcquire(lockPath, out var holder);
            if (fileLock is null)
            {
                var who = holder > 0 ? $"another orchd (pid {holder})" : "another orchd";
                throw new NodeStateException($"state dir '{stateDir}' is in use by {who}; stop it, or give this one its own --state-dir");
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException && e is not NodeStateException)
        {
            throw new NodeStateException($"cannot lock '{lockPath}': {Describe(e)}; fix the state dir's permissions or set --state-dir", e);
        }

        try
        {
            var (nodeId, firstBoot) = LoadOrCreateNodeId(stateDir);
            return new NodeState(stateDir, runDir, nodeId, firstBoot, fileLock);
        }
        catch
        {
            fileLock.Dispose();
            throw;
        }
    }

    private static (string Id, bool Created) LoadOrCreateNodeId(string stateDir)
    {
        var path = Path.Combine(stateDir, "node-id");
        try
        {
            if (File.Exists(path))
            {
                var id = File.ReadAllText(path).Trim();
                if (IsValidNodeId(id))
                {
                    return (id, false);
                }
                throw new NodeStateException($"'{path}' does not hold a node id (32 hex digits); delete it to make a new identity");
            }
            // Guid.NewGuid draws from the kernel's CSPRNG without loading OpenSSL (3 MB of RSS).
            var created = Guid.NewGuid().ToString("N");
            AtomicFile.WriteAllText(path, created + "\n");
            return (created, true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new NodeStateException($"cannot read or write '{path}': {Describe(e)}; fix the state dir or set --state-dir", e);
        }
    }

    /// <summary>A node id as orchd makes it: 32 lower-case hex digits.</summary>
    public static bool IsValidNodeId(string id) => id.Length == 32 && id.All(char.IsAsciiHexDigitLower);

    private static void EnsureWritableDirectory(string dir, string what, string flag, UnixFileMode mode)
    {
        try
        {
            if (File.Exists(dir))
            {
                throw new NodeStateException($"{what} '{dir}' is a file, not a directory; remove it or set {flag}");
            }
            Directory.CreateDirectory(dir, mode);
            // Creating a directory can succeed on a read-only bind mount if it already exists:
            // write and remove a probe file to know for sure.
            var probe = Path.Combine(dir, $".probe-{Environment.ProcessId}");
            File.WriteAllBytes(probe, []);
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException && e is not NodeStateException)
        {
            throw new NodeStateException($"{what} '{dir}' is not writable: {Describe(e)}; fix its permissions or mount, or set {flag}", e);
        }
    }

    internal static string Describe(Exception e)
    {
        // .NET's IOException messages repeat the path; reduce them to the reason.
        var errno = e.HResult & 0xFFFF;
        if (e is LinuxException le)
        {
            return Errno.Describe(le.Errno);
        }
        return e switch
        {
            UnauthorizedAccessException => "permission denied",
            DirectoryNotFoundException => "a parent directory does not exist or is not a directory",
            _ when errno == Errno.EROFS || e.Message.Contains("Read-only file system", StringComparison.Ordinal) => "read-only file system (EROFS)",
            _ when e.Message.Contains("No space left", StringComparison.Ordinal) => "no space left on device (ENOSPC)",
            _ when e.Message.Contains("Not a directory", StringComparison.Ordinal) => "a parent path is not a directory (ENOTDIR)",
            _ => e.Message,
        };
    }

    public void Dispose() => _lock.Dispose();
}

/// <summary>The state or run directory cannot be used. The message names it and the fix.</summary>
public sealed class NodeStateException : OrchestratorException
{
    public NodeStateException() : base(ErrorKind.Invalid, "nodestate error") { }
    public NodeStateException(string message) : base(ErrorKind.Invalid, message) { }
    public NodeStateException(string message, Exception inner) : base(ErrorKind.Invalid, message, inner) { }
}

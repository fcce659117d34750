using Orchestrator.Runtime.Cgroups;

namespace Orchestrator.Node.Drivers;

/// <summary>What a driver needs to start a container: its id, bundle, and stdio fds (the caller closes them).</summary>
/// <param name="BeforeStart">Runs with the container's pid once it exists and before its program starts (network setup).</param>
public sealed record TaskConfig(string Id, string Bundle, int Stdout, int Stderr, Action<int>? BeforeStart = null)
{
    /// <summary>The backend the workload asks for (native, containerd), or null for the node's default.</summary>
    public Orchestrator.Api.Workloads.WorkloadRuntime? Runtime { get; init; }

    /// <summary>The container's stdin: its stdin.fifo opened read-write (reads wait for input), or -1 for /dev/null.</summary>
    public int Stdin { get; init; } = -1;

    /// <summary>
    /// The first process runs on a terminal (the bundle's <c>process.terminal</c>): what it writes
    /// there goes to <see cref="TerminalOutput"/> (tty.fifo), and Stdout and Stderr are not used.
    /// </summary>
    public bool Tty { get; init; }

    /// <summary>With <see cref="Tty"/>: the FIFO (opened read-write) the terminal's output goes to.</summary>
    public int TerminalOutput { get; init; } = -1;

    /// <summary>The container's run directory, where its FIFOs and the holder of its stdin and terminal (StdioHolder) live.</summary>
    public string? FifoDir { get; init; }
}

/// <summary>A started or recovered container's first process.</summary>
public sealed record TaskHandle(string Id, int Pid, ulong PidStartTime, bool IsChild);

/// <summary>How a container's first process ended. Code is null when it ended while orchd was not its parent.</summary>
public sealed record TaskExit(int? Code, bool OomKilled, DateTimeOffset At);

/// <summary>The output and status of a command run in a container.</summary>
public sealed record ExecResult(int ExitCode, string Stdout, string Stderr, bool TimedOut);

/// <summary>
/// The contract between the node's supervisor and whatever runs containers (the native runtime,
/// or containerd as a fallback): start, wait, signal, destroy, recover after an orchd restart,
/// exec and stats. The supervisor never touches a runtime directly.
/// </summary>
public interface ITaskDriver
{
    string Name { get; }

    /// <summary>Which backend this is (what a workload's <c>runtime:</c> names).</summary>
    Orchestrator.Api.Workloads.WorkloadRuntime Backend { get; }

    TaskHandle Start(TaskConfig config);

    /// <summary>The running container <paramref name="id"/> as left by a previous orchd, or null when it is gone.</summary>
    TaskHandle? Recover(string id);

    /// <summary>Calls back once when the process ends (also for recovered ones).</summary>
    void Watch(TaskHandle handle, Action<TaskHandle, TaskExit> exited);

    void Signal(string id, int signal, bool all);

    /// <summary>Kills whatever still runs and removes the runtime's state; idempotent.</summary>
    void Destroy(string id);

    /// <summary>
    /// Runs <paramref name="command"/> in container <paramref name="id"/> as the container's own
    /// process runs (user, env, cwd), handing its output to <paramref name="output"/> as it comes,
    /// stdout and stderr apart and in order. Returns once the command exited and its output is
    /// drained; kills it at <paramref name="timeout"/> (exit 137) and when cancelled (then throws).
    /// The buffered form for probes is <see cref="TaskDriverExec.ExecAsync"/>.
    /// </summary>
    Task<ExecExit> ExecStreamAsync(string id, IReadOnlyList<string> command, ExecOutputSink output, TimeSpan timeout, CancellationToken cancellationToken);

    /// <summary>
    /// Starts <paramref name="command"/> in container <paramref name="id"/> as the container's own
    /// process runs, for `exec -i` / `exec -t`: with the caller's input, on a terminal of the
    /// given size when asked. The caller relays its ends and disposes of it (which kills it).
    /// </summary>
    Task<InteractiveProcess> ExecInteractiveAsync(string id, IReadOnlyList<string> command, InteractiveOptions options, CancellationToken cancellationToken);

    /// <summary>The terminal of container <paramref name="id"/>'s first process gets a new size (a workload with <c>tty: true</c>).</summary>
    void ResizeTerminal(string id, string fifoDir, ushort rows, ushort cols) => throw new NotSupportedException($"{Name} has no terminals");

    CgroupStats? Stats(string id);

    /// <summary>The ids the runtime knows about (running or not).</summary>
    IReadOnlyList<string> List();

    /// <summary>
    /// Where containers of <paramref name="runtime"/> (null: the node's default) get their image
    /// and rootfs from: the backend's own image source (containerd's image store and snapshotter),
    /// or null for orchd's own store.
    /// </summary>
    Orchestrator.Node.Images.IImageSource? ImagesFor(Orchestrator.Api.Workloads.WorkloadRuntime? runtime) => null;
}

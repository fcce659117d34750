using System.Globalization;
using System.Net.Sockets;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using Orchestrator.Containerd.Api.Containers;
using Orchestrator.Containerd.Api.Namespaces;
using Orchestrator.Containerd.Api.Tasks;
using Orchestrator.Containerd.Api.Types;
using ContainerdTask = Orchestrator.Containerd.Api.Types.Process;

namespace Orchestrator.Containerd;

/// <summary>
/// containerd's gRPC API over its unix socket, in one namespace (every call carries the
/// <c>containerd-namespace</c> header). Thin: one method per call orchd makes, each failure turned
/// into one <see cref="ContainerdException"/> that names the object and the fix. Thread-safe; calls
/// share one HTTP/2 connection (long waits are streams on it, not connections).
/// </summary>
public sealed partial class ContainerdClient : IDisposable
{
    /// <summary>The oldest containerd orchd is tested with (Debian 12's): the runc v2 shim and these APIs.</summary>
    public static readonly Version MinimumVersion = new(1, 6, 0);

    public const string SpecTypeUrl = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
    public const string ProcessTypeUrl = "types.containerd.io/opencontainers/runtime-spec/1/Process";
    public const string RuncV2 = "io.containerd.runc.v2";
    public const string NamespaceHeader = "containerd-namespace";

    private readonly GrpcChannel _channel;
    private readonly Api.Version.Version.VersionClient _version;
    private readonly Namespaces.NamespacesClient _namespaces;
    private readonly Containers.ContainersClient _containers;
    private readonly Tasks.TasksClient _tasks;

    public ContainerdClient(string socket, string ns)
    {
        Socket = socket;
        Namespace = ns;
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, cancellationToken) =>
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await s.ConnectAsync(new UnixDomainSocketEndPoint(socket), cancellationToken).ConfigureAwait(false);
                    return new NetworkStream(s, ownsSocket: true);
                }
                catch
                {
                    s.Dispose();
                    throw;
                }
            },
            // A unix socket: an http_proxy/https_proxy in orchd's environment (an edge site's proxy for
            // its registries) must not send containerd's gRPC to it (found by the image name tests).
            UseProxy = false,
            // Many tasks each hold a Wait open: let them spread over connections if the server limits streams.
            EnableMultipleHttp2Connections = true,
            KeepAlivePingDelay = TimeSpan.FromSeconds(30),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(10),
        };
        _channel = GrpcChannel.ForAddress("http://containerd", new GrpcChannelOptions
        {
            HttpHandler = handler,
            DisposeHttpClient = true,
            MaxReceiveMessageSize = 16 * 1024 * 1024,
        });
        var invoker = _channel.CreateCallInvoker().Intercept(metadata =>
        {
            metadata.Add(NamespaceHeader, ns);
            return metadata;
        });
        _version = new Api.Version.Version.VersionClient(invoker);
        _namespaces = new Namespaces.NamespacesClient(invoker);
        _containers = new Containers.ContainersClient(invoker);
        _tasks = new Tasks.TasksClient(invoker);
        _content = new Api.Content.Content.ContentClient(invoker);
        _images = new Api.Images.Images.ImagesClient(invoker);
        _leases = new Api.Leases.Leases.LeasesClient(invoker);
        _snapshots = new Api.Snapshots.Snapshots.SnapshotsClient(invoker);
        _diff = new Api.Diff.Diff.DiffClient(invoker);
        _events = new Api.Events.Events.EventsClient(invoker);
    }

    public string Socket { get; }

    /// <summary>orchd's own containerd namespace: its containers never mix with anyone else's.</summary>
    public string Namespace { get; }

    // ---------------------------------------------------------------- version, namespace

    /// <summary>
    /// Checks that containerd answers on the socket and is new enough; returns its version. Each
    /// way it can fail (no socket, no permission, nobody listening, too old) is its own sentence.
    /// </summary>
    public async Task<string> CheckAsync(CancellationToken cancellationToken = default)
    {
        await ProbeSocketAsync(Socket, cancellationToken).ConfigureAwait(false);
        var response = await Call("ask the version of", "containerd",
            () => _version.VersionAsync(new Empty(), deadline: Deadline(5), cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false);
        if (ParseVersion(response.Version) is not { } version)
        {
            throw new ContainerdException($"containerd at '{Socket}' reports version '{response.Version}', which orchd cannot read; it needs {MinimumVersion} or later", StatusCode.FailedPrecondition);
        }
        if (version < MinimumVersion)
        {
            throw new ContainerdException($"containerd {response.Version} at '{Socket}' is too old: orchd needs containerd {MinimumVersion} or later; upgrade containerd or use runtime: native", StatusCode.FailedPrecondition);
        }
        return response.Version;
    }

    /// <summary>"1.6.20~ds1", "v1.7.2", "1.6.0-rc.1" → the leading major.minor.patch.</summary>
    public static Version? ParseVersion(string text)
    {
        var digits = text.TrimStart('v');
        var end = 0;
        while (end < digits.Length && (char.IsAsciiDigit(digits[end]) || digits[end] == '.'))
        {
            end++;
        }
        var parts = digits[..end].Split('.', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length < 2)
        {
            return null;
        }
        var numbers = parts.Take(3).Select(p => int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : -1).ToArray();
        return numbers.Any(n => n < 0) ? null : new Version(numbers[0], numbers[1], numbers.Length > 2 ? numbers[2] : 0);
    }

    /// <summary>Connects once by hand, to tell a missing socket, a permission problem and a stale socket apart.</summary>
    public static async Task ProbeSocketAsync(string socket, CancellationToken cancellationToken = default)
    {
        if (!File.Exists(socket) && !Directory.Exists(Path.GetDirectoryName(socket)))
        {
            throw new ContainerdException($"containerd socket '{socket}' does not exist (nor its directory): install and start containerd, or set containerd_socket", StatusCode.Unavailable);
        }
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await s.ConnectAsync(new UnixDomainSocketEndPoint(socket), cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            throw e.SocketErrorCode switch
            {
                SocketError.AccessDenied => new ContainerdException($"permission denied on containerd socket '{socket}': run orchd as root, or give its user access to the socket", StatusCode.PermissionDenied, e),
                SocketError.ConnectionRefused => new ContainerdException($"nothing listens on containerd socket '{socket}' (left by a containerd that stopped): start containerd", StatusCode.Unavailable, e),
                _ when !File.Exists(socket) => new ContainerdException($"containerd socket '{socket}' does not exist: start containerd, or set containerd_socket", StatusCode.Unavailable, e),
                _ => new ContainerdException($"cannot connect to containerd socket '{socket}': {e.Message}", StatusCode.Unavailable, e),
            };
        }
    }

    /// <summary>Creates the namespace (labelled as orchd's) if it is not there yet.</summary>
    public async Task EnsureNamespaceAsync(IReadOnlyDictionary<string, string> labels, CancellationToken cancellationToken = default)
    {
        var ns = new Namespace { Name = Namespace };
        foreach (var (key, value) in labels)
        {
            ns.Labels[key] = value;
        }
        try
        {
            await _namespaces.CreateAsync(new CreateNamespaceRequest { Namespace = ns }, deadline: Deadline(10), cancellationToken: cancellationToken).ResponseAsync.ConfigureAwait(false);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.AlreadyExists)
        {
        }
        catch (RpcException e)
        {
            throw Translate(e, "create namespace", Namespace);
        }
    }

    public async Task<IReadOnlyList<string>> ListNamespacesAsync(CancellationToken cancellationToken = default)
    {
        var response = await Call("list", "namespaces",
            () => _namespaces.ListAsync(new ListNamespacesRequest(), deadline: Deadline(10), cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false);
        return [.. response.Namespaces.Select(n => n.Name)];
    }

    // ---------------------------------------------------------------- containers

    /// <summary>A container whose root is a path of the caller's (no snapshot): the spec is the OCI spec as JSON.</summary>
    public void CreateContainer(string id, ReadOnlySpan<byte> specJson, IReadOnlyDictionary<string, string>? labels = null, string image = "")
    {
        var spec = new Any { TypeUrl = SpecTypeUrl, Value = ByteString.CopyFrom(specJson) };
        var container = new Container
        {
            Id = id,
            Image = image,
            Runtime = new Container.Types.Runtime { Name = RuncV2 },
            Spec = spec,
        };
        foreach (var (key, value) in labels ?? new Dictionary<string, string>())
        {
            container.Labels[key] = value;
        }
        Call("create container", id, () => _containers.Create(new CreateContainerRequest { Container = container }, deadline: Deadline(30)));
    }

    public Container? GetContainer(string id)
        => CallOrNull("inspect container", id, () => _containers.Get(new GetContainerRequest { Id = id }, deadline: Deadline(10)).Container);

    /// <summary>Sets (adds or replaces) labels on a container, leaving its other labels and fields alone.</summary>
    public void LabelContainer(string id, IReadOnlyDictionary<string, string> labels)
    {
        var request = new UpdateContainerRequest { Container = new Container { Id = id }, UpdateMask = new Google.Protobuf.WellKnownTypes.FieldMask() };
        foreach (var (key, value) in labels)
        {
            request.Container.Labels[key] = value;
            request.UpdateMask.Paths.Add("labels." + key);
        }
        Call("label container", id, () => _containers.Update(request, deadline: Deadline(10)));
    }

    public IReadOnlyList<Container> ListContainers(params string[] filters)
    {
        var request = new ListContainersRequest();
        request.Filters.Add(filters);
        return [.. Call("list", "containers", () => _containers.List(request, deadline: Deadline(30))).Containers];
    }

    /// <summary>False when there was no such container.</summary>
    public bool DeleteContainer(string id)
        => CallOrNull("delete container", id, () => _containers.Delete(new DeleteContainerRequest { Id = id }, deadline: Deadline(30))) is not null;

    // ---------------------------------------------------------------- tasks

    /// <summary>Creates the container's task (runc create: its namespaces exist, its program waits); returns its pid.</summary>
    /// <remarks>With <paramref name="terminal"/>, the shim makes the terminal and copies it to stdout (stderr is empty).</remarks>
    public uint CreateTask(string id, string stdout, string stderr, string stdin = "", bool terminal = false)
        => Call("create the task of", id, () => _tasks.Create(new CreateTaskRequest { ContainerId = id, Stdin = stdin, Stdout = stdout, Stderr = stderr, Terminal = terminal },
            deadline: Deadline(60))).Pid;

    public uint StartTask(string id, string execId = "")
        => Call("start", Describe(id, execId), () => _tasks.Start(new StartRequest { ContainerId = id, ExecId = execId }, deadline: Deadline(60))).Pid;

    public ContainerdTask? GetTask(string id, string execId = "")
        => CallOrNull("inspect the task of", Describe(id, execId), () => _tasks.Get(new GetRequest { ContainerId = id, ExecId = execId }, deadline: Deadline(10)).Process);

    public IReadOnlyList<ContainerdTask> ListTasks()
        => [.. Call("list", "tasks", () => _tasks.List(new ListTasksRequest(), deadline: Deadline(30))).Tasks];

    public void Kill(string id, int signal, bool all, string execId = "")
        => Call("signal", Describe(id, execId), () => _tasks.Kill(new KillRequest { ContainerId = id, ExecId = execId, Signal = (uint)signal, All = all }, deadline: Deadline(10)));

    /// <summary>Deletes a stopped (or never started) task; null when there was none.</summary>
    public DeleteResponse? DeleteTask(string id)
        => CallOrNull("delete the task of", id, () => _tasks.Delete(new DeleteTaskRequest { ContainerId = id }, deadline: Deadline(30)));

    public DeleteResponse? DeleteProcess(string id, string execId)
        => CallOrNull("delete", Describe(id, execId), () => _tasks.DeleteProcess(new DeleteProcessRequest { ContainerId = id, ExecId = execId }, deadline: Deadline(30)));

    /// <summary>Waits (as long as it takes) for the task or exec process to exit: its status (128+n for signal n) and when.</summary>
    public async Task<(int Status, DateTimeOffset At)> WaitAsync(string id, string execId = "", CancellationToken cancellationToken = default)
    {
        var response = await Call("wait for", Describe(id, execId),
            () => _tasks.WaitAsync(new WaitRequest { ContainerId = id, ExecId = execId }, cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false);
        var at = response.ExitedAt is { Seconds: > 0 } t ? t.ToDateTimeOffset() : DateTimeOffset.UtcNow;
        return ((int)response.ExitStatus, at);
    }

    /// <summary>Adds a process to a running task (not started yet: <see cref="StartTask"/> with the exec id).</summary>
    /// <summary>A process in task <paramref name="id"/> (started by StartTask with its exec id): its stdio are FIFOs the shim opens; on a terminal, stdout carries it and stderr is empty.</summary>
    public void Exec(string id, string execId, ReadOnlySpan<byte> processJson, string stdout, string stderr, string stdin = "", bool terminal = false)
    {
        var request = new ExecProcessRequest
        {
            ContainerId = id,
            ExecId = execId,
            Stdin = stdin,
            Stdout = stdout,
            Stderr = stderr,
            Terminal = terminal,
            Spec = new Any { TypeUrl = ProcessTypeUrl, Value = ByteString.CopyFrom(processJson) },
        };
        Call("exec in", id, () => _tasks.Exec(request, deadline: Deadline(60)));
    }

    /// <summary>The terminal of a task (execId "") or of an exec'd process gets a new size.</summary>
    public void ResizePty(string id, string execId, uint cols, uint rows)
        => Call("resize the terminal of", id, () => _tasks.ResizePty(new ResizePtyRequest { ContainerId = id, ExecId = execId, Width = cols, Height = rows }, deadline: Deadline(10)));

    /// <summary>Closes an exec'd process's stdin (the shim closes its side of the FIFO: the process reads end-of-file).</summary>
    public void CloseStdin(string id, string execId)
        => Call("close stdin of", id, () => _tasks.CloseIO(new CloseIORequest { ContainerId = id, ExecId = execId, Stdin = true }, deadline: Deadline(10)));

    public IReadOnlyList<int> Pids(string id)
        => [.. Call("list the processes of", id, () => _tasks.ListPids(new ListPidsRequest { ContainerId = id }, deadline: Deadline(10))).Processes.Select(p => (int)p.Pid)];

    public void Pause(string id) => Call("pause", id, () => _tasks.Pause(new PauseTaskRequest { ContainerId = id }, deadline: Deadline(30)));

    public void Resume(string id) => Call("resume", id, () => _tasks.Resume(new ResumeTaskRequest { ContainerId = id }, deadline: Deadline(30)));

    /// <summary>The runtime's metrics per task (data is the shim's cgroup stats message, by type url).</summary>
    public IReadOnlyList<Metric> Metrics(params string[] ids)
    {
        var request = new MetricsRequest();
        request.Filters.Add(ids.Select(id => $"id=={id}"));
        return [.. Call("read metrics of", string.Join(", ", ids), () => _tasks.Metrics(request, deadline: Deadline(10))).Metrics];
    }

    /// <summary>One task's metrics, decoded (cgroup v1 or v2); null when the task is gone or its runtime reports something else.</summary>
    public TaskMetrics? TaskMetrics(string id)
    {
        try
        {
            return Metrics(id).FirstOrDefault(m => m.Id == id) is { Data: { } data } ? Containerd.TaskMetrics.Decode(data) : null;
        }
        catch (ContainerdException e) when (e.IsNotFound)
        {
            return null;
        }
    }

    // ---------------------------------------------------------------- errors

    internal static DateTime Deadline(int seconds) => DateTime.UtcNow.AddSeconds(seconds);

    private static string Describe(string id, string execId) => execId.Length == 0 ? id : $"{id} (exec {execId})";

    private T Call<T>(string what, string subject, Func<T> call)
    {
        try
        {
            return call();
        }
        catch (RpcException e)
        {
            throw Translate(e, what, subject);
        }
    }

    private async Task<T> Call<T>(string what, string subject, Func<Task<T>> call)
    {
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (RpcException e)
        {
            throw Translate(e, what, subject);
        }
    }

    private T? CallOrNull<T>(string what, string subject, Func<T> call) where T : class
    {
        try
        {
            return call();
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return null;
        }
        catch (RpcException e)
        {
            throw Translate(e, what, subject);
        }
    }

    internal ContainerdException Translate(RpcException e, string what, string subject) => e.StatusCode switch
    {
        StatusCode.Unavailable => new ContainerdException(
            $"containerd at '{Socket}' does not answer ({Innermost(e)}) while trying to {what} '{subject}': is containerd running? (start it, or set containerd_socket)", e.StatusCode, e),
        StatusCode.DeadlineExceeded => new ContainerdException($"containerd at '{Socket}' took too long to {what} '{subject}'", e.StatusCode, e),
        StatusCode.Cancelled => new ContainerdException($"cancelled: {what} '{subject}'", e.StatusCode, e),
        _ => new ContainerdException($"containerd could not {what} '{subject}': {e.Status.Detail}", e.StatusCode, e),
    };

    private static string Innermost(Exception e)
    {
        while (e.InnerException is not null)
        {
            e = e.InnerException;
        }
        return e.Message;
    }

    public void Dispose() => _channel.Dispose();
}

using System.Collections.Concurrent;
using Orchestrator.Api.Workloads;
using Orchestrator.Runtime.Cgroups;

namespace Orchestrator.Node.Drivers;

/// <summary>
/// The node's backends behind one driver: the node's default (native or containerd, as
/// <c>runtime:</c> and its checks chose) and, when available, the other one for workloads that
/// ask for it (<c>runtime:</c> in the manifest). Each container is driven by the backend that
/// started or recovered it; a backend that is down never gets in the way of the other's containers.
/// </summary>
public sealed class RuntimeBackends : ITaskDriver
{
    private readonly Dictionary<WorkloadRuntime, ITaskDriver> _backends = [];
    private readonly Dictionary<WorkloadRuntime, string> _unavailable = [];
    private readonly ITaskDriver _default;
    private readonly ConcurrentDictionary<string, ITaskDriver> _owners = new(StringComparer.Ordinal);

    /// <param name="description">What node status shows: the default backend and why it was chosen.</param>
    public RuntimeBackends(ITaskDriver defaultBackend, string description, IEnumerable<ITaskDriver> others, IReadOnlyDictionary<WorkloadRuntime, string> unavailable)
    {
        _default = defaultBackend;
        Name = description;
        _backends[defaultBackend.Backend] = defaultBackend;
        foreach (var other in others)
        {
            _backends.TryAdd(other.Backend, other);
        }
        foreach (var (name, why) in unavailable)
        {
            _unavailable[name] = why;
        }
    }

    /// <summary>The default backend and the reason it was chosen ("containerd (auto: …)"), as node status shows it.</summary>
    public string Name { get; }

    public ITaskDriver Default => _default;

    /// <summary>The default backend's.</summary>
    public WorkloadRuntime Backend => _default.Backend;

    public IReadOnlyCollection<ITaskDriver> Available => _backends.Values;

    private ITaskDriver For(TaskConfig config)
    {
        if (config.Runtime is not { } wanted || wanted == _default.Backend)
        {
            return _default;
        }
        if (_backends.TryGetValue(wanted, out var backend))
        {
            return backend;
        }
        var why = _unavailable.GetValueOrDefault(wanted) ?? "this node does not offer it";
        throw new InvalidOperationException($"workload '{config.Id}' asks for runtime {WireNames.Of(wanted)}, which is not available on this node ({why}); drop runtime: from the workload or fix the node");
    }

    private ITaskDriver Owner(string id) => _owners.TryGetValue(id, out var owner) ? owner : _default;

    private IEnumerable<ITaskDriver> Others(ITaskDriver than) => _backends.Values.Where(b => !ReferenceEquals(b, than));

    public TaskHandle Start(TaskConfig config)
    {
        var backend = For(config);
        if (_owners.TryGetValue(config.Id, out var previous) && !ReferenceEquals(previous, backend))
        {
            previous.Destroy(config.Id); // it moves backends (its runtime: changed)
        }
        var handle = backend.Start(config);
        _owners[config.Id] = backend;
        return handle;
    }

    public TaskHandle? Recover(string id)
    {
        foreach (var backend in _backends.Values.OrderBy(b => ReferenceEquals(b, _default) ? 0 : 1))
        {
            try
            {
                if (backend.Recover(id) is { } handle)
                {
                    _owners[id] = backend;
                    return handle;
                }
            }
            catch (IOException) when (!ReferenceEquals(backend, _default))
            {
                // The other backend is down: its containers are recovered when it answers again (a later orchd).
            }
        }
        return null;
    }

    public void Watch(TaskHandle handle, Action<TaskHandle, TaskExit> exited) => Owner(handle.Id).Watch(handle, exited);

    public void Signal(string id, int signal, bool all) => Owner(id).Signal(id, signal, all);

    public void Destroy(string id)
    {
        var owner = Owner(id);
        owner.Destroy(id);
        foreach (var other in Others(owner))
        {
            try
            {
                other.Destroy(id);
            }
            catch (IOException)
            {
            }
        }
        _owners.TryRemove(id, out _);
    }

    public Task<ExecExit> ExecStreamAsync(string id, IReadOnlyList<string> command, ExecOutputSink output, TimeSpan timeout, CancellationToken cancellationToken)
        => Owner(id).ExecStreamAsync(id, command, output, timeout, cancellationToken);

    public Task<InteractiveProcess> ExecInteractiveAsync(string id, IReadOnlyList<string> command, InteractiveOptions options, CancellationToken cancellationToken)
        => Owner(id).ExecInteractiveAsync(id, command, options, cancellationToken);

    public void ResizeTerminal(string id, string fifoDir, ushort rows, ushort cols) => Owner(id).ResizeTerminal(id, fifoDir, rows, cols);

    public CgroupStats? Stats(string id) => Owner(id).Stats(id);

    public Orchestrator.Node.Images.IImageSource? ImagesFor(WorkloadRuntime? runtime)
        => (runtime is not { } wanted ? _default : _backends.GetValueOrDefault(wanted))?.ImagesFor(runtime);

    public IReadOnlyList<string> List()
    {
        var ids = new HashSet<string>(_default.List(), StringComparer.Ordinal);
        foreach (var other in Others(_default))
        {
            try
            {
                ids.UnionWith(other.List());
            }
            catch (IOException)
            {
            }
        }
        return [.. ids];
    }
}

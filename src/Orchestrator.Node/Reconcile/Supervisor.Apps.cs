using Orchestrator.Api.Workloads;

namespace Orchestrator.Node.Reconcile;

/// <summary>
/// Apps (a workload with containers, <see cref="Apps"/>): each of an app's containers is supervised
/// as a workload of its own, named APP_SERVICE; what is app-wide is here: the members a pass
/// wants (<see cref="Expand"/>), the start order (a member is first created only once what it
/// waits for is so), and the app seen as one container (<see cref="Fold"/>) where the fleet counts
/// replicas: the heartbeat, `run`'s answer, inspect by the app's name.
/// </summary>
public sealed partial class Supervisor
{
    /// <summary>Each app's members, made once per app as applied (a heartbeat folds them without copying the templates again).</summary>
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<Workload, List<Workload>> s_members = new();

    private static List<Workload> MembersOf(Workload app) => s_members.GetValue(app, Apps.Members);

    /// <summary>Members not created yet, and what they wait for (on the loop).</summary>
    private readonly Dictionary<string, string> _waiting = new(StringComparer.Ordinal);

    /// <summary>The apps and the waits as the loop last published them (read off the loop, as the view is).</summary>
    private AppsView _appsView = new(new Dictionary<string, Workload>(), new Dictionary<string, string>());

    private sealed record AppsView(IReadOnlyDictionary<string, Workload> Apps, IReadOnlyDictionary<string, string> Waiting);

    /// <summary>One thing the fleet counts: a container, or an app folded into one; with the containers it is made of.</summary>
    public sealed record Unit(ContainerStatus Status, IReadOnlyList<string> Containers);

    /// <summary>Each app in <paramref name="desired"/> replaced by its members.</summary>
    private static Dictionary<string, Workload> Expand(Dictionary<string, Workload> desired)
    {
        foreach (var app in desired.Values.Where(Apps.IsApp).ToList())
        {
            desired.Remove(app.Name);
            foreach (var member in MembersOf(app))
            {
                desired[member.Name] = member;
            }
        }
        return desired;
    }

    /// <summary>
    /// What keeps a member that has no container yet from being made (on the loop), or null when it
    /// may start; a new wait is logged and told as an event once.
    /// </summary>
    private string? WaitingFor(string name, Workload workload, Dictionary<string, Workload> apps)
    {
        if (_containers.ContainsKey(name) || Apps.AppOf(workload) is not { } appName || !apps.TryGetValue(appName, out var app))
        {
            _waiting.Remove(name);
            return null;
        }
        var reason = Apps.WaitingFor(app, workload, service => Progress(Apps.MemberName(appName, service)));
        if (reason is null)
        {
            _waiting.Remove(name);
        }
        else if (_waiting.GetValueOrDefault(name) != reason)
        {
            _waiting[name] = reason;
            SupervisorLog.LogWaiting(_logger, name, reason);
            Emit("container.waiting", name, reason);
        }
        return reason;
    }

    private AppMemberProgress Progress(string member)
    {
        if (!_containers.TryGetValue(member, out var c))
        {
            return AppMemberProgress.NotCreated;
        }
        var ended = c.Handle is null && c.Record.State is ContainerState.Exited or ContainerState.Failed;
        return new AppMemberProgress(
            Started: c.Handle is not null || c.Record.StartedAt is not null,
            Ready: c.Handle is not null && c.Record.Ready && !c.Stopping,
            ExitCode: ended ? c.Record.LastExit?.Code : null);
    }

    /// <summary>A member ended or turned ready: the ones waiting for it are looked at now, not at the next resync.</summary>
    private void MemberChanged(SupervisedContainer container)
    {
        if (Apps.AppOf(container.Workload) is not null && _waiting.Count > 0)
        {
            _ = Post(ReconcileAsync);
        }
    }

    /// <summary>The app as one container: its members' states folded (on the loop).</summary>
    private ContainerStatus AppStatus(Workload app)
        => Fold(app, name => _containers.TryGetValue(name, out var c) ? Status(c, withSpec: false) : null, _waiting);

    /// <summary>
    /// What the fleet counts on this node: each container of its own, and each app folded into one
    /// (named after the app, its spec hash the app's), from the published view (never waits for the loop).
    /// </summary>
    public async Task<List<Unit>> UnitsAsync()
    {
        await ViewReadyAsync().ConfigureAwait(false);
        var view = View;
        var apps = Volatile.Read(ref _appsView);
        var units = view.Values.Where(v => Apps.AppOf(v.Workload) is not { } app || !apps.Apps.ContainsKey(app))
            .Select(v => new Unit(v.Summary, [v.Summary.Name])).ToList();
        foreach (var app in apps.Apps.Values)
        {
            units.Add(new Unit(FoldFromView(app, view, apps), MembersOf(app).Select(m => m.Name).ToList()));
        }
        return units.OrderBy(u => u.Status.Name, StringComparer.Ordinal).ToList();
    }

    /// <summary>The app folded from the published view (off the loop).</summary>
    private static ContainerStatus FoldFromView(Workload app, IReadOnlyDictionary<string, ContainerView> view, AppsView apps)
        => Fold(app, name => view.TryGetValue(name, out var v) ? v.Summary : null, apps.Waiting);

    /// <summary>A name that is no container: an app's says which containers it has.</summary>
    private static NodeApiException NoContainer(string name, Workload? app)
        => new(ErrorKind.NotFound, app is not null && Apps.IsApp(app)
            ? $"'{name}' is an app of several containers ({string.Join(", ", MembersOf(app).Select(m => m.Name))}); name one of them"
            : $"no container '{name}' on this node; `ps` lists the ones there are");

    /// <summary>
    /// An app as one container: ready when every init container completed and every other one is
    /// ready (or completed, when it is not restarted); the first member that is not says why.
    /// </summary>
    private static ContainerStatus Fold(Workload app, Func<string, ContainerStatus?> statusOf, IReadOnlyDictionary<string, string> waiting)
    {
        var members = MembersOf(app).Select(m => (Member: m, Status: statusOf(m.Name))).ToList();
        static bool Completed(ContainerStatus s) => s.State == ContainerState.Exited && s.LastExit?.Code == 0;
        static bool Ok(Workload m, ContainerStatus? s)
        {
            if (s is null)
            {
                return false;
            }
            if (m.Labels!.ContainsKey(Apps.InitLabel))
            {
                return Completed(s);
            }
            return (s.Ready && s.State == ContainerState.Running)
                || (Completed(s) && m.Restart?.Policy is RestartPolicyKind.Never or RestartPolicyKind.OnFailure);
        }
        var present = members.Where(m => m.Status is not null).Select(m => m.Status!).ToList();
        var state = members.Any(m => m.Status is null) ? ContainerState.Created
            : present.Any(s => s.State == ContainerState.Failed || (s.State == ContainerState.Exited && s.LastExit?.Code != 0)) ? ContainerState.Failed
            : present.Any(s => s.State == ContainerState.Backoff) ? ContainerState.Backoff
            : present.Any(s => s.State == ContainerState.Stopping) ? ContainerState.Stopping
            : present.Any(s => s.State == ContainerState.Stopped) ? ContainerState.Stopped
            : present.All(s => s.State == ContainerState.Running || Completed(s)) ? ContainerState.Running
            : ContainerState.Created;
        var blocked = members.FirstOrDefault(m => !Ok(m.Member, m.Status));
        string? message = null;
        if (blocked.Member is { } first)
        {
            var service = Apps.ServiceOf(first);
            var s = blocked.Status;
            message = service + ": " + (s is null ? waiting.GetValueOrDefault(first.Name) ?? "not created yet"
                : s.Message is { } said ? said
                : s.State == ContainerState.Running && first.Labels!.ContainsKey(Apps.InitLabel) ? "init container running; the others wait for it to complete"
                : s.State == ContainerState.Running ? "running, not ready"
                : s.State == ContainerState.Exited ? $"exited with code {s.LastExit?.Code?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unknown"}"
                : WireNames.Of(s.State));
        }
        return new ContainerStatus
        {
            Name = app.Name,
            Image = string.Join(" ", members.Select(m => m.Member.Image).Distinct(StringComparer.Ordinal)),
            State = state,
            StartedAt = present.Where(s => s.StartedAt is not null).Select(s => s.StartedAt).Min(),
            Restarts = present.Sum(s => s.Restarts),
            Ready = blocked.Member is null,
            Message = message,
            Source = present.FirstOrDefault()?.Source,
            Labels = app.Labels,
            SpecHash = SpecHash(app),
        };
    }
}

using System.Globalization;
using System.Text.Json;

namespace Orchestrator.Api.Workloads;

/// <summary>How far one of an app's containers has come, as its dependants' start order reads it.</summary>
/// <param name="Started">It has been started in its current spec (it runs, or ran and ended).</param>
/// <param name="Ready">It runs and is ready (by its readiness probe; running when it has none).</param>
/// <param name="ExitCode">Its last run's exit code when it has ended and will not be restarted; null otherwise.</param>
public readonly record struct AppMemberProgress(bool Started, bool Ready, int? ExitCode)
{
    public static AppMemberProgress NotCreated => default;
}

/// <summary>
/// Apps: a workload with <see cref="Workload.Containers"/> (and <see cref="Workload.InitContainers"/>)
/// is several containers run as one unit. The node runs each as a workload of its own, named
/// <c>APP_SERVICE</c> and labelled with its app and service (<see cref="Members"/>); the fleet
/// places, rolls out and rolls back the app as one replica. Start order (init containers one after
/// the other, then <see cref="Workload.DependsOn"/>) is <see cref="WaitingFor"/>; names on the app's
/// network are the service names (the node's /etc/hosts).
/// </summary>
public static class Apps
{
    /// <summary>Each member's label: the app (the replica's name) it belongs to.</summary>
    public const string AppLabel = "orch.app";
    /// <summary>Each member's label: its service name in the app.</summary>
    public const string ServiceLabel = "orch.app.service";
    /// <summary>An init container's label: its place in the init order (0, 1, …).</summary>
    public const string InitLabel = "orch.app.init";
    /// <summary>Between an app's name and a service's in a member's name (a character no service or replica name is read across).</summary>
    public const char Separator = '_';

    /// <summary>The most containers an app has, its init containers counted.</summary>
    public const int MaxContainers = 32;

    public static bool IsApp(Workload workload) => workload.Containers is { Count: > 0 } || workload.InitContainers is { Count: > 0 };

    /// <summary>The app a member belongs to, or null for a workload of its own.</summary>
    public static string? AppOf(Workload workload) => workload.Labels?.GetValueOrDefault(AppLabel);

    /// <summary>A member's service name, or null for a workload of its own.</summary>
    public static string? ServiceOf(Workload workload) => workload.Labels?.GetValueOrDefault(ServiceLabel);

    public static string MemberName(string app, string service) => app + Separator + service;

    /// <summary>
    /// The workloads the node runs for an app: its init containers in order, then its containers,
    /// each a copy named <c>APP_SERVICE</c>, with the app's labels and its own, labelled with the
    /// app and its service, its host name the service name; an init container is restarted on
    /// failure unless it says otherwise.
    /// </summary>
    public static List<Workload> Members(Workload app)
    {
        var members = new List<Workload>();
        var inits = app.InitContainers ?? [];
        for (var i = 0; i < inits.Count; i++)
        {
            members.Add(Member(app, inits[i], i));
        }
        foreach (var container in app.Containers ?? [])
        {
            members.Add(Member(app, container, null));
        }
        return members;
    }

    private static Workload Member(Workload app, Workload container, int? init)
    {
        var member = container.Copy();
        member.Name = MemberName(app.Name, container.Name);
        var labels = new Dictionary<string, string>(app.Labels ?? [], StringComparer.Ordinal);
        foreach (var (key, value) in container.Labels ?? [])
        {
            labels[key] = value;
        }
        labels[AppLabel] = app.Name;
        labels[ServiceLabel] = container.Name;
        if (init is { } place)
        {
            labels[InitLabel] = place.ToString(CultureInfo.InvariantCulture);
            member.Restart ??= new RestartPolicy { Policy = RestartPolicyKind.OnFailure };
        }
        member.Labels = labels;
        if (member.Hostname is null && WorkloadValidator.IsValidHostname(container.Name))
        {
            member.Hostname = container.Name;
        }
        return member;
    }

    /// <summary>
    /// What keeps an app's member from its first start, as a sentence ("waiting for db to be ready"),
    /// or null when it may start: an init container waits for the one before it to complete; every
    /// other container waits for all init containers to complete, then for its dependsOn.
    /// </summary>
    public static string? WaitingFor(Workload app, Workload member, Func<string, AppMemberProgress> progressOf)
    {
        var service = ServiceOf(member) ?? member.Name;
        var inits = app.InitContainers ?? [];
        var place = inits.FindIndex(i => i.Name == service);
        var needs = new List<(string Name, DependencyCondition Condition)>();
        if (place >= 0)
        {
            if (place > 0)
            {
                needs.Add((inits[place - 1].Name, DependencyCondition.Completed));
            }
        }
        else
        {
            needs.AddRange(inits.Select(i => (i.Name, DependencyCondition.Completed)));
            needs.AddRange((member.DependsOn ?? []).Select(d => (d.Name, d.Condition ?? DependencyCondition.Started)));
        }
        foreach (var (name, condition) in needs)
        {
            var progress = progressOf(name);
            var met = condition switch
            {
                DependencyCondition.Ready => progress.Ready,
                DependencyCondition.Completed => progress.ExitCode == 0,
                _ => progress.Started,
            };
            if (!met)
            {
                var what = condition switch
                {
                    DependencyCondition.Ready => "be ready",
                    DependencyCondition.Completed => "complete",
                    _ => "start",
                };
                var why = progress.ExitCode is { } code && code != 0 ? $" (it exited with code {code.ToString(CultureInfo.InvariantCulture)})" : "";
                return $"waiting for {name} to {what}{why}";
            }
        }
        return null;
    }

    /// <summary>Every problem with an app's containers, each naming the field and the fix (<see cref="WorkloadValidator"/> calls it).</summary>
    internal static void Validate(Workload app, Action<string> error)
    {
        foreach (var (field, present) in new (string, bool)[]
        {
            ("image", !string.IsNullOrWhiteSpace(app.Image)), ("command", app.Command is not null), ("args", app.Args is not null),
            ("ports", app.Ports is { Count: > 0 }), ("volumes", app.Volumes is { Count: > 0 }), ("devices", app.Devices is { Count: > 0 }),
            ("probes", app.Probes is not null), ("job", app.Job is not null), ("dependsOn", app.DependsOn is not null),
        })
        {
            if (present)
            {
                error($"{field}: an app (a workload with containers) has no {field} of its own; put it on the container that needs it, under containers:");
            }
        }
        var all = (app.InitContainers ?? []).Select((c, i) => (Container: c, Field: $"initContainers[{i}]", Init: true))
            .Concat((app.Containers ?? []).Select((c, i) => (Container: c, Field: $"containers[{i}]", Init: false))).ToList();
        if (app.Containers is not { Count: > 0 })
        {
            error("containers: an app with initContainers needs at least one container that they run before");
        }
        if (all.Count > MaxContainers)
        {
            error($"containers: {all.Count} containers (with the init containers); an app has at most {MaxContainers}: split it into apps that reach each other over the node's bridge");
        }
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (container, field, init) in all)
        {
            if (!names.Add(container.Name))
            {
                error($"{field}.name: '{container.Name}' is used twice in this app; give each container its own name");
            }
            if (!WorkloadValidator.IsValidName(container.Name) || container.Name.Contains(Separator, StringComparison.Ordinal))
            {
                error($"{field}.name: '{container.Name}' is not a container name; use 1-63 letters, digits and '-', starting with a letter or digit (it is the name the others reach it by)");
            }
            else if (MemberName(app.Name, container.Name).Length + 3 > 63)
            {
                error($"{field}.name: '{container.Name}' makes the node's container name '{MemberName(app.Name, container.Name)}' (with room for a replica number) longer than 63 characters; shorten it or the app's name");
            }
            if (IsApp(container))
            {
                error($"{field}: a container of an app cannot be an app itself; list every container in the app's own containers:");
            }
            if (init && container.DependsOn is { Count: > 0 })
            {
                error($"{field}.dependsOn: init containers run in the order they are listed; dependsOn is for containers:");
            }
            if (init && container.Job is not null)
            {
                error($"{field}.job: an init container already runs to completion; leave job: out");
            }
            foreach (var error2 in WorkloadValidator.Validate(container, inApp: true))
            {
                if (!error2.StartsWith("name:", StringComparison.Ordinal))
                {
                    error($"{field}.{error2}");
                }
            }
        }
        var inits = new HashSet<string>((app.InitContainers ?? []).Select(c => c.Name), StringComparer.Ordinal);
        foreach (var (container, field, _) in all)
        {
            foreach (var (dependency, i) in (container.DependsOn ?? []).Select((d, i) => (d, i)))
            {
                if (dependency.Name == container.Name)
                {
                    error($"{field}.dependsOn[{i}]: '{container.Name}' depends on itself; remove it");
                }
                else if (inits.Contains(dependency.Name))
                {
                    error($"{field}.dependsOn[{i}]: '{dependency.Name}' is an init container, which every container already waits for; remove it");
                }
                else if (!names.Contains(dependency.Name))
                {
                    error($"{field}.dependsOn[{i}].name: no container '{dependency.Name}' in this app; name one of {string.Join(", ", (app.Containers ?? []).Select(c => c.Name))}");
                }
                if (dependency.Condition is DependencyCondition.Unknown)
                {
                    error($"{field}.dependsOn[{i}].condition: expected one of started, ready, completed");
                }
            }
        }
        if (Cycle(app.Containers ?? []) is { } cycle)
        {
            error($"containers: dependsOn goes round in a circle ({string.Join(" → ", cycle)}), so none of them could start; break the circle");
        }
    }

    /// <summary>A dependency cycle among <paramref name="containers"/> (its names, the first repeated at the end), or null.</summary>
    private static List<string>? Cycle(List<Workload> containers)
    {
        var edges = containers.GroupBy(c => c.Name, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.SelectMany(c => c.DependsOn ?? []).Select(d => d.Name).ToList(), StringComparer.Ordinal);
        var state = new Dictionary<string, int>(StringComparer.Ordinal); // 1: on the path, 2: done
        var path = new List<string>();
        List<string>? Visit(string name)
        {
            if (state.GetValueOrDefault(name) == 2 || !edges.TryGetValue(name, out var next))
            {
                return null;
            }
            if (state.GetValueOrDefault(name) == 1)
            {
                return [.. path.Skip(path.IndexOf(name)), name];
            }
            state[name] = 1;
            path.Add(name);
            foreach (var dependency in next)
            {
                if (Visit(dependency) is { } found)
                {
                    return found;
                }
            }
            path.RemoveAt(path.Count - 1);
            state[name] = 2;
            return null;
        }
        foreach (var name in edges.Keys.Order(StringComparer.Ordinal))
        {
            if (Visit(name) is { } found)
            {
                return found;
            }
        }
        return null;
    }
}

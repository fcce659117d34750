using System.Text;
using YamlDotNet.RepresentationModel;

namespace Orchestrator.Api.Workloads;

/// <summary>How orchctl apply reads a compose file (<see cref="ManifestLoader.LoadFleetManifest(string, string, ComposeShape)"/>).</summary>
/// <param name="AsApp">
/// The whole file is one app (one deployment whose containers are the services, on one device,
/// reaching each other by service name, depends_on honoured), as docker compose runs it; false:
/// each service is a deployment of its own, as docker stack deploy runs it.
/// </param>
/// <param name="ProjectDirectory">Where the file is: its name names the app when the file has no top-level name: (docker compose's project name).</param>
public sealed record ComposeShape(bool AsApp, string? ProjectDirectory = null)
{
    public static ComposeShape Stack { get; } = new(false);

    /// <summary>
    /// The variables the file is interpolated with (<see cref="ComposeEnvironment.Load"/>: the shell's
    /// over .env). Null: nothing is interpolated and a <c>${VAR}</c> is kept as written, with a warning.
    /// </summary>
    public IReadOnlyDictionary<string, string>? Environment { get; init; }

    /// <summary>
    /// Where the variables come from when <see cref="Environment"/> is not given: called only for a
    /// compose file (a project's .env that does not parse does not stop a plain manifest).
    /// </summary>
    public Func<IReadOnlyDictionary<string, string>>? LoadEnvironment { get; init; }

    /// <summary>Service → image (orchctl apply --image-map): the image of a service that builds (build:) or another than the file's.</summary>
    public IReadOnlyDictionary<string, string>? ImageMap { get; init; }
}

internal static partial class ComposeImporter
{
    private sealed partial class Importer
    {
        /// <summary>Each service's depends_on, read in app mode (a stack has no start order).</summary>
        private readonly Dictionary<string, (List<Dependency> List, YamlNode Node)> _dependsOn = new(StringComparer.Ordinal);

        /// <summary>Where each service stands, for messages about the app as a whole.</summary>
        private readonly Dictionary<string, YamlNode> _serviceNodes = new(StringComparer.Ordinal);

        public bool AsApp { get; init; }

        public void Remember(string service, YamlNode key) => _serviceNodes[service] = key;

        /// <summary>depends_on: a list of services (started), or a mapping with condition: (service_started, service_healthy, service_completed_successfully).</summary>
        private void DependsOn(YamlNode node, string path, string service)
        {
            var list = new List<Dependency>();
            switch (node)
            {
                case YamlSequenceNode names:
                    for (var i = 0; i < names.Children.Count; i++)
                    {
                        if (Text(names.Children[i], $"{path}[{i}]") is { } name)
                        {
                            list.Add(new Dependency { Name = name });
                        }
                    }
                    break;
                case YamlMappingNode map:
                    foreach (var (key, value) in Entries(map))
                    {
                        var name = KeyName(key);
                        var dependency = new Dependency { Name = name };
                        foreach (var (optionKey, option) in value is YamlMappingNode options ? Entries(options) : [])
                        {
                            var field = KeyName(optionKey);
                            var at = $"{path}.{name}.{field}";
                            switch (field)
                            {
                                case "condition":
                                    var condition = Text(option, at);
                                    dependency.Condition = condition switch
                                    {
                                        "service_started" => DependencyCondition.Started,
                                        "service_healthy" => DependencyCondition.Ready,
                                        "service_completed_successfully" => DependencyCondition.Completed,
                                        _ => null,
                                    };
                                    if (dependency.Condition is null)
                                    {
                                        Error(option, at, $"'{condition}' is not a condition; use service_started, service_healthy or service_completed_successfully");
                                    }
                                    break;
                                case "restart":
                                    Ignored(optionKey, at, "a container is not restarted when one it depends on is");
                                    break;
                                case "required":
                                    Ignored(optionKey, at, "every service of the file is in the app");
                                    break;
                                default:
                                    Ignored(optionKey, at, Unknown(field, ["condition", "restart", "required"]));
                                    break;
                            }
                        }
                        list.Add(dependency);
                    }
                    break;
                default:
                    Error(node, path, $"expected a list of services or a mapping of them, got {ManifestReader.Describe(node)}");
                    return;
            }
            _dependsOn[service] = (list, node);
        }

        /// <summary>
        /// The services, read one by one as deployments, made into one app: its containers are the
        /// services' templates, named after them; the services' placement constraints are the app's
        /// selector. A service with a count of its own (replicas, scale, autoscale) cannot be in an
        /// app, which runs one of each: an error naming the service.
        /// </summary>
        public Deployment? Combine(YamlMappingNode root)
        {
            var nameNode = root.Children.TryGetValue(new YamlScalarNode("name"), out var given) ? given : null;
            var name = nameNode is not null ? Text(nameNode, "name") : ProjectName(ProjectDirectory);
            if (name is null || !WorkloadValidator.IsValidName(name) || name.Contains(Apps.Separator, StringComparison.Ordinal))
            {
                if (nameNode is not null)
                {
                    Error(nameNode, "name", $"'{name}' cannot name the app: use 1-63 letters, digits and '-' starting with a letter or digit");
                }
                else
                {
                    Errors.Add($"{source}: the app is named after the file's directory, and '{ProjectDirectory}' gives no usable name; give the file a top-level name: (letters, digits and '-')");
                }
                return null;
            }
            var app = new Deployment { Name = name, Template = new Workload { Containers = [] } };
            foreach (var service in Deployments)
            {
                var at = _serviceNodes[service.Name];
                if (service.Replicas != 1 || service.Autoscale is not null)
                {
                    Error(at, "services." + service.Name, $"sets {(service.Autoscale is not null ? "autoscale" : $"{service.Replicas} replicas")}, but the file is one app that runs one copy of each service; take the count out (the app's count is its deployment's: --global, or orchctl scale), or apply it with --stack");
                }
                foreach (var (key, value) in service.Selector ?? [])
                {
                    var selector = app.Selector ??= new Dictionary<string, string>(StringComparer.Ordinal);
                    if (selector.TryGetValue(key, out var other) && other != value)
                    {
                        Error(at, $"services.{service.Name}.deploy.placement", $"node.labels.{key} == {value}, where another service says {other}; the app runs on one node, which cannot have both");
                    }
                    selector[key] = value;
                }
                app.Rollout ??= service.Rollout;
                app.AntiAffinity |= service.AntiAffinity;
                if (service.Mode == DeploymentMode.Global)
                {
                    app.Mode = DeploymentMode.Global;
                }
                var container = service.Template;
                container.Name = service.Name;
                foreach (var volume in container.Volumes ?? [])
                {
                    // The project's own, as compose names them (PROJECT_NAME): shared by the app's
                    // containers, not by another app on the node that also says "data".
                    if (volume.Name is { } volumeName)
                    {
                        volume.Name = $"{name}_{volumeName}";
                    }
                }
                if (_dependsOn.TryGetValue(service.Name, out var dependsOn))
                {
                    container.DependsOn = dependsOn.List;
                }
                app.Template.Containers!.Add(container);
            }
            if (app.Mode == DeploymentMode.Global)
            {
                app.AntiAffinity = false;
            }
            var before = Errors.Count;
            foreach (var problem in ManifestLoader.ValidateDeployment(app))
            {
                Errors.Add(LocateInApp(problem, app));
            }
            return Errors.Count == before ? app : null;
        }

        /// <summary>A validator message about the app ("template.containers[1].dependsOn[0].name: …") at the service it is about.</summary>
        private string LocateInApp(string problem, Deployment app)
        {
            const string Prefix = "template.containers[";
            if (problem.StartsWith(Prefix, StringComparison.Ordinal) && problem.IndexOf(']', Prefix.Length) is var close and > 0
                && int.TryParse(problem.AsSpan(Prefix.Length, close - Prefix.Length), System.Globalization.CultureInfo.InvariantCulture, out var index)
                && index < app.Template.Containers!.Count)
            {
                var service = app.Template.Containers[index].Name;
                var rest = problem[(close + 1)..];
                var field = rest.StartsWith(".dependsOn", StringComparison.Ordinal) && _dependsOn.TryGetValue(service, out var d) ? d.Node : _serviceNodes[service];
                var path = rest.StartsWith(".dependsOn", StringComparison.Ordinal) ? $"services.{service}.depends_on{rest[".dependsOn".Length..]}" : $"services.{service}{rest}";
                return $"{Where(field)}: {path}";
            }
            if (problem.StartsWith("template.containers: ", StringComparison.Ordinal))
            {
                return $"{source}: services: depends_on{problem["template.containers: dependsOn".Length..]}";
            }
            return $"{source}: {problem}";
        }

        public string? ProjectDirectory { get; init; }

        /// <summary>docker compose's project name from a directory: lower case, letters, digits, '-' (its '_' would be read across the app's container names).</summary>
        private static string? ProjectName(string? directory)
        {
            var last = directory is null ? null : Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory)));
            if (string.IsNullOrEmpty(last))
            {
                return null;
            }
            var name = new StringBuilder();
            foreach (var c in last.ToLowerInvariant())
            {
                if (char.IsAsciiLetterOrDigit(c) || c == '-')
                {
                    name.Append(c);
                }
                else if (c is '_' or '.' or ' ')
                {
                    name.Append('-');
                }
            }
            var text = name.ToString().Trim('-');
            return text.Length == 0 ? null : text[..Math.Min(text.Length, 40)].TrimEnd('-');
        }
    }
}

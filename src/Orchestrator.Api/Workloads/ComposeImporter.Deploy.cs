using System.Globalization;
using System.Text.RegularExpressions;
using YamlDotNet.RepresentationModel;

namespace Orchestrator.Api.Workloads;

internal static partial class ComposeImporter
{
    /// <summary>deploy: (replicas, resources, restart_policy, placement, update_config), restart: and healthcheck: into the deployment, its rollout and probes.</summary>
    private sealed partial class Importer
    {
        private void Deploy(YamlNode node, string path, Deployment deployment)
        {
            if (node is not YamlMappingNode deploy)
            {
                Error(node, path, $"expected a mapping (replicas:, resources:, …), got {ManifestReader.Describe(node)}");
                return;
            }
            foreach (var (key, value) in Entries(deploy))
            {
                var field = KeyName(key);
                var at = $"{path}.{field}";
                switch (field)
                {
                    case "replicas":
                        deployment.Replicas = (int?)Integer(value, at) ?? 1;
                        Place("replicas", at, value);
                        break;
                    case "mode" when value is YamlScalarNode { Value: "replicated" }:
                        break;
                    case "mode" when value is YamlScalarNode { Value: "global" }:
                        // Swarm's global service: one copy on every node that matches (mode: global).
                        deployment.Mode = DeploymentMode.Global;
                        Place("mode", at, value);
                        break;
                    case "mode":
                        Ignored(value, at, $"'{ManifestReader.Describe(value).Trim('\'')}' has no counterpart; the deployment runs replicas: copies, and antiAffinity: true puts at most one on a node");
                        break;
                    case "resources" when value is YamlMappingNode resources:
                        foreach (var (rk, rv) in Entries(resources))
                        {
                            var kind = KeyName(rk);
                            if (kind == "limits" && rv is YamlMappingNode limits)
                            {
                                Limits(limits, $"{at}.limits", deployment.Template);
                            }
                            else
                            {
                                Ignored(rk, $"{at}.{kind}", kind == "reservations" ? "orchd places replicas by their limits" : Unknown(kind, ["limits", "reservations"]));
                            }
                        }
                        break;
                    case "restart_policy" when value is YamlMappingNode policy:
                        RestartPolicy(policy, at, deployment.Template);
                        break;
                    case "placement" when value is YamlMappingNode placement:
                        Placement(placement, at, deployment);
                        break;
                    case "update_config" when value is YamlMappingNode update:
                        UpdateConfig(update, at, deployment);
                        break;
                    default:
                        Ignored(key, at, field switch
                        {
                            "labels" => "these label the swarm service; the containers' labels are the service's labels:",
                            "rollback_config" => "a rollback goes back to the previous template the way the update came",
                            "endpoint_mode" => "there is no virtual IP or DNS round robin; ports are published on each node",
                            _ => Unknown(field, ["replicas", "mode", "resources", "restart_policy", "placement", "update_config", "labels", "rollback_config", "endpoint_mode"]),
                        });
                        break;
                }
            }
        }

        private void Limits(YamlMappingNode limits, string path, Workload template)
        {
            foreach (var (key, value) in Entries(limits))
            {
                var field = KeyName(key);
                switch (field)
                {
                    case "cpus":
                        (template.Resources ??= new()).Cpu = Text(value, $"{path}.cpus");
                        Place("template.resources.cpu", $"{path}.cpus", value);
                        break;
                    case "memory":
                        (template.Resources ??= new()).Memory = Memory(value, $"{path}.memory");
                        Place("template.resources.memory", $"{path}.memory", value);
                        break;
                    case "pids":
                        (template.Resources ??= new()).Pids = Integer(value, $"{path}.pids");
                        Place("template.resources.pids", $"{path}.pids", value);
                        break;
                    default:
                        Ignored(key, $"{path}.{field}", field is "devices" or "generic_resources" ? "reserved devices (GPUs) are not scheduled; map device nodes with the service's devices:" : Unknown(field, ["cpus", "memory", "pids"]));
                        break;
                }
            }
        }

        /// <summary>Compose sizes ("512m", "1g", "1gb", "100k", "1024") are powers of 1024: 512m is 512Mi.</summary>
        private string? Memory(YamlNode node, string path)
        {
            if (Text(node, path) is not { } text)
            {
                return null;
            }
            var match = SizePattern().Match(text.Trim());
            if (!match.Success)
            {
                Error(node, path, $"expected a size such as 512m or 1g, got '{text}'");
                return null;
            }
            var unit = match.Groups[2].Value.ToLowerInvariant() switch { "k" => "Ki", "m" => "Mi", "g" => "Gi", "t" => "Ti", _ => "" };
            return match.Groups[1].Value + unit;
        }

        private TimeSpan? Duration(YamlNode node, string path)
        {
            if (Text(node, path) is not { } text)
            {
                return null;
            }
            if (!Orchestrator.Syntax.Duration.TryParse(text, out var duration))
            {
                Error(node, path, $"expected a duration such as 10s, 1m30s or 500ms, got '{text}'");
                return null;
            }
            return duration;
        }

        /// <summary>no, always, on-failure[:N], unless-stopped.</summary>
        private RestartPolicy? Restart(YamlNode node, string path)
        {
            var text = Text(node, path);
            switch (text)
            {
                case null:
                    return null;
                case "no" or "false":
                    return new RestartPolicy { Policy = RestartPolicyKind.Never };
                case "always" or "unless-stopped":
                    return new RestartPolicy { Policy = RestartPolicyKind.Always };
                case "on-failure":
                    return new RestartPolicy { Policy = RestartPolicyKind.OnFailure };
                default:
                    if (text.StartsWith("on-failure:", StringComparison.Ordinal)
                        && int.TryParse(text.AsSpan("on-failure:".Length), NumberStyles.None, CultureInfo.InvariantCulture, out var retries))
                    {
                        return new RestartPolicy { Policy = RestartPolicyKind.OnFailure, MaxRetries = retries };
                    }
                    Error(node, path, $"expected one of no, always, on-failure[:N], unless-stopped, got '{text}'");
                    return null;
            }
        }

        private void RestartPolicy(YamlMappingNode policy, string path, Workload template)
        {
            var restart = template.Restart ??= new RestartPolicy();
            foreach (var (key, value) in Entries(policy))
            {
                var field = KeyName(key);
                var at = $"{path}.{field}";
                switch (field)
                {
                    case "condition":
                        var condition = Text(value, at);
                        restart.Policy = condition switch
                        {
                            "any" => RestartPolicyKind.Always,
                            "on-failure" => RestartPolicyKind.OnFailure,
                            "none" => RestartPolicyKind.Never,
                            _ => restart.Policy,
                        };
                        if (condition is not ("any" or "on-failure" or "none"))
                        {
                            Error(value, at, $"expected one of none, on-failure, any, got '{condition}'");
                        }
                        Place("template.restart.policy", at, value);
                        break;
                    case "max_attempts":
                        restart.MaxRetries = (int)(Integer(value, at) ?? 0);
                        Place("template.restart.maxRetries", at, value);
                        break;
                    case "delay":
                        if (Duration(value, at) is { } delay)
                        {
                            restart.Backoff = $"{(long)delay.TotalMilliseconds}ms";
                        }
                        Place("template.restart.backoff", at, value);
                        break;
                    case "window":
                        if (Duration(value, at) is { } window)
                        {
                            restart.ResetAfter = $"{(long)window.TotalMilliseconds}ms";
                        }
                        Place("template.restart.resetAfter", at, value);
                        break;
                    default:
                        Ignored(key, at, Unknown(field, ["condition", "max_attempts", "delay", "window"]));
                        break;
                }
            }
        }

        /// <summary>node.labels.KEY == VALUE constraints become the selector; max_replicas_per_node: 1 is antiAffinity.</summary>
        private void Placement(YamlMappingNode placement, string path, Deployment deployment)
        {
            foreach (var (key, value) in Entries(placement))
            {
                var field = KeyName(key);
                var at = $"{path}.{field}";
                if (field == "constraints" && value is YamlSequenceNode constraints)
                {
                    for (var i = 0; i < constraints.Children.Count; i++)
                    {
                        var item = constraints.Children[i];
                        var match = Text(item, $"{at}[{i}]") is { } text ? LabelConstraint().Match(text) : Match.Empty;
                        if (match.Success)
                        {
                            (deployment.Selector ??= new(StringComparer.Ordinal))[match.Groups[1].Value] = match.Groups[2].Value;
                            Place("selector", $"{at}[{i}]", item);
                        }
                        else
                        {
                            Ignored(item, $"{at}[{i}]", "only node.labels.KEY == VALUE maps: to selector:, matched against the labels nodes get from orchd --label");
                        }
                    }
                }
                else if (field == "max_replicas_per_node" && value is YamlScalarNode { Value: "1" })
                {
                    deployment.AntiAffinity = true;
                }
                else
                {
                    Ignored(key, at, field switch
                    {
                        "max_replicas_per_node" => "only 1 maps (antiAffinity: true)",
                        "preferences" => "replicas are spread over nodes by the scheduler (spreadBy: a label in a manifest)",
                        _ => Unknown(field, ["constraints", "preferences", "max_replicas_per_node"]),
                    });
                }
            }
        }

        /// <summary>parallelism → maxUnavailable (or maxSurge with order: start-first); failure_action rollback/pause → autoRollback.</summary>
        private void UpdateConfig(YamlMappingNode update, string path, Deployment deployment)
        {
            var rollout = deployment.Rollout ??= new RolloutSpec();
            var parallelism = 1;
            var startFirst = false;
            foreach (var (key, value) in Entries(update))
            {
                var field = KeyName(key);
                var at = $"{path}.{field}";
                switch (field)
                {
                    case "parallelism":
                        parallelism = (int)(Integer(value, at) ?? 1);
                        Place("rollout", at, value);
                        break;
                    case "order":
                        startFirst = Text(value, at) == "start-first";
                        break;
                    case "failure_action":
                        var action = Text(value, at);
                        rollout.AutoRollback = action == "rollback";
                        if (action == "continue")
                        {
                            Ignored(value, at, "continue has no counterpart; a rollout past its deadline stops (pause) or rolls back");
                        }
                        break;
                    default:
                        Ignored(key, at, field switch
                        {
                            "delay" or "monitor" => "a replica moves on when the previous one is ready (readiness probe)",
                            "max_failure_ratio" => "any replica not ready within the progress deadline fails the rollout",
                            _ => Unknown(field, ["parallelism", "order", "failure_action", "delay", "monitor", "max_failure_ratio"]),
                        });
                        break;
                }
            }
            // parallelism: 0 means all at once in swarm.
            var step = parallelism <= 0 ? Math.Max(1, deployment.Replicas) : parallelism;
            (rollout.MaxUnavailable, rollout.MaxSurge) = startFirst ? (0, step) : (step, 0);
        }

        /// <summary>test (CMD, CMD-SHELL, a string, NONE), interval, timeout, retries, start_period → liveness and readiness exec probes.</summary>
        private void HealthCheck(YamlNode node, string path, Workload template)
        {
            if (node is not YamlMappingNode check)
            {
                Error(node, path, $"expected a mapping (test:, interval:, …), got {ManifestReader.Describe(node)}");
                return;
            }
            List<string>? command = null;
            double period = 30, timeout = 30, startPeriod = 0;
            var retries = 3;
            var disabled = false;
            foreach (var (key, value) in Entries(check))
            {
                var field = KeyName(key);
                var at = $"{path}.{field}";
                switch (field)
                {
                    case "test":
                        var words = value is YamlSequenceNode list ? [.. list.Children.Select((w, i) => Text(w, $"{at}[{i}]") ?? "")] : Text(value, at) is { } shell ? ["CMD-SHELL", shell] : new List<string>();
                        switch (words)
                        {
                            case ["NONE", ..]:
                                disabled = true;
                                break;
                            case ["CMD", _, ..]:
                                command = words[1..];
                                break;
                            case ["CMD-SHELL", _, ..]:
                                command = ["/bin/sh", "-c", string.Join(' ', words[1..])];
                                break;
                            default:
                                Error(value, at, $"expected [CMD, prog, args…], [CMD-SHELL, \"command\"], a command string or [NONE], got {ManifestReader.Describe(value)}");
                                break;
                        }
                        Place("template.probes", at, value);
                        break;
                    case "interval":
                        period = Duration(value, at)?.TotalSeconds ?? period;
                        Place("template.probes.liveness.periodSeconds", at, value);
                        break;
                    case "timeout":
                        timeout = Duration(value, at)?.TotalSeconds ?? timeout;
                        Place("template.probes.liveness.timeoutSeconds", at, value);
                        break;
                    case "start_period":
                        startPeriod = Duration(value, at)?.TotalSeconds ?? startPeriod;
                        Place("template.probes.liveness.initialDelaySeconds", at, value);
                        break;
                    case "retries":
                        retries = (int)(Integer(value, at) ?? retries);
                        Place("template.probes.liveness.failureThreshold", at, value);
                        break;
                    case "disable":
                        disabled = value is YamlScalarNode { Value: "true" or "True" or "TRUE" };
                        break;
                    default:
                        Ignored(key, at, field == "start_interval" ? "probes keep their interval during start_period" : Unknown(field, ["test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"]));
                        break;
                }
            }
            if (disabled)
            {
                return;
            }
            if (command is null)
            {
                Ignored(node, path, "no test:, and the image's HEALTHCHECK is not read; the container has no probes");
                return;
            }
            Probe Make() => new()
            {
                Exec = new ExecAction { Command = [.. command] },
                PeriodSeconds = period,
                TimeoutSeconds = timeout,
                InitialDelaySeconds = startPeriod,
                FailureThreshold = retries,
            };
            template.Probes = new Probes { Liveness = Make(), Readiness = Make() };
            foreach (var field in new[] { "periodSeconds", "timeoutSeconds", "initialDelaySeconds", "failureThreshold" })
            {
                if (_places.TryGetValue($"template.probes.liveness.{field}", out var place))
                {
                    _places[$"template.probes.readiness.{field}"] = place;
                }
            }
        }
    }
}

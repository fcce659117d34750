namespace Orchestrator.Api.Workloads;

/// <summary>Every problem with a workload at once, each naming the field and the fix.</summary>
public static partial class WorkloadValidator
{
    public static bool IsValidName(string name)
        => name.Length is > 0 and <= 63 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_') && char.IsAsciiLetterOrDigit(name[0]);

    /// <summary>The longest image reference (docker's name limit is 255, plus a tag and a digest).</summary>
    public const int MaxImageReference = 512;

    /// <summary>The longest hostname (HOST_NAME_MAX is 64 with its terminating NUL).</summary>
    public const int MaxHostname = 63;

    public static bool IsValidHostname(string name)
        => name.Length is > 0 and <= MaxHostname && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.')
            && char.IsAsciiLetterOrDigit(name[0]) && char.IsAsciiLetterOrDigit(name[^1]) && !name.Contains("..", StringComparison.Ordinal);

    public static IReadOnlyList<string> Validate(Workload w) => Validate(w, inApp: false);

    /// <param name="inApp">One of an app's containers (Apps.Validate): dependsOn is its to have.</param>
    internal static IReadOnlyList<string> Validate(Workload w, bool inApp)
    {
        var errors = new List<string>();
        void Error(string text) => errors.Add(text);

        if (!IsValidName(w.Name))
        {
            Error($"name: '{w.Name}' is not a valid name; use 1-63 letters, digits, '-' or '_', starting with a letter or digit");
        }
        if (Apps.IsApp(w))
        {
            Apps.Validate(w, Error);
            return errors;
        }
        if (!inApp && w.DependsOn is not null)
        {
            Error("dependsOn: only a container of an app depends on others; put this workload and the ones it needs under one workload's containers:");
        }
        if (string.IsNullOrWhiteSpace(w.Image))
        {
            Error("image: required; name an image such as busybox:latest");
        }
        else if (w.Image.Length > MaxImageReference)
        {
            Error($"image: {w.Image.Length} characters; an image reference has at most {MaxImageReference} (registry/name:tag@digest)");
        }
        if (w.Hostname is { } hostname && !IsValidHostname(hostname))
        {
            Error($"hostname: '{(hostname.Length > 80 ? hostname[..80] + "…" : hostname)}' is not a host name; use at most {MaxHostname} letters, digits, '-' and '.' (the kernel's limit is 64 bytes)");
        }
        if (w.Resources is { } r)
        {
            if (r.Cpu is not null && !Quantities.TryParseMilliCpu(r.Cpu, out _))
            {
                Error($"resources.cpu: '{r.Cpu}' is not a CPU amount; use a number of CPUs (0.5) or millicores (500m)");
            }
            if (r.Memory is not null && (!Quantities.TryParseBytes(r.Memory, out var bytes) || bytes < 4 << 20))
            {
                Error($"resources.memory: '{r.Memory}' is not a size of at least 4Mi; use bytes or a suffix (64Mi, 1Gi)");
            }
            ManifestRules.Check(errors, "resources.pids", "Resources.pids", r.Pids);
        }
        if (w.Job is { } job)
        {
            if (job.Schedule is not null && CronSchedule.Problem(job.Schedule) is { } schedule)
            {
                Error($"job.schedule: {schedule}");
            }
            if (job.TimeZone is { } zone && !TimeZoneName().IsMatch(zone))
            {
                Error($"job.timeZone: '{zone}' is not a time zone name; use an IANA name such as Europe/Berlin or UTC (the node's own zone when left out)");
            }
            else if (job.TimeZone is not null && job.Schedule is null)
            {
                Error("job.timeZone: only a scheduled job has a time zone; give job.schedule or drop it");
            }
            ManifestRules.Check(errors, "job.retries", "JobSpec.retries", job.Retries);
            ManifestRules.Check(errors, "job.deadlineSeconds", "JobSpec.deadlineSeconds", job.DeadlineSeconds);
            ManifestRules.Check(errors, "job.history", "JobSpec.history", job.History);
            if (w.Restart is not null)
            {
                Error("restart: a job is restarted only when a run fails, job.retries times; drop restart (or job)");
            }
            if (w.Probes?.Liveness is not null || w.Probes?.Readiness is not null)
            {
                Error("probes: a job runs to completion and is judged by its exit code; liveness and readiness probes do not apply (use job.deadlineSeconds for one that hangs)");
            }
        }
        if (w.Restart is { } restart)
        {
            ManifestRules.Check(errors, "restart.policy", "RestartPolicy.policy", restart.Policy);
            ManifestRules.Check(errors, "restart.maxRetries", "RestartPolicy.maxRetries", restart.MaxRetries);
            foreach (var (field, value) in new[] { ("backoff", restart.Backoff), ("maxBackoff", restart.MaxBackoff), ("resetAfter", restart.ResetAfter) })
            {
                if (value is not null && !Orchestrator.Syntax.Duration.TryParse(value, out _))
                {
                    Error($"restart.{field}: expected a duration ({Orchestrator.Syntax.Duration.Examples}), got '{value}'");
                }
            }
        }
        if (w.Probes is { } probes)
        {
            foreach (var (kind, probe) in new[] { ("startup", probes.Startup), ("liveness", probes.Liveness), ("readiness", probes.Readiness) })
            {
                if (probe is not null)
                {
                    ValidateProbe($"probes.{kind}", probe, errors);
                    if (w.Network == NetworkMode.None && probe.Exec is null)
                    {
                        Error($"probes.{kind}: a container with network none has no address to probe; use an exec probe");
                    }
                }
            }
        }
        var published = new HashSet<(int, string)>();
        for (var i = 0; i < (w.Ports?.Count ?? 0); i++)
        {
            var p = w.Ports![i];
            ManifestRules.Check(errors, $"ports[{i}].containerPort", "PortMapping.containerPort", p.ContainerPort);
            ManifestRules.Check(errors, $"ports[{i}].hostPort", "PortMapping.hostPort", p.HostPort);
            ManifestRules.Check(errors, $"ports[{i}].protocol", "PortMapping.protocol", p.Protocol);
            if (!published.Add((p.HostPort ?? p.ContainerPort, p.Protocol)))
            {
                Error($"ports[{i}]: host port {p.HostPort ?? p.ContainerPort}/{p.Protocol} is published twice");
            }
        }
        var targets = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < (w.Volumes?.Count ?? 0); i++)
        {
            var v = w.Volumes![i];
            if ((v.Name is null) == (v.HostPath is null))
            {
                Error($"volumes[{i}]: give exactly one of name (a named volume) or hostPath (a bind mount)");
            }
            if (v.Name is not null && !IsValidName(v.Name))
            {
                Error($"volumes[{i}].name: expected 1-63 letters, digits, '-' or '_' starting with a letter or digit, got '{v.Name}'");
            }
            if (v.HostPath is not null && !Path.IsPathFullyQualified(v.HostPath))
            {
                Error($"volumes[{i}].hostPath: expected an absolute path on the node, got '{v.HostPath}'");
            }
            if (v.Target is null || !v.Target.StartsWith('/') || v.Target.Split('/').Contains(".."))
            {
                Error($"volumes[{i}].target: expected an absolute path inside the container, without '..', got '{v.Target}'");
            }
            else if (!targets.Add(v.Target.TrimEnd('/')))
            {
                Error($"volumes[{i}].target: '{v.Target}' is mounted twice");
            }
        }
        if (w.Ports is { Count: > 0 } && w.Network is NetworkMode.Host or NetworkMode.None)
        {
            Error($"ports: only a bridge network publishes ports (with network {WireNames.Of(w.Network.Value)} there is nothing to map); drop ports: or use network: bridge");
        }
        ManifestRules.Check(errors, "network", "Workload.network", w.Network);
        ManifestRules.Check(errors, "runtime", "Workload.runtime", w.Runtime);
        ManifestRules.Check(errors, "seccomp", "Workload.seccomp", w.Seccomp);
        ManifestRules.Check(errors, "stopGracePeriodSeconds", "Workload.stopGracePeriodSeconds", w.StopGracePeriodSeconds);
        if (w.User is { } user && !IsNumericUser(user))
        {
            Error($"user: expected a numeric uid or uid:gid, got '{user}' (names need the image's /etc/passwd, which is not read)");
        }
        LinuxSettings.Validate(w, errors);
        SecretMounts.Validate(w, errors);
        foreach (var key in w.Env?.Keys ?? Enumerable.Empty<string>())
        {
            if (key.Length == 0 || key.Contains('=', StringComparison.Ordinal))
            {
                Error($"env: '{key}' is not a variable name; drop the '=' (env is a mapping: NAME: value)");
            }
        }
        return errors;
    }

    private static bool IsNumericUser(string user)
    {
        var parts = user.Split(':');
        return parts.Length <= 2 && parts.All(p => p.Length is > 0 and <= 10 && p.All(char.IsAsciiDigit) && uint.TryParse(p, System.Globalization.CultureInfo.InvariantCulture, out _));
    }

    private static void ValidateProbe(string path, Probe probe, List<string> errors)
    {
        var actions = (probe.Exec is null ? 0 : 1) + (probe.HttpGet is null ? 0 : 1) + (probe.TcpSocket is null ? 0 : 1);
        if (actions != 1)
        {
            errors.Add($"{path}: give exactly one of exec, httpGet, tcpSocket");
        }
        if (probe.Exec is { Command: null or { Count: 0 } })
        {
            errors.Add($"{path}.exec.command: give the command to run, e.g. [\"cat\", \"/tmp/healthy\"]");
        }
        if (probe.HttpGet is { } http)
        {
            ManifestRules.Check(errors, $"{path}.httpGet.port", "HttpGetAction.port", http.Port);
            if (http.Path is null || !http.Path.StartsWith('/'))
            {
                errors.Add($"{path}.httpGet.path: expected a path starting with '/', got '{http.Path}'");
            }
        }
        if (probe.TcpSocket is { } tcp)
        {
            ManifestRules.Check(errors, $"{path}.tcpSocket.port", "TcpSocketAction.port", tcp.Port);
        }
        ManifestRules.Check(errors, $"{path}.initialDelaySeconds", "Probe.initialDelaySeconds", probe.InitialDelaySeconds);
        ManifestRules.Check(errors, $"{path}.periodSeconds", "Probe.periodSeconds", probe.PeriodSeconds);
        ManifestRules.Check(errors, $"{path}.timeoutSeconds", "Probe.timeoutSeconds", probe.TimeoutSeconds);
        ManifestRules.Check(errors, $"{path}.failureThreshold", "Probe.failureThreshold", probe.FailureThreshold);
        ManifestRules.Check(errors, $"{path}.successThreshold", "Probe.successThreshold", probe.SuccessThreshold);
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"^(UTC|[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2})$")]
    private static partial System.Text.RegularExpressions.Regex TimeZoneName();
}

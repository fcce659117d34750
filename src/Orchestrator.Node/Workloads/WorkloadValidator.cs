namespace Orchestrator.Node.Workloads;

/// <summary>Every problem with a workload at once, each naming the field and the fix.</summary>
public static class WorkloadValidator
{
    public static bool IsValidName(string name)
        => name.Length is > 0 and <= 63 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_') && char.IsAsciiLetterOrDigit(name[0]);

    public static IReadOnlyList<string> Validate(Workload w)
    {
        var errors = new List<string>();
        void Error(string text) => errors.Add(text);

        if (!IsValidName(w.Name))
        {
            Error($"name: '{w.Name}' is not a valid name; use 1-63 letters, digits, '-' or '_', starting with a letter or digit");
        }
        if (string.IsNullOrWhiteSpace(w.Image))
        {
            Error("image: required; name an image such as busybox:latest");
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
            if (r.Pids is < 1)
            {
                Error($"resources.pids: {r.Pids} must be at least 1");
            }
        }
        if (w.Restart is { } restart)
        {
            if (restart.Policy is not ("always" or "on-failure" or "never"))
            {
                Error($"restart.policy: '{restart.Policy}' is not one of always, on-failure, never");
            }
            if (restart.MaxRetries < 0)
            {
                Error($"restart.maxRetries: {restart.MaxRetries} must be 0 (no limit) or more");
            }
            foreach (var (field, value) in new[] { ("backoff", restart.Backoff), ("maxBackoff", restart.MaxBackoff), ("resetAfter", restart.ResetAfter) })
            {
                if (value is not null && !Quantities.TryParseDuration(value, out _))
                {
                    Error($"restart.{field}: '{value}' is not a duration; use 500ms, 10s, 5m or 1h");
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
                    if (w.Network == "none" && probe.Exec is null)
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
            if (p.ContainerPort is < 1 or > 65535)
            {
                Error($"ports[{i}].containerPort: {p.ContainerPort} is not a port (1-65535)");
            }
            if (p.HostPort is < 1 or > 65535)
            {
                Error($"ports[{i}].hostPort: {p.HostPort} is not a port (1-65535)");
            }
            if (p.Protocol is not ("tcp" or "udp"))
            {
                Error($"ports[{i}].protocol: '{p.Protocol}' is not tcp or udp");
            }
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
                Error($"volumes[{i}].name: '{v.Name}' is not a valid volume name; use letters, digits, '-' or '_'");
            }
            if (v.HostPath is not null && !Path.IsPathFullyQualified(v.HostPath))
            {
                Error($"volumes[{i}].hostPath: '{v.HostPath}' must be an absolute path");
            }
            if (!v.Target.StartsWith('/') || v.Target.Split('/').Contains(".."))
            {
                Error($"volumes[{i}].target: '{v.Target}' must be an absolute path inside the container, without '..'");
            }
            else if (!targets.Add(v.Target.TrimEnd('/')))
            {
                Error($"volumes[{i}].target: '{v.Target}' is mounted twice");
            }
        }
        if (w.Ports is { Count: > 0 } && w.Network is "host" or "none")
        {
            Error($"ports: only a bridge network publishes ports (with network {w.Network} there is nothing to map); drop ports: or use network: bridge");
        }
        if (w.Network is not (null or "host" or "none" or "bridge"))
        {
            Error($"network: '{w.Network}' is not one of host, none, bridge");
        }
        if (w.Runtime is not (null or "native" or "containerd"))
        {
            Error($"runtime: '{w.Runtime}' is not native or containerd");
        }
        if (w.Seccomp is not (null or "default" or "unconfined"))
        {
            Error($"seccomp: '{w.Seccomp}' is not default or unconfined");
        }
        if (w.StopGracePeriodSeconds is < 0 or > 3600)
        {
            Error($"stopGracePeriodSeconds: {w.StopGracePeriodSeconds} must be between 0 and 3600");
        }
        if (w.User is { } user && !IsNumericUser(user))
        {
            Error($"user: '{user}' must be numeric, uid or uid:gid (names need the image's /etc/passwd, which is not read)");
        }
        foreach (var key in w.Env?.Keys ?? Enumerable.Empty<string>())
        {
            if (key.Length == 0 || key.Contains('=', StringComparison.Ordinal))
            {
                Error($"env: '{key}' is not a variable name");
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
        if (probe.Exec is { Command.Count: 0 })
        {
            errors.Add($"{path}.exec.command: give the command to run, e.g. [\"cat\", \"/tmp/healthy\"]");
        }
        if (probe.HttpGet is { } http && (http.Port is < 1 or > 65535 || !http.Path.StartsWith('/')))
        {
            errors.Add($"{path}.httpGet: needs a port (1-65535) and a path starting with '/'");
        }
        if (probe.TcpSocket is { Port: < 1 or > 65535 })
        {
            errors.Add($"{path}.tcpSocket.port: {probe.TcpSocket.Port} is not a port (1-65535)");
        }
        if (probe.PeriodSeconds <= 0 || probe.TimeoutSeconds <= 0 || probe.InitialDelaySeconds < 0)
        {
            errors.Add($"{path}: periodSeconds and timeoutSeconds must be positive, initialDelaySeconds not negative");
        }
        if (probe.FailureThreshold < 1 || probe.SuccessThreshold < 1)
        {
            errors.Add($"{path}: failureThreshold and successThreshold must be at least 1");
        }
    }
}

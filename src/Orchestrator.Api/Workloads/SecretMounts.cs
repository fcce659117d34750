using System.Globalization;

namespace Orchestrator.Api.Workloads;

/// <summary>A fleet secret or config (<c>orchctl secret create</c>, <c>orchctl configmap create</c>) given to a container.</summary>
/// <remarks>
/// As a file (the default: <c>/run/secrets/NAME</c> for a secret, <c>/NAME</c> for a config) on a
/// memory file system of the node, bind-mounted read-only; or, with <see cref="Env"/>, as an
/// environment variable. <see cref="Version"/> is pinned by <c>orchctl apply</c> (the version
/// current then), so a new version of the secret is a change of the template, rolled out (and
/// rolled back) as any other.
/// </remarks>
public sealed class SecretMount
{
    public string Name { get; set; } = "";
    /// <summary>The file's path in the container; a relative one is under /run/secrets (docker's rule for secrets).</summary>
    public string? Target { get; set; }
    /// <summary>Give the value as this environment variable instead of a file.</summary>
    public string? Env { get; set; }
    /// <summary>Octal permissions of the file (0444 by default).</summary>
    public string? Mode { get; set; }
    /// <summary>The file's owner (0 by default).</summary>
    public long? Uid { get; set; }
    /// <summary>The file's group (0 by default).</summary>
    public long? Gid { get; set; }
    /// <summary>The version the container gets; orchctl apply fills in the current one.</summary>
    public long? Version { get; set; }
}

/// <summary>A secret (sealed to each node's own key: the hub never holds it in clear) or a config (clear, signed).</summary>
[System.Text.Json.Serialization.JsonConverter(typeof(WireEnumConverter<SecretKind>))]
public enum SecretKind
{
    [System.Text.Json.Serialization.JsonStringEnumMemberName("unknown")] Unknown,
    [System.Text.Json.Serialization.JsonStringEnumMemberName("secret")] Secret,
    [System.Text.Json.Serialization.JsonStringEnumMemberName("config")] Config,
}

/// <summary>The names, targets and checks of <see cref="Workload.Secrets"/> and <see cref="Workload.Configs"/>.</summary>
public static class SecretMounts
{
    /// <summary>The most a secret may hold (docker's limit is 500 KB; a key or a certificate chain is a few KB).</summary>
    public const int MaxSecretBytes = 64 * 1024;

    /// <summary>The most a config may hold (it is stored once, in clear).</summary>
    public const int MaxConfigBytes = 512 * 1024;

    public static int MaxBytes(SecretKind kind) => kind == SecretKind.Secret ? MaxSecretBytes : MaxConfigBytes;

    public static string Noun(SecretKind kind) => kind == SecretKind.Secret ? "secret" : "config";

    /// <summary>Why <paramref name="name"/> cannot name a secret or config, or null: 1-63 of a-z A-Z 0-9 _ -, starting with a letter or digit.</summary>
    public static string? NameProblem(string? name)
    {
        if (string.IsNullOrEmpty(name) || name.Length > 63 || !char.IsAsciiLetterOrDigit(name[0])
            || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
        {
            return $"'{name}' is not a secret name; use 1-63 letters, digits, '_' and '-', starting with a letter or digit";
        }
        return null;
    }

    /// <summary>Where the file goes in the container.</summary>
    public static string TargetOf(SecretMount mount, SecretKind kind)
    {
        var target = mount.Target ?? (kind == SecretKind.Secret ? mount.Name : "/" + mount.Name);
        return target.StartsWith('/') ? target : "/run/secrets/" + target;
    }

    /// <summary>The file's mode (0444 by default: readable by the container's user, whoever it is, as docker's).</summary>
    public static uint ModeOf(SecretMount mount)
        => mount.Mode is { } mode && uint.TryParse(mode, NumberStyles.None, CultureInfo.InvariantCulture, out _) ? Convert.ToUInt32(mode, 8) : 0x124;

    /// <summary>Every (kind, mount) of the workload, secrets first, then those of an app's containers.</summary>
    public static IEnumerable<(SecretKind Kind, SecretMount Mount)> All(Workload w)
        => (w.Secrets ?? []).Select(m => (SecretKind.Secret, m)).Concat((w.Configs ?? []).Select(m => (SecretKind.Config, m)))
            .Concat((w.InitContainers ?? []).Concat(w.Containers ?? []).SelectMany(All));

    /// <summary>Every mount of one kind that names <paramref name="name"/>, the app's containers' too.</summary>
    public static IEnumerable<SecretMount> Named(Workload w, SecretKind kind, string name)
        => All(w).Where(m => m.Kind == kind && m.Mount.Name == name).Select(m => m.Mount);

    internal static void Validate(Workload w, List<string> errors)
    {
        var targets = new HashSet<string>((w.Volumes ?? []).Select(v => v.Target?.TrimEnd('/') ?? "").Concat((w.Tmpfs ?? []).Select(t => t.Target?.TrimEnd('/') ?? "")), StringComparer.Ordinal);
        var variables = new HashSet<string>(w.Env?.Keys ?? Enumerable.Empty<string>(), StringComparer.Ordinal);
        foreach (var (kind, field) in new[] { (SecretKind.Secret, "secrets"), (SecretKind.Config, "configs") })
        {
            var list = kind == SecretKind.Secret ? w.Secrets : w.Configs;
            for (var i = 0; i < (list?.Count ?? 0); i++)
            {
                var m = list![i];
                if (m is null)
                {
                    errors.Add($"{field}[{i}]: expected a mapping with name");
                    continue;
                }
                if (NameProblem(m.Name) is { } bad)
                {
                    errors.Add($"{field}[{i}].name: {bad}");
                }
                if (m.Env is { } env)
                {
                    if (m.Target is not null || m.Mode is not null || m.Uid is not null || m.Gid is not null)
                    {
                        errors.Add($"{field}[{i}]: env gives the value as a variable, so target, mode, uid and gid do not apply; drop them or drop env");
                    }
                    if (env.Length == 0 || char.IsAsciiDigit(env[0]) || !env.All(c => char.IsAsciiLetterOrDigit(c) || c == '_'))
                    {
                        errors.Add($"{field}[{i}].env: '{env}' is not a variable name; use letters, digits and '_', not starting with a digit");
                    }
                    else if (!variables.Add(env))
                    {
                        errors.Add($"{field}[{i}].env: {env} is already set (env or another secret); each variable once");
                    }
                    continue;
                }
                var target = NameProblem(m.Name) is null || m.Target is not null ? TargetOf(m, kind) : null;
                if (m.Target is { } t && (t.Length == 0 || t.Split('/').Contains("..") || t.EndsWith('/') || t.Contains("//", StringComparison.Ordinal)))
                {
                    errors.Add($"{field}[{i}].target: expected a file path inside the container without '..' (absolute, or relative to /run/secrets), got '{t}'");
                }
                else if (target is not null && (target is "/" || IsUnder(target, "/proc", "/sys", "/dev")))
                {
                    errors.Add($"{field}[{i}].target: '{target}' is under a file system the container gets of its own (/proc, /sys, /dev); put the file elsewhere, under /run/secrets for example");
                }
                else if (target is not null && !targets.Add(target))
                {
                    errors.Add($"{field}[{i}].target: '{target}' is already mounted (a volume, a tmpfs or another secret or config); give one of them another target");
                }
                if (m.Mode is { } mode && (mode.Length is 0 or > 4 || !mode.All(c => c is >= '0' and <= '7')))
                {
                    errors.Add($"{field}[{i}].mode: '{mode}' is not octal permissions; use e.g. 0400 or 0444");
                }
                ManifestRules.Check(errors, $"{field}[{i}].uid", "SecretMount.uid", m.Uid);
                ManifestRules.Check(errors, $"{field}[{i}].gid", "SecretMount.gid", m.Gid);
            }
            for (var i = 0; i < (list?.Count ?? 0); i++)
            {
                if (list![i] is { } m)
                {
                    ManifestRules.Check(errors, $"{field}[{i}].version", "SecretMount.version", m.Version);
                }
            }
        }
    }

    private static bool IsUnder(string path, params string[] roots)
        => roots.Any(r => path == r || path.StartsWith(r + "/", StringComparison.Ordinal));
}

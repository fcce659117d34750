using System.Globalization;
using Microsoft.Extensions.Logging;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Daemon.Configuration;

/// <summary>Parsers for setting values. Each throws <see cref="ConfigValueException"/> saying what is wanted.</summary>
internal static class ConfigValues
{
    public static string NodeName(string value)
    {
        if (!Subjects.IsValidToken(value))
        {
            throw new ConfigValueException($"'{value}' is not a valid node name; use 1-63 letters, digits, '-' or '_' (it becomes a NATS subject token)");
        }
        return value;
    }

    /// <summary>The hostname's first label, cleaned up to be a valid node name.</summary>
    public static string DefaultNodeName()
    {
        var host = Environment.MachineName.Split('.')[0];
        var cleaned = new string(host.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '-').ToArray());
        return cleaned.Length == 0 ? "node" : cleaned[..Math.Min(63, cleaned.Length)];
    }

    /// <summary>An enrolment token as `orchctl node token create` printed it (orchtok1.…).</summary>
    public static string EnrolmentToken(string value)
    {
        try
        {
            _ = Orchestrator.Client.Identity.EnrolmentToken.Parse(value);
            return value.Trim();
        }
        catch (FormatException e)
        {
            throw new ConfigValueException(e.Message);
        }
    }

    public static string AbsolutePath(string value)
    {
        if (value.Length == 0 || !Path.IsPathRooted(value))
        {
            throw new ConfigValueException($"'{value}' is not an absolute path; give a path starting with '/'");
        }
        return Path.TrimEndingDirectorySeparator(value) is { Length: > 0 } p ? p : "/";
    }

    public static string ExistingFile(string value)
    {
        var path = AbsolutePath(value);
        if (!File.Exists(path))
        {
            throw new ConfigValueException($"'{path}' does not exist; give the path of an existing file");
        }
        return path;
    }

    /// <summary>A file with a valid nkey user seed (SU…) in it.</summary>
    public static string NKeySeedFile(string value)
    {
        var path = ExistingFile(value);
        try
        {
            NatsSettings.ReadNKeySeed(path);
        }
        catch (FormatException e)
        {
            throw new ConfigValueException(e.Message);
        }
        return path;
    }

    /// <summary>A PEM file with at least one X.509 certificate in it.</summary>
    public static string PemCertificates(string value)
    {
        var path = ExistingFile(value);
        var certificates = new System.Security.Cryptography.X509Certificates.X509Certificate2Collection();
        try
        {
            certificates.ImportFromPemFile(path);
        }
        catch (Exception e) when (e is System.Security.Cryptography.CryptographicException or IOException or UnauthorizedAccessException)
        {
            throw new ConfigValueException($"'{path}' is not a PEM certificate file ({e.Message.TrimEnd('.')}); give the certificate in PEM form (-----BEGIN CERTIFICATE-----)");
        }
        if (certificates.Count == 0)
        {
            throw new ConfigValueException($"'{path}' holds no certificate; give a PEM file with a -----BEGIN CERTIFICATE----- block");
        }
        foreach (var certificate in certificates)
        {
            certificate.Dispose();
        }
        return path;
    }

    /// <summary>What is wrong with the NATS credentials taken together, or null: the checks one setting alone cannot make.</summary>
    public static string? NatsCredentials(string? credsFile, string? nkeySeedFile, string? tlsCert, string? tlsKey)
    {
        if (credsFile is not null && nkeySeedFile is not null)
        {
            return "nats.creds_file and nats.nkey_seed_file are both set; a NATS user authenticates with one of them: keep the creds file for an operator/JWT setup, the seed file for nkey users";
        }
        if ((tlsCert is null) != (tlsKey is null))
        {
            return tlsCert is null
                ? "nats.tls_key is set without nats.tls_cert; give the client certificate too (or neither)"
                : "nats.tls_cert is set without nats.tls_key; give the certificate's private key too (or neither)";
        }
        if (tlsCert is not null)
        {
            try
            {
                using var pair = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPemFile(tlsCert, tlsKey);
                if (!pair.HasPrivateKey)
                {
                    return $"nats.tls_key: '{tlsKey}' is not the private key of nats.tls_cert '{tlsCert}'; give the key the certificate was made for";
                }
            }
            catch (Exception e) when (e is System.Security.Cryptography.CryptographicException or ArgumentException or IOException or UnauthorizedAccessException)
            {
                return $"nats.tls_key: '{tlsKey}' is not the PEM private key of nats.tls_cert '{tlsCert}' ({e.Message.TrimEnd('.')}); give the unencrypted key the certificate was made for";
            }
        }
        return null;
    }

    public static string PublicNKey(string value)
    {
        var key = value.Trim();
        bool valid;
        try
        {
            valid = key.Length == 56 && NATS.NKeys.KeyPair.IsValidPublicKey(NATS.NKeys.PrefixByte.User, key);
        }
        catch (Exception e) when (e is IndexOutOfRangeException or ArgumentException or FormatException)
        {
            valid = false;
        }
        if (!valid)
        {
            throw new ConfigValueException($"'{value}' is not a public user nkey; give the U… key that `orchctl keys create` printed");
        }
        return key;
    }

    /// <summary>A Linux capability by name (NET_ADMIN or CAP_NET_ADMIN) as CAP_NET_ADMIN.</summary>
    public static string Capability(string value)
        => Orchestrator.Api.Workloads.LinuxSettings.Capability(value) is { } name && name != "ALL"
            ? name
            : throw new ConfigValueException($"'{value}' is not a Linux capability; give a name such as NET_ADMIN or SYS_RAWIO (ALL is privileged: set policy.privileged instead)");

    /// <summary>A device path or glob for policy.devices (or * for any device).</summary>
    public static string DeviceGlob(string value)
    {
        var glob = value.Trim();
        return glob == "*" || Orchestrator.Api.Workloads.DeviceGlob.Problem(glob) is null
            ? glob
            : throw new ConfigValueException($"'{value}' is not a device path or glob; give one such as /dev/ttyUSB* or /dev/serial/by-id/* (* allows every device)");
    }

    public static bool Bool(string value) => value.Trim().ToLowerInvariant() switch
    {
        "true" or "yes" or "on" or "1" => true,
        "false" or "no" or "off" or "0" => false,
        _ => throw new ConfigValueException($"'{value}' is not a boolean; write true or false"),
    };

    public static string NatsUrl(string value)
        => Orchestrator.Client.NatsSettings.UrlProblem(value) is { } problem ? throw new ConfigValueException(problem) : value;

    public static KeyValuePair<string, string> Label(string value)
    {
        var eq = value.IndexOf('=', StringComparison.Ordinal);
        if (eq <= 0)
        {
            throw new ConfigValueException($"'{value}' is not a label; write it as key=value");
        }
        return Label(value[..eq], value[(eq + 1)..]);
    }

    /// <summary>Label keys and values follow Kubernetes' rules (<see cref="LabelSelector.IsKey"/>), so that users' selectors carry over.</summary>
    public static KeyValuePair<string, string> Label(string key, string value)
    {
        return LabelSelector.Problem(key, value) is { } problem ? throw new ConfigValueException(problem) : new(key, value);
    }

    /// <summary>host or host:port, as image references name a registry.</summary>
    public static string RegistryHost(string value)
        => value.Length > 0 && !value.Contains('/', StringComparison.Ordinal) && !value.Contains("://", StringComparison.Ordinal) && !value.Any(char.IsWhiteSpace)
            ? value
            : throw new ConfigValueException($"'{value}' is not a registry host; give host or host:port, as in an image reference (registry.local:5000)");

    /// <summary>One of a fixed set of words.</summary>
    public static string OneOf(string value, string key, params string[] allowed)
        => allowed.Contains(value, StringComparer.Ordinal) ? value
            : throw new ConfigValueException($"'{value}' is not a {key} value; use {string.Join(", ", allowed[..^1])} or {allowed[^1]}");

    public static RuntimeBackend Runtime(string value) => value switch
    {
        "auto" => RuntimeBackend.Auto,
        "native" => RuntimeBackend.Native,
        "containerd" => RuntimeBackend.Containerd,
        _ => throw new ConfigValueException($"'{value}' is not a runtime backend; use native, containerd or auto"),
    };

    public static LogLevel Level(string value) => value switch
    {
        "trace" => LogLevel.Trace,
        "debug" => LogLevel.Debug,
        "info" => LogLevel.Information,
        "warn" or "warning" => LogLevel.Warning,
        "error" => LogLevel.Error,
        _ => throw new ConfigValueException($"'{value}' is not a log level; use trace, debug, info, warn or error"),
    };

    public static LogFormat Format(string value) => value switch
    {
        "auto" => LogFormat.Auto,
        "text" => LogFormat.Text,
        "journal" => LogFormat.Journal,
        _ => throw new ConfigValueException($"'{value}' is not a log format; use auto, text or journal"),
    };

    public static string InterfaceName(string value)
        => value.Length is > 0 and <= 15 && value.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')
            ? value
            : throw new ConfigException($"'{value}' is not a network interface name (1-15 letters, digits, '-', '_' or '.')");

    public static string Cidr(string value)
    {
        var slash = value.IndexOf('/', StringComparison.Ordinal);
        return slash > 0 && System.Net.IPAddress.TryParse(value[..slash], out var ip) && ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork
            && int.TryParse(value[(slash + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var prefix) && prefix is >= 8 and <= 29
            ? value
            : throw new ConfigException($"'{value}' is not an IPv4 network from /8 to /29, like 10.88.0.0/24");
    }

    /// <summary>Whether two IPv4 networks (as <see cref="Cidr"/> takes them) share an address.</summary>
    public static bool Overlap(string a, string b)
    {
        static (uint Network, uint Mask) Parse(string cidr)
        {
            var slash = cidr.IndexOf('/', StringComparison.Ordinal);
            var bytes = System.Net.IPAddress.Parse(cidr[..slash]).GetAddressBytes();
            var prefix = int.Parse(cidr[(slash + 1)..], System.Globalization.CultureInfo.InvariantCulture);
            var mask = uint.MaxValue << (32 - prefix);
            return ((uint)(bytes[0] << 24 | bytes[1] << 16 | bytes[2] << 8 | bytes[3]) & mask, mask);
        }
        var (na, ma) = Parse(a);
        var (nb, mb) = Parse(b);
        var common = ma & mb; // the shorter prefix's mask
        return (na & common) == (nb & common);
    }

    public static long Bytes(string value)
        => Orchestrator.Api.Workloads.Quantities.TryParseBytes(value, out var bytes) && bytes >= 4096
            ? bytes
            : throw new ConfigException($"'{value}' is not a size of at least 4096 bytes; use a number with an optional Ki, Mi or Gi suffix");

    public static int Count(string value, int min, int max)
        => int.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n) && n >= min && n <= max
            ? n
            : throw new ConfigException($"'{value}' is not a whole number from {min} to {max}");

    /// <summary>The project's one duration grammar (<see cref="Orchestrator.Syntax.Duration"/>): 500ms, 90s, 1m30s, 2h, 2d.</summary>
    public static TimeSpan Duration(string value)
        => Orchestrator.Syntax.Duration.TryParse(value, out var duration, out var tooLong) ? duration
            : tooLong ? throw new ConfigValueException($"'{value}' is too long a duration; keep it under 10,000 days")
            : throw new ConfigValueException($"'{value}' is not a duration; write it like {Orchestrator.Syntax.Duration.Examples}");

    public static string Format(TimeSpan span)
        => span.TotalMilliseconds % 1000 != 0 ? $"{span.TotalMilliseconds:0}ms" : $"{span.TotalSeconds:0}s";
}

using Orchestrator.Images.Registry;

namespace Orchestrator.Daemon.Configuration;

/// <summary>What orchd's pulls (a workload's image, the node API's pull, `orchd image pull`) know of registries.</summary>
internal static class RegistrySettings
{
    /// <param name="insecure">More plain-HTTP hosts (orchd image's --insecure).</param>
    /// <param name="credentials">More credentials (orchd image's --creds), over the file's.</param>
    public static RegistryOptions Options(OrchdConfig config, IEnumerable<string>? insecure = null, IReadOnlyDictionary<string, RegistryCredentials>? credentials = null)
    {
        var all = config.RegistryAuthFile is { } file ? RegistryAuthFile.Load(file) : new Dictionary<string, RegistryCredentials>(StringComparer.Ordinal);
        foreach (var (host, given) in credentials ?? new Dictionary<string, RegistryCredentials>())
        {
            all[host] = given;
        }
        return new RegistryOptions
        {
            Insecure = config.RegistryInsecure.Concat(insecure ?? []).ToHashSet(StringComparer.Ordinal),
            Credentials = all,
        };
    }
}

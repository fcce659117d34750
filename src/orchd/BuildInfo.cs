using System.Reflection;
using System.Runtime.InteropServices;

namespace Orchestrator.Daemon;

internal static class BuildInfo
{
    /// <summary>"0.1.0+abc1234" when built from git by the Makefile, else "0.1.0".</summary>
    public static string Version { get; } = Shorten(
        typeof(BuildInfo).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0");

    /// <summary>The SDK appends the full commit hash; twelve hex digits identify it and fit a table.</summary>
    internal static string Shorten(string version)
    {
        var plus = version.IndexOf('+', StringComparison.Ordinal);
        return plus >= 0 && version.Length - plus - 1 > 12 ? version[..(plus + 13)] : version;
    }

    public static string Describe(string program) =>
        $"{program} {Version} ({RuntimeInformation.RuntimeIdentifier}, .NET {Environment.Version})";
}

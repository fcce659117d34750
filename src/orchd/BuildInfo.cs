using System.Reflection;
using System.Runtime.InteropServices;

namespace Orchestrator.Daemon;

internal static class BuildInfo
{
    /// <summary>"0.1.0+abc1234" when built from git by the Makefile, else "0.1.0".</summary>
    public static string Version { get; } =
        typeof(BuildInfo).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";

    public static string Describe(string program) =>
        $"{program} {Version} ({RuntimeInformation.RuntimeIdentifier}, .NET {Environment.Version})";
}

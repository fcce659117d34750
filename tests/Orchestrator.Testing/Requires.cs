using Xunit;

namespace Orchestrator.Testing;

/// <summary>
/// Preconditions for tests that need root or a program from Debian. Outside CI a missing one
/// skips the test with the reason; in CI (CI=true, which installs everything) it fails, so
/// that nothing passes by being skipped.
/// </summary>
public static class Requires
{
    public static bool InCi => Environment.GetEnvironmentVariable("CI") is "true" or "1";

    public static void Root()
    {
        if (Environment.UserName != "root" && !IsUid0())
        {
            Missing("this test needs root (namespaces, mounts, cgroups)");
        }
    }

    /// <summary>Returns the full path of a program, or skips/fails naming the Debian package to install.</summary>
    public static string Program(string name, string debianPackage)
    {
        var found = Which(name);
        if (found is null)
        {
            Missing($"'{name}' is not installed; apt-get install {debianPackage} (make test does)");
        }
        return found!;
    }

    /// <summary>
    /// A program at an exact path, for when another program of that name comes first on PATH
    /// (this machine's /usr/local/bin/docker is not Debian's docker client).
    /// </summary>
    public static string ProgramAt(string path, string debianPackage)
    {
        if (!File.Exists(path))
        {
            Missing($"'{path}' is not installed; apt-get install {debianPackage} (make test does)");
        }
        return path;
    }

    public static string? Which(string name)
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin";
        foreach (var dir in path.Split(':').Concat(["/usr/sbin", "/sbin", "/usr/local/sbin"]))
        {
            var candidate = Path.Combine(dir, name);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        return null;
    }

    private static bool IsUid0() => File.ReadLines("/proc/self/status").Any(l => l.StartsWith("Uid:\t0\t", StringComparison.Ordinal));

    private static void Missing(string reason)
    {
        if (InCi)
        {
            Assert.Fail($"CI must provide this: {reason}");
        }
        Assert.Skip(reason);
    }
}

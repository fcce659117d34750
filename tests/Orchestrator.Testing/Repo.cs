namespace Orchestrator.Testing;

/// <summary>Where things are in a checkout, and the published binaries tests run for real.</summary>
public static class Repo
{
    public static string Root { get; } = FindRoot();

    /// <summary>The directory `make publish` filled (ORCH_BIN_DIR overrides; default artifacts/bin).</summary>
    public static string BinDir =>
        Environment.GetEnvironmentVariable("ORCH_BIN_DIR") is { Length: > 0 } dir ? dir : Path.Combine(Root, "artifacts", "bin");

    /// <summary>A published binary; fails with the fix when it is missing.</summary>
    public static string Binary(string name)
    {
        var path = Path.Combine(BinDir, name);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"'{path}' does not exist; run `make publish` first (make test does), or set ORCH_BIN_DIR", path);
        }
        return path;
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Orchestrator.sln")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException($"no Orchestrator.sln above {AppContext.BaseDirectory}");
    }
}

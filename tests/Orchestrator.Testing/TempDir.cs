namespace Orchestrator.Testing;

/// <summary>A fresh directory under /tmp, removed (with anything left in it) on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir(string prefix = "orch-test")
    {
        Path = Directory.CreateTempSubdirectory(prefix + "-").FullName;
    }

    public string Path { get; }

    public string Combine(params string[] parts) => System.IO.Path.Combine([Path, .. parts]);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // A test that left a mount behind must not also fail the next one on cleanup.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}

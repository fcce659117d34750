namespace Orchestrator.Node.StateStore;

/// <summary>Writes a file so that a crash leaves either the old or the new content, never half.</summary>
public static class AtomicFile
{
    public static void WriteAllText(string path, string contents)
    {
        var temp = $"{path}.tmp-{Environment.ProcessId}";
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        using (var writer = new StreamWriter(stream))
        {
            writer.Write(contents);
            writer.Flush();
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
    }
}

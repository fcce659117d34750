namespace Orchestrator.Node.StateStore;

/// <summary>Writes a file so that a crash leaves either the old or the new content, never half (<see cref="Linux.StateFile"/>).</summary>
public static class AtomicFile
{
    public static void WriteAllText(string path, string contents) => Linux.StateFile.Write(path, System.Text.Encoding.UTF8.GetBytes(contents));
}

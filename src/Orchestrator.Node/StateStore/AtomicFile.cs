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
        SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    /// <summary>The rename is durable only once the directory itself is on disk (power cuts are routine at the edge).</summary>
    private static void SyncDirectory(string dir)
    {
        var fd = Linux.Libc.open(dir, Linux.Libc.O_RDONLY | Linux.Libc.O_DIRECTORY | Linux.Libc.O_CLOEXEC, 0);
        if (fd < 0)
        {
            throw Linux.LinuxException.FromLastError("open", dir);
        }
        try
        {
            if (Linux.Libc.fsync(fd) != 0)
            {
                throw Linux.LinuxException.FromLastError("fsync", dir);
            }
        }
        finally
        {
            Linux.Libc.close(fd);
        }
    }
}

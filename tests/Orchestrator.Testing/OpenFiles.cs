namespace Orchestrator.Testing;

/// <summary>This process's open descriptors, as a leak test counts them.</summary>
public static class OpenFiles
{
    /// <summary>
    /// Descriptors whose target lies under <paramref name="dir"/> (a deleted file still counts):
    /// what a leak of one component's files shows as, unlike the process's whole count, which the
    /// tests running beside it move.
    /// </summary>
    public static int Under(string dir)
    {
        var prefix = dir.TrimEnd('/') + "/";
        var count = 0;
        foreach (var fd in Directory.GetFiles("/proc/self/fd"))
        {
            try
            {
                if (new FileInfo(fd).LinkTarget is { } target && target.StartsWith(prefix, StringComparison.Ordinal))
                {
                    count++;
                }
            }
            catch (IOException)
            {
                // closed while we looked
            }
        }
        return count;
    }
}

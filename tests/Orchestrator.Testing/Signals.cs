using System.Runtime.InteropServices;

namespace Orchestrator.Testing;

public static partial class Signals
{
    public const int SIGKILL = 9, SIGTERM = 15, SIGSTOP = 19, SIGCONT = 18, SIGINT = 2;

    /// <summary>kill(2); .NET's Process.Kill only sends SIGKILL.</summary>
    public static void Send(int pid, int signal)
    {
        if (kill(pid, signal) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno != 3) // ESRCH: already gone
            {
                throw new IOException($"kill({pid}, {signal}) failed: errno {errno}");
            }
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int sig);
}

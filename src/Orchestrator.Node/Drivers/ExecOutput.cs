using System.Text;
using Orchestrator.Linux;
using static Orchestrator.Linux.Libc;

namespace Orchestrator.Node.Drivers;

/// <summary>Collects an exec'd command's output, for every driver (pipes from the native runtime, FIFOs from containerd's shim).</summary>
internal static class ExecOutput
{
    /// <summary>Reads both pipes (non-blocking, polled) until both end or <paramref name="stop"/>; keeps <paramref name="maxBytes"/> of each; closes them.</summary>
    public static unsafe (string Stdout, string Stderr) ReadBoth(int outFd, int errFd, int maxBytes, CancellationToken stop)
    {
        var fds = new[] { outFd, errFd };
        var kept = new[] { new MemoryStream(), new MemoryStream() };
        var open = new[] { true, true };
        var buffer = new byte[16 * 1024];
        try
        {
            foreach (var fd in fds)
            {
                fcntl(fd, 4 /* F_SETFL */, O_NONBLOCK);
            }
            var polls = stackalloc pollfd[2];
            while ((open[0] || open[1]) && !stop.IsCancellationRequested)
            {
                for (var i = 0; i < 2; i++)
                {
                    polls[i] = new pollfd { fd = open[i] ? fds[i] : -1, events = POLLIN };
                }
                if (poll(polls, 2, 50) <= 0)
                {
                    continue;
                }
                for (var i = 0; i < 2; i++)
                {
                    if (!open[i] || polls[i].revents == 0)
                    {
                        continue;
                    }
                    fixed (byte* b = buffer)
                    {
                        var n = read(fds[i], b, (nuint)buffer.Length);
                        if (n == 0 || (n < 0 && System.Runtime.InteropServices.Marshal.GetLastPInvokeError() != Errno.EAGAIN))
                        {
                            open[i] = false;
                        }
                        else if (n > 0 && kept[i].Length < maxBytes)
                        {
                            kept[i].Write(buffer, 0, (int)Math.Min(n, maxBytes - kept[i].Length));
                        }
                    }
                }
            }
            return (Encoding.UTF8.GetString(kept[0].ToArray()), Encoding.UTF8.GetString(kept[1].ToArray()));
        }
        finally
        {
            close(outFd);
            close(errFd);
            kept[0].Dispose();
            kept[1].Dispose();
        }
    }

}

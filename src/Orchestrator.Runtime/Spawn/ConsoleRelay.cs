using System.Net.Sockets;
using Microsoft.Win32.SafeHandles;
using Orchestrator.Linux;

namespace Orchestrator.Runtime.Spawn;

/// <summary>
/// The two ways a container's pty master leaves the runtime: to a --console-socket (runc's
/// protocol: one SCM_RIGHTS message, as containerd's shim expects), or relayed to our own
/// stdin/stdout for a foreground run.
/// </summary>
public sealed class ConsoleRelay : IDisposable
{
    private readonly FileStream _master;
    private readonly Task _output;

    private ConsoleRelay(SafeFileHandle master)
    {
        _master = new FileStream(master, FileAccess.ReadWrite, bufferSize: 0);
        var stdout = Console.OpenStandardOutput();
        _output = Task.Run(async () =>
        {
            var buffer = new byte[4096];
            try
            {
                int n;
                while ((n = await _master.ReadAsync(buffer).ConfigureAwait(false)) > 0)
                {
                    await stdout.WriteAsync(buffer.AsMemory(0, n)).ConfigureAwait(false);
                    await stdout.FlushAsync().ConfigureAwait(false);
                }
            }
            catch (IOException)
            {
                // EIO: the last holder of the slave (the container) exited.
            }
        });
        var stdin = Console.OpenStandardInput();
        _ = Task.Run(async () =>
        {
            var buffer = new byte[4096];
            try
            {
                int n;
                while ((n = await stdin.ReadAsync(buffer).ConfigureAwait(false)) > 0)
                {
                    await _master.WriteAsync(buffer.AsMemory(0, n)).ConfigureAwait(false);
                }
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
            }
        });
    }

    public static ConsoleRelay Start(SafeFileHandle master) => new(master);

    /// <summary>Waits briefly for the output still buffered in the pty after the process exited.</summary>
    public void Finish() => _output.Wait(TimeSpan.FromSeconds(2));

    public static void SendToSocket(SafeFileHandle master, string socketPath)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(socketPath));
        }
        catch (SocketException e)
        {
            throw new IOException($"--console-socket '{socketPath}': {e.Message}; is the caller listening?", e);
        }
        if (Spawn.NativeSpawn.SendFd((int)socket.SafeHandle.DangerousGetHandle(), (int)master.DangerousGetHandle(), "/dev/ptmx") != 0)
        {
            throw LinuxException.FromLastError("sendmsg", socketPath);
        }
    }

    public void Dispose() => _master.Dispose();
}

using System.Buffers.Binary;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;

namespace Orchestrator.Testing;

/// <summary>
/// A gRPC server on a unix socket that answers containerd's version call (and only that) with a
/// version of the test's choosing: how a test meets a containerd older than Debian's without
/// installing one. A stand-in for the one call a version check makes, not for containerd.
/// Every other call gets gRPC status 12 (unimplemented), as a real server's unknown method does.
/// </summary>
public sealed class OldContainerdServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly TempDir _dir;

    private OldContainerdServer(WebApplication app, TempDir dir, string socket)
    {
        _app = app;
        _dir = dir;
        Socket = socket;
    }

    public string Socket { get; }

    /// <summary>How many version calls were answered.</summary>
    public int VersionCalls { get; private set; }

    public static async Task<OldContainerdServer> StartAsync(string version, string revision = "0000000")
    {
        var dir = new TempDir("orch-old-ctrd");
        var socket = dir.Combine("containerd.sock");
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.ListenUnixSocket(socket, l => l.Protocols = HttpProtocols.Http2));
        var app = builder.Build();
        var server = new OldContainerdServer(app, dir, socket);
        app.Run(async context =>
        {
            context.Response.ContentType = "application/grpc";
            if (context.Request.Path == "/containerd.services.version.v1.Version/Version")
            {
                server.VersionCalls++;
                await context.Request.Body.CopyToAsync(Stream.Null);
                // VersionResponse { string version = 1; string revision = 2; } in one length-prefixed gRPC message.
                var message = Field(1, version).Concat(Field(2, revision)).ToArray();
                var frame = new byte[5 + message.Length];
                BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(1), (uint)message.Length);
                message.CopyTo(frame, 5);
                await context.Response.Body.WriteAsync(frame);
                context.Response.AppendTrailer("grpc-status", "0");
            }
            else
            {
                context.Response.AppendTrailer("grpc-status", "12");
                context.Response.AppendTrailer("grpc-message", "not a containerd: only the version call is answered here");
            }
        });
        await app.StartAsync();
        return server;
    }

    private static byte[] Field(int number, string value)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        if (bytes.Length > 127)
        {
            throw new ArgumentException("kept short: one length byte", nameof(value));
        }
        return [(byte)((number << 3) | 2), (byte)bytes.Length, .. bytes];
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        _dir.Dispose();
    }
}

using System.Net.Sockets;
using System.Text;
using Orchestrator.Runtime.Cgroups;

namespace Orchestrator.Runtime.Tests;

/// <summary>
/// The D-Bus call to systemd, against a server in the test that reads what a real systemd reads:
/// the SASL handshake, the header fields and the StartTransientUnit body, byte for byte per the
/// D-Bus specification. The real systemd (v2, delegated scope) is tests/systemd/nspawn-e2e.sh's.
/// </summary>
public sealed class SystemdScopeTests : IDisposable
{
    private readonly TempDir _dir = new("dbus");
    private readonly string? _before = Environment.GetEnvironmentVariable("ORCH_SYSTEMD_BUS");

    public SystemdScopeTests() => Environment.SetEnvironmentVariable("ORCH_SYSTEMD_BUS", _dir.Combine("bus"));

    public void Dispose()
    {
        Environment.SetEnvironmentVariable("ORCH_SYSTEMD_BUS", _before);
        _dir.Dispose();
    }

    private sealed record Request(string Auth, SystemdScope.Message Message, string Unit, string Mode, Dictionary<string, object> Properties, uint AuxCount);

    /// <summary>Serves one connection: the handshake, one request (decoded), then <paramref name="reply"/>'s bytes (or nothing).</summary>
    private Task<Request> Serve(Func<SystemdScope.Message, byte[]?> reply)
    {
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(_dir.Combine("bus")));
        listener.Listen(1);
        // Its own thread, not the pool's: on a loaded CI machine a pool thread came too late and the
        // client's receive timed out ("Connection timed out") before the handshake was answered.
        return Task.Factory.StartNew(() =>
        {
            using (listener)
            using (var peer = listener.Accept())
            {
                var auth = ReadUntil(peer, "\r\n");
                peer.Send(Encoding.ASCII.GetBytes("OK 0123456789abcdef0123456789abcdef\r\n"));
                Assert.Equal("BEGIN\r\n", ReadUntil(peer, "\r\n"));
                var message = SystemdScope.ReadMessage(peer);
                var body = new SystemdScope.DBusReader(message.Body, message.BigEndian);
                var unit = body.String();
                var mode = body.String();
                var properties = new Dictionary<string, object>(StringComparer.Ordinal);
                var end = body.UInt32();
                body.Align(8);
                end += (uint)body.Position;
                while (body.Position < end)
                {
                    body.Align(8);
                    var name = body.String();
                    properties[name] = body.Signature() switch
                    {
                        "s" => body.String(),
                        "b" => body.UInt32() == 1,
                        "au" => ReadUInts(body),
                        "t" => body.UInt64(),
                        var other => throw new InvalidOperationException("unexpected variant " + other),
                    };
                }
                var aux = body.UInt32();
                if (reply(message) is { } bytes)
                {
                    peer.Send(bytes);
                }
                return new Request(auth, message, unit, mode, properties, aux);
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    private static uint[] ReadUInts(SystemdScope.DBusReader body)
    {
        var length = body.UInt32();
        var list = new List<uint>();
        for (var i = 0; i < length / 4; i++)
        {
            list.Add(body.UInt32());
        }
        return [.. list];
    }

    private static string ReadUntil(Socket socket, string end)
    {
        var text = new StringBuilder();
        var one = new byte[1];
        while (!text.ToString().EndsWith(end, StringComparison.Ordinal) && socket.Receive(one) == 1)
        {
            text.Append((char)one[0]);
        }
        return text.ToString();
    }

    /// <summary>A reply as systemd sends it: METHOD_RETURN (2) or ERROR (3) with a name and a sentence.</summary>
    private static byte[] Reply(byte type, uint replySerial, string? error = null, string? text = null)
    {
        var body = new SystemdScope.DBusWriter();
        if (text is not null)
        {
            body.String(text);
        }
        var bodyBytes = body.ToArray();
        var w = new SystemdScope.DBusWriter();
        w.Byte((byte)'l');
        w.Byte(type);
        w.Byte(1); // NO_REPLY_EXPECTED: what a reply carries does not matter to a client
        w.Byte(1);
        w.UInt32((uint)bodyBytes.Length);
        w.UInt32(7);
        w.Array(8, () =>
        {
            if (error is not null)
            {
                SystemdScope.Field(w, 4, "s", error);
            }
            w.Align(8);
            w.Byte(5);
            w.Signature("u");
            w.UInt32(replySerial);
            if (text is not null)
            {
                SystemdScope.Field(w, 8, "g", "s");
            }
        });
        w.Align(8);
        return [.. w.ToArray(), .. bodyBytes];
    }

    [Fact]
    public async Task Start_asks_for_a_delegated_scope_holding_the_process_and_says_systemds_refusal()
    {
        var served = Serve(m => Reply(3, 1, "org.freedesktop.systemd1.UnitExists", "Unit orchestrator-0123456789ab.scope was already loaded or has a fragment file."));
        var e = Assert.Throws<CgroupException>(() => SystemdScope.Start("orchestrator-0123456789ab.scope", "system.slice", "node 0123456789ab", 4242, TimeSpan.FromSeconds(5)));
        Assert.Contains("org.freedesktop.systemd1.UnitExists", e.Message, StringComparison.Ordinal);
        Assert.Contains("already loaded", e.Message, StringComparison.Ordinal);

        var request = await served;
        var uid = ((uint)Tmds.Linux.LibC.geteuid()).ToString(System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal("\0AUTH EXTERNAL " + Convert.ToHexStringLower(Encoding.ASCII.GetBytes(uid)) + "\r\n", request.Auth);
        Assert.Equal(1, request.Message.Type);
        Assert.Equal("/org/freedesktop/systemd1", request.Message.Fields[1]);
        Assert.Equal("org.freedesktop.systemd1.Manager", request.Message.Fields[2]);
        Assert.Equal("StartTransientUnit", request.Message.Fields[3]);
        Assert.Equal("org.freedesktop.systemd1", request.Message.Fields[6]);
        Assert.Equal("ssa(sv)a(sa(sv))", request.Message.Fields[8]);
        Assert.Equal("orchestrator-0123456789ab.scope", request.Unit);
        Assert.Equal("fail", request.Mode);
        Assert.Equal(true, request.Properties["Delegate"]);
        Assert.Equal("system.slice", request.Properties["Slice"]);
        Assert.Equal("inactive-or-failed", request.Properties["CollectMode"]);
        Assert.Equal(new uint[] { 4242 }, request.Properties["PIDs"]);
        Assert.Equal(30_000_000UL, request.Properties["TimeoutStopUSec"]);
        Assert.Equal(0u, request.AuxCount);
    }

    [Fact]
    public async Task Start_does_not_claim_success_until_the_process_is_in_the_scope()
    {
        // systemd says yes, but this process never moves: Start must say so, not return a path.
        // The timeout is also the socket's: 2 s, not less, so a loaded machine still gets its answer.
        var served = Serve(m => Reply(2, 1));
        var e = Assert.Throws<CgroupException>(() => SystemdScope.Start("orchestrator-0123456789ab.scope", "system.slice", "x", Environment.ProcessId, TimeSpan.FromSeconds(2)));
        Assert.Contains("is still in", e.Message, StringComparison.Ordinal);
        await served;
    }

    [Fact]
    public async Task A_bus_that_hangs_up_or_is_missing_is_one_clear_error()
    {
        var served = Serve(_ => null); // reads the request, then closes without a reply
        var e = Assert.Throws<CgroupException>(() => SystemdScope.Start("orchestrator-0123456789ab.scope", "system.slice", "x", 4242, TimeSpan.FromSeconds(5)));
        Assert.Contains("closed the connection", e.Message, StringComparison.Ordinal);
        await served;

        File.Delete(_dir.Combine("bus"));
        e = Assert.Throws<CgroupException>(() => SystemdScope.Start("orchestrator-0123456789ab.scope", "system.slice", "x", 4242, TimeSpan.FromSeconds(5)));
        Assert.Contains("cannot talk to systemd at " + _dir.Combine("bus"), e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_helper_that_cannot_get_into_the_scope_is_stopped_or_kept_as_asked_and_says_why()
    {
        // No systemd answers at ORCH_SYSTEMD_BUS: the scope cannot be started around the helper.
        const string Parent = "/system.slice/orchestrator-0123456789ab.scope";
        var marker = "987." + Random.Shared.Next(100_000, 999_999).ToString(System.Globalization.CultureInfo.InvariantCulture);

        var stopped = NodeCgroup.StartKeeper("/bin/sleep", [marker], "0123456789abcdef", Parent, stopIfUnplaced: true);
        Assert.Null(stopped.Process);
        Assert.Contains($"'/bin/sleep {marker}' was stopped", stopped.Problem, StringComparison.Ordinal);
        Assert.Contains("cannot talk to systemd", stopped.Problem, StringComparison.Ordinal);
        Assert.Empty(SleepersWith(marker));

        var kept = NodeCgroup.StartKeeper("/bin/sleep", [marker], "0123456789abcdef", Parent, stopIfUnplaced: false);
        using (var process = Assert.IsType<System.Diagnostics.Process>(kept.Process))
        {
            try
            {
                Assert.False(process.HasExited);
                Assert.Contains($"(pid {process.Id}) runs in orchd's own cgroup, not in {Parent}/.keeper", kept.Problem, StringComparison.Ordinal);
                Assert.Equal([process.Id], SleepersWith(marker));
                Assert.False(NodeCgroup.IsInKeeper(process.Id, Parent));
            }
            finally
            {
                process.Kill();
                process.WaitForExit();
            }
        }

        var missing = NodeCgroup.StartKeeper(_dir.Combine("no-such-orchd"), ["fence-keeper", "/run/x"], "0123456789abcdef", Parent, stopIfUnplaced: false);
        Assert.Null(missing.Process);
        Assert.StartsWith($"cannot start '{_dir.Combine("no-such-orchd")} fence-keeper /run/x': ", missing.Problem, StringComparison.Ordinal);
    }

    private static int[] SleepersWith(string marker) =>
        [.. Directory.EnumerateDirectories("/proc").Select(Path.GetFileName).Where(n => n!.All(char.IsAsciiDigit))
            .Where(n => { try { return File.ReadAllText($"/proc/{n}/cmdline") == $"/bin/sleep\0{marker}\0"; } catch (IOException) { return false; } })
            .Select(n => int.Parse(n!, System.Globalization.CultureInfo.InvariantCulture))];
}

using System.Buffers.Binary;
using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace Orchestrator.Runtime.Cgroups;

/// <summary>
/// Asks systemd (PID 1) for a transient scope unit with <c>Delegate=yes</c> that holds a process,
/// the way runc's and podman's systemd cgroup drivers do: on cgroup v2 the only cgroup subtree
/// systemd lets another program manage is one it delegated. One D-Bus call,
/// <c>org.freedesktop.systemd1.Manager.StartTransientUnit</c>, sent over systemd's private
/// socket (<c>/run/systemd/private</c>: root only, there without a D-Bus daemon, which many edge
/// images do not have). The message is marshalled here by hand (the D-Bus wire format, little
/// endian): the call needs four properties, and a D-Bus library would cost more than this file.
/// </summary>
public static class SystemdScope
{
    /// <summary>systemd's private socket; ORCH_SYSTEMD_BUS for a test's own server.</summary>
    public static string SocketPath => Environment.GetEnvironmentVariable("ORCH_SYSTEMD_BUS") is { Length: > 0 } path ? path : "/run/systemd/private";

    /// <summary>systemd is the init system (sd_booted(3)'s test).</summary>
    public static bool SystemdRuns => Directory.Exists("/run/systemd/system");

    /// <summary>How long systemd waits for the scope's processes after SIGTERM when it stops the scope.</summary>
    public static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Starts scope <paramref name="unit"/> (for instance <c>orchestrator-0123456789ab.scope</c>)
    /// in <paramref name="slice"/> holding <paramref name="pid"/>, delegated, collected when it ends
    /// whether it failed or not (a failed scope would block the name), and waits until the process
    /// is in the scope's cgroup. Returns that cgroup's path (relative to the hierarchy's root).
    /// </summary>
    public static string Start(string unit, string slice, string description, int pid, TimeSpan timeout)
    {
        var properties = new List<(string Name, char Type, object Value)>
        {
            ("Description", 's', description),
            ("Slice", 's', slice),
            ("Delegate", 'b', true),
            ("CollectMode", 's', "inactive-or-failed"),
            ("PIDs", 'u', new[] { (uint)pid }),
            // Stopping the scope (the host shuts down) sends SIGTERM to the containers and waits
            // this long before SIGKILL: systemd's default of 90 s held a reboot for 90 s behind a
            // container whose PID 1 ignores SIGTERM (busybox httpd, seen in the arm64 VM). 30 s, as
            // Kubernetes' default grace period.
            ("TimeoutStopUSec", 't', (ulong)StopTimeout.TotalMicroseconds),
        };
        var body = new DBusWriter();
        body.String(unit);
        body.String("fail");
        body.Array(8, () =>
        {
            foreach (var (name, type, value) in properties)
            {
                body.Align(8);
                body.String(name);
                switch (value)
                {
                    case string s:
                        body.Signature("s");
                        body.String(s);
                        break;
                    case bool b:
                        body.Signature("b");
                        body.UInt32(b ? 1u : 0u);
                        break;
                    case ulong t:
                        body.Signature("t");
                        body.UInt64(t);
                        break;
                    case uint[] list:
                        body.Signature("a" + type);
                        body.Array(4, () =>
                        {
                            foreach (var item in list)
                            {
                                body.UInt32(item);
                            }
                        });
                        break;
                }
            }
        });
        body.Array(8, () => { }); // no auxiliary units
        Call("StartTransientUnit", "ssa(sv)a(sa(sv))", body.ToArray(), timeout);

        var expected = $"{slice.TrimEnd('/')}/{unit}";
        var cgroup = "";
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            cgroup = UnifiedCgroupOf(pid) ?? "";
            if (cgroup.EndsWith("/" + unit, StringComparison.Ordinal))
            {
                return cgroup;
            }
            Thread.Sleep(10);
        }
        throw new CgroupException($"systemd started scope {unit} but process {pid} is still in '{cgroup}', not in {expected}, after {timeout.TotalSeconds:0} s");
    }

    /// <summary>A process's cgroup v2 path (its "0::" line in /proc/PID/cgroup), or null.</summary>
    public static string? UnifiedCgroupOf(int pid)
    {
        try
        {
            foreach (var line in File.ReadAllLines($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/cgroup"))
            {
                if (line.StartsWith("0::", StringComparison.Ordinal))
                {
                    return line[3..];
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return null;
    }

    /// <summary>One method call on systemd's manager object; a D-Bus error becomes a CgroupException naming it.</summary>
    private static void Call(string member, string signature, byte[] body, TimeSpan timeout)
    {
        const uint serial = 1;
        var header = new DBusWriter();
        header.Byte((byte)'l');
        header.Byte(1); // METHOD_CALL
        header.Byte(0);
        header.Byte(1); // protocol version
        header.UInt32((uint)body.Length);
        header.UInt32(serial);
        header.Array(8, () =>
        {
            Field(header, 1, "o", "/org/freedesktop/systemd1");
            Field(header, 2, "s", "org.freedesktop.systemd1.Manager");
            Field(header, 3, "s", member);
            Field(header, 6, "s", "org.freedesktop.systemd1");
            Field(header, 8, "g", signature);
        });
        header.Align(8);

        var path = SocketPath;
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.ReceiveTimeout = socket.SendTimeout = (int)timeout.TotalMilliseconds;
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(path));
            // SASL: a NUL byte, EXTERNAL with our uid (the kernel vouches for it), then BEGIN.
            var uid = ((uint)Tmds.Linux.LibC.geteuid()).ToString(CultureInfo.InvariantCulture);
            socket.Send(Encoding.ASCII.GetBytes("\0AUTH EXTERNAL " + Convert.ToHexStringLower(Encoding.ASCII.GetBytes(uid)) + "\r\n"));
            var answer = ReadLine(socket);
            if (!answer.StartsWith("OK ", StringComparison.Ordinal))
            {
                throw new CgroupException($"systemd's bus at {path} refused us ('{answer}'); orchd must run as root to ask systemd for a delegated scope");
            }
            socket.Send(Encoding.ASCII.GetBytes("BEGIN\r\n"));
            socket.Send([.. header.ToArray(), .. body]);
            while (true)
            {
                var reply = ReadMessage(socket);
                if (reply.ReplySerial != serial || reply.Type is not (2 or 3))
                {
                    continue; // a signal, or something not ours
                }
                if (reply.Type == 3)
                {
                    var text = reply.Body.Length >= 4 ? new DBusReader(reply.Body, reply.BigEndian).String() : "";
                    throw new CgroupException($"systemd refused {member}: {reply.Error}: {text}");
                }
                return;
            }
        }
        catch (SocketException e)
        {
            throw new CgroupException($"cannot talk to systemd at {path}: {e.Message}", e);
        }
    }

    internal static void Field(DBusWriter w, byte code, string type, string value)
    {
        w.Align(8);
        w.Byte(code);
        w.Signature(type);
        if (type == "g")
        {
            w.Signature(value);
        }
        else
        {
            w.String(value);
        }
    }

    private static string ReadLine(Socket socket)
    {
        var line = new StringBuilder();
        var one = new byte[1];
        while (line.Length < 512)
        {
            if (socket.Receive(one) != 1)
            {
                break;
            }
            if (one[0] == '\n')
            {
                return line.ToString().TrimEnd('\r');
            }
            line.Append((char)one[0]);
        }
        throw new CgroupException($"systemd's bus closed the connection during authentication ('{line}')");
    }

    private static void ReadExactly(Socket socket, Span<byte> buffer)
    {
        while (buffer.Length > 0)
        {
            var n = socket.Receive(buffer);
            if (n == 0)
            {
                throw new CgroupException("systemd's bus closed the connection before it replied");
            }
            buffer = buffer[n..];
        }
    }

    /// <summary>One D-Bus message as read: its type, its header fields by code (strings and numbers as text) and its body.</summary>
    internal sealed record Message(byte Type, IReadOnlyDictionary<byte, string> Fields, byte[] Body, bool BigEndian)
    {
        public uint ReplySerial => Fields.TryGetValue(5, out var s) ? uint.Parse(s, CultureInfo.InvariantCulture) : 0;

        public string Error => Fields.GetValueOrDefault((byte)4, "");
    }

    internal static Message ReadMessage(Socket socket)
    {
        var fixedPart = new byte[16];
        ReadExactly(socket, fixedPart);
        var big = fixedPart[0] == (byte)'B';
        var bodyLength = big ? BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(4)) : BinaryPrimitives.ReadUInt32LittleEndian(fixedPart.AsSpan(4));
        var fieldsLength = big ? BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(12)) : BinaryPrimitives.ReadUInt32LittleEndian(fixedPart.AsSpan(12));
        if (bodyLength > 1 << 20 || fieldsLength > 1 << 16)
        {
            throw new CgroupException($"systemd's bus sent a message of {bodyLength} bytes with {fieldsLength} bytes of header fields; not a reply to us");
        }
        var headerLength = (16 + (int)fieldsLength + 7) & ~7;
        var message = new byte[headerLength + (int)bodyLength];
        fixedPart.CopyTo(message, 0);
        ReadExactly(socket, message.AsSpan(16));
        var reader = new DBusReader(message, big) { Position = 16 };
        var fields = new Dictionary<byte, string>();
        while (reader.Position < 16 + fieldsLength)
        {
            reader.Align(8);
            var code = reader.Byte();
            fields[code] = reader.Signature() switch
            {
                "s" or "o" => reader.String(),
                "g" => reader.Signature(),
                "u" => reader.UInt32().ToString(CultureInfo.InvariantCulture),
                var type => throw new CgroupException($"systemd's bus sent a header field of type '{type}'; not a reply to us"),
            };
        }
        return new Message(message[1], fields, message[headerLength..], big);
    }

    /// <summary>D-Bus marshalling, little endian, offsets aligned from the start of the buffer.</summary>
    internal sealed class DBusWriter
    {
        private readonly List<byte> _bytes = [];

        public void Align(int n)
        {
            while (_bytes.Count % n != 0)
            {
                _bytes.Add(0);
            }
        }

        public void Byte(byte b) => _bytes.Add(b);

        public void UInt32(uint v)
        {
            Align(4);
            Span<byte> b = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(b, v);
            _bytes.AddRange(b);
        }

        public void UInt64(ulong v)
        {
            Align(8);
            Span<byte> b = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(b, v);
            _bytes.AddRange(b);
        }

        public void String(string s)
        {
            var bytes = Encoding.UTF8.GetBytes(s);
            UInt32((uint)bytes.Length);
            _bytes.AddRange(bytes);
            _bytes.Add(0);
        }

        public void Signature(string s)
        {
            _bytes.Add((byte)s.Length);
            _bytes.AddRange(Encoding.ASCII.GetBytes(s));
            _bytes.Add(0);
        }

        /// <summary>An array: its byte length (not counting the padding before the first element), then the elements.</summary>
        public void Array(int elementAlignment, Action elements)
        {
            UInt32(0);
            var lengthAt = _bytes.Count - 4;
            Align(elementAlignment);
            var start = _bytes.Count;
            elements();
            var length = (uint)(_bytes.Count - start);
            for (var i = 0; i < 4; i++)
            {
                _bytes[lengthAt + i] = (byte)(length >> (8 * i));
            }
        }

        public byte[] ToArray() => [.. _bytes];
    }

    internal sealed class DBusReader(byte[] bytes, bool big)
    {
        public int Position { get; set; }

        public void Align(int n) => Position = (Position + n - 1) / n * n;

        public byte Byte() => Position < bytes.Length ? bytes[Position++] : throw Short();

        public uint UInt32()
        {
            Align(4);
            if (Position + 4 > bytes.Length)
            {
                throw Short();
            }
            var span = bytes.AsSpan(Position, 4);
            Position += 4;
            return big ? BinaryPrimitives.ReadUInt32BigEndian(span) : BinaryPrimitives.ReadUInt32LittleEndian(span);
        }

        public ulong UInt64()
        {
            Align(8);
            if (Position + 8 > bytes.Length)
            {
                throw Short();
            }
            var span = bytes.AsSpan(Position, 8);
            Position += 8;
            return big ? BinaryPrimitives.ReadUInt64BigEndian(span) : BinaryPrimitives.ReadUInt64LittleEndian(span);
        }

        public string String()
        {
            var length = (int)UInt32();
            if (length < 0 || Position + length + 1 > bytes.Length)
            {
                throw Short();
            }
            var s = Encoding.UTF8.GetString(bytes, Position, length);
            Position += length + 1;
            return s;
        }

        public string Signature()
        {
            var length = Byte();
            if (Position + length + 1 > bytes.Length)
            {
                throw Short();
            }
            var s = Encoding.ASCII.GetString(bytes, Position, length);
            Position += length + 1;
            return s;
        }

        private static CgroupException Short() => new("systemd's bus sent a message shorter than its own header says");
    }
}

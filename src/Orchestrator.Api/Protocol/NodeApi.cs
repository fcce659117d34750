using System.Text.Json.Serialization;

namespace Orchestrator.Api;

/// <summary>The node API's operations: the last token of <c>orch.node.&lt;node&gt;.&lt;op&gt;</c>.</summary>
public static class NodeOps
{
    public const string Info = "info", Run = "run", Stop = "stop", Start = "start", Restart = "restart", Remove = "rm",
        List = "ps", Inspect = "inspect", Logs = "logs", Exec = "exec", Stats = "stats", Status = "status",
        Images = "images", ImageInspect = "image-inspect", Pull = "pull", RemoveImage = "rmi", ImageGc = "image-gc", Copy = "cp", PortForward = "port-forward", Label = "label", Attach = "attach",
        Connect = "connect";

    public static readonly IReadOnlyList<string> All =
        [Info, Run, Stop, Start, Restart, Remove, List, Inspect, Logs, Exec, Stats, Status, Images, ImageInspect, Pull, RemoveImage, ImageGc, Copy, PortForward, Label, Attach, Connect];
}

/// <summary>stop, start, restart, rm, inspect: which container.</summary>
public sealed record NameRequest
{
    public int SchemaVersion { get; init; } = 1;
    public string Name { get; init; } = "";
}

public sealed record LogsRequest
{
    public int SchemaVersion { get; init; } = 1;
    public string Name { get; init; } = "";
    /// <summary>The last N lines only.</summary>
    public int? Tail { get; init; }
    /// <summary>Only lines written at or after this time.</summary>
    public DateTimeOffset? Since { get; init; }
    /// <summary>Keep sending new lines (each reply has more: true) for as long as the client answers on <see cref="AliveSubject"/>.</summary>
    public bool Follow { get; init; }
    /// <summary>follow: a subject the client answers; the node asks it every few seconds and stops when nobody does.</summary>
    public string? AliveSubject { get; init; }
    /// <summary>
    /// The log of the container's last exited run only (kubectl logs --previous): the run before
    /// the current one, or the last one when the container is not running. Not with follow.
    /// Left out when false, so a plain request's bytes are what they were before it.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingDefault)]
    public bool Previous { get; init; }
    /// <summary>A job's run by its number (ContainerStatus.Runs): only that run's lines, every attempt of it. Not with follow or previous.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingDefault)]
    public int? Run { get; init; }
}

/// <summary>One log line as stored: when, which stream, the text, and whether it was cut (P).</summary>
public sealed record LogLine(DateTimeOffset Time, string Stream, string Text, bool Partial);

public sealed record LogsReply
{
    public int SchemaVersion { get; init; } = 1;
    public required IReadOnlyList<LogLine> Lines { get; init; }
    /// <summary>
    /// More replies follow on the same inbox: a log bigger than one NATS message comes in
    /// several, oldest lines first; the last has <c>more: false</c>.
    /// </summary>
    public bool More { get; init; }
}

public sealed record ExecRequest
{
    public int SchemaVersion { get; init; } = 1;
    public string Name { get; init; } = "";
    public IReadOnlyList<string> Command { get; init; } = [];
    public double TimeoutSeconds { get; init; } = 30;
    /// <summary>
    /// Stream the output: <see cref="ExecStreamReply"/> messages as the command writes, the last one
    /// (<c>more: false</c>) with the exit code. Needs <see cref="AliveSubject"/>; without both, one
    /// buffered <see cref="ExecReply"/> (what clients before streaming ask for).
    /// </summary>
    public bool Stream { get; init; }
    /// <summary>stream: a subject the client answers; the node asks it every few seconds and kills the command when nobody does.</summary>
    public string? AliveSubject { get; init; }
    /// <summary>
    /// exec -i / -t: open a session (<see cref="SessionOpened"/>, then <see cref="ExecFrames"/>)
    /// instead of streaming: the client's input goes to the command, the output comes back as it
    /// is written, the terminal follows the client's window. No timeout: it ends when the command
    /// does, or when the client quits or goes away.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool Interactive { get; init; }
    /// <summary>interactive: the client's input goes to the command's stdin (without: /dev/null).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool Stdin { get; init; }
    /// <summary>interactive: the command runs on a terminal (stdout and stderr are one stream then) of <see cref="Rows"/> × <see cref="Cols"/>.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool Tty { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public int Rows { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public int Cols { get; init; }
}

/// <summary>
/// attach: opens a session (<see cref="SessionOpened"/>, then <see cref="ExecFrames"/>, as exec -i/-t)
/// with a running container's own first process, as <c>docker attach</c> and <c>kubectl attach</c>:
/// its output from now on (stdout and stderr apart, or its terminal), the client's input to its
/// stdin when the workload has <c>stdin: true</c>, its terminal's size when it has <c>tty: true</c>.
/// The session ends with End and an <see cref="ExecStreamReply"/> carrying the exit code when the
/// container's process exits; Quit detaches (the container runs on); End from the client stops
/// sending input (the container's stdin stays open for the next attach).
/// </summary>
public sealed record AttachRequest
{
    public int SchemaVersion { get; init; } = 1;
    public string Name { get; init; } = "";
    /// <summary>Send the client's input to the container's stdin (refused unless the workload has <c>stdin: true</c>).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool Stdin { get; init; }
    /// <summary>The client is a terminal: the container's terminal follows its size (refused unless the workload has <c>tty: true</c>).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool Tty { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public int Rows { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public int Cols { get; init; }
}

/// <summary>
/// An interactive exec's frames (first byte: what the rest is), each a request the node answers,
/// as port-forward's (<see cref="ForwardFrames"/>, whose bytes these share). Client to command:
/// Data (written to its stdin before the Ack), End (stdin closed; on a terminal, end-of-file
/// typed), Resize (4 bytes: rows and columns, big-endian 16 bits each). Command to client: Read,
/// answered with Data (stdout, or the terminal), Stderr (stderr, without a terminal), an empty
/// Data after <see cref="ForwardFrames.ReadWaitSeconds"/> without output, or End followed by an
/// <see cref="ExecStreamReply"/> with the exit code once the output is drained and the command has
/// exited. Quit kills the command. Error (+ an <see cref="ErrorReply"/>) answers a frame that failed.
/// </summary>
public static class ExecFrames
{
    public const byte Data = ForwardFrames.Data, End = ForwardFrames.End, Ack = ForwardFrames.Ack, Read = ForwardFrames.Read,
        Error = ForwardFrames.Error, Quit = ForwardFrames.Quit, Stderr = (byte)'S', Resize = (byte)'W';
}

/// <summary>
/// cp: opens a copy session with a running container's files (docs/protocol.md, "cp"); the
/// node answers <see cref="SessionOpened"/>, and the tar stream then goes over the session subject
/// in frames, each a request the other side answers (so neither side buffers more than a frame).
/// </summary>
public sealed record CopyRequest
{
    public int SchemaVersion { get; init; } = 1;
    public string Name { get; init; } = "";
    /// <summary>The path in the container: what to archive (from), or where to unpack (to).</summary>
    public string Path { get; init; } = "";
    /// <summary>from (the container's files to the client) or to (the client's archive into the container).</summary>
    public string Direction { get; init; } = CopyFrames.From;
    /// <summary>to: keep the archive's owners (cp -a); otherwise files belong to the container's root.</summary>
    public bool KeepOwners { get; init; }
}

/// <summary>The answer to an operation that opens a session (cp, port-forward): where its frames go.</summary>
public sealed record SessionOpened
{
    public int SchemaVersion { get; init; } = 1;
    /// <summary>Where the frames go: orch.node.NODE.OP.ID.</summary>
    public string Session { get; init; } = "";
}

/// <summary>What a copy did: entries written or archived, their bytes, and what it left out.</summary>
public sealed record CopyDone
{
    public int SchemaVersion { get; init; } = 1;
    public int Entries { get; init; }
    public long Bytes { get; init; }
    /// <summary>Sockets, device files and fifos: not copied (named, at most 20).</summary>
    public IReadOnlyList<string> Skipped { get; init; } = [];
}

/// <summary>
/// A copy session's frames: the first byte says what the rest is. from: the client asks with an
/// empty request, the node answers Data (up to <see cref="MaxData"/> bytes of the tar stream),
/// then End (a <see cref="CopyDone"/>) or Error (a sentence). to: the client sends Data, the node
/// answers Ack or Error; the client sends End, the node answers End or Error. Quit from the client
/// ends a session at once; a session idle for <see cref="IdleSeconds"/> ends by itself.
/// </summary>
public static class CopyFrames
{
    public const string From = "from", To = "to";
    public const byte Data = (byte)'D', End = (byte)'E', Ack = (byte)'K', Error = (byte)'X', Quit = (byte)'Q';
    public const int MaxData = 512 * 1024;
    public const int IdleSeconds = 30;
}

/// <summary>
/// port-forward: one TCP connection from the client to a port of a container (its address on
/// the node's bridge) or of the node itself (127.0.0.1 there), carried in a session as cp is
/// (<see cref="ForwardFrames"/>). One request per connection: a forward of several
/// connections opens several sessions. <c>connect</c> takes the same body and frames: another
/// node reaching a ready replica of a fleet deployment here, which is what a container there
/// dialled by the deployment's name. Only such replicas answer it (not an app's members, not a
/// container run by hand, not the node's own ports), so the right to connect that every node has
/// reaches no further than a container on a bridge of the fleet could by name.
/// </summary>
public sealed record PortForwardRequest
{
    public int SchemaVersion { get; init; } = 1;
    /// <summary>The container; empty for the node's own port.</summary>
    public string Name { get; init; } = "";
    public int Port { get; init; }
}

/// <summary>
/// A forwarded connection's frames (first byte: what the rest is), each a request the node
/// answers. Client to target: Data (written to the socket before the Ack), End (the client's
/// side is done writing: the target's socket is shut for writing). Target to client: Read, which
/// the node answers with Data (what the target sent, up to <see cref="MaxData"/>; empty after
/// <see cref="ReadWaitSeconds"/> without any) or End (the target closed). Quit closes at once;
/// Error (+ an <see cref="ErrorReply"/>) answers any frame when the connection failed.
/// </summary>
public static class ForwardFrames
{
    public const byte Data = (byte)'D', End = (byte)'E', Ack = (byte)'K', Read = (byte)'R', Error = (byte)'X', Quit = (byte)'Q';
    public const int MaxData = 256 * 1024;
    public const int ReadWaitSeconds = 10;
    public const int IdleSeconds = 30;
}

/// <summary>label: changes the node's own labels (kept on the node, carried by its heartbeat).</summary>
public sealed record LabelRequest
{
    public int SchemaVersion { get; init; } = 1;
    public Dictionary<string, string> Set { get; init; } = [];
    public IReadOnlyList<string> Remove { get; init; } = [];
    /// <summary>Replace a label that has another value (otherwise that is refused).</summary>
    public bool Overwrite { get; init; }
}

public sealed record LabelReply
{
    public int SchemaVersion { get; init; } = 1;
    public bool Changed { get; init; }
    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>();
}

/// <summary>A piece of a streamed exec's output, raw bytes (base64 in JSON): a chunk may end inside a UTF-8 character.</summary>
public sealed record ExecOutputChunk
{
    /// <summary>stdout or stderr.</summary>
    public string Stream { get; init; } = "stdout";
    public byte[] Data { get; init; } = [];
}

/// <summary>One message of a streamed exec: output in the order the command wrote it; the last has <c>more: false</c> and the exit code.</summary>
public sealed record ExecStreamReply
{
    public int SchemaVersion { get; init; } = 1;
    public IReadOnlyList<ExecOutputChunk> Output { get; init; } = [];
    public bool More { get; init; }
    /// <summary>The last message: the command's exit code (137 when killed at the timeout).</summary>
    public int ExitCode { get; init; }
    public bool TimedOut { get; init; }
}

public sealed record ExecReply
{
    public int SchemaVersion { get; init; } = 1;
    public int ExitCode { get; init; }
    public string Stdout { get; init; } = "";
    public string Stderr { get; init; } = "";
    public bool TimedOut { get; init; }
}

public sealed record StatsRequest
{
    public int SchemaVersion { get; init; } = 1;
    /// <summary>One container; every container when absent.</summary>
    public string? Name { get; init; }
}

public sealed record ContainerListReply
{
    public int SchemaVersion { get; init; } = 1;
    public required IReadOnlyList<ContainerStatus> Containers { get; init; }
}

public sealed record StatsReply
{
    public int SchemaVersion { get; init; } = 1;
    public required IReadOnlyList<ContainerStats> Containers { get; init; }
}

/// <summary>pull: a registry reference, or nats:NAME for the fleet's bucket.</summary>
public sealed record PullRequest
{
    public int SchemaVersion { get; init; } = 1;
    public string Reference { get; init; } = "";
    /// <summary>
    /// Report progress: <see cref="PullStreamReply"/> messages as blobs arrive, the last one
    /// (<c>more: false</c>) with the image. Needs <see cref="AliveSubject"/>; without both, one
    /// <see cref="ImageSummary"/> reply at the end.
    /// </summary>
    public bool Progress { get; init; }
    /// <summary>progress: a subject the client answers; the node asks it every few seconds and cancels the pull when nobody does.</summary>
    public string? AliveSubject { get; init; }
}

/// <summary>One message of a pull with progress: how far it got, or (the last, <c>more: false</c>) the pulled image.</summary>
public sealed record PullStreamReply
{
    public int SchemaVersion { get; init; } = 1;
    public int LayersDone { get; init; }
    public int LayersTotal { get; init; }
    public long BytesDone { get; init; }
    public long BytesTotal { get; init; }
    public bool More { get; init; }
    /// <summary>The last message: the image as stored.</summary>
    public ImageSummary? Image { get; init; }
}

public sealed record ImageListReply
{
    public int SchemaVersion { get; init; } = 1;
    public required IReadOnlyList<ImageSummary> Images { get; init; }
}

/// <summary>An operation that changes nothing to report (rm).</summary>
public sealed record OkReply
{
    public int SchemaVersion { get; init; } = 1;
    public bool Ok { get; init; } = true;
}

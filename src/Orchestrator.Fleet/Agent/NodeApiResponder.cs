using System.Text.Json;
using Orchestrator.Api;
using Orchestrator.Node.Reconcile;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Fleet.Agent;

/// <summary>
/// Answers the node API (docs/protocol.md) from the node's supervisor: every request gets
/// one reply (a big log several), the result or an <see cref="ErrorReply"/> naming the object and
/// the fix. The streamed answers (logs -f, exec and pull asked to stream) are served by <see cref="NodeApiStreams"/>.
/// </summary>
public sealed class NodeApiResponder(Supervisor supervisor)
{
    /// <summary>What one reply message may carry, well under NATS's default max_payload of 1 MiB.</summary>
    public const int MaxReplyBytes = 512 * 1024;

    /// <summary>Serves one request; returns the reply messages, in order (one, except for big logs).</summary>
    public async Task<IReadOnlyList<byte[]>> HandleManyAsync(string op, byte[] body, CancellationToken cancellationToken)
    {
        if (op != NodeOps.Logs)
        {
            return [await HandleAsync(op, body, cancellationToken).ConfigureAwait(false)];
        }
        try
        {
            var logs = Parse(body, FleetJsonContext.Default.LogsRequest, "{\"name\": …, \"tail\": N}");
            var lines = await supervisor.LogsAsync(logs.Name, logs.Tail, logs.Since, logs.Previous, logs.Run, cancellationToken).ConfigureAwait(false);
            // One NATS message is at most 1 MiB by default: chunks of about 512 KiB, oldest first.
            var replies = new List<byte[]>();
            var start = 0;
            do
            {
                var end = start;
                var size = 0;
                while (end < lines.Count && (end == start || size + lines[end].Text.Length + 100 <= MaxReplyBytes))
                {
                    size += lines[end].Text.Length + 100;
                    end++;
                }
                var chunk = lines.Skip(start).Take(end - start).ToList();
                replies.Add(Reply(new LogsReply { Lines = chunk, More = end < lines.Count }, FleetJsonContext.Default.LogsReply));
                start = end;
            }
            while (start < lines.Count);
            return replies;
        }
        catch (Exception e) when (IsRequestError(e))
        {
            return [Error(e)];
        }
    }

    /// <summary>Serves one request; returns the reply's bytes.</summary>
    public async Task<byte[]> HandleAsync(string op, byte[] body, CancellationToken cancellationToken)
    {
        try
        {
            switch (op)
            {
                case NodeOps.Run:
                    var workload = Parse(body, WorkloadJsonContext.Default.Workload, "a workload (name, image, …; see docs/manifest.md)");
                    return Reply(await supervisor.ApplyAsync(workload).ConfigureAwait(false), FleetJsonContext.Default.ContainerStatus);
                case NodeOps.Stop:
                    return Reply(await supervisor.StopAsync(Name(body)).ConfigureAwait(false), FleetJsonContext.Default.ContainerStatus);
                case NodeOps.Start:
                    return Reply(await supervisor.StartAsync(Name(body)).ConfigureAwait(false), FleetJsonContext.Default.ContainerStatus);
                case NodeOps.Restart:
                    return Reply(await supervisor.RestartAsync(Name(body)).ConfigureAwait(false), FleetJsonContext.Default.ContainerStatus);
                case NodeOps.Remove:
                    await supervisor.RemoveAsync(Name(body)).ConfigureAwait(false);
                    return Reply(new OkReply(), FleetJsonContext.Default.OkReply);
                case NodeOps.List:
                    return Reply(new ContainerListReply { Containers = await supervisor.ListAsync().ConfigureAwait(false) }, FleetJsonContext.Default.ContainerListReply);
                case NodeOps.Inspect:
                    return Reply(await supervisor.InspectAsync(Name(body)).ConfigureAwait(false), FleetJsonContext.Default.ContainerStatus);
                case NodeOps.Logs:
                    return (await HandleManyAsync(op, body, cancellationToken).ConfigureAwait(false))[^1];
                case NodeOps.Exec:
                    var exec = Parse(body, FleetJsonContext.Default.ExecRequest, "{\"name\": …, \"command\": [ … ]}");
                    var result = await supervisor.ExecAsync(exec.Name, exec.Command, TimeSpan.FromSeconds(Math.Clamp(exec.TimeoutSeconds, 0.1, 3600)), cancellationToken).ConfigureAwait(false);
                    return Reply(new ExecReply { ExitCode = result.ExitCode, Stdout = result.Stdout, Stderr = result.Stderr, TimedOut = result.TimedOut }, FleetJsonContext.Default.ExecReply);
                case NodeOps.Stats:
                    var stats = body.Length == 0 ? new StatsRequest() : Parse(body, FleetJsonContext.Default.StatsRequest, "{\"name\": …} or {}");
                    return Reply(new StatsReply { Containers = await supervisor.StatsAsync(stats.Name).ConfigureAwait(false) }, FleetJsonContext.Default.StatsReply);
                case NodeOps.Images:
                    return Reply(new ImageListReply { Images = await supervisor.Images.ListAsync().ConfigureAwait(false) }, FleetJsonContext.Default.ImageListReply);
                case NodeOps.ImageInspect:
                    return Reply(await supervisor.Images.InspectAsync(ImageName(body)).ConfigureAwait(false), FleetJsonContext.Default.ImageSummary);
                case NodeOps.Pull:
                    var pull = Parse(body, FleetJsonContext.Default.PullRequest, "{\"reference\": \"registry/name:tag\"}");
                    if (string.IsNullOrWhiteSpace(pull.Reference))
                    {
                        throw new NodeApiException("pull needs a reference: {\"reference\": \"registry/name:tag\"} (or nats:NAME)");
                    }
                    return Reply(await supervisor.Images.PullAsync(pull.Reference, cancellationToken).ConfigureAwait(false), FleetJsonContext.Default.ImageSummary);
                case NodeOps.RemoveImage:
                    await supervisor.Images.RemoveAsync(ImageName(body)).ConfigureAwait(false);
                    return Reply(new OkReply(), FleetJsonContext.Default.OkReply);
                case NodeOps.ImageGc:
                    return Reply(await supervisor.Images.GcAsync().ConfigureAwait(false), FleetJsonContext.Default.ImageGcResult);
                case NodeOps.Status:
                    return Reply(await supervisor.NodeStatusAsync().ConfigureAwait(false), FleetJsonContext.Default.NodeStatus);
                case NodeOps.PortForward:
                    _ = Parse(body, FleetJsonContext.Default.PortForwardRequest, "{\"name\": \"CONTAINER\" (or empty for the node), \"port\": 80}");
                    return Error("port-forward needs a JSON body: {\"name\": …, \"port\": …}", ErrorKind.Invalid);
                case NodeOps.Connect:
                    _ = Parse(body, FleetJsonContext.Default.PortForwardRequest, "{\"name\": \"REPLICA\", \"port\": 80}");
                    return Error("connect needs a JSON body: {\"name\": …, \"port\": …}", ErrorKind.Invalid);
                case NodeOps.Attach:
                    // A well-formed attach opens a session (NodeApiStreams); only a body that is not one gets here.
                    _ = Parse(body, FleetJsonContext.Default.AttachRequest, "{\"name\": \"CONTAINER\", \"stdin\": true, \"tty\": true}");
                    return Error("attach needs a JSON body: {\"name\": …}", ErrorKind.Invalid);
                case NodeOps.Copy:
                    // A well-formed cp opens a session (NodeApiStreams); only a body that is not one gets here.
                    _ = Parse(body, FleetJsonContext.Default.CopyRequest, "{\"name\": …, \"path\": \"/in/the/container\", \"direction\": \"from\" or \"to\"}");
                    return Error("cp needs a JSON body: {\"name\": …, \"path\": …, \"direction\": \"from\" or \"to\"}", ErrorKind.Invalid);
                default:
                    return Error($"'{op}' is not a node operation; use one of {string.Join(", ", NodeOps.All)}", ErrorKind.NotFound);
            }
        }
        catch (Exception e) when (IsRequestError(e))
        {
            return Error(e);
        }
    }

    /// <summary>
    /// An error the requester can act on, answered with its sentence and code: any error with a
    /// kind other than internal (not found, invalid, conflict, unavailable, forbidden), containerd's
    /// own failures (answered as they are), and the framework's refusals of an operation in this
    /// state or of a registry's answer. Anything else is a failure of the node: logged, and
    /// answered as one (NodeAgent).
    /// </summary>
    public static bool IsRequestError(Exception e)
        => ErrorKinds.Of(e) is { } kind && (kind != ErrorKind.Internal || e is Orchestrator.Containerd.ContainerdException)
            || e is InvalidOperationException or HttpRequestException;

    /// <summary>The kind of a request error on the wire: its own, or what the framework's exceptions mean.</summary>
    public static ErrorKind KindOf(Exception e) => ErrorKinds.Of(e) ?? e switch
    {
        InvalidOperationException => ErrorKind.Conflict, // not in this state (e.g. exec in a stopped container)
        HttpRequestException => ErrorKind.Unavailable,
        _ => ErrorKind.Internal,
    };

    private static string ImageName(byte[] body)
    {
        var request = Parse(body, FleetJsonContext.Default.NameRequest, "{\"name\": \"IMAGE\"}");
        return request.Name.Length > 0 ? request.Name : throw new NodeApiException("give the image: {\"name\": \"busybox:latest\"}");
    }

    private static string Name(byte[] body)
    {
        var request = Parse(body, FleetJsonContext.Default.NameRequest, "{\"name\": \"CONTAINER\"}");
        return WorkloadValidator.IsValidName(request.Name)
            ? request.Name
            : throw new NodeApiException($"'{request.Name}' is not a container name; give {{\"name\": \"CONTAINER\"}}");
    }

    /// <summary>Each context's options, with null refused where the model does not allow it ({"name": null}).</summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<JsonSerializerOptions, JsonSerializerOptions> s_strict = new();

    internal static T Parse<T>(byte[] body, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, string expected)
    {
        if (RequestLimits.Check(body) is { } refused)
        {
            throw new NodeApiException($"{refused}; send {expected}");
        }
        var strict = (System.Text.Json.Serialization.Metadata.JsonTypeInfo<T>)s_strict
            .GetOrAdd(type.Options, static o => new JsonSerializerOptions(o) { RespectNullableAnnotations = true })
            .GetTypeInfo(typeof(T));
        try
        {
            return JsonSerializer.Deserialize(body, strict) ?? throw new NodeApiException($"the request is empty; send {expected}");
        }
        catch (InvalidOperationException e)
        {
            // System.Text.Json's own refusal of some malformed text (an unpaired surrogate escape), found by the fuzzer.
            throw new NodeApiException($"the request is not valid JSON text ({e.Message}); send {expected}", e);
        }
        catch (JsonException e)
        {
            var at = e.Path is { Length: > 1 } p ? p.TrimStart('$', '.') : null;
            var where = at is null ? "" : $" at {at}";
            var nullGiven = e.Message.Contains("null", StringComparison.Ordinal) && e.Message.Contains("allow", StringComparison.Ordinal);
            throw new NodeApiException(nullGiven
                ? $"{at ?? "the request"}: null is not allowed there; give a value or leave the property out; send {expected}"
                : $"the request is not valid JSON for this operation{where}; send {expected}", e);
        }
    }

    internal static byte[] Reply<T>(T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) => JsonSerializer.SerializeToUtf8Bytes(value, type);

    public static byte[] Error(string message, ErrorKind code) => JsonSerializer.SerializeToUtf8Bytes(new ErrorReply { Error = message, Code = code }, FleetJsonContext.Default.ErrorReply);

    /// <summary>The reply for an error: its sentence and its kind's code.</summary>
    public static byte[] Error(Exception e) => Error(e.Message, KindOf(e));
}

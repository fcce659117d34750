using System.Text.Json;
using System.Text.Json.Serialization;

namespace Orchestrator.Api;

/// <summary>
/// What kind of failure an error is, whatever layer raised it (containerd's errdefs): what the
/// caller can do about it. On the wire it is the error reply's <c>code</c>
/// (<see cref="ErrorKinds.Code"/>); each command line maps it to its exit code in one place
/// (orchctl's and orchd's <c>ExitCodes.For</c>), and the node to a log level in one place
/// (<c>Orchestrator.Node.ErrorLevels</c>).
/// </summary>
[JsonConverter(typeof(ErrorKindJsonConverter))]
public enum ErrorKind
{
    /// <summary>A failure of the one who answered (a bug, or something it cannot explain): not the caller's to fix.</summary>
    Internal,
    /// <summary>The thing asked about does not exist (container, image, deployment, node, file).</summary>
    NotFound,
    /// <summary>The request or its input is wrong (bad manifest, bad name, bad spec, bad config): fix it and ask again.</summary>
    Invalid,
    /// <summary>The request clashes with the state it found (it changed meanwhile, it is in use, it exists): look, then ask again.</summary>
    Conflict,
    /// <summary>Something needed does not answer now (NATS, a node, containerd, a registry, a full disk): asking later may work.</summary>
    Unavailable,
    /// <summary>Not allowed: a permission, a signature, a policy.</summary>
    Forbidden,
}

/// <summary>The kinds' wire codes, and the kind of any exception.</summary>
public static class ErrorKinds
{
    /// <summary>The wire code of a kind: not-found, invalid, conflict, unavailable, forbidden or internal.</summary>
    public static string Code(ErrorKind kind) => kind switch
    {
        ErrorKind.NotFound => "not-found",
        ErrorKind.Invalid => "invalid",
        ErrorKind.Conflict => "conflict",
        ErrorKind.Unavailable => "unavailable",
        ErrorKind.Forbidden => "forbidden",
        _ => "internal",
    };

    /// <summary>The kind of a wire code; a code this version does not know (from a newer node) is <see cref="ErrorKind.Internal"/>.</summary>
    public static ErrorKind Parse(string? code) => code switch
    {
        "not-found" => ErrorKind.NotFound,
        "invalid" => ErrorKind.Invalid,
        "conflict" => ErrorKind.Conflict,
        "unavailable" => ErrorKind.Unavailable,
        "forbidden" => ErrorKind.Forbidden,
        _ => ErrorKind.Internal,
    };

    /// <summary>
    /// The kind of an error the project raised (an <see cref="OrchestratorException"/>, or one of
    /// the two that stay <see cref="IOException"/>s: see <see cref="IKindedError"/>); null for any
    /// other exception (the runtime's, a library's): that is a failure nobody classified.
    /// </summary>
    public static ErrorKind? Of(Exception e) => e is IKindedError kinded ? kinded.Kind : null;
}

/// <summary>Writes a kind as its wire code, and reads an unknown code as internal (a newer node's code never breaks an older client).</summary>
public sealed class ErrorKindJsonConverter : JsonConverter<ErrorKind>
{
    public override ErrorKind Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        => reader.TokenType == JsonTokenType.String ? ErrorKinds.Parse(reader.GetString()) : throw new JsonException("an error code is a string");

    public override void Write(Utf8JsonWriter writer, ErrorKind value, JsonSerializerOptions options)
        => writer.WriteStringValue(ErrorKinds.Code(value));
}

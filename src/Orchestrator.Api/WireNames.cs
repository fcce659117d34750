using System.Buffers;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Orchestrator.Api;

/// <summary>
/// The wire names of a closed set (an enum whose members carry <see cref="JsonStringEnumMemberName"/>),
/// read once through System.Text.Json's own <see cref="JsonStringEnumConverter{TEnum}"/>, so the
/// attributes are the one place a name is written. Member 0 is <c>Unknown</c>: what a name this
/// version does not know (from a newer peer) reads as.
/// </summary>
public static class WireNames
{
    /// <summary>The member's wire name ("on-failure"); Unknown's for a value outside the set.</summary>
    public static string Of<T>(T value) where T : struct, Enum
        => Table<T>.ByValue.TryGetValue(value, out var name) ? name : Table<T>.ByValue[default];

    /// <summary>Every member but Unknown, in declaration order.</summary>
    public static IReadOnlyList<T> Known<T>() where T : struct, Enum => Table<T>.Known;

    /// <summary>The wire names of <see cref="Known{T}"/>, in the same order.</summary>
    public static IEnumerable<string> KnownNames<T>() where T : struct, Enum => Table<T>.Known.Select(Of);

    /// <summary>The member with this wire name, compared exactly (no case folding).</summary>
    public static bool TryParse<T>(string? name, out T value) where T : struct, Enum
    {
        if (name is not null && Table<T>.ByName.TryGetValue(name, out value))
        {
            return true;
        }
        value = default;
        return false;
    }

    /// <summary>The member with this wire name, or Unknown.</summary>
    public static T Parse<T>(string? name) where T : struct, Enum => TryParse(name, out T value) ? value : default;

    private static class Table<T> where T : struct, Enum
    {
        internal static readonly Dictionary<string, T> ByName = new(StringComparer.Ordinal);
        internal static readonly Dictionary<T, string> ByValue = [];
        internal static readonly List<T> Known = [];

#pragma warning disable CA1810 // one pass fills all three
        static Table()
#pragma warning restore CA1810
        {
            var options = new JsonSerializerOptions();
            var converter = (JsonConverter<T>)new JsonStringEnumConverter<T>(namingPolicy: null, allowIntegerValues: false).CreateConverter(typeof(T), options)!;
            foreach (var value in Enum.GetValues<T>())
            {
                var buffer = new ArrayBufferWriter<byte>();
                using (var writer = new Utf8JsonWriter(buffer))
                {
                    converter.Write(writer, value, options);
                }
                var reader = new Utf8JsonReader(buffer.WrittenSpan);
                reader.Read();
                var name = reader.GetString()!;
                ByName[name] = value;
                ByValue[value] = name;
                if (!EqualityComparer<T>.Default.Equals(value, default))
                {
                    Known.Add(value);
                }
            }
        }
    }
}

/// <summary>
/// Reads and writes a closed set by its wire names (<see cref="WireNames"/>). Tolerant: a string
/// this version does not know reads as Unknown (member 0), so a newer peer's new value does not make
/// a whole message unreadable; anything but a string is an error, as it was for the string fields
/// these replace.
/// </summary>
public sealed class WireEnumConverter<T> : JsonConverter<T> where T : struct, Enum
{
    public override T Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        => reader.TokenType == JsonTokenType.String
            ? WireNames.Parse<T>(reader.GetString())
            : throw new JsonException($"expected a string (one of {string.Join(", ", WireNames.KnownNames<T>())})");

    public override void Write(Utf8JsonWriter writer, T value, JsonSerializerOptions options) => writer.WriteStringValue(WireNames.Of(value));

    public override T ReadAsPropertyName(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => WireNames.Parse<T>(reader.GetString());

    public override void WriteAsPropertyName(Utf8JsonWriter writer, T value, JsonSerializerOptions options) => writer.WritePropertyName(WireNames.Of(value));
}

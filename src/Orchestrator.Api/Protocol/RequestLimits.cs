using System.Text;
using System.Text.Json;

namespace Orchestrator.Api;

/// <summary>
/// The bounds every node API request is held to before it is deserialized, one place for all
/// operations: its size, how deep it nests, how long any one string is, and no property twice
/// in one object (JSON leaves duplicates undefined; System.Text.Json took the last silently,
/// so what a signature or a log showed could differ from what ran).
/// </summary>
public static class RequestLimits
{
    /// <summary>The largest request (well under NATS's 1 MiB max_payload, so its reply fits too).</summary>
    public const int MaxRequestBytes = 256 * 1024;

    /// <summary>The deepest nesting of objects and arrays (a workload needs fewer than 8).</summary>
    public const int MaxDepth = 32;

    /// <summary>The longest string, property names included (an env value holding a certificate fits).</summary>
    public const int MaxStringBytes = 64 * 1024;

    /// <summary>Null when the body is within bounds, else what is wrong and where.</summary>
    public static string? Check(ReadOnlySpan<byte> body)
    {
        if (body.Length > MaxRequestBytes)
        {
            return $"the request is {body.Length} bytes, more than the {MaxRequestBytes / 1024} KiB a node request may be";
        }
        var reader = new Utf8JsonReader(body, new JsonReaderOptions { MaxDepth = MaxDepth + 1, CommentHandling = JsonCommentHandling.Disallow });
        var keys = new Stack<HashSet<string>?>();
        var path = new Stack<string>();
        string? pendingKey = null;
        try
        {
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.StartObject or JsonTokenType.StartArray:
                        if (reader.CurrentDepth >= MaxDepth)
                        {
                            return $"the request nests objects and arrays more than {MaxDepth} deep";
                        }
                        path.Push(pendingKey ?? (path.Count == 0 ? "" : "[]"));
                        pendingKey = null;
                        keys.Push(reader.TokenType == JsonTokenType.StartObject ? new HashSet<string>(StringComparer.Ordinal) : null);
                        break;
                    case JsonTokenType.EndObject or JsonTokenType.EndArray:
                        keys.Pop();
                        path.Pop();
                        break;
                    case JsonTokenType.PropertyName:
                        if (reader.ValueSpan.Length > MaxStringBytes || reader.HasValueSequence)
                        {
                            return $"a property name in the request is longer than {MaxStringBytes / 1024} KiB";
                        }
                        string key;
                        try
                        {
                            key = reader.GetString()!;
                        }
                        catch (InvalidOperationException)
                        {
                            return "a property name in the request is not valid text (an unpaired surrogate escape); send UTF-8 JSON";
                        }
                        if (keys.Peek() is { } seen && !seen.Add(key))
                        {
                            return $"'{Where(path, key)}' is given twice; give each property once";
                        }
                        pendingKey = key;
                        break;
                    case JsonTokenType.String:
                        if (reader.ValueSpan.Length > MaxStringBytes)
                        {
                            return $"'{Where(path, pendingKey)}' is {reader.ValueSpan.Length} bytes long, more than the {MaxStringBytes / 1024} KiB a string in a request may be";
                        }
                        pendingKey = null;
                        break;
                    default:
                        pendingKey = null;
                        break;
                }
            }
        }
        catch (JsonException e)
        {
            return e.Message.Contains("depth", StringComparison.OrdinalIgnoreCase)
                ? $"the request nests objects and arrays more than {MaxDepth} deep"
                : null; // not JSON: the deserializer that follows says so, with where
        }
        return null;
    }

    private static string Where(Stack<string> path, string? key)
    {
        var parts = path.Reverse().Where(p => p.Length > 0).ToList();
        if (key is not null)
        {
            parts.Add(key);
        }
        var text = new StringBuilder();
        foreach (var part in parts)
        {
            text.Append(part == "[]" ? "[]" : (text.Length > 0 ? "." : "") + part);
        }
        return text.Length > 0 ? text.ToString() : "(the request)";
    }
}

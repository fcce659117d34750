using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Orchestrator.Ctl;

/// <summary>
/// kubectl's <c>-o jsonpath=TEMPLATE</c> and <c>-o custom-columns=HEADER:PATH,…</c> over what
/// <c>-o json</c> prints. A list is seen as kubectl shows one, <c>{"items": [...]}</c>, so that
/// kubectl habits carry over: <c>-o jsonpath='{range .items[*]}{.name}{"\n"}{end}'</c>,
/// <c>-o jsonpath='{.items[0].node}'</c>, <c>-o custom-columns=NAME:.name,NODE:.node</c> (columns
/// take each item's paths). The subset: fields <c>.a.b</c>, indexes <c>[0]</c>, <c>[-1]</c>,
/// every element <c>[*]</c>, <c>range … end</c>, string literals <c>{"\n"}</c>; text outside braces
/// is printed as it is. Anything else is a usage error naming the part not understood.
/// </summary>
internal static class JsonTemplates
{
    /// <summary>True for a format this class handles (the caller checks the rest).</summary>
    public static bool Handles(string format)
        => format.StartsWith("jsonpath=", StringComparison.Ordinal) || format.StartsWith("custom-columns=", StringComparison.Ordinal);

    /// <summary>Checks the template's syntax (before anything is asked of the fleet): a usage error, or nothing.</summary>
    public static void Check(string format)
    {
        if (format.StartsWith("jsonpath=", StringComparison.Ordinal))
        {
            _ = Parse(format["jsonpath=".Length..]);
        }
        else if (format.StartsWith("custom-columns=", StringComparison.Ordinal))
        {
            _ = Columns(format["custom-columns=".Length..]);
        }
    }

    /// <summary>Writes <paramref name="document"/> (an array is wrapped as <c>{"items": …}</c>) through the format.</summary>
    public static void Write(string format, JsonElement document)
    {
        if (format.StartsWith("custom-columns=", StringComparison.Ordinal))
        {
            var columns = Columns(format["custom-columns=".Length..]);
            var items = document.ValueKind == JsonValueKind.Array ? document.EnumerateArray().ToList() : [document];
            Output.Table([.. columns.Select(c => c.Header)], items.Select(item => columns.Select(c =>
            {
                var values = Select(item, c.Path).Select(Text).ToList();
                return values.Count == 0 ? "<none>" : string.Join(",", values);
            }).ToArray()));
            return;
        }
        var root = document;
        if (document.ValueKind == JsonValueKind.Array)
        {
            using var wrapped = JsonDocument.Parse("{\"items\":" + document.GetRawText() + "}");
            root = wrapped.RootElement.Clone();
        }
        var text = new StringBuilder();
        Render(Parse(format["jsonpath=".Length..]), root, text);
        Console.Out.Write(text.ToString());
        if (text.Length > 0 && text[^1] != '\n')
        {
            Console.Out.WriteLine();
        }
    }

    private abstract record Part;
    private sealed record Literal(string Text) : Part;
    private sealed record PathPart(List<Step> Path) : Part;
    private sealed record RangePart(List<Step> Path, List<Part> Body) : Part;

    /// <summary>One step of a path: a field, an index (negative from the end), or every element (Index null, Field null).</summary>
    private sealed record Step(string? Field, int? Index);

    private static List<Part> Parse(string template)
    {
        var position = 0;
        var parts = ParseUntilEnd(template, ref position, inRange: false);
        return parts;
    }

    private static List<Part> ParseUntilEnd(string template, ref int position, bool inRange)
    {
        var parts = new List<Part>();
        while (position < template.Length)
        {
            var open = template.IndexOf('{', position);
            if (open < 0)
            {
                parts.Add(new Literal(template[position..]));
                position = template.Length;
                break;
            }
            if (open > position)
            {
                parts.Add(new Literal(template[position..open]));
            }
            var close = template.IndexOf('}', open);
            if (close < 0)
            {
                throw new UsageException($"-o jsonpath: '{{' at {open + 1} is not closed with '}}'");
            }
            var expression = template[(open + 1)..close].Trim();
            position = close + 1;
            if (expression == "end")
            {
                if (!inRange)
                {
                    throw new UsageException("-o jsonpath: {end} without a {range …}");
                }
                return parts;
            }
            if (expression.StartsWith("range ", StringComparison.Ordinal))
            {
                var path = ParsePath(expression["range ".Length..].Trim());
                var body = ParseUntilEnd(template, ref position, inRange: true);
                parts.Add(new RangePart(path, body));
                continue;
            }
            if (expression.Length >= 2 && expression[0] == '"' && expression[^1] == '"')
            {
                parts.Add(new Literal(expression[1..^1].Replace("\\n", "\n", StringComparison.Ordinal).Replace("\\t", "\t", StringComparison.Ordinal)));
                continue;
            }
            parts.Add(new PathPart(ParsePath(expression)));
        }
        if (inRange)
        {
            throw new UsageException("-o jsonpath: {range …} without its {end}");
        }
        return parts;
    }

    private static List<Step> ParsePath(string text)
    {
        var steps = new List<Step>();
        var i = text.StartsWith('$') ? 1 : 0;
        if (i >= text.Length || (text[i] != '.' && text[i] != '['))
        {
            throw new UsageException($"-o jsonpath: '{text}' is not a path; start it with '.' (.items[*].name)");
        }
        while (i < text.Length)
        {
            if (text[i] == '.')
            {
                var start = ++i;
                while (i < text.Length && text[i] != '.' && text[i] != '[')
                {
                    i++;
                }
                if (i > start)
                {
                    steps.Add(new Step(text[start..i], null));
                }
            }
            else if (text[i] == '[')
            {
                var end = text.IndexOf(']', i);
                if (end < 0)
                {
                    throw new UsageException($"-o jsonpath: '[' in '{text}' is not closed");
                }
                var inside = text[(i + 1)..end].Trim();
                if (inside == "*")
                {
                    steps.Add(new Step(null, null));
                }
                else if (int.TryParse(inside, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var index))
                {
                    steps.Add(new Step(null, index));
                }
                else if (inside.Length >= 2 && inside[0] is '\'' or '"' && inside[^1] == inside[0])
                {
                    steps.Add(new Step(inside[1..^1], null)); // ['app.kubernetes.io/name']
                }
                else
                {
                    throw new UsageException($"-o jsonpath: '[{inside}]' in '{text}': use [N], [-N], [*] or ['key'] (filters are not supported)");
                }
                i = end + 1;
            }
            else
            {
                throw new UsageException($"-o jsonpath: unexpected '{text[i]}' in '{text}'");
            }
        }
        return steps;
    }

    private static List<(string Header, List<Step> Path)> Columns(string spec)
    {
        var columns = new List<(string, List<Step>)>();
        foreach (var column in spec.Split(','))
        {
            var colon = column.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0 || colon == column.Length - 1)
            {
                throw new UsageException($"-o custom-columns: '{column}' is not HEADER:PATH (NAME:.name,NODE:.node)");
            }
            var path = column[(colon + 1)..].Trim().TrimStart('{').TrimEnd('}');
            columns.Add((column[..colon], ParsePath(path)));
        }
        return columns;
    }

    private static IEnumerable<JsonElement> Select(JsonElement from, List<Step> path)
    {
        IEnumerable<JsonElement> current = [from];
        foreach (var step in path)
        {
            current = current.SelectMany(e => Apply(e, step)).ToList();
        }
        return current;
    }

    private static List<JsonElement> Apply(JsonElement element, Step step)
    {
        if (step.Field is { } field)
        {
            return element.ValueKind == JsonValueKind.Object && element.TryGetProperty(field, out var value) ? [value] : [];
        }
        if (element.ValueKind != JsonValueKind.Array)
        {
            return [];
        }
        if (step.Index is not { } index)
        {
            return [.. element.EnumerateArray()];
        }
        var length = element.GetArrayLength();
        var at = index < 0 ? length + index : index;
        return at >= 0 && at < length ? [element[at]] : [];
    }

    private static void Render(List<Part> parts, JsonElement context, StringBuilder text)
    {
        foreach (var part in parts)
        {
            switch (part)
            {
                case Literal literal:
                    text.Append(literal.Text);
                    break;
                case PathPart path:
                    text.Append(string.Join(" ", Select(context, path.Path).Select(Text)));
                    break;
                case RangePart range:
                    foreach (var item in Select(context, range.Path))
                    {
                        Render(range.Body, item, text);
                    }
                    break;
            }
        }
    }

    /// <summary>A value as kubectl prints it: strings bare, numbers and booleans as written, objects and arrays as compact JSON.</summary>
    private static string Text(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => value.GetString() ?? "",
        JsonValueKind.Null => "",
        _ => value.GetRawText(),
    };
}

namespace Orchestrator.Api.Workloads;

/// <summary>
/// A label selector in Kubernetes' grammar, so that a kubectl user's habits carry over:
/// comma-separated requirements, all of which must hold:
/// <c>key=value</c> (or <c>==</c>), <c>key!=value</c> (also true when the label is absent),
/// <c>key</c> (has it), <c>!key</c> (has it not), <c>key in (a,b)</c>, <c>key notin (a,b)</c>
/// (also true when absent). Anything else is refused with the grammar, never read as a label
/// nobody has (<c>app in (web</c> once matched nothing and exited 0).
/// </summary>
public sealed class LabelSelector
{
    private enum Op { Exists, NotExists, In, NotIn }

    private readonly List<(string Key, Op Op, string[] Values)> _requirements = [];

    private const string Grammar = "use key=value, key!=value, key, !key, key in (a,b) or key notin (a,b), comma-separated";

    private LabelSelector()
    {
    }

    /// <summary>The selector <paramref name="text"/> spells; a <see cref="FormatException"/> naming the bad requirement and the grammar otherwise.</summary>
    public static LabelSelector Parse(string text)
    {
        var selector = new LabelSelector();
        foreach (var requirement in SplitTopLevel(text))
        {
            selector._requirements.Add(ParseRequirement(requirement)
                ?? throw new FormatException($"'{requirement}' is not a selector requirement; {Grammar}"));
        }
        return selector;
    }

    public bool Matches(IReadOnlyDictionary<string, string>? labels)
    {
        foreach (var (key, op, values) in _requirements)
        {
            string? actual = null;
            var has = labels is not null && labels.TryGetValue(key, out actual);
            var holds = op switch
            {
                Op.Exists => has,
                Op.NotExists => !has,
                Op.In => has && values.Contains(actual, StringComparer.Ordinal),
                _ => !has || !values.Contains(actual, StringComparer.Ordinal),
            };
            if (!holds)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>Splits at the commas outside parentheses; unbalanced parentheses make one bad requirement.</summary>
    private static List<string> SplitTopLevel(string text)
    {
        var parts = new List<string>();
        var depth = 0;
        var start = 0;
        for (var i = 0; i <= text.Length; i++)
        {
            if (i == text.Length || (text[i] == ',' && depth == 0))
            {
                parts.Add(text[start..i].Trim()); // an empty one (",", "a=b,", "") is refused by its caller
                start = i + 1;
            }
            else if (text[i] == '(')
            {
                depth++;
            }
            else if (text[i] == ')')
            {
                depth--;
            }
        }
        return parts;
    }

    private static (string, Op, string[])? ParseRequirement(string text)
    {
        if (text.Length == 0)
        {
            return null;
        }
        if (text[0] == '!')
        {
            var key = text[1..].Trim();
            return IsKey(key) ? (key, Op.NotExists, []) : null;
        }
        foreach (var (symbol, op) in new[] { ("!=", Op.NotIn), ("==", Op.In), ("=", Op.In) })
        {
            var at = text.IndexOf(symbol, StringComparison.Ordinal);
            if (at > 0)
            {
                var key = text[..at].Trim();
                var value = text[(at + symbol.Length)..].Trim();
                return IsKey(key) && IsValue(value) ? (key, op, [value]) : null;
            }
        }
        var space = text.IndexOfAny([' ', '\t']);
        if (space < 0)
        {
            return IsKey(text) ? (text, Op.Exists, []) : null;
        }
        var name = text[..space];
        var rest = text[space..].TrimStart();
        foreach (var (word, op) in new[] { ("notin", Op.NotIn), ("in", Op.In) })
        {
            if (rest.StartsWith(word, StringComparison.Ordinal) && rest[word.Length..].TrimStart() is ['(', .. var inner, ')'] && IsKey(name))
            {
                var values = new string(inner).Split(',', StringSplitOptions.TrimEntries);
                return values.Length > 0 && values.All(v => v.Length > 0 && IsValue(v)) ? (name, op, values) : null;
            }
        }
        return null;
    }

    /// <summary>
    /// A label key by Kubernetes' rule, so that users' selectors carry over: [prefix/]name, a name of
    /// 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit; a DNS-like prefix.
    /// The one rule for selectors and for the labels a node is given (orchd --label).
    /// </summary>
    /// <summary>Why key=value is not a label, in a sentence with the rule, or null when it is one.</summary>
    public static string? Problem(string key, string value)
        => !IsKey(key) ? $"'{key}' is not a valid label key; use [prefix/]name with a name of 1-63 letters, digits, '-', '_' or '.'"
            : !IsValue(value) ? $"label '{key}' has the invalid value '{value}'; use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            : null;

    public static bool IsKey(string key)
    {
        var slash = key.LastIndexOf('/');
        var prefix = slash >= 0 ? key[..slash] : null;
        var name = slash >= 0 ? key[(slash + 1)..] : key;
        return name.Length > 0 && IsValue(name)
            && (prefix is null || (prefix.Length is > 0 and <= 253 && prefix.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.')));
    }

    /// <summary>A label value: empty, or up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit.</summary>
    public static bool IsValue(string value)
        => value.Length == 0
            || (value.Length <= 63 && char.IsAsciiLetterOrDigit(value[0]) && char.IsAsciiLetterOrDigit(value[^1])
                && value.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'));
}

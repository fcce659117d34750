using YamlDotNet.Core;

namespace Orchestrator.Api.Workloads;

/// <summary>
/// YamlDotNet's syntax errors in the words of someone editing a manifest: what is wrong and the
/// fix ("a list opened with '[' is not closed: add the ']'"), instead of the parser's state
/// ("While parsing a flow sequence, did not find expected ',' or ']'"). A message this table does
/// not know is given as the parser wrote it.
/// </summary>
public static class YamlErrors
{
    // (what the parser's message contains, what to say instead). First match wins.
    private static readonly (string Contains, string Say)[] s_table =
    [
        ("did not find expected ',' or ']'", "a list opened with '[' is not closed: add the ']' (and a ',' between items)"),
        ("did not find expected ',' or '}'", "a mapping opened with '{' is not closed: add the '}' (and a ',' between entries)"),
        ("quoted scalar", "a quoted string is not closed: add the closing quote"),
        ("mapping values are not allowed in this context", "a ': ' inside a plain value: quote the value if it contains ': ', or if this is a key, line it up with the keys above it"),
        ("found invalid mapping", "a ': ' inside a plain value: quote the value if it contains ': ', or if this is a key, line it up with the keys above it"),
        ("found a tab character", "a tab used for indentation: indent with spaces"),
        ("did not find expected key", "this line is not indented as the keys above it: line it up with its siblings (spaces, not tabs)"),
        ("could not find expected ':'", "a key without ':' after it: write 'key: value'"),
        ("cannot start any token", "a character no YAML value can begin with (a tab used for indentation, or an unquoted '@' or '`'): indent with spaces, quote the value"),
        ("did not find expected '-' indicator", "a list item is not indented as the items above it: line up its '- ' with theirs"),
        ("duplicate key", "the same key twice in one mapping: keep one"),
        ("did not find expected <document start>", "a second value at the top level: a manifest document is one mapping (separate documents with a line '---')"),
        ("did not find expected node content", "a value is missing (after '- ', ',' or ': '): write one, or '' for an empty string"),
        ("found undefined alias", "an alias (*name) with no anchor (&name) before it: define the anchor first"),
        ("does not exist", "an alias (*name) with no anchor (&name) before it: define the anchor first"),
    ];

    /// <summary>The sentence for the error (without the position: the caller puts FILE:LINE:COL in front).</summary>
    public static string Explain(YamlException e)
    {
        ArgumentNullException.ThrowIfNull(e);
        // YamlDotNet wraps some errors: "(Line: 2, Col: 1, …): …" with the real one inside.
        var message = e.InnerException is { } inner && e.Message.StartsWith('(') ? inner.Message : e.Message;
        foreach (var (contains, say) in s_table)
        {
            if (message.Contains(contains, StringComparison.OrdinalIgnoreCase))
            {
                return say;
            }
        }
        return message.TrimEnd('.');
    }
}

using System.Text;

namespace Orchestrator.Api.Workloads;

/// <summary>
/// The variables a compose file is interpolated with, as docker compose takes them: the shell's
/// environment over the project's <c>.env</c> (or the <c>--env-file</c> files given instead),
/// and the interpolation itself (<c>$VAR</c>, <c>${VAR}</c>, <c>${VAR:-default}</c>,
/// <c>${VAR-default}</c>, <c>${VAR:?error}</c>, <c>${VAR?error}</c>, <c>${VAR:+other}</c>,
/// <c>${VAR+other}</c>, nested defaults, <c>$$</c> for a dollar). It is done where the file is
/// read (orchctl), so the fleet stores and signs the values, not the references.
/// </summary>
public static class ComposeEnvironment
{
    /// <summary>
    /// The variables for a project: each env file (default: <c>DIR/.env</c> when it exists) read in
    /// order, then the process's environment over them. A named file that does not exist, or a line
    /// that does not parse, is a <see cref="ManifestException"/> at its line.
    /// </summary>
    public static Dictionary<string, string> Load(string? projectDirectory, IReadOnlyList<string> envFiles, IReadOnlyDictionary<string, string> shell)
    {
        var variables = new Dictionary<string, string>(StringComparer.Ordinal);
        var files = envFiles.Count > 0 ? envFiles
            : projectDirectory is not null && File.Exists(Path.Combine(projectDirectory, ".env")) ? [Path.Combine(projectDirectory, ".env")] : [];
        foreach (var file in files)
        {
            if (!File.Exists(file))
            {
                throw new ManifestException($"--env-file {file}: no such file; give a file of KEY=VALUE lines");
            }
            foreach (var (key, value) in ReadEnvFile(File.ReadAllText(file), file, name => shell.TryGetValue(name, out var s) ? s : variables.GetValueOrDefault(name)))
            {
                variables[key] = value;
            }
        }
        foreach (var (key, value) in shell)
        {
            variables[key] = value;
        }
        return variables;
    }

    /// <summary>The process's environment, as a dictionary.</summary>
    public static Dictionary<string, string> Process()
    {
        var variables = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (System.Collections.DictionaryEntry entry in Environment.GetEnvironmentVariables())
        {
            variables[(string)entry.Key] = entry.Value as string ?? "";
        }
        return variables;
    }

    /// <summary>
    /// An env file as docker compose reads one: <c>KEY=VALUE</c> (or <c>export KEY=VALUE</c>) a line,
    /// <c>#</c> comments, blank lines; a value unquoted (trimmed, <c> #…</c> cut, interpolated),
    /// 'single-quoted' (as written) or "double-quoted" (\n, \t, \", \\ and interpolation). A line
    /// that is none of these is an error naming the file and line. Later lines see earlier ones.
    /// </summary>
    public static List<(string Key, string Value)> ReadEnvFile(string text, string source, Func<string, string?> outside)
    {
        var pairs = new List<(string Key, string Value)>();
        var own = new Dictionary<string, string>(StringComparer.Ordinal);
        string? Lookup(string name) => own.TryGetValue(name, out var v) ? v : outside(name);
        var lines = text.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n');
        for (var n = 0; n < lines.Length; n++)
        {
            var line = lines[n].Trim();
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }
            if (line.StartsWith("export ", StringComparison.Ordinal))
            {
                line = line["export ".Length..].TrimStart();
            }
            var eq = line.IndexOf('=', StringComparison.Ordinal);
            var key = eq < 0 ? line : line[..eq].TrimEnd();
            if (!IsName(key))
            {
                throw new ManifestException($"{source}:{n + 1}: '{lines[n].Trim()}' is not KEY=VALUE; a key is letters, digits and _ (not starting with a digit)");
            }
            if (eq < 0)
            {
                continue; // KEY alone: compose takes it from the shell, which Load lays over the file anyway
            }
            var raw = line[(eq + 1)..].TrimStart();
            string value;
            try
            {
                if (raw.StartsWith('\''))
                {
                    var end = raw.IndexOf('\'', 1);
                    value = end < 0 ? throw new FormatException("the quote ' is not closed on its line") : raw[1..end];
                }
                else if (raw.StartsWith('"'))
                {
                    var text2 = new StringBuilder();
                    var i = 1;
                    for (; i < raw.Length && raw[i] != '"'; i++)
                    {
                        if (raw[i] == '\\' && i + 1 < raw.Length)
                        {
                            i++;
                            text2.Append(raw[i] switch { 'n' => '\n', 't' => '\t', 'r' => '\r', _ => raw[i] });
                        }
                        else
                        {
                            text2.Append(raw[i]);
                        }
                    }
                    value = i >= raw.Length ? throw new FormatException("the quote \" is not closed on its line") : Interpolate(text2.ToString(), Lookup, []);
                }
                else
                {
                    var comment = raw.IndexOf(" #", StringComparison.Ordinal);
                    value = Interpolate((comment < 0 ? raw : raw[..comment]).TrimEnd(), Lookup, []);
                }
            }
            catch (FormatException e)
            {
                throw new ManifestException($"{source}:{n + 1}: {key}: {e.Message}");
            }
            own[key] = value;
            pairs.Add((key, value));
        }
        return pairs;
    }

    /// <summary>
    /// <paramref name="text"/> with its variables replaced from <paramref name="lookup"/> (null: not set).
    /// The names of variables used but not set (and with no default) are added to <paramref name="unset"/>;
    /// they read as empty, as in compose. A template that does not parse, or a <c>${VAR:?message}</c>
    /// whose variable is not set, throws a <see cref="FormatException"/> saying so.
    /// </summary>
    public static string Interpolate(string text, Func<string, string?> lookup, List<string> unset)
    {
        if (!text.Contains('$', StringComparison.Ordinal))
        {
            return text;
        }
        var result = new StringBuilder(text.Length);
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (c != '$')
            {
                result.Append(c);
                continue;
            }
            var next = i + 1 < text.Length ? text[i + 1] : '\0';
            if (next == '$')
            {
                result.Append('$');
                i++;
            }
            else if (next == '{')
            {
                var close = Closing(text, i + 2);
                if (close < 0)
                {
                    throw new FormatException($"'${{' at {i + 1} is not closed with '}}' (write $$ for a $ that is not a variable)");
                }
                result.Append(Braced(text[(i + 2)..close], lookup, unset));
                i = close;
            }
            else if (char.IsAsciiLetter(next) || next == '_')
            {
                var end = i + 1;
                while (end < text.Length && (char.IsAsciiLetterOrDigit(text[end]) || text[end] == '_'))
                {
                    end++;
                }
                var name = text[(i + 1)..end];
                result.Append(Value(name, lookup, unset));
                i = end - 1;
            }
            else
            {
                throw new FormatException($"'${(next == '\0' ? "" : next)}' is not a variable (write $$ for a literal $)");
            }
        }
        return result.ToString();
    }

    private static string Value(string name, Func<string, string?> lookup, List<string> unset)
    {
        if (lookup(name) is { } value)
        {
            return value;
        }
        if (!unset.Contains(name, StringComparer.Ordinal))
        {
            unset.Add(name);
        }
        return "";
    }

    /// <summary>The inside of <c>${…}</c>: a name, then nothing or an operator and its word.</summary>
    private static string Braced(string inside, Func<string, string?> lookup, List<string> unset)
    {
        var end = 0;
        while (end < inside.Length && (char.IsAsciiLetterOrDigit(inside[end]) || inside[end] == '_'))
        {
            end++;
        }
        var name = inside[..end];
        if (!IsName(name))
        {
            throw new FormatException($"'${{{inside}}}' does not start with a variable name (letters, digits and _)");
        }
        var rest = inside[end..];
        if (rest.Length == 0)
        {
            return Value(name, lookup, unset);
        }
        var colon = rest[0] == ':';
        var op = colon ? (rest.Length > 1 ? rest[1] : '\0') : rest[0];
        var word = rest[(colon ? 2 : 1)..];
        var current = lookup(name);
        var missing = current is null || (colon && current.Length == 0);
        switch (op)
        {
            case '-':
                return missing ? Interpolate(word, lookup, unset) : current!;
            case '?':
                return missing
                    ? throw new FormatException($"{name} is required{(word.Length > 0 ? ": " + Interpolate(word, lookup, unset) : "")} (set it in the shell or the project's .env)")
                    : current!;
            case '+':
                return missing ? "" : Interpolate(word, lookup, unset);
            default:
                throw new FormatException($"'${{{inside}}}' is not a variable: after the name comes }}, :-, -, :?, ?, :+ or +");
        }
    }

    /// <summary>The index of the '}' that closes a '${' whose inside starts at <paramref name="start"/>, nested ones counted; -1 if none.</summary>
    private static int Closing(string text, int start)
    {
        var depth = 1;
        for (var i = start; i < text.Length; i++)
        {
            if (text[i] == '$' && i + 1 < text.Length && text[i + 1] == '{')
            {
                depth++;
                i++;
            }
            else if (text[i] == '}' && --depth == 0)
            {
                return i;
            }
        }
        return -1;
    }

    private static bool IsName(string name)
        => name.Length > 0 && (char.IsAsciiLetter(name[0]) || name[0] == '_') && name.All(c => char.IsAsciiLetterOrDigit(c) || c == '_');
}

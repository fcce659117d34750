using System.Text.RegularExpressions;

namespace Orchestrator.Api.Workloads;

/// <summary>
/// Shell-style patterns of device paths (/dev/ttyUSB*, /dev/video[0-3], /dev/serial/by-id/*), as a
/// shell globs them: <c>*</c> and <c>?</c> within one path component, <c>[…]</c> a set or range
/// (<c>[!…]</c> its complement). The same rules for a workload's devices and a node's policy.devices.
/// </summary>
public static partial class DeviceGlob
{
    /// <summary>Whether the text has a glob character (otherwise it names one path).</summary>
    public static bool IsGlob(string pattern) => pattern.AsSpan().IndexOfAny('*', '?', '[') >= 0;

    /// <summary>Whether <paramref name="path"/> matches <paramref name="pattern"/> whole, component by component.</summary>
    public static bool Matches(string pattern, string path)
    {
        var patternParts = pattern.Split('/');
        var pathParts = path.Split('/');
        if (patternParts.Length != pathParts.Length)
        {
            return false;
        }
        for (var i = 0; i < patternParts.Length; i++)
        {
            if (!MatchesComponent(patternParts[i], pathParts[i]))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>Whether one file name matches one pattern component.</summary>
    public static bool MatchesComponent(string pattern, string name)
        => !IsGlob(pattern) ? pattern == name : ToRegex(pattern) is { } regex && regex.IsMatch(name);

    /// <summary>Why the pattern is not a usable absolute device path or glob, or null.</summary>
    public static string? Problem(string pattern)
    {
        if (string.IsNullOrEmpty(pattern) || !pattern.StartsWith('/') || pattern == "/")
        {
            return "expected an absolute path of a device node or a glob of them (/dev/ttyUSB0, /dev/ttyUSB*)";
        }
        var parts = pattern.Split('/');
        if (parts.Contains("..") || parts.Contains(".") || parts.Skip(1).Any(p => p.Length == 0))
        {
            return "expected a clean absolute path, without '.', '..' or '//'";
        }
        if (pattern.Any(char.IsControl))
        {
            return "expected a path without control characters";
        }
        return parts.Where(IsGlob).Any(p => ToRegex(p) is null) ? "an unclosed '[' in the glob" : null;
    }

    private static Regex? ToRegex(string component)
    {
        var regex = new System.Text.StringBuilder("^");
        for (var i = 0; i < component.Length; i++)
        {
            var c = component[i];
            switch (c)
            {
                case '*':
                    regex.Append("[^/]*");
                    break;
                case '?':
                    regex.Append("[^/]");
                    break;
                case '[':
                    var end = component.IndexOf(']', i + 2 <= component.Length ? i + 2 : i + 1);
                    if (end < 0)
                    {
                        return null;
                    }
                    var set = component[(i + 1)..end];
                    var negate = set.StartsWith('!') || set.StartsWith('^');
                    if (negate)
                    {
                        set = set[1..];
                    }
                    regex.Append('[').Append(negate ? "^" : "").Append(Regex.Escape(set).Replace("\\-", "-", StringComparison.Ordinal).Replace("]", "\\]", StringComparison.Ordinal)).Append(']');
                    i = end;
                    break;
                default:
                    regex.Append(Regex.Escape(c.ToString()));
                    break;
            }
        }
        try
        {
            return new Regex(regex.Append('$').ToString(), RegexOptions.CultureInvariant);
        }
        catch (ArgumentException)
        {
            return null;
        }
    }
}

using System.Globalization;

namespace Orchestrator.Syntax;

/// <summary>
/// The one duration grammar of the project (flags, orchd's config, manifests, compose import):
/// one or more NUMBER UNIT parts such as <c>500ms</c>, <c>90s</c>, <c>1m30s</c>, <c>2h</c>,
/// <c>2d</c>, <c>1.5h</c>, with units d, h, m, s, ms, us (or µs) and ns; a bare number is seconds
/// (<c>--timeout 2</c>). Never negative, and under 10,000 days.
/// </summary>
public static class Duration
{
    /// <summary>The examples an error message shows.</summary>
    public const string Examples = "500ms, 90s, 1m30s, 2h or 2d";

    /// <summary>The longest duration the grammar takes: no setting means more, and TimeSpan ends not far beyond.</summary>
    public static readonly TimeSpan Longest = TimeSpan.FromDays(10_000);

    /// <summary>Reads a duration; false (and zero) when the text is not one.</summary>
    public static bool TryParse(string? text, out TimeSpan duration) => TryParse(text, out duration, out _);

    /// <summary>Reads a duration; false (and zero) when the text is not one, with <paramref name="tooLong"/> set when it is one but not under <see cref="Longest"/>.</summary>
    public static bool TryParse(string? text, out TimeSpan duration, out bool tooLong)
    {
        duration = TimeSpan.Zero;
        tooLong = false;
        var span = (text ?? "").AsSpan().Trim();
        if (span.IsEmpty)
        {
            return false;
        }
        double seconds;
        if (double.TryParse(span, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var bare))
        {
            seconds = bare;
        }
        else if (!TrySumParts(span, out seconds))
        {
            return false;
        }
        if (seconds >= Longest.TotalSeconds)
        {
            tooLong = true;
            return false;
        }
        duration = TimeSpan.FromTicks((long)Math.Round(seconds * TimeSpan.TicksPerSecond));
        return true;
    }

    private static bool TrySumParts(ReadOnlySpan<char> span, out double seconds)
    {
        seconds = 0;
        var i = 0;
        while (i < span.Length)
        {
            var start = i;
            while (i < span.Length && (char.IsAsciiDigit(span[i]) || span[i] == '.'))
            {
                i++;
            }
            if (start == i || !double.TryParse(span[start..i], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number))
            {
                return false;
            }
            var unitStart = i;
            while (i < span.Length && !char.IsAsciiDigit(span[i]) && span[i] != '.')
            {
                i++;
            }
            double unit;
            switch (span[unitStart..i])
            {
                case "d": unit = 86400; break;
                case "h": unit = 3600; break;
                case "m": unit = 60; break;
                case "s": unit = 1; break;
                case "ms": unit = 1e-3; break;
                case "us" or "µs": unit = 1e-6; break;
                case "ns": unit = 1e-9; break;
                default: return false;
            }
            seconds += number * unit;
        }
        return true;
    }
}

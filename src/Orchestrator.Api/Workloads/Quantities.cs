using System.Globalization;

namespace Orchestrator.Api.Workloads;

/// <summary>The manifest's sizes ("64Mi"), CPU amounts ("0.5", "500m") and durations ("1s", "5m").</summary>
public static class Quantities
{
    public static bool TryParseBytes(string text, out long bytes)
    {
        bytes = 0;
        text = text.Trim();
        var suffixes = new (string Suffix, long Factor)[]
        {
            ("Ki", 1L << 10), ("Mi", 1L << 20), ("Gi", 1L << 30), ("Ti", 1L << 40),
            ("K", 1000), ("k", 1000), ("M", 1_000_000), ("G", 1_000_000_000), ("T", 1_000_000_000_000), ("", 1),
        };
        foreach (var (suffix, factor) in suffixes)
        {
            if (text.EndsWith(suffix, StringComparison.Ordinal) &&
                decimal.TryParse(text.AsSpan(0, text.Length - suffix.Length), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number))
            {
                var value = number * factor;
                if (value is < 0 or > long.MaxValue)
                {
                    return false;
                }
                bytes = (long)value;
                return true;
            }
        }
        return false;
    }

    /// <summary>CPUs as millicores: "1" is 1000, "0.25" is 250, "250m" is 250.</summary>
    public static bool TryParseMilliCpu(string text, out long milli)
    {
        milli = 0;
        text = text.Trim();
        if (text.EndsWith('m') && long.TryParse(text.AsSpan(0, text.Length - 1), NumberStyles.None, CultureInfo.InvariantCulture, out var m))
        {
            milli = m;
            return m > 0;
        }
        if (decimal.TryParse(text, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var cpus) && cpus > 0 && cpus < 100_000)
        {
            milli = (long)Math.Ceiling(cpus * 1000);
            return true;
        }
        return false;
    }
}

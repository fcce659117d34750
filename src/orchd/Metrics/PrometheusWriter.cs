using System.Globalization;
using System.Text;

namespace Orchestrator.Daemon.Metrics;

public enum MetricType
{
    Gauge,
    Counter,
}

/// <summary>
/// The Prometheus text exposition format (version 0.0.4), written by hand: per metric family one
/// HELP and one TYPE line, then its samples together; label values escaped (backslash, double
/// quote, newline); numbers in invariant culture with NaN/+Inf spelled Prometheus' way. A family
/// with no samples is left out, and a series written twice is a bug that throws.
/// </summary>
public sealed class PrometheusWriter
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    private readonly StringBuilder _text = new();
    private readonly HashSet<string> _families = new(StringComparer.Ordinal);
    private readonly HashSet<string> _series = new(StringComparer.Ordinal);
    private (string Name, string Help, MetricType Type)? _pending;
    private string? _current;

    /// <summary>Starts a family; its HELP and TYPE lines are written with its first sample.</summary>
    public PrometheusWriter Family(string name, MetricType type, string help)
    {
        if (!IsValidName(name))
        {
            throw new ArgumentException($"'{name}' is not a valid Prometheus metric name", nameof(name));
        }
        if (!_families.Add(name))
        {
            throw new InvalidOperationException($"metric family '{name}' written twice; keep a family's samples together");
        }
        _pending = (name, help, type);
        _current = name;
        return this;
    }

    /// <summary>One sample of the current family, with label pairs (name, value, name, value…).</summary>
    public PrometheusWriter Sample(double value, params string[] labels)
    {
        if (_current is null)
        {
            throw new InvalidOperationException("a sample needs a family first");
        }
        if (labels.Length % 2 != 0)
        {
            throw new ArgumentException("labels come in name, value pairs", nameof(labels));
        }
        if (_pending is { } family)
        {
            _text.Append("# HELP ").Append(family.Name).Append(' ').Append(EscapeHelp(family.Help)).Append('\n');
            _text.Append("# TYPE ").Append(family.Name).Append(' ').Append(family.Type == MetricType.Counter ? "counter" : "gauge").Append('\n');
            _pending = null;
        }
        var line = new StringBuilder(_current);
        if (labels.Length > 0)
        {
            line.Append('{');
            for (var i = 0; i < labels.Length; i += 2)
            {
                if (!IsValidLabelName(labels[i]))
                {
                    throw new ArgumentException($"'{labels[i]}' is not a valid Prometheus label name", nameof(labels));
                }
                line.Append(i == 0 ? "" : ",").Append(labels[i]).Append("=\"").Append(EscapeLabelValue(labels[i + 1])).Append('"');
            }
            line.Append('}');
        }
        var series = line.ToString();
        if (!_series.Add(series))
        {
            throw new InvalidOperationException($"series {series} written twice");
        }
        _text.Append(series).Append(' ').Append(FormatValue(value)).Append('\n');
        return this;
    }

    public override string ToString() => _text.ToString();

    public static string FormatValue(double value) => value switch
    {
        double.PositiveInfinity => "+Inf",
        double.NegativeInfinity => "-Inf",
        _ when double.IsNaN(value) => "NaN",
        _ => value.ToString("R", CultureInfo.InvariantCulture),
    };

    public static string EscapeLabelValue(string value)
        => value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    private static string EscapeHelp(string help)
        => help.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    /// <summary>[a-zA-Z_:][a-zA-Z0-9_:]*</summary>
    public static bool IsValidName(string name)
        => name.Length > 0 && !char.IsAsciiDigit(name[0]) && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or ':');

    /// <summary>[a-zA-Z_][a-zA-Z0-9_]*, and not the reserved __ prefix.</summary>
    public static bool IsValidLabelName(string name)
        => name.Length > 0 && !char.IsAsciiDigit(name[0]) && !name.StartsWith("__", StringComparison.Ordinal)
           && name.All(c => char.IsAsciiLetterOrDigit(c) || c == '_');
}

using YamlDotNet.Core;
using YamlDotNet.Core.Events;

namespace Orchestrator.Api.Workloads;

/// <summary>
/// Bounds on YAML from outside (manifest files, `orchctl run -f`, orchd.yaml), checked on the
/// parser's event stream before any node tree is built: YamlDotNet builds and walks trees
/// recursively, so 200,000 nested '[' overflowed the stack (SIGSEGV), and aliases expand when a
/// manifest becomes JSON, so a few lines of anchors (a "billion laughs") asked for gigabytes.
/// </summary>
public static class YamlLimits
{
    /// <summary>The largest YAML text read, in bytes (a manifest is a few KB); a text of more characters is larger still.</summary>
    public const int MaxBytes = 1 << 20;

    /// <summary>The deepest nesting of mappings and sequences (a manifest needs fewer than 10).</summary>
    public const int MaxDepth = 64;

    /// <summary>The most nodes the text may stand for once every alias is expanded.</summary>
    public const long MaxNodes = 100_000;

    /// <summary>Null when <paramref name="text"/> is within the bounds, else the reason, with line and column.</summary>
    public static string? Check(string text)
    {
        if (text.Length > MaxBytes)
        {
            return $"it is larger than the {MaxBytes >> 20} MiB a YAML file here may be";
        }
        var parser = new Parser(new StringReader(text));
        var open = new Stack<(string? Anchor, long NodesBefore)>();
        var anchored = new Dictionary<string, long>(StringComparer.Ordinal);
        long nodes = 0;
        try
        {
            while (parser.MoveNext())
            {
                var current = parser.Current!;
                switch (current)
                {
                    case AnchorAlias alias:
                        nodes += anchored.GetValueOrDefault(alias.Value.Value, 1);
                        break;
                    case Scalar scalar:
                        nodes++;
                        if (!scalar.Anchor.IsEmpty)
                        {
                            anchored[scalar.Anchor.Value] = 1;
                        }
                        break;
                    case YamlDotNet.Core.Events.NodeEvent start and (MappingStart or SequenceStart):
                        nodes++;
                        open.Push((start.Anchor.IsEmpty ? null : start.Anchor.Value, nodes - 1));
                        if (open.Count > MaxDepth)
                        {
                            return $"{current.Start.Line}:{current.Start.Column}: it nests mappings and sequences more than {MaxDepth} deep";
                        }
                        break;
                    case MappingEnd or SequenceEnd when open.Count > 0:
                        var (anchor, before) = open.Pop();
                        if (anchor is not null)
                        {
                            anchored[anchor] = nodes - before;
                        }
                        break;
                }
                if (nodes > MaxNodes)
                {
                    return $"{current.Start.Line}:{current.Start.Column}: it stands for more than {MaxNodes} values once its aliases are expanded";
                }
            }
        }
        catch (YamlException)
        {
            return null; // a syntax error: the full parse that follows reports it with its position
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or FormatException or OverflowException or IndexOutOfRangeException)
        {
            // YamlDotNet's scanner throws these on some malformed text (found by the fuzzer):
            // refused here, before the full parse, which would throw the same.
            return $"it is not valid YAML ({e.Message})";
        }
        return null;
    }
}

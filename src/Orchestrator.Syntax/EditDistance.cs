namespace Orchestrator.Syntax;

/// <summary>How far apart two names are, for "did you mean" hints.</summary>
public static class EditDistance
{
    /// <summary>
    /// Optimal string alignment distance: insertions, deletions, substitutions and swaps of
    /// neighbours each cost one (a swap is the commonest typo: "lables").
    /// </summary>
    public static int Between(string a, string b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        var d = new int[a.Length + 1, b.Length + 1];
        for (var i = 0; i <= a.Length; i++)
        {
            d[i, 0] = i;
        }
        for (var j = 0; j <= b.Length; j++)
        {
            d[0, j] = j;
        }
        for (var i = 1; i <= a.Length; i++)
        {
            for (var j = 1; j <= b.Length; j++)
            {
                var cost = a[i - 1] == b[j - 1] ? 0 : 1;
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                {
                    d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
                }
            }
        }
        return d[a.Length, b.Length];
    }

    /// <summary>
    /// The candidate nearest to <paramref name="name"/> when it is at most <paramref name="maxDistance"/>
    /// edits away (the first of equals wins); null when none is that close.
    /// </summary>
    public static string? Closest(string name, IEnumerable<string> candidates, int maxDistance)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        string? best = null;
        var bestDistance = int.MaxValue;
        foreach (var candidate in candidates)
        {
            var distance = Between(name, candidate);
            if (distance < bestDistance)
            {
                (best, bestDistance) = (candidate, distance);
            }
        }
        return bestDistance <= maxDistance ? best : null;
    }
}

using System.Globalization;

namespace Orchestrator.Api.Workloads;

/// <summary>
/// A job's schedule as cron writes it: five fields (minute hour day-of-month month day-of-week)
/// with <c>*</c>, lists, ranges, steps (<c>*/15</c>, <c>1-5/2</c>) and names (<c>jan</c>, <c>mon-fri</c>),
/// day-of-month and day-of-week OR-ed when both are restricted (as Vixie cron does); the macros
/// <c>@hourly</c>, <c>@daily</c> (<c>@midnight</c>), <c>@weekly</c>, <c>@monthly</c>, <c>@yearly</c>
/// (<c>@annually</c>); and <c>@every DURATION</c> (<c>@every 30s</c>, at least 1 s) for intervals a
/// field cannot say. Times are wall-clock times of a time zone (the node's own by default): a
/// time that a daylight-saving change skips does not happen that day, one it repeats happens once.
/// </summary>
public sealed class CronSchedule
{
    private static readonly string[] s_months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    private static readonly string[] s_days = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

    private readonly bool[] _minutes = new bool[60], _hours = new bool[24], _days = new bool[32], _months = new bool[13], _weekdays = new bool[7];
    private bool _anyDay, _anyWeekday;

    /// <summary>The interval of an <c>@every</c> schedule; null for a cron one.</summary>
    public TimeSpan? Every { get; private init; }

    public string Text { get; private init; } = "";

    private CronSchedule()
    {
    }

    /// <summary>The schedule <paramref name="text"/> spells, or a <see cref="FormatException"/> saying which field is wrong and how to write it.</summary>
    public static CronSchedule Parse(string text)
    {
        var trimmed = text.Trim();
        if (trimmed.StartsWith("@every", StringComparison.Ordinal))
        {
            var interval = trimmed["@every".Length..].Trim();
            if (!Orchestrator.Syntax.Duration.TryParse(interval, out var every) || every < TimeSpan.FromSeconds(1))
            {
                throw new FormatException($"'@every {interval}': expected a duration of at least 1s ({Orchestrator.Syntax.Duration.Examples})");
            }
            return new CronSchedule { Every = every, Text = trimmed };
        }
        var expanded = trimmed switch
        {
            "@yearly" or "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" or "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            _ when trimmed.StartsWith('@') => throw new FormatException($"'{trimmed}' is not a schedule macro; use @hourly, @daily, @weekly, @monthly, @yearly or @every 10m"),
            _ => trimmed,
        };
        var fields = expanded.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (fields.Length != 5)
        {
            throw new FormatException($"'{text}' has {fields.Length} field{(fields.Length == 1 ? "" : "s")}; a schedule has five: minute hour day-of-month month day-of-week (\"0 3 * * *\" is 03:00 every day), or a macro (@daily, @every 10m)");
        }
        var schedule = new CronSchedule { Text = trimmed };
        Field(fields[0], "minute", 0, 59, null, schedule._minutes);
        Field(fields[1], "hour", 0, 23, null, schedule._hours);
        Field(fields[2], "day-of-month", 1, 31, null, schedule._days);
        Field(fields[3], "month", 1, 12, s_months, schedule._months);
        var weekdays = new bool[8];
        Field(fields[4], "day-of-week", 0, 7, s_days, weekdays);
        for (var d = 0; d < 7; d++)
        {
            schedule._weekdays[d] = weekdays[d] || (d == 0 && weekdays[7]); // 7 is Sunday too
        }
        schedule._anyDay = fields[2] is "*" or "?";
        schedule._anyWeekday = fields[4] is "*" or "?";
        return schedule;
    }

    /// <summary>Why the text is not a schedule, or null.</summary>
    public static string? Problem(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return "expected a schedule (\"0 3 * * *\", @daily, @every 10m)";
        }
        try
        {
            Parse(text);
            return null;
        }
        catch (FormatException e)
        {
            return e.Message;
        }
    }

    private static void Field(string field, string name, int min, int max, string[]? names, bool[] set)
    {
        foreach (var part in field.Split(','))
        {
            var (range, stepText) = part.IndexOf('/', StringComparison.Ordinal) is var slash and >= 0 ? (part[..slash], part[(slash + 1)..]) : (part, null);
            var step = 1;
            if (stepText is not null && (!int.TryParse(stepText, NumberStyles.None, CultureInfo.InvariantCulture, out step) || step < 1 || step > max))
            {
                throw new FormatException($"{name} '{field}': the step '{stepText}' is not a number from 1 to {max}");
            }
            int from, to;
            if (range is "*" or "?")
            {
                (from, to) = (min, max);
            }
            else if (range.IndexOf('-', StringComparison.Ordinal) is var dash and > 0)
            {
                (from, to) = (Value(range[..dash], name, field, min, max, names), Value(range[(dash + 1)..], name, field, min, max, names));
                if (from > to)
                {
                    throw new FormatException($"{name} '{field}': the range {range} runs backwards; write it from the smaller to the larger");
                }
            }
            else
            {
                from = Value(range, name, field, min, max, names);
                to = stepText is null ? from : max; // "5/15": from 5, every 15
            }
            for (var v = from; v <= to; v += step)
            {
                set[v] = true;
            }
        }
    }

    private static int Value(string text, string name, string field, int min, int max, string[]? names)
    {
        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max)
        {
            return value;
        }
        if (names is not null && Array.IndexOf(names, text.ToLowerInvariant()) is var index and >= 0)
        {
            return index + (names.Length == 12 ? 1 : 0);
        }
        throw new FormatException($"{name} '{field}': '{text}' is not a {name} ({min}-{max}{(names is null ? "" : $" or {names[0]}-{names[^1]}")})");
    }

    /// <summary>
    /// The first time after <paramref name="after"/> the schedule fires, in <paramref name="zone"/>'s
    /// wall-clock time; null when it never does (the 30th of February) within eight years. An
    /// <c>@every</c> schedule fires <see cref="Every"/> after <paramref name="after"/>.
    /// </summary>
    public DateTimeOffset? Next(DateTimeOffset after, TimeZoneInfo zone)
    {
        if (Every is { } every)
        {
            return after + every;
        }
        var local = TimeZoneInfo.ConvertTime(after, zone).DateTime;
        var t = new DateTime(local.Year, local.Month, local.Day, local.Hour, local.Minute, 0, DateTimeKind.Unspecified).AddMinutes(1);
        var end = t.AddYears(8);
        while (t < end)
        {
            if (!_months[t.Month])
            {
                t = new DateTime(t.Year, t.Month, 1, 0, 0, 0, DateTimeKind.Unspecified).AddMonths(1);
                continue;
            }
            if (!DayMatches(t))
            {
                t = t.Date.AddDays(1);
                continue;
            }
            if (!_hours[t.Hour])
            {
                t = t.Date.AddHours(t.Hour + 1);
                continue;
            }
            if (!_minutes[t.Minute])
            {
                t = t.AddMinutes(1);
                continue;
            }
            if (zone.IsInvalidTime(t))
            {
                t = t.AddMinutes(1); // skipped by a daylight-saving change
                continue;
            }
            var offset = zone.IsAmbiguousTime(t) ? zone.GetAmbiguousTimeOffsets(t).Max() : zone.GetUtcOffset(t);
            var at = new DateTimeOffset(t, offset);
            if (at > after)
            {
                return at;
            }
            t = t.AddMinutes(1);
        }
        return null;
    }

    private bool DayMatches(DateTime t)
    {
        var day = _days[t.Day];
        var weekday = _weekdays[(int)t.DayOfWeek];
        return _anyDay && _anyWeekday ? true : _anyDay ? weekday : _anyWeekday ? day : day || weekday;
    }
}

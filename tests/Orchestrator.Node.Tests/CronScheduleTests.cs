using Orchestrator.Api.Workloads;

namespace Orchestrator.Node.Tests;

/// <summary>
/// Job schedules as cron reads them: fields, ranges, steps, names, day-of-month OR day-of-week,
/// macros, @every, time zones with their daylight-saving changes, and a clear error for each bad
/// field.
/// </summary>
public sealed class CronScheduleTests
{
    private static readonly TimeZoneInfo s_utc = TimeZoneInfo.Utc;

    private static DateTimeOffset At(string utc) => DateTimeOffset.Parse(utc, System.Globalization.CultureInfo.InvariantCulture);

    [Theory]
    [InlineData("0 3 * * *", "2026-12-07T08:22:00Z", "2026-12-08T03:00:00Z")]
    [InlineData("0 3 * * *", "2026-12-07T02:59:59Z", "2026-12-07T03:00:00Z")]
    [InlineData("0 3 * * *", "2026-12-07T03:00:00Z", "2026-12-08T03:00:00Z")] // strictly after
    [InlineData("*/15 * * * *", "2026-12-07T08:22:00Z", "2026-12-07T08:30:00Z")]
    [InlineData("5/20 * * * *", "2026-12-07T08:26:00Z", "2026-12-07T08:45:00Z")]
    [InlineData("0 9-17/4 * * mon-fri", "2026-12-05T12:00:00Z", "2026-12-07T09:00:00Z")] // Saturday → Monday 09:00
    [InlineData("30 2 1,15 * *", "2026-12-02T00:00:00Z", "2026-12-15T02:30:00Z")]
    [InlineData("0 0 29 feb *", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00Z")] // the next leap year
    [InlineData("0 0 13 * fri", "2026-12-07T00:00:00Z", "2026-12-11T00:00:00Z")] // the 13th OR a Friday: Friday the 11th comes first
    [InlineData("0 0 * * 7", "2026-12-07T00:00:00Z", "2026-12-13T00:00:00Z")] // 7 is Sunday
    [InlineData("@daily", "2026-12-07T08:22:00Z", "2026-12-08T00:00:00Z")]
    [InlineData("@hourly", "2026-12-07T08:22:00Z", "2026-12-07T09:00:00Z")]
    [InlineData("@weekly", "2026-12-07T08:22:00Z", "2026-12-13T00:00:00Z")]
    [InlineData("@monthly", "2026-12-07T08:22:00Z", "2027-01-01T00:00:00Z")]
    [InlineData("@yearly", "2026-12-07T08:22:00Z", "2027-01-01T00:00:00Z")]
    [InlineData("0 12 * JAN,Jul *", "2026-12-07T08:22:00Z", "2027-01-01T12:00:00Z")]
    public void The_next_time_is_the_first_that_matches_every_field_after_the_given_one(string schedule, string after, string expected)
        => Assert.Equal(At(expected), CronSchedule.Parse(schedule).Next(At(after), s_utc));

    [Fact]
    public void Every_is_an_interval_from_the_last_time()
    {
        var every = CronSchedule.Parse("@every 90s");
        Assert.Equal(TimeSpan.FromSeconds(90), every.Every);
        Assert.Equal(At("2026-12-07T08:23:30Z"), every.Next(At("2026-12-07T08:22:00Z"), s_utc));
    }

    [Fact]
    public void A_schedule_is_read_in_its_time_zone_with_a_skipped_hour_not_run_and_a_repeated_one_run_once()
    {
        var berlin = TimeZoneInfo.FindSystemTimeZoneById("Europe/Berlin");
        // 03:00 in Tokyo (UTC+9, no DST) is 18:00 UTC the day before.
        Assert.Equal(At("2026-12-07T18:00:00Z"), CronSchedule.Parse("0 3 * * *").Next(At("2026-12-07T08:22:00Z"), TimeZoneInfo.FindSystemTimeZoneById("Asia/Tokyo")));
        // 2026-03-29 in Berlin: 02:00 → 03:00, so 02:30 does not happen that day; the next is the 30th.
        var skipped = CronSchedule.Parse("30 2 * * *").Next(At("2026-03-28T23:00:00Z"), berlin);
        Assert.Equal(At("2026-03-30T00:30:00Z"), skipped);
        // 2026-10-25 in Berlin: 03:00 → 02:00, so 02:30 comes twice; it runs once (at the first), then the next day.
        var schedule = CronSchedule.Parse("30 2 * * *");
        var first = schedule.Next(At("2026-10-24T23:00:00Z"), berlin)!.Value;
        Assert.Equal(At("2026-10-25T00:30:00Z"), first);
        Assert.Equal(At("2026-10-26T01:30:00Z"), schedule.Next(first, berlin));
        // Never: the 30th of February.
        Assert.Null(CronSchedule.Parse("0 0 30 2 *").Next(At("2026-12-07T00:00:00Z"), s_utc));
    }

    [Theory]
    [InlineData("0 3 * *", "has 4 fields; a schedule has five: minute hour day-of-month month day-of-week")]
    [InlineData("60 * * * *", "minute '60': '60' is not a minute (0-59)")]
    [InlineData("* 24 * * *", "hour '24': '24' is not a hour (0-23)")]
    [InlineData("* * 0 * *", "day-of-month '0': '0' is not a day-of-month (1-31)")]
    [InlineData("* * * 13 *", "month '13': '13' is not a month (1-12 or jan-dec)")]
    [InlineData("* * * * funday", "day-of-week 'funday': 'funday' is not a day-of-week (0-7 or sun-sat)")]
    [InlineData("*/0 * * * *", "minute '*/0': the step '0' is not a number from 1 to 59")]
    [InlineData("* 5-2 * * *", "hour '5-2': the range 5-2 runs backwards")]
    [InlineData("@fortnightly", "'@fortnightly' is not a schedule macro; use @hourly, @daily, @weekly, @monthly, @yearly or @every 10m")]
    [InlineData("@every 0s", "'@every 0s': expected a duration of at least 1s")]
    [InlineData("@every soon", "'@every soon': expected a duration of at least 1s")]
    public void A_bad_schedule_says_which_field_and_how_to_write_it(string schedule, string message)
        => Assert.Contains(message, CronSchedule.Problem(schedule), StringComparison.Ordinal);

    [Fact]
    public void A_job_validates_each_field_at_its_path()
    {
        var bad = Assert.Throws<ManifestException>(() => ManifestLoader.Parse("""
            name: backup
            image: busybox
            restart: {policy: always}
            probes: {liveness: {exec: {command: [true]}}}
            job:
              schedule: "0 25 * * *"
              timeZone: "not a zone"
              retries: -1
              deadlineSeconds: 0
              history: 1000
            """, "job.yaml"));
        Assert.Contains("job.yaml:6:13: job.schedule: hour '25': '25' is not a hour (0-23)", bad.Message, StringComparison.Ordinal);
        Assert.Contains("job.timeZone: 'not a zone' is not a time zone name", bad.Message, StringComparison.Ordinal);
        Assert.Contains("job.retries: expected an integer from 0 to 100, got -1", bad.Message, StringComparison.Ordinal);
        Assert.Contains("job.deadlineSeconds: expected an integer ≥ 1, got 0", bad.Message, StringComparison.Ordinal);
        Assert.Contains("job.history: expected an integer from 1 to 100, got 1000", bad.Message, StringComparison.Ordinal);
        Assert.Contains("restart: a job is restarted only when a run fails, job.retries times", bad.Message, StringComparison.Ordinal);
        Assert.Contains("probes: a job runs to completion", bad.Message, StringComparison.Ordinal);

        var good = Assert.Single(ManifestLoader.Parse("""
            name: backup
            image: busybox
            job: {schedule: "@every 10m", timeZone: Europe/Berlin, retries: 2, deadlineSeconds: 300, history: 10}
            """, "job.yaml"));
        Assert.Equal(("@every 10m", "Europe/Berlin", 2, 300, 10), (good.Job!.Schedule, good.Job.TimeZone, good.Job.Retries, good.Job.DeadlineSeconds, good.Job.History));
    }
}

using System.Globalization;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Node.Reconcile;

/// <summary>
/// Jobs (workload.job): a run goes to completion, retried on failure job.retries times with the
/// restart backoff, held to job.deadlineSeconds, and kept in the container's history
/// (<see cref="SupervisedContainerRecord.Runs"/>). An unscheduled job runs once (again when its
/// spec changes). A scheduled one waits for its next time, kept in its record: the node's own
/// clock and zone decide, with or without the fleet, and a time missed while orchd was down is run
/// once when it is back. A run still going when its next time comes makes that time pass (runs
/// never overlap).
/// </summary>
public sealed partial class Supervisor
{
    /// <summary>The restart policy a workload's exits follow: a job's own (on-failure, job.retries times, never reset by a long run).</summary>
    internal static RestartPolicy? RestartOf(Workload workload)
        => workload.Job is { } job
            ? (job.Retries ?? JobSpec.DefaultRetries) == 0
                ? new RestartPolicy { Policy = RestartPolicyKind.Never }
                : new RestartPolicy { Policy = RestartPolicyKind.OnFailure, MaxRetries = job.Retries ?? JobSpec.DefaultRetries, ResetAfter = "10000d" }
            : workload.Restart;

    /// <summary>A job is ready (for the fleet's rollouts) while it waits for its time, runs, or after a run that succeeded; not while a failed attempt waits for its retry, nor after a run that failed.</summary>
    private static bool JobReady(SupervisedContainer container)
        => !container.Stopping && container.Record.State is not (ContainerState.Stopped or ContainerState.Backoff)
           && (container.Handle is not null || container.Record.Runs is not { Count: > 0 } runs ? container.Record.State != ContainerState.Failed : runs[^1].Outcome == "succeeded");

    private static TimeZoneInfo JobZone(Workload workload)
        => workload.Job?.TimeZone is { } id ? TimeZoneInfo.FindSystemTimeZoneById(id) : TimeZoneInfo.Local;

    /// <summary>The job's part of a reconcile pass for a container that exists and is not stopped by request.</summary>
    private async Task ReconcileJobAsync(SupervisedContainer container, JobSpec job)
    {
        var record = container.Record;
        var now = _clock.GetUtcNow();
        var running = container.Handle is not null;
        if (job.DeadlineSeconds is { } deadline && record.RunStartedAt is { } began && (running || record.State == ContainerState.Backoff)
            && now >= began.AddSeconds(deadline))
        {
            if (running)
            {
                await StopAsync(container, "deadline").ConfigureAwait(false); // Exited ends the run
            }
            else
            {
                record.State = ContainerState.Failed;
                record.NextRestartAt = null;
                EndRun(container, "deadline-exceeded", record.LastExit?.Code, $"deadline of {deadline}s exceeded (job.deadlineSeconds)");
            }
            return;
        }
        if (running)
        {
            return;
        }
        if (record.State == ContainerState.Backoff)
        {
            if (record.NextRestartAt is not { } at || at <= now.AddMilliseconds(20))
            {
                await StartAsync(container).ConfigureAwait(false);
            }
            return;
        }
        if (job.Schedule is null)
        {
            if ((record.State == ContainerState.Created && record.RunNumber == 0) || record.State == ContainerState.Stopped)
            {
                await StartAsync(container).ConfigureAwait(false); // its one run (or one more: started again by request)
            }
            return;
        }
        if (record.NextRunAt is null)
        {
            ScheduleNext(container, now);
        }
        if (record.NextRunAt is { } next && next <= now.AddMilliseconds(20))
        {
            record.NextRunAt = null;
            await StartAsync(container).ConfigureAwait(false);
        }
        else if (record.NextRunAt is { } later && container.WakeAt != later)
        {
            container.WakeAt = later; // one wake-up per time, not one per pass (a daily job would pile up 43,200 timers a day)
            ReconcileAfter(later - now);
        }
    }

    /// <summary>Sets when the scheduled job runs next (after <paramref name="after"/>), and says so in its message.</summary>
    private void ScheduleNext(SupervisedContainer container, DateTimeOffset after)
    {
        var record = container.Record;
        try
        {
            var schedule = CronSchedule.Parse(container.Workload.Job!.Schedule!);
            var zone = JobZone(container.Workload);
            record.NextRunAt = schedule.Next(after, zone);
            record.Message = record.NextRunAt is { } next
                ? $"{LastRunSummary(record)}next run at {TimeZoneInfo.ConvertTime(next, zone).ToString("yyyy-MM-dd HH:mm:ss zzz", CultureInfo.InvariantCulture)} ({zone.Id})"
                : $"{LastRunSummary(record)}the schedule '{schedule.Text}' never comes again";
        }
        catch (Exception e) when (e is TimeZoneNotFoundException or InvalidTimeZoneException or FormatException)
        {
            record.NextRunAt = null;
            record.State = ContainerState.Failed;
            record.Message = $"job.timeZone '{container.Workload.Job?.TimeZone}' is not a time zone this node knows ({e.Message}); install tzdata or name another";
            Emit("container.failed", record.Name, record.Message);
        }
        Save(container);
    }

    private static string LastRunSummary(SupervisedContainerRecord record)
        => record.Runs is { Count: > 0 } runs ? $"run {runs[^1].Number} {runs[^1].Outcome}; " : "";

    /// <summary>At a start: a new run unless this start is a retry of the current one.</summary>
    private void BeginAttempt(SupervisedContainer container)
    {
        var record = container.Record;
        if (record.State != ContainerState.Backoff || record.RunStartedAt is null)
        {
            record.RunNumber++;
            record.RunStartedAt = _clock.GetUtcNow();
            record.RunAttempts = 0;
            record.ConsecutiveFailures = 0;
            if (container.Workload.Job?.DeadlineSeconds is { } deadline)
            {
                ReconcileAfter(TimeSpan.FromSeconds(deadline));
            }
        }
        record.RunAttempts++;
    }

    /// <summary>A run is over: kept in the history (job.history runs), the message says how, and a scheduled job gets its next time.</summary>
    private void EndRun(SupervisedContainer container, string outcome, int? code, string? message)
    {
        var record = container.Record;
        var now = _clock.GetUtcNow();
        var run = new JobRun
        {
            Number = record.RunNumber, StartedAt = record.RunStartedAt ?? record.StartedAt ?? now, FinishedAt = now,
            Outcome = outcome, ExitCode = code, Attempts = Math.Max(1, record.RunAttempts), Message = message,
        };
        var runs = record.Runs ??= [];
        runs.Add(run);
        var keep = container.Workload.Job?.History ?? JobSpec.DefaultHistory;
        if (runs.Count > keep)
        {
            runs.RemoveRange(0, runs.Count - keep);
        }
        record.RunStartedAt = null;
        record.Message = $"run {run.Number} {outcome}{(message is null ? "" : $": {message}")}";
        Emit(outcome == "succeeded" ? "job.succeeded" : "job.failed", record.Name,
            $"run {run.Number} {outcome} after {run.Attempts} attempt{(run.Attempts == 1 ? "" : "s")} (exit code {code?.ToString(CultureInfo.InvariantCulture) ?? "none"})");
        if (container.Workload.Job?.Schedule is not null)
        {
            ScheduleNext(container, now);
        }
        Save(container);
    }

    /// <summary>Where a job's run is in the log (by time): from its first attempt to its end. On the loop.</summary>
    private (DateTimeOffset From, DateTimeOffset? Until) RunWindow(string name, int number)
    {
        var container = _containers.TryGetValue(name, out var c) ? c
            : throw new NodeApiException(ErrorKind.NotFound, $"no container '{name}' on this node; `ps` lists the ones there are");
        var record = container.Record;
        if (container.Workload.Job is null)
        {
            throw new NodeApiException(ErrorKind.Invalid, $"container '{name}' is not a job: it has no runs; `orchctl logs {name}` (or --previous) shows its log");
        }
        if (record.Runs?.FirstOrDefault(r => r.Number == number) is { } run)
        {
            return (run.StartedAt, run.FinishedAt.AddMilliseconds(500)); // lines drained at the exit are stamped just after it
        }
        if (number == record.RunNumber && record.RunStartedAt is { } current)
        {
            return (current, null); // the run going on now
        }
        var kept = record.Runs is { Count: > 0 } runs ? $"runs {runs[0].Number}-{runs[^1].Number} are kept (job.history)" : "no run has finished yet";
        throw new NodeApiException(ErrorKind.NotFound, $"container '{name}' has no run {number}: {kept}; `orchctl describe container {name} -n NODE` lists them");
    }
}

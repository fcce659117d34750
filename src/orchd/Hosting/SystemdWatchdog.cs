using System.Globalization;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;

namespace Orchestrator.Daemon.Hosting;

/// <summary>
/// Sends WATCHDOG=1 at half of WATCHDOG_USEC, as sd_watchdog_enabled(3) asks. The ping rides
/// on the thread pool, so a daemon whose pool is wedged stops pinging and systemd restarts it.
/// </summary>
internal sealed partial class SystemdWatchdog(ISystemdNotifier notifier, ILogger<SystemdWatchdog> logger) : BackgroundService
{
    private static readonly ServiceState s_watchdog = new("WATCHDOG=1");

    /// <summary>The ping interval, or null when systemd asked for no watchdog (or asked another pid).</summary>
    public static TimeSpan? Interval(Func<string, string?> getEnv)
    {
        if (!ulong.TryParse(getEnv("WATCHDOG_USEC"), NumberStyles.None, CultureInfo.InvariantCulture, out var usec) || usec == 0)
        {
            return null;
        }
        if (getEnv("WATCHDOG_PID") is { Length: > 0 } pid && pid != Environment.ProcessId.ToString(CultureInfo.InvariantCulture))
        {
            return null;
        }
        return TimeSpan.FromMicroseconds(usec / 2.0);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!notifier.IsEnabled || Interval(Environment.GetEnvironmentVariable) is not { } interval)
        {
            return;
        }
        LogEnabled(logger, interval.TotalMilliseconds);
        notifier.Notify(s_watchdog);
        using var timer = new PeriodicTimer(interval);
        var hangAfter = Environment.GetEnvironmentVariable("ORCHD_FAILPOINT") == "hang" ? 3 : -1;
        try
        {
            for (var pings = 1; await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false); pings++)
            {
                notifier.Notify(s_watchdog);
                if (pings == hangAfter)
                {
                    WedgeThreadPool();
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>
    /// The failpoint "hang" (tests only): a daemon wedged the way a deadlock wedges it, every
    /// thread-pool thread blocked for good, so that nothing async (timers, NATS, the reconcile
    /// loop, these pings) runs again while the process stays alive. systemd's answer to that is
    /// the watchdog: the pings stop, and after WatchdogSec= it kills and restarts orchd.
    /// </summary>
    private void WedgeThreadPool()
    {
        LogHang(logger);
        ThreadPool.GetMinThreads(out var workers, out var io);
        ThreadPool.SetMaxThreads(workers, io);
        var never = new ManualResetEventSlim(false);
        for (var i = 0; i < workers + 1; i++)
        {
            ThreadPool.UnsafeQueueUserWorkItem(static e => e.Wait(), never, preferLocal: false);
        }
    }

    [LoggerMessage(EventId = 1011, Level = LogLevel.Warning, Message = "failpoint hang: blocking every thread-pool thread; the watchdog pings stop")]
    private static partial void LogHang(ILogger logger);

    [LoggerMessage(EventId = 1010, Level = LogLevel.Debug, Message = "systemd watchdog on: pinging every {IntervalMs} ms")]
    private static partial void LogEnabled(ILogger logger, double intervalMs);
}

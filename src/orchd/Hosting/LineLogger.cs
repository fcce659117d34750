using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;

namespace Orchestrator.Daemon.Hosting;

/// <summary>
/// orchd's log sink: one line per event, written synchronously to stderr. Two formats:
/// text (<c>2026-11-25T21:41:17.793Z info  orchd[1001]: message</c>) for people and files, and
/// journal (<c>&lt;6&gt;orchd[1001]: message</c>, sd-daemon(3) priority prefixes) for journald,
/// which adds its own timestamps. Replaces Microsoft.Extensions.Logging.Console, whose queue
/// thread and options machinery cost about 1.5 MiB of RSS on a node that logs a few lines an hour.
/// </summary>
internal sealed class LineLoggerProvider(bool journal, LogLevel minimum, TextWriter? output = null) : ILoggerProvider
{
    private readonly TextWriter _output = output ?? Console.Error;
    private readonly Lock _gate = new();

    public ILogger CreateLogger(string categoryName) => new LineLogger(this, ShortCategory(categoryName));

    public void Dispose()
    {
    }

    /// <summary>"Orchestrator.Fleet.Agent.NodeAgent" → "NodeAgent": the event id already says where.</summary>
    private static string ShortCategory(string category)
    {
        var dot = category.LastIndexOf('.');
        return dot >= 0 ? category[(dot + 1)..] : category;
    }

    private void Write(string category, LogLevel level, EventId eventId, string message, Exception? exception)
    {
        var line = new StringBuilder(128);
        if (journal)
        {
            line.Append('<').Append(Priority(level)).Append('>');
        }
        else
        {
            line.Append(DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture)).Append(' ')
                .Append(LevelName(level)).Append(' ');
        }
        line.Append(category);
        if (eventId.Id != 0)
        {
            line.Append('[').Append(eventId.Id.ToString(CultureInfo.InvariantCulture)).Append(']');
        }
        line.Append(": ").Append(message.ReplaceLineEndings(" "));
        if (exception is not null)
        {
            // The reason, never a stack trace: users read this line.
            line.Append(" (").Append(exception.GetType().Name).Append(": ").Append(exception.Message.ReplaceLineEndings(" ")).Append(')');
        }
        lock (_gate)
        {
            _output.WriteLine(line.ToString());
            _output.Flush();
        }
    }

    /// <summary>syslog priorities, as journald reads them from a "&lt;N&gt;" prefix.</summary>
    internal static int Priority(LogLevel level) => level switch
    {
        LogLevel.Critical => 2,
        LogLevel.Error => 3,
        LogLevel.Warning => 4,
        LogLevel.Information => 6,
        _ => 7,
    };

    private static string LevelName(LogLevel level) => level switch
    {
        LogLevel.Trace => "trace",
        LogLevel.Debug => "debug",
        LogLevel.Information => "info ",
        LogLevel.Warning => "warn ",
        LogLevel.Error => "error",
        _ => "crit ",
    };

    private sealed class LineLogger(LineLoggerProvider provider, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= provider.Minimum && logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                provider.Write(category, logLevel, eventId, formatter(state, exception), exception);
            }
        }
    }

    private LogLevel Minimum => minimum;
}

using System.Text;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>What an interactive session (exec -i/-t, attach) has shown so far, stdout and stderr apart.</summary>
internal sealed class Screen
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(60);
    private readonly StringBuilder _out = new(), _err = new();

    public ValueTask Take(bool stderr, ReadOnlyMemory<byte> data)
    {
        lock (_out)
        {
            (stderr ? _err : _out).Append(Encoding.UTF8.GetString(data.Span));
        }
        return ValueTask.CompletedTask;
    }

    public string Out
    {
        get
        {
            lock (_out)
            {
                return _out.ToString();
            }
        }
    }

    public string Err
    {
        get
        {
            lock (_out)
            {
                return _err.ToString();
            }
        }
    }

    /// <summary>Until <paramref name="text"/> is on the screen (or on stderr), or the session ended.</summary>
    public Task UntilAsync(string text, Task session, bool stderr = false)
        => Eventually.TrueAsync($"'{text}' on the screen", () => (stderr ? Err : Out).Contains(text, StringComparison.Ordinal) || session.IsCompleted, s_wait,
            () => $"screen so far: {Out}\nstderr: {Err}\nsession: {session.Status} {session.Exception?.GetBaseException().Message}");
}

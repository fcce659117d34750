using System.Diagnostics;

namespace Orchestrator.Testing;

/// <summary>A program under test, started for real, with its output captured line by line.</summary>
public sealed class DaemonProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly List<string> _stdout = [];
    private readonly List<string> _stderr = [];
    private readonly TaskCompletionSource _stdoutDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _stderrDone = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private DaemonProcess(Process process)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => Add(_stdout, e.Data, _stdoutDone);
        process.ErrorDataReceived += (_, e) => Add(_stderr, e.Data, _stderrDone);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public int Pid => _process.Id;
    public bool HasExited => _process.HasExited;

    public static DaemonProcess Start(string binary, IEnumerable<string> args, IReadOnlyDictionary<string, string?>? env = null)
    {
        var psi = new ProcessStartInfo(binary)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            psi.ArgumentList.Add(arg);
        }
        // A clean slate: nothing from the test runner's own environment leaks in.
        foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("ORCHD_", StringComparison.Ordinal) || k is "NOTIFY_SOCKET" or "WATCHDOG_USEC" or "WATCHDOG_PID" or "JOURNAL_STREAM" or "INVOCATION_ID").ToList())
        {
            psi.Environment.Remove(key);
        }
        foreach (var (key, value) in env ?? new Dictionary<string, string?>())
        {
            psi.Environment[key] = value;
        }
        return new DaemonProcess(Process.Start(psi) ?? throw new InvalidOperationException($"{binary} did not start"));
    }

    public IReadOnlyList<string> Stdout { get { lock (_stdout) { return _stdout.ToArray(); } } }
    public IReadOnlyList<string> Stderr { get { lock (_stderr) { return _stderr.ToArray(); } } }
    public string Output => string.Join("\n", Stdout.Concat(Stderr));

    public void Signal(int signal) => Signals.Send(_process.Id, signal);

    /// <summary>
    /// Waits for exit and, unless <paramref name="drainOutput"/> is false, for all output (a
    /// process that leaves children holding its stdout, as `create` does, never ends it).
    /// Returns the exit code, or throws with the output on timeout.
    /// </summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout, bool drainOutput = true)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            if (!drainOutput)
            {
                await WaitForExitOnlyAsync(cts.Token);
                return _process.ExitCode;
            }
            await _process.WaitForExitAsync(cts.Token);
            await Task.WhenAll(_stdoutDone.Task, _stderrDone.Task).WaitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"process {_process.Id} did not exit within {timeout}; output:\n{Output}");
        }
        return _process.ExitCode;
    }

    private async Task WaitForExitOnlyAsync(CancellationToken cancellationToken)
    {
        // Process.WaitForExitAsync also waits for the output streams; poll the exit instead.
        while (!_process.WaitForExit(0))
        {
            await Task.Delay(10, cancellationToken);
        }
        await Task.Delay(50, cancellationToken); // let the last lines already written arrive
    }

    /// <summary>Waits until a line of stderr (where orchd logs) contains the text.</summary>
    public async Task<string> WaitForLogAsync(string contains, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            var line = Stderr.Concat(Stdout).FirstOrDefault(l => l.Contains(contains, StringComparison.Ordinal));
            if (line is not null)
            {
                return line;
            }
            if (_process.HasExited)
            {
                break;
            }
            await Task.Delay(20);
        }
        throw new TimeoutException($"no log line containing '{contains}' within {timeout}; output:\n{Output}");
    }

    /// <summary>Waits for a line of stdout after the first <paramref name="skip"/> that matches; returns its index.</summary>
    public async Task<int> WaitForLineAsync(Func<string, bool> match, string what, int skip = 0, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(60));
        while (true)
        {
            var lines = Stdout;
            for (var i = skip; i < lines.Count; i++)
            {
                if (match(lines[i]))
                {
                    return i;
                }
            }
            if (_process.HasExited || DateTime.UtcNow >= deadline)
            {
                throw new TimeoutException($"{what}: no such line after line {skip}{(_process.HasExited ? $" (exited {_process.ExitCode})" : "")}; output:\n{Output}");
            }
            await Task.Delay(50);
        }
    }

    /// <summary>Resident set size in KiB from /proc (VmRSS).</summary>
    public long RssKiB()
    {
        var line = File.ReadLines($"/proc/{_process.Id}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
    }

    private static void Add(List<string> lines, string? line, TaskCompletionSource done)
    {
        if (line is null)
        {
            done.TrySetResult();
            return;
        }
        lock (lines)
        {
            lines.Add(line);
        }
    }

    private bool _disposed;

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            // The exit only, then a short wait for the output: a child the tree kill missed (one
            // cloned while it ran) may hold the pipes for good, and Process.WaitForExitAsync would
            // wait for their end with no limit (a CI run hung 5 min on such an orphan of orchd).
            using var exit = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            try
            {
                await WaitForExitOnlyAsync(exit.Token);
                await Task.WhenAll(_stdoutDone.Task, _stderrDone.Task).WaitAsync(TimeSpan.FromSeconds(5));
            }
            catch (Exception e) when (e is OperationCanceledException or TimeoutException)
            {
                // Reported by whoever looks for stray processes; disposing must not hang a test run.
            }
        }
        _process.Dispose();
    }
}

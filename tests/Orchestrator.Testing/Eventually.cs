using Xunit.Sdk;

namespace Orchestrator.Testing;

/// <summary>
/// The one way a test waits for something that happens by itself: poll a probe until its value
/// satisfies the condition, or fail after the deadline with what was awaited and the last value
/// seen (or the last exception the probe threw). Where the code under test can say "a pass
/// completed" (Supervisor.Passes, FleetScheduler.Passes), wait on that instead.
/// </summary>
public static class Eventually
{
    /// <summary>How often the probe is asked when the caller does not say.</summary>
    public static readonly TimeSpan DefaultPoll = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// Asks <paramref name="probe"/> until <paramref name="condition"/> holds for its value, and
    /// returns that value. Exceptions of the types in <paramref name="transient"/> count as "not
    /// yet" (a server restarting); any other one fails the test at once.
    /// </summary>
    public static async Task<T> ValueAsync<T>(string what, Func<Task<T>> probe, Func<T, bool> condition, TimeSpan timeout,
        TimeSpan? poll = null, Func<T, string>? describe = null, params Type[] transient)
    {
        ArgumentNullException.ThrowIfNull(probe);
        ArgumentNullException.ThrowIfNull(condition);
        var deadline = DateTime.UtcNow + timeout;
        var last = "nothing yet (the probe never answered)";
        while (true)
        {
            try
            {
                var value = await probe().ConfigureAwait(false);
                if (condition(value))
                {
                    return value;
                }
                last = describe is null ? Show(value) : describe(value);
            }
            catch (Exception e) when (transient.Any(t => t.IsInstanceOfType(e)))
            {
                last = $"{e.GetType().Name}: {e.Message}";
            }
            if (DateTime.UtcNow >= deadline)
            {
                throw new XunitException($"waited {timeout.TotalSeconds:0.#} s for {what}; last seen: {last}");
            }
            await Task.Delay(poll ?? DefaultPoll).ConfigureAwait(false);
        }
    }

    /// <summary>Waits until <paramref name="condition"/> is true; <paramref name="state"/> says what to show on failure.</summary>
    public static Task TrueAsync(string what, Func<Task<bool>> condition, TimeSpan timeout, Func<string>? state = null, TimeSpan? poll = null, params Type[] transient)
        => ValueAsync(what, async () => (await condition().ConfigureAwait(false), state?.Invoke()), r => r.Item1, timeout, poll,
            r => r.Item2 ?? "false", transient);

    /// <summary>Synchronous condition: see <see cref="TrueAsync(string, Func{Task{bool}}, TimeSpan, Func{string}?, TimeSpan?, Type[])"/>.</summary>
    public static Task TrueAsync(string what, Func<bool> condition, TimeSpan timeout, Func<string>? state = null, TimeSpan? poll = null)
        => TrueAsync(what, () => Task.FromResult(condition()), timeout, state, poll);

    private static string Show<T>(T value) => value switch
    {
        null => "null",
        string s => $"'{s}'",
        System.Collections.IEnumerable items when value is not string => "[" + string.Join(", ", items.Cast<object?>().Select(i => i?.ToString() ?? "null")) + "]",
        _ => value.ToString() ?? "",
    };
}

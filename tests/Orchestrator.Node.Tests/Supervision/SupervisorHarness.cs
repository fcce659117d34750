using Microsoft.Extensions.Logging.Abstractions;
using Orchestrator.Api.Workloads;
using Orchestrator.Images.Snapshots;
using Orchestrator.Images.Store;
using Orchestrator.Node.Logs;
using Orchestrator.Node.Reconcile;

namespace Orchestrator.Node.Tests.Supervision;

/// <summary>
/// A Supervisor in-process on a fake driver and a fake clock, with its state and run dirs in a
/// temp dir: no root, no NATS, no processes. "Restarting orchd" stops one Supervisor and starts
/// another on the same dirs and the same driver (whose containers outlive it, as real ones do).
/// </summary>
internal sealed class SupervisorHarness : IAsyncDisposable
{
    /// <summary>How long a test waits in real time for something the loop does at once.</summary>
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(10);

    private readonly TempDir _dir = new("orch-supervisor");
    private readonly Lock _lock = new();
    private readonly List<(string Kind, string Name, string Message)> _events = [];
    private CancellationTokenSource? _stop;
    private Task? _run;
    private LogPump? _logs;

    public SupervisorHarness()
    {
        Driver = new FakeDriver(Clock);
        Options = new NodeOptions
        {
            StateDir = _dir.Combine("state"),
            RunDir = _dir.Combine("run"),
            NodeId = "0123456789abcdef",
            Resync = TimeSpan.FromSeconds(5),
        };
    }

    public FakeClock Clock { get; } = new();

    private readonly DateTimeOffset _start = new FakeClock().GetUtcNow();

    public FakeDriver Driver { get; }

    public NodeOptions Options { get; }

    public Supervisor Supervisor { get; private set; } = null!;

    public string StateDir => Options.StateDir;

    /// <summary>Open descriptors into this node's directories (state and run): what a leak of the Supervisor's own files shows as.</summary>
    public int OpenFilesOfThisNode() => OpenFiles.Under(_dir.Path);

    public static async Task<SupervisorHarness> StartAsync()
    {
        var harness = new SupervisorHarness();
        await harness.StartOrchdAsync();
        return harness;
    }

    /// <summary>A new orchd on the state and containers there are; <see cref="Events"/> then holds its events only.</summary>
    public async Task StartOrchdAsync()
    {
        lock (_lock)
        {
            _events.Clear();
        }
        var images = new ImageStore(Path.Combine(StateDir, "images"));
        _logs = new LogPump(new LogOptions());
        Supervisor = new Supervisor(Options, images, new SnapshotStore(images, Path.Combine(StateDir, "snapshots")), Driver, _logs,
            NullLogger<Supervisor>.Instance, puller: null, clock: Clock);
        Supervisor.Emitted += (kind, name, message) =>
        {
            lock (_lock)
            {
                _events.Add((kind, name, message));
            }
        };
        _stop = new CancellationTokenSource();
        _run = Supervisor.RunAsync(_stop.Token);
        await Supervisor.Recovered.WaitAsync(s_wait);
    }

    /// <summary>orchd stops: its watching ends, the containers run on.</summary>
    public async Task StopOrchdAsync()
    {
        await _stop!.CancelAsync();
        await _run!.WaitAsync(s_wait);
        await Supervisor.DisposeAsync();
        _logs!.Dispose();
        _stop.Dispose();
        _stop = null;
    }

    public async Task RestartOrchdAsync(Action? whileAway = null)
    {
        await StopOrchdAsync();
        whileAway?.Invoke();
        await StartOrchdAsync();
    }

    public List<(string Kind, string Name, string Message)> Events(string? kind = null)
    {
        lock (_lock)
        {
            return _events.Where(e => kind is null || e.Kind == kind).ToList();
        }
    }

    public Task<ContainerStatus> InspectAsync(string name) => Supervisor.InspectAsync(name);

    /// <summary>Everything posted so far has run (exits reported, timers' passes done).</summary>
    public Task DrainAsync() => Supervisor.DrainAsync();

    /// <summary>Waits (real time, briefly) for what the loop does without the clock moving.</summary>
    public Task UntilAsync(string what, Func<bool> condition, Func<string>? state = null)
        => UntilAsync(what, () => Task.FromResult(condition()), state);

    /// <summary>Waits (real time, briefly) for what the loop does without the clock moving; a failure says the fake time.</summary>
    public Task UntilAsync(string what, Func<Task<bool>> condition, Func<string>? state = null)
        => Eventually.TrueAsync(what, condition, s_wait, () => $"{state?.Invoke() ?? "false"} (fake clock at +{(Clock.GetUtcNow() - _start).TotalSeconds:0.###} s)",
            TimeSpan.FromMilliseconds(2));

    /// <summary>Waits until the container's state is <paramref name="state"/>.</summary>
    public async Task<ContainerStatus> UntilStateAsync(string name, ContainerState state)
    {
        ContainerStatus? last = null;
        await UntilAsync($"{name} to be {WireNames.Of(state)}", async () => (last = await InspectAsync(name)).State == state,
            () => $"{last?.State} ({last?.Message})");
        return last!;
    }

    /// <summary>
    /// Moves the fake clock on by <paramref name="step"/> at a time (letting the loop and the probe
    /// loops run in between) until <paramref name="condition"/> holds; fails after <paramref name="maxSteps"/>.
    /// Returns how far the clock moved.
    /// </summary>
    public Task<TimeSpan> AdvanceUntilAsync(string what, Func<bool> condition, TimeSpan step, int maxSteps = 400)
        => AdvanceUntilAsync(what, () => Task.FromResult(condition()), step, maxSteps);

    public async Task<TimeSpan> AdvanceUntilAsync(string what, Func<Task<bool>> condition, TimeSpan step, int maxSteps = 400)
    {
        var from = Clock.GetUtcNow();
        for (var i = 0; i < maxSteps; i++)
        {
            await DrainAsync();
            if (await condition())
            {
                return Clock.GetUtcNow() - from;
            }
            Clock.Advance(step);
            await Task.Delay(1);
        }
        await DrainAsync();
        return await condition()
            ? Clock.GetUtcNow() - from
            : throw new Xunit.Sdk.XunitException($"the clock moved {(Clock.GetUtcNow() - from).TotalSeconds:0.#} s and still not {what}");
    }

    public static Workload App(string name, RestartPolicy? restart = null, Probes? probes = null, int? grace = null) => new()
    {
        Name = name,
        Image = "example.org/app:1",
        Network = NetworkMode.None,
        Restart = restart,
        Probes = probes,
        StopGracePeriodSeconds = grace,
    };

    public static Probe ExecProbe(string program, double period = 1, int failureThreshold = 3, int successThreshold = 1) => new()
    {
        Exec = new ExecAction { Command = [program] },
        PeriodSeconds = period,
        FailureThreshold = failureThreshold,
        SuccessThreshold = successThreshold,
    };

    public async ValueTask DisposeAsync()
    {
        if (_stop is not null)
        {
            await StopOrchdAsync();
        }
        _dir.Dispose();
    }
}

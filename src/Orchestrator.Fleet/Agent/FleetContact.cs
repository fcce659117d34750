namespace Orchestrator.Fleet.Agent;

/// <summary>
/// When this node last renewed its presence with the fleet (a heartbeat NATS accepted): what
/// fencing counts from. Starts at the process's start: a node that boots without NATS has had
/// no contact since then.
/// </summary>
public sealed class FleetContact(DateTimeOffset start)
{
    private long _ticks = start.UtcTicks;

    public DateTimeOffset Last => new(Interlocked.Read(ref _ticks), TimeSpan.Zero);

    public void Renewed(DateTimeOffset at) => Interlocked.Exchange(ref _ticks, at.UtcTicks);
}

/// <summary>The fleet's state in NATS cannot be reached or made; the message says why and what to do.</summary>
public sealed class FleetUnavailableException(string message, Exception inner) : OrchestratorException(ErrorKind.Unavailable, message, inner);

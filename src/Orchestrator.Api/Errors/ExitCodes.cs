namespace Orchestrator.Api;

/// <summary>
/// Every exit code the project's commands document (README.md, docs/orchctl.md, docs/node.md), in
/// one place, and the one mapping from an <see cref="ErrorKind"/> to each command's code.
/// </summary>
public static class ExitCodes
{
    /// <summary>Done (orchd: stopped cleanly).</summary>
    public const int Ok = 0;

    /// <summary>It failed (orchctl: the fleet or a node refused; orchd: a service failed, systemd restarts it; orch-runc: any error, as runc).</summary>
    public const int Failure = 1;

    /// <summary>Bad command line: unknown command or flag, missing argument (orchctl: also a bad config file or context).</summary>
    public const int Usage = 2;

    /// <summary>orchctl: timeout or unreachable: NATS, JetStream or the node did not answer, or answered that what it needs is unavailable.</summary>
    public const int Unreachable = 3;

    /// <summary>orchd: EX_CONFIG from sysexits.h, bad configuration or unusable state; the unit's RestartPreventExitStatus= names it, so no crash loop.</summary>
    public const int Config = 78;

    /// <summary>orchctl's code for an error of this kind: unavailable is <see cref="Unreachable"/> (asking again later may work), anything else <see cref="Failure"/>.</summary>
    public static int ForOrchctl(ErrorKind kind) => kind == ErrorKind.Unavailable ? Unreachable : Failure;

    /// <summary>
    /// orchd's code for an error before READY: unavailable is <see cref="Failure"/> (what it needs, e.g.
    /// containerd, may be starting: systemd's restart helps), anything else <see cref="Config"/> (a
    /// restart would fail the same way until someone fixes it).
    /// </summary>
    public static int ForOrchdStartup(ErrorKind kind) => kind == ErrorKind.Unavailable ? Failure : Config;
}

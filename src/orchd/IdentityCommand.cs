using Microsoft.Extensions.Logging;
using NATS.Client.Core;
using Orchestrator.Client;
using Orchestrator.Client.Identity;
using Orchestrator.Daemon.Configuration;
using Orchestrator.Daemon.Hosting;
using Orchestrator.Fleet.Identity;

namespace Orchestrator.Daemon;

/// <summary>
/// `orchd enroll URL TOKEN`: a device joins the fleet with a one-time token (docs/nats-security.md,
/// "Enrolment"); `orchd identity serve --dir DIR`: the enrolment service, with the keys
/// `orchctl identity init` put in DIR.
/// </summary>
internal static class IdentityCommand
{
    public const string EnrollUsage = """
        Usage: orchd enroll NATS_URL TOKEN [--state-dir DIR] [--node-name NAME] [--nats-tls-ca FILE]
          Makes this device's key (the seed stays in STATE_DIR/identity/node.nk), proves it holds it to the
          fleet's identity service with TOKEN (from `orchctl node token create`), and keeps the credentials
          it gets (identity/node.creds, identity/enrolment.json). orchd then connects with them, with the
          token's labels and the fleet's trusted keys, unless its configuration gives other credentials.
        """;

    public const string ServeUsage = """
        Usage: orchd identity serve --dir DIR [--nats-url URL] [--jwt-ttl 30d]
          The enrolment service: issues device JWTs for tokens, renews them, revokes devices, issues
          operator users in roles. DIR is the service/ directory `orchctl identity init` made (the
          account and operator signing keys, service.creds, sys.creds, identity.json).
        """;

    public static async Task<int> EnrollAsync(string[] args)
    {
        var split = SubcommandArgs.Split(args, new Dictionary<string, string?>(StringComparer.Ordinal), []);
        if (split.Help)
        {
            Console.Out.Write(EnrollUsage);
            return ExitCodes.Ok;
        }
        if (split.Positional.Count != 2)
        {
            Console.Error.Write(EnrollUsage);
            return ExitCodes.Usage;
        }
        var config = ConfigLoader.Load(CommandLine.Parse([.. split.DaemonFlags, "--nats-url", split.Positional[0]]), Environment.GetEnvironmentVariable, enrolment: false);
        if (NatsSettings.UrlProblem(split.Positional[0]) is { } problem)
        {
            throw new UsageException(problem);
        }
        EnrolmentToken token;
        try
        {
            token = EnrolmentToken.Parse(split.Positional[1]);
        }
        catch (FormatException e)
        {
            throw new UsageException(e.Message);
        }
        var enrolled = await DeviceIdentity.EnrollAsync(config.ToNatsSettings(), token, config.NodeName, config.StateDir, CancellationToken.None).ConfigureAwait(false);
        Console.Out.WriteLine($"enrolled as {enrolled.Node} (key {NatsJwt.Decode(enrolled.Jwt).Subject}), credentials until {enrolled.Expires:u}");
        Console.Out.WriteLine($"labels: {string.Join(",", enrolled.Labels.Select(kv => $"{kv.Key}={kv.Value}"))}; {(enrolled.Scheduler ? "may schedule" : "a worker (fleet.scheduler: false)")}");
        Console.Out.WriteLine($"credentials: {DeviceIdentity.CredsPath(config.StateDir)}; start orchd with the same --state-dir and --nats-url {split.Positional[0]}");
        return ExitCodes.Ok;
    }

    /// <summary>The token to enrol with at this start: nats.enroll_token is set, the device never enrolled, and no other credentials are configured.</summary>
    public static string? NeedsFirstEnrolment(OrchdConfig config)
    {
        if (config.NatsEnrollToken is not { } token || config.NatsCredsFile is not null || config.NatsNKeySeedFile is not null || config.NatsUser is not null || config.NatsToken is not null)
        {
            return null;
        }
        try
        {
            return DeviceIdentity.Read(config.StateDir) is null ? token : null;
        }
        catch (FormatException)
        {
            return token; // a damaged enrolment: enrol again (the token refuses a second use, saying so)
        }
    }

    /// <summary>
    /// Enrols with the configured token, retrying while the hub or the service cannot be reached
    /// (2 s, doubling to 60 s; systemd is told to wait and why); a refusal (the token used up,
    /// expired, unknown) ends orchd with exit 78 and the service's sentence.
    /// </summary>
    public static async Task<int> EnrolAtFirstStartAsync(OrchdConfig config, string token)
    {
        var notifier = new Microsoft.Extensions.Hosting.Systemd.SystemdNotifier();
        var wait = TimeSpan.FromSeconds(2);
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                var enrolled = await DeviceIdentity.EnrollAsync(config.ToNatsSettings(), EnrolmentToken.Parse(token), config.NodeName, config.StateDir, CancellationToken.None).ConfigureAwait(false);
                EarlyLog.Info($"orchd: enrolled as {enrolled.Node} with nats.enroll_token (credentials in {DeviceIdentity.CredsPath(config.StateDir)}, until {enrolled.Expires:u}); the token is spent and may be removed from the configuration");
                return ExitCodes.Ok;
            }
            catch (EnrolmentException e) when (e.Transient)
            {
                EarlyLog.Warning($"orchd: cannot enrol yet ({e.Message}); trying again in {wait.TotalSeconds:0} s (attempt {attempt})");
                if (notifier.IsEnabled)
                {
                    // Not started until enrolled: keep systemd's start timeout from ending the wait.
                    notifier.Notify(new Microsoft.Extensions.Hosting.Systemd.ServiceState(
                        $"STATUS=enrolling: waiting for the hub ({attempt} attempts)\nEXTEND_TIMEOUT_USEC={(long)(wait + TimeSpan.FromSeconds(30)).TotalMicroseconds}"));
                }
                await Task.Delay(wait).ConfigureAwait(false);
                wait = TimeSpan.FromTicks(Math.Min(wait.Ticks * 2, TimeSpan.FromSeconds(60).Ticks));
            }
            catch (EnrolmentException e)
            {
                EarlyLog.Error($"orchd: config error: nats.enroll_token: {e.Message}");
                return ExitCodes.ForOrchdStartup(ErrorKind.Invalid);
            }
        }
    }

    public static async Task<int> ServeAsync(string[] args)
    {
        var split = SubcommandArgs.Split(args, new Dictionary<string, string?>(StringComparer.Ordinal) { ["--dir"] = "a directory", ["--jwt-ttl"] = "a duration" }, []);
        if (split.Help || split.Positional is not ["serve"] || split.Value("--dir") is not { } dir)
        {
            (split.Help ? Console.Out : Console.Error).Write(ServeUsage);
            return split.Help ? ExitCodes.Ok : ExitCodes.Usage;
        }
        var lifetime = IdentityService.DefaultJwtLifetime;
        if (split.Value("--jwt-ttl") is { } ttl && (!Orchestrator.Syntax.Duration.TryParse(ttl, out lifetime) || lifetime < TimeSpan.FromMinutes(5)))
        {
            throw new UsageException($"--jwt-ttl '{ttl}' is not a duration of 5m or more (like 30d, 12h)");
        }
        var config = ConfigLoader.Load(CommandLine.Parse(split.DaemonFlags), Environment.GetEnvironmentVariable, enrolment: false);
        IdentityInfo info;
        NATS.NKeys.KeyPair accountSigning, operatorSigning;
        try
        {
            info = IdentitySetup.ReadInfo(dir);
            accountSigning = IdentitySetup.ReadSeed(Path.Combine(dir, "account-signing.nk"), 'A');
            operatorSigning = IdentitySetup.ReadSeed(Path.Combine(dir, "operator-signing.nk"), 'O');
        }
        catch (FormatException e)
        {
            throw new UsageException(e.Message);
        }
        var settings = config.ToNatsSettings() with { InboxPrefix = null };
        await using var nats = new NatsConnection((settings with { CredsFile = Path.Combine(dir, "service.creds") }).ToNatsOpts("orchd-identity"));
        await using var system = new NatsConnection((settings with { CredsFile = Path.Combine(dir, "sys.creds") }).ToNatsOpts("orchd-identity-sys"));
        try
        {
            await nats.ConnectAsync().ConfigureAwait(false);
            await system.ConnectAsync().ConfigureAwait(false);
        }
        catch (NatsException e)
        {
            throw new UsageException($"cannot reach NATS at {settings.DisplayUrls} with the service's credentials ({e.InnerException?.Message ?? e.Message}); check --nats-url and that the server runs with {dir}/../server/nats-server.conf");
        }
        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
        using var term = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        using var loggers = LoggerFactory.Create(b => b.AddProvider(new LineLoggerProvider(journal: Environment.GetEnvironmentVariable("JOURNAL_STREAM") is not null, config.LogLevel)));
        var service = new IdentityService(nats, system, info, accountSigning, operatorSigning, TimeProvider.System, loggers.CreateLogger("identity"), lifetime);
        try
        {
            await service.RunAsync(stop.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        return ExitCodes.Ok;
    }
}

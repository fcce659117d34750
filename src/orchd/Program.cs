using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;
using Orchestrator.Api.Workloads;
using Orchestrator.Daemon;
using Orchestrator.Daemon.Configuration;
using Orchestrator.Daemon.Hosting;
using Orchestrator.Fleet.Agent;
using Orchestrator.Images.Snapshots;
using Orchestrator.Images.Store;
using Orchestrator.Node.Drivers;
using Orchestrator.Node.Logs;
using Orchestrator.Node.Reconcile;
using Orchestrator.Node.StateStore;
using Orchestrator.Runtime.Cgroups;

AppDomain.CurrentDomain.UnhandledException += (_, e) =>
{
    EarlyLog.Error($"orchd: internal error: {(e.ExceptionObject as Exception)?.Message ?? e.ExceptionObject.ToString()}; please report it");
    Environment.Exit(ExitCodes.Failure);
};

// The runc-compatible CLI is its own small binary (src/orch-runc): a runtime CLI starts for every
// container operation, and orchd's whole binary would be paid at each start (docs/benchmarks.md).
if (args.Length > 0 && args[0] == "runc")
{
    EarlyLog.Error("orchd: the runtime command line is the orch-runc binary (installed next to orchd); run orch-runc with these arguments");
    return ExitCodes.Usage;
}

CommandLine commandLine;
OrchdConfig config;
Orchestrator.Images.Registry.RegistryOptions registryOptions;
try
{
    if (args.Length > 0 && args[0] == "image")
    {
        return await ImageCommand.RunAsync(args[1..]).ConfigureAwait(false);
    }
    if (args.Length == 1 && args[0] == ScopeHolder.Argument)
    {
        // The AOT build never gets here (its C main holds without the runtime); a JIT build does.
        _ = Orchestrator.Linux.Libc.setsid();
        Thread.Sleep(Timeout.Infinite);
    }
    if (args.Length > 0 && args[0] == Orchestrator.Runtime.Spawn.StdioHolder.Argument)
    {
        // The AOT build never gets here either (its C main runs the holder without the runtime).
        return Orchestrator.Runtime.Spawn.StdioHolder.Run(args[1..]);
    }
    if (args.Length > 0 && args[0] == "fence-keeper")
    {
        return Orchestrator.Daemon.FenceKeeperCommand.Run(args[1..]);
    }
    if (args.Length > 0 && args[0] == "enroll")
    {
        return await IdentityCommand.EnrollAsync(args[1..]).ConfigureAwait(false);
    }
    if (args.Length > 0 && args[0] == "identity")
    {
        return await IdentityCommand.ServeAsync(args[1..]).ConfigureAwait(false);
    }
    if (args.Length > 0 && args[0] == "release")
    {
        return await Orchestrator.Daemon.Update.ReleaseCommand.RunAsync(args[1..]).ConfigureAwait(false);
    }
    if (args.Length > 0 && args[0] == "teardown")
    {
        var teardown = CommandLine.Parse(args[1..]);
        if (teardown.Mode != CommandMode.Run)
        {
            throw new UsageException("orchd teardown takes orchd's settings (--config FILE and the rest) and nothing else");
        }
        return await TeardownCommand.RunAsync(ConfigLoader.Load(teardown, Environment.GetEnvironmentVariable)).ConfigureAwait(false);
    }
    commandLine = CommandLine.Parse(args);
    if (commandLine.Mode == CommandMode.Help)
    {
        Console.Out.Write(Help.Text());
        return ExitCodes.Ok;
    }
    if (commandLine.Mode == CommandMode.Version)
    {
        Console.Out.WriteLine(BuildInfo.Describe("orchd"));
        return ExitCodes.Ok;
    }
    config = ConfigLoader.Load(commandLine, Environment.GetEnvironmentVariable);
    registryOptions = RegistrySettings.Options(config); // a broken auth file is a config error, before READY
}
catch (UsageException e)
{
    EarlyLog.Error($"orchd: {e.Message}");
    return ExitCodes.Usage;
}
catch (ConfigException e)
{
    EarlyLog.Error($"orchd: config error: {e.Message}");
    return ExitCodes.ForOrchdStartup(e.Kind);
}
catch (Exception e) when (ErrorKinds.Of(e) is not null || e is IOException or ArgumentException or NotSupportedException)
{
    // Only `orchd image` gets here: its failures are one line, like every other error.
    EarlyLog.Error($"orchd: {e.Message}");
    return ExitCodes.Failure;
}

if (commandLine.Mode == CommandMode.CheckConfig)
{
    Console.Out.Write(Help.EffectiveConfig(config));
    return ExitCodes.Ok;
}

// A device imaged in a factory with nats.enroll_token: its first start enrols (and waits for the
// hub until it can), then orchd goes on with the credentials, name and labels it got.
if (IdentityCommand.NeedsFirstEnrolment(config) is { } enrollToken)
{
    var enrolled = await IdentityCommand.EnrolAtFirstStartAsync(config, enrollToken).ConfigureAwait(false);
    if (enrolled != ExitCodes.Ok)
    {
        return enrolled;
    }
    config = ConfigLoader.Load(commandLine, Environment.GetEnvironmentVariable);
}

// The state dir comes before READY: a node that cannot keep state must not claim to be up.
NodeState state;
try
{
    state = NodeState.Open(config.StateDir, config.RunDir);
}
catch (NodeStateException e)
{
    EarlyLog.Error($"orchd: {e.Message}");
    return ExitCodes.ForOrchdStartup(e.Kind);
}

using (state)
{
    // The backend is settled before READY too: a node that cannot run containers must say why.
    BackendChoice backends;
    try
    {
        backends = await BackendSelection.SelectAsync(config, state.NodeId).ConfigureAwait(false);
    }
    catch (Orchestrator.Containerd.ContainerdException e)
    {
        // containerd not up yet (its socket is there but does not answer: boot order, a restart
        // of containerd) is worth a restart by systemd. No socket at all means no runtime can
        // work on this host (the native runtime's checks failed too): restarting every 2 s cannot
        // fix that, so exit 78, which the unit does not restart. Too old or no permission is 78 too.
        var retry = e.IsUnavailable && File.Exists(config.ContainerdSocket);
        EarlyLog.Error($"orchd: {e.Message}");
        return ExitCodes.ForOrchdStartup(retry ? ErrorKind.Unavailable : ErrorKind.Invalid);
    }
    return await RunDaemonAsync(config, state, backends, registryOptions).ConfigureAwait(false);
}

static async Task<int> RunDaemonAsync(OrchdConfig config, NodeState state, BackendChoice backends, Orchestrator.Images.Registry.RegistryOptions registryOptions)
{
    var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings
    {
        ApplicationName = "orchd",
        ContentRootPath = state.StateDir,
    });

    builder.Logging.SetMinimumLevel(config.LogLevel);
    // The host's own lifetime chatter ("Application started…") is replaced by orchd's ready line.
    builder.Logging.AddFilter("Microsoft.Hosting.Lifetime", LogLevel.Warning);
    builder.Logging.AddFilter("Microsoft.Extensions.Hosting", LogLevel.Warning);
    var journal = config.LogFormat == LogFormat.Journal
        || (config.LogFormat == LogFormat.Auto && EarlyLog.UnderJournal);
    builder.Logging.AddProvider(new LineLoggerProvider(journal, config.LogLevel));

    builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = config.ShutdownTimeout);
    builder.Services.Configure<ConsoleLifetimeOptions>(o => o.SuppressStatusMessages = true);

    // Type=notify: systemd hands us NOTIFY_SOCKET. Detecting systemd by the parent process (as
    // AddSystemd does) misses containers and tests; the socket is the protocol, so key on it.
    builder.Services.AddSingleton<ISystemdNotifier, SystemdNotifier>();
    if (Environment.GetEnvironmentVariable("NOTIFY_SOCKET") is { Length: > 0 })
    {
        builder.Services.AddSingleton<IHostLifetime, SystemdLifetime>();
    }

    builder.Services.AddSingleton(config);
    builder.Services.AddSingleton(state);
    var labels = NodeIdentity.WithBuiltInLabels(config.Labels, NodeIdentity.ThisArch);
    builder.Services.AddSingleton(new NodeIdentity
    {
        NodeName = config.NodeName,
        NodeId = state.NodeId,
        Version = BuildInfo.Version,
        Runtime = WireNames.Of(backends.Default),
        Labels = labels,
        LabelStore = new NodeLabels(labels, Path.Combine(state.StateDir, "labels.json"), () => HostDevices.Labels()),
    });
    builder.Services.AddSingleton(config.ToNatsSettings());

    // The node: containers run by orchd's own runtime, their logs, their images. Wired by hand
    // (no reflection), each piece owned by the service provider and disposed with it.
    var images = new ImageStore(Path.Combine(state.StateDir, "images"), config.ImageDiskBudget ?? long.MaxValue);
    builder.Services.AddSingleton(images);
    builder.Services.AddSingleton(new SnapshotStore(images, Path.Combine(state.StateDir, "snapshots")));
    builder.Services.AddSingleton(new ExitWatcher());
    builder.Services.AddSingleton(new LogPump(new LogOptions(config.LogMaxBytes, config.LogMaxFiles)));
    if (backends.Containerd is { } containerd)
    {
        // Factories, so that the provider disposes them (the driver stops waiting; tasks run on).
        builder.Services.AddSingleton(_ => containerd);
        builder.Services.AddSingleton(sp => new ContainerdDriver(sp.GetRequiredService<Orchestrator.Containerd.ContainerdClient>(), state.RunDir,
            new Dictionary<string, string>(StringComparer.Ordinal) { ["org.orchestrator.node"] = config.NodeName },
            config.ContainerdImages == "containerd"
                ? new ContainerdImages(containerd, new Orchestrator.Images.Registry.RegistryClient(null, registryOptions), config.ContainerdSnapshotter)
                : null));
    }
    builder.Services.AddSingleton<ITaskDriver>(sp =>
    {
        var native = new NativeDriver(Path.Combine(state.RunDir, "runtime"), sp.GetRequiredService<ExitWatcher>());
        var offered = new List<ITaskDriver>();
        if (backends.Default == WorkloadRuntime.Native || backends.NativeFailures.Count == 0)
        {
            offered.Add(native);
        }
        var containerdDriver = backends.Containerd is null ? null : sp.GetRequiredService<ContainerdDriver>();
        if (containerdDriver is not null)
        {
            offered.Add(containerdDriver);
        }
        ITaskDriver chosen = backends.Default == WorkloadRuntime.Native ? native : containerdDriver!;
        return new RuntimeBackends(chosen, backends.Description, offered, backends.Unavailable);
    });
    // Containers' cgroups: the node's delegated systemd scope on cgroup v2 (its holder keeps it;
    // started here, before any container), else /orchestrator/ID12 (NodeCgroup).
    var cgroupParent = NodeCgroup.ParentFor(state.NodeId);
    string? cgroupProblem = null;
    if (NodeCgroup.IsScope(cgroupParent) && Environment.ProcessPath is { } self)
    {
        if (ScopeHolder.Ensure(self, state.NodeId, cgroupParent) is { } problem)
        {
            cgroupProblem = $"{problem}; containers go to {NodeCgroup.LegacyParent(state.NodeId)} instead, outside every systemd unit (systemd may remove it)";
            cgroupParent = NodeCgroup.LegacyParent(state.NodeId);
        }
        else
        {
            var scope = cgroupParent;
            builder.Services.AddHostedService(sp => new ScopeHolder(self, state.NodeId, scope, sp.GetRequiredService<ILogger<ScopeHolder>>()));
        }
    }
    builder.Services.AddSingleton(new NodeOptions
    {
        StateDir = state.StateDir,
        RunDir = state.RunDir,
        NodeId = state.NodeId,
        CgroupParent = cgroupParent,
        ManifestDir = config.ManifestDir,
        Bridge = config.Bridge is { } bridge ? new Orchestrator.Node.Network.BridgeOptions(bridge, config.BridgeCidr, state.NodeId) : null,
        Policy = new NodePolicy { HostPaths = config.PolicyHostPaths, HostNetwork = config.PolicyHostNetwork, UnconfinedSeccomp = config.PolicyUnconfinedSeccomp, ForwardHostPorts = config.PolicyForwardHostPorts,
            Privileged = config.PolicyPrivileged, Capabilities = config.PolicyCapabilities,
            Devices = config.PolicyDevices, DeviceCgroupRules = config.PolicyDeviceCgroupRules },
    });
    builder.Services.AddSingleton(sp => new Supervisor(
        sp.GetRequiredService<NodeOptions>(), images, sp.GetRequiredService<SnapshotStore>(), sp.GetRequiredService<ITaskDriver>(),
        sp.GetRequiredService<LogPump>(), sp.GetRequiredService<ILogger<Supervisor>>(),
        new Orchestrator.Daemon.Images.NodeImagePuller(images, config, registryOptions)));
    var fleet = new FleetOptions
    {
        Heartbeat = config.Heartbeat,
        UnreachableAfter = config.UnreachableAfter,
        LostAfter = config.LostAfter,
        TrustedKeys = config.TrustedKeys,
        Scheduler = config.Scheduler,
        LeaderLease = config.LeaderLease,
        FenceAfter = config.FenceAfter,
        FenceKeeperPath = Environment.ProcessPath,
        ServicesCidr = config.ServicesCidr,
    };
    builder.Services.AddSingleton(sp => new NodeAgent(sp.GetRequiredService<NodeIdentity>(), sp.GetRequiredService<NatsSettings>(),
        sp.GetRequiredService<ILogger<NodeAgent>>(), sp.GetRequiredService<Supervisor>(), fleet));
    builder.Services.AddHostedService<SystemdWatchdog>();
    builder.Services.AddHostedService<MemoryGiveBack>();
    builder.Services.AddHostedService(sp => new IdentityRenewal(config, sp.GetRequiredService<NodeAgent>(), sp.GetRequiredService<ILogger<IdentityRenewal>>(), TimeProvider.System));
    builder.Services.AddHostedService<NodeService>();
    builder.Services.AddHostedService<AgentService>();
    builder.Services.AddHostedService<Orchestrator.Daemon.Metrics.MetricsService>();
    builder.Services.AddHostedService<Orchestrator.Daemon.Update.UpdateService>();

    using var host = builder.Build();
    var logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("orchd");
    var lifetime = host.Services.GetRequiredService<IHostApplicationLifetime>();
    var stopwatch = new Stopwatch();
    lifetime.ApplicationStarted.Register(() =>
    {
        if (config.ConfigFile is null)
        {
            DaemonLog.NoConfigFile(logger, OrchdConfig.DefaultConfigFile);
        }
        if (state.FirstBoot)
        {
            DaemonLog.FirstBoot(logger, state.NodeId, state.StateDir);
        }
        if (backends.NativeFailures.Count > 0 && config.Runtime != RuntimeBackend.Containerd)
        {
            DaemonLog.BackendDespiteChecks(logger, backends.Description); // auto fell back, or native runs against its checks
        }
        else if (backends.Default != WorkloadRuntime.Native)
        {
            DaemonLog.Backend(logger, backends.Description);
        }
        if (cgroupProblem is not null)
        {
            DaemonLog.CgroupScope(logger, cgroupProblem);
        }
        DaemonLog.Ready(logger, BuildInfo.Version, config.NodeName, state.NodeId, state.StateDir,
            backends.Description, config.ConfigFile ?? "none");
    });
    lifetime.ApplicationStopping.Register(() =>
    {
        stopwatch.Start();
        DaemonLog.Stopping(logger);
    });

    // RunAsync disposes the host (and its service provider): take the services first.
    var services = host.Services.GetServices<IHostedService>().OfType<BackgroundService>().ToArray();
    try
    {
        await host.RunAsync().ConfigureAwait(false);
    }
    catch (Exception e) when (e is not OutOfMemoryException)
    {
        DaemonLog.Failed(logger, e.Message);
        return ExitCodes.Failure;
    }
    // On .NET 10 a BackgroundService that throws stops the host without RunAsync throwing:
    // look for it, so that systemd's Restart=on-failure sees a failure.
    var faulted = services.Select(s => s.ExecuteTask).FirstOrDefault(t => t is { IsFaulted: true });
    if (faulted?.Exception?.GetBaseException() is { } error)
    {
        DaemonLog.Failed(logger, error.Message);
        return ExitCodes.Failure;
    }
    DaemonLog.Stopped(logger, stopwatch.ElapsedMilliseconds);
    // A self-update (or its rollback) put another binary in place: a non-zero exit makes systemd start it.
    return Orchestrator.Daemon.Update.UpdateService.RestartRequested ? Orchestrator.Daemon.Update.UpdateService.RestartExitCode : ExitCodes.Ok;
}

/// <summary>Lines written before the logging system exists (bad flags, bad config, bad state dir).</summary>
internal static class EarlyLog
{
    /// <summary>systemd sets JOURNAL_STREAM when stderr is connected to the journal.</summary>
    public static bool UnderJournal => Environment.GetEnvironmentVariable("JOURNAL_STREAM") is { Length: > 0 };

    public static void Error(string message)
        => Console.Error.WriteLine(UnderJournal ? $"<3>{message}" : message);

    public static void Warning(string message)
        => Console.Error.WriteLine(UnderJournal ? $"<4>{message}" : message);

    public static void Info(string message)
        => Console.Error.WriteLine(UnderJournal ? $"<6>{message}" : message);
}

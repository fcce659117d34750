using Orchestrator.Api;
using System.Globalization;
using System.Text.Json;
using Orchestrator.Runtime.Cgroups;
using Orchestrator.Runtime.Spec;
using Orchestrator.Runtime.State;
using Orchestrator.Syntax;

namespace Orchestrator.Runtime.Cli;

/// <summary>
/// orch-runc: runc's command line over <see cref="ContainerRuntime"/>, close enough that
/// containerd's runc shim can drive it (BinaryName). Exit codes as runc: 0, 1 on any error,
/// and for run the container's own exit status.
/// </summary>
public static class RuncCli
{
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        string? logFile = null;
        var logJson = false;
        try
        {
            // The first word that is not a global flag is the command; an unknown global flag lands
            // there too, and is refused once --log is known (so the refusal is logged).
            var global = ArgumentParser.Parse(args, s_globalFlags, new ParseRules { Unknown = UnknownFlagRule.Positional, FlagsEndAtFirstPositional = true });
            logFile = global.Value("--log");
            logJson = global.Value("--log-format") == "json";
            if (global.Has("--systemd-cgroup"))
            {
                throw new UsageException("--systemd-cgroup is not supported: orch-runc manages cgroupfs paths itself; drop the flag (SystemdCgroup = false in containerd)");
            }
            if (global.Has("--version"))
            {
                return Version(stdout);
            }
            if (global.Has("--help"))
            {
                stdout.Write(Usage);
                return 0;
            }
            List<string> words = global.AfterDashDash is { } after ? [.. global.Positional, "--", .. after] : global.Positional;
            if (words.Count == 0)
            {
                stderr.Write(Usage);
                return 1;
            }
            if (words[0].StartsWith('-'))
            {
                throw new UsageException($"unknown global flag '{words[0].Split('=')[0]}'");
            }
            var runtime = new ContainerRuntime(global.Value("--root") ?? "/run/orch-runc");
            var command = words[0];
            var rest = words.Skip(1).ToArray();
            return command switch
            {
                "version" => Version(stdout),
                "spec" => Spec(rest),
                "create" => Create(runtime, rest),
                "start" => Simple(rest, "start", id => runtime.Start(id)),
                "run" => RunCommand(runtime, rest),
                "exec" => Exec(runtime, rest),
                "state" => Simple(rest, "state", id => stdout.WriteLine(runtime.StateJson(id))),
                "kill" => Kill(runtime, rest),
                "delete" => Delete(runtime, rest),
                "list" => List(runtime, rest, stdout),
                "ps" => Ps(runtime, rest, stdout),
                "pause" => Simple(rest, "pause", id => CgroupFactory.Open(runtime.Store.Load(id).CgroupPath).Freeze()),
                "resume" => Simple(rest, "resume", id => CgroupFactory.Open(runtime.Store.Load(id).CgroupPath).Thaw()),
                "events" => Events(runtime, rest, stdout),
                "update" => Update(runtime, rest),
                "features" => Features(stdout),
                "bench-inprocess" => BenchInProcess(runtime, rest, stdout),
                _ => throw new UsageException($"'{command}' is not a command of orch-runc; see orch-runc --help"),
            };
        }
        catch (Exception e) when (ErrorKinds.Of(e) is not null || e is UsageException or InvalidOperationException or ArgumentException or IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"orch-runc: {e.Message}");
            if (Environment.GetEnvironmentVariable("ORCH_RUNC_DEBUG") == "1")
            {
                stderr.WriteLine(e.ToString());
            }
            if (logFile is not null)
            {
                WriteLog(logFile, logJson, e.Message);
            }
            return ExitCodes.Failure; // every error, whatever its kind: runc's convention, which its callers expect
        }
    }

    private const string Usage = """
        orch-runc: Orchestrator's OCI runtime, with runc's command line.

        Usage: orch-runc [--root DIR] [--log FILE] [--log-format text|json] COMMAND [flags] ID

        Commands:
          spec [--bundle DIR] [-- ARGS…]     write a default config.json
          create [--bundle DIR] [--pid-file F] [--preserve-fds N] ID
          start ID                           run the program of a created container
          run [--bundle DIR] [--pid-file F] [-d] [--keep] ID   (--keep: leave it stopped, with its exit status)
          exec [--process F | [--env K=V] [--cwd D] [--user U:G]] [-d] [--pid-file F] ID [CMD…]
          state ID                           print the OCI state JSON
          kill [--all] ID [SIGNAL]           default SIGTERM
          delete [--force] ID
          list [--format table|json] [-q]
          ps [--format table|json] ID
          pause ID | resume ID
          events [--stats] [--interval 5s] ID  stats (and oom) events as JSON lines; --stats: one sample
          update [--memory N] [--pids-limit N] [--cpu-quota N] [--cpu-period N] [--cpu-shares N] ID
          features | version

        """;

    private static readonly FlagSet s_globalFlags = new FlagSet()
        .Value("--root").Value("--log").Value("--log-format").Value("--criu").Value("--rootless")
        .Switch("--debug").Switch("--systemd-cgroup").Switch("-v", "--version").Switch("-h", "--help");

    private static int Version(TextWriter stdout)
    {
        var version = typeof(RuncCli).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";
        stdout.WriteLine($"orch-runc version {version}");
        stdout.WriteLine("spec: 1.2.0");
        return 0;
    }

    /// <summary>A command's flags (by their -- name) and positionals, in the shared grammar; flags end at the container id.</summary>
    private static (Dictionary<string, string> Flags, List<string> Positional, ParsedArguments Parsed) Parse(string[] args, FlagSet flags)
    {
        var parsed = ArgumentParser.Parse(args, flags, new ParseRules { FlagsEndAtFirstPositional = true });
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (flag, value) in parsed.Given)
        {
            values[flag.Key] = value;
        }
        return (values, parsed.AfterDashDash is { } after ? [.. parsed.Positional, .. after] : parsed.Positional, parsed);
    }

    private static string Id(List<string> positional, string command)
        => positional.Count >= 1 ? positional[0] : throw new UsageException($"{command} needs a container id");

    private static int Simple(string[] args, string command, Action<string> action)
    {
        var (_, positional, _) = Parse(args, new FlagSet());
        action(Id(positional, command));
        return 0;
    }

    private static readonly FlagSet s_createFlags = new FlagSet()
        .Value("--bundle", "-b").Value("--pid-file").Value("--console-socket").Value("--preserve-fds")
        .Switch("--no-pivot").Switch("--no-new-keyring").Switch("--detach", "-d").Switch("--keep");

    private static int Create(ContainerRuntime runtime, string[] args)
    {
        var (flags, positional, _) = Parse(args, s_createFlags);
        runtime.Create(Id(positional, "create"), Bundle(flags), flags.GetValueOrDefault("--pid-file"), PreserveFds(flags), flags.ContainsKey("--no-pivot"), flags.GetValueOrDefault("--console-socket"));
        return 0;
    }

    private static int RunCommand(ContainerRuntime runtime, string[] args)
    {
        var (flags, positional, _) = Parse(args, s_createFlags);
        var detach = flags.ContainsKey("--detach") || flags.ContainsKey("-d");
        return runtime.Run(Id(positional, "run"), Bundle(flags), flags.GetValueOrDefault("--pid-file"), PreserveFds(flags), detach, flags.ContainsKey("--no-pivot"), flags.GetValueOrDefault("--console-socket"), flags.ContainsKey("--keep"));
    }

    private static readonly FlagSet s_execFlags = new FlagSet()
        .Value("--env", "-e").Value("--cap", "-c")
        .Value("--process", "-p").Value("--cwd").Value("--user", "-u").Value("--pid-file").Value("--console-socket").Value("--preserve-fds")
        .Value("--additional-gids", "-g").Value("--process-label").Value("--apparmor").Value("--cgroup")
        .Switch("--detach", "-d").Switch("--tty", "-t").Switch("--no-new-privs");

    private static int Exec(ContainerRuntime runtime, string[] args)
    {
        var (flags, positional, parsed) = Parse(args, s_execFlags);
        var env = parsed.Values("--env");
        var caps = parsed.Values("--cap");
        var id = Id(positional, "exec");
        ProcessSpec process;
        if ((flags.GetValueOrDefault("--process") ?? flags.GetValueOrDefault("-p")) is { } processFile)
        {
            try
            {
                process = JsonSerializer.Deserialize(File.ReadAllBytes(processFile), SpecJsonContext.Default.ProcessSpec)
                    ?? throw new UsageException($"--process: '{processFile}' is empty");
            }
            catch (JsonException e)
            {
                throw new UsageException($"--process: '{processFile}' is not a valid process JSON ({e.Message.Split(". ")[0]})");
            }
        }
        else
        {
            if (positional.Count < 2)
            {
                throw new UsageException("exec needs a command after the container id (or --process FILE)");
            }
            var container = SpecReader.Read(runtime.Store.Load(id).Bundle).Process!;
            process = new ProcessSpec
            {
                Args = positional.Skip(1).ToList(),
                Env = [.. container.Env ?? [], .. env],
                Cwd = flags.GetValueOrDefault("--cwd") ?? container.Cwd,
                User = container.User,
                Capabilities = container.Capabilities,
                Rlimits = container.Rlimits,
                NoNewPrivileges = container.NoNewPrivileges || flags.ContainsKey("--no-new-privs"),
                Terminal = flags.ContainsKey("--tty") || flags.ContainsKey("-t"),
            };
            if ((flags.GetValueOrDefault("--user") ?? flags.GetValueOrDefault("-u")) is { } user)
            {
                var parts = user.Split(':');
                process.User = new UserSpec
                {
                    Uid = uint.Parse(parts[0], CultureInfo.InvariantCulture),
                    Gid = parts.Length > 1 ? uint.Parse(parts[1], CultureInfo.InvariantCulture) : 0,
                };
            }
            if (caps.Count > 0)
            {
                process.Capabilities ??= new CapabilitiesSpec();
                process.Capabilities.Bounding = [.. process.Capabilities.Bounding ?? [], .. caps];
                process.Capabilities.Effective = [.. process.Capabilities.Effective ?? [], .. caps];
                process.Capabilities.Permitted = [.. process.Capabilities.Permitted ?? [], .. caps];
            }
        }
        var detach = flags.ContainsKey("--detach") || flags.ContainsKey("-d");
        return runtime.Exec(id, process, detach, flags.GetValueOrDefault("--pid-file"), flags.GetValueOrDefault("--console-socket"));
    }

    private static string Bundle(Dictionary<string, string> flags)
        => flags.GetValueOrDefault("--bundle") ?? flags.GetValueOrDefault("-b") ?? Directory.GetCurrentDirectory();

    private static int PreserveFds(Dictionary<string, string> flags)
        => flags.TryGetValue("--preserve-fds", out var n) ? int.Parse(n, CultureInfo.InvariantCulture) : 0;

    private static int Spec(string[] args)
    {
        var (flags, positional, _) = Parse(args, new FlagSet().Value("--bundle", "-b").Switch("--rootless"));
        var path = Path.Combine(Bundle(flags), "config.json");
        if (File.Exists(path))
        {
            throw new UsageException($"'{path}' already exists; remove it first");
        }
        var spec = DefaultSpec.Create(positional.Count > 0 ? positional : null);
        File.WriteAllBytes(path, JsonSerializer.SerializeToUtf8Bytes(spec, SpecJsonContext.Default.RuntimeSpec));
        return 0;
    }

    private static int Kill(ContainerRuntime runtime, string[] args)
    {
        var (flags, positional, _) = Parse(args, new FlagSet().Switch("--all", "-a"));
        var signal = positional.Count > 1 ? Signals.Parse(positional[1]) : 15;
        runtime.Kill(Id(positional, "kill"), signal, flags.ContainsKey("--all") || flags.ContainsKey("-a"));
        return 0;
    }

    private static int Delete(ContainerRuntime runtime, string[] args)
    {
        var (flags, positional, _) = Parse(args, new FlagSet().Switch("--force", "-f"));
        var id = Id(positional, "delete");
        var force = flags.ContainsKey("--force") || flags.ContainsKey("-f");
        if (force && !runtime.Store.Exists(id))
        {
            return 0; // runc: delete --force of a missing container is not an error
        }
        runtime.Delete(id, force);
        return 0;
    }

    private static int List(ContainerRuntime runtime, string[] args, TextWriter stdout)
    {
        var (flags, _, _) = Parse(args, new FlagSet().Value("--format", "-f").Switch("--quiet", "-q"));
        var entries = runtime.List();
        if (flags.ContainsKey("--quiet") || flags.ContainsKey("-q"))
        {
            foreach (var e in entries)
            {
                stdout.WriteLine(e.Id);
            }
            return 0;
        }
        if ((flags.GetValueOrDefault("--format") ?? flags.GetValueOrDefault("-f")) == "json")
        {
            stdout.WriteLine(JsonSerializer.Serialize(entries.ToList(), StateJsonContext.Default.ListContainerListEntry));
            return 0;
        }
        stdout.WriteLine("ID                PID         STATUS      BUNDLE");
        foreach (var e in entries)
        {
            stdout.WriteLine($"{e.Id,-17} {e.Pid,-11} {e.Status,-11} {e.Bundle}");
        }
        return 0;
    }

    private static int Ps(ContainerRuntime runtime, string[] args, TextWriter stdout)
    {
        var (flags, positional, _) = Parse(args, new FlagSet().Value("--format", "-f"));
        var pids = CgroupFactory.Open(runtime.Store.Load(Id(positional, "ps")).CgroupPath).Pids();
        if ((flags.GetValueOrDefault("--format") ?? flags.GetValueOrDefault("-f")) == "json")
        {
            stdout.WriteLine("[" + string.Join(",", pids) + "]");
            return 0;
        }
        stdout.WriteLine("PID");
        foreach (var pid in pids)
        {
            stdout.WriteLine(pid);
        }
        return 0;
    }

    private static int Events(ContainerRuntime runtime, string[] args, TextWriter stdout)
    {
        var (flags, positional, _) = Parse(args, new FlagSet().Value("--interval").Switch("--stats"));
        var id = Id(positional, "events");
        var record = runtime.Store.Load(id);
        var cgroup = CgroupFactory.Open(record.CgroupPath);
        if (flags.ContainsKey("--stats"))
        {
            stdout.WriteLine(StatsEvent(id, cgroup.Stats()));
            return 0;
        }
        // A stream, as runc's: a stats event every interval, an oom event whenever the kernel
        // killed something for memory, until the container stops. The kills are counted from the
        // container's creation, not from whenever this process got to its first look: a stream
        // started just before `start` may first run after an OOM kill has already ended the
        // container (a loaded machine), and must still report it.
        var interval = flags.TryGetValue("--interval", out var text) ? ParseInterval(text) : TimeSpan.FromSeconds(5);
        var oomKills = record.OomKillsAtCreate ?? cgroup.Stats().OomKills;
        var sampled = false;
        var next = DateTime.UtcNow;
        while (runtime.Store.Exists(id) && runtime.Status(runtime.Store.Load(id)) != "stopped")
        {
            var stats = cgroup.Stats();
            if (stats.OomKills > oomKills)
            {
                stdout.WriteLine($"{{\"type\":\"oom\",\"id\":\"{id}\"}}");
                oomKills = stats.OomKills;
            }
            if (DateTime.UtcNow >= next)
            {
                stdout.WriteLine(StatsEvent(id, stats));
                sampled = true;
                next = DateTime.UtcNow + interval;
            }
            stdout.Flush();
            Thread.Sleep(TimeSpan.FromMilliseconds(Math.Min(100, interval.TotalMilliseconds)));
        }
        // An OOM kill usually ends the container between two looks: report it after the fact,
        // after the last sample (a stream that found the container already stopped still has one).
        if (runtime.Store.Exists(id))
        {
            var last = cgroup.Stats();
            if (!sampled)
            {
                stdout.WriteLine(StatsEvent(id, last));
            }
            if (last.OomKills > oomKills)
            {
                stdout.WriteLine($"{{\"type\":\"oom\",\"id\":\"{id}\"}}");
            }
        }
        return 0;
    }

    private static TimeSpan ParseInterval(string text)
        => Duration.TryParse(text, out var interval) ? interval
            : throw new UsageException($"--interval '{text}' is not a duration like {Duration.Examples}");

    private static string StatsEvent(string id, CgroupStats s) => string.Create(CultureInfo.InvariantCulture,
        $"{{\"type\":\"stats\",\"id\":\"{id}\",\"data\":{{\"cpu\":{{\"usage\":{{\"total\":{s.CpuNanoseconds}}}}},\"memory\":{{\"usage\":{{\"usage\":{s.MemoryBytes},\"max\":{s.MemoryMaxBytes}}},\"oom_kill\":{s.OomKills}}},\"pids\":{{\"current\":{s.Pids}}}}}}}");

    private static int Update(ContainerRuntime runtime, string[] args)
    {
        var (flags, positional, _) = Parse(args, new FlagSet().Value("--memory").Value("--pids-limit").Value("--cpu-quota").Value("--cpu-period").Value("--cpu-shares"));
        long? L(string name) => flags.TryGetValue(name, out var v) ? long.Parse(v, CultureInfo.InvariantCulture) : null;
        var resources = new ResourcesSpec
        {
            Memory = L("--memory") is { } memory ? new MemorySpec { Limit = memory } : null,
            Pids = L("--pids-limit") is { } pids ? new PidsSpec { Limit = pids } : null,
            Cpu = flags.Keys.Any(k => k.StartsWith("--cpu", StringComparison.Ordinal))
                ? new CpuSpec { Quota = L("--cpu-quota"), Period = (ulong?)L("--cpu-period"), Shares = (ulong?)L("--cpu-shares") }
                : null,
        };
        CgroupFactory.Open(runtime.Store.Load(Id(positional, "update")).CgroupPath).Update(resources);
        return 0;
    }

    /// <summary>
    /// A diagnostic for bench/: N runs (create, start, wait, delete) through the runtime library
    /// in this one process, as orchd runs containers, printing each run's milliseconds.
    /// </summary>
    private static int BenchInProcess(ContainerRuntime runtime, string[] args, TextWriter stdout)
    {
        var (flags, _, _) = Parse(args, new FlagSet().Value("--bundle", "-b").Value("--runs").Value("--pause-ms"));
        var runs = int.Parse(flags.GetValueOrDefault("--runs") ?? "30", CultureInfo.InvariantCulture);
        var pause = int.Parse(flags.GetValueOrDefault("--pause-ms") ?? "0", CultureInfo.InvariantCulture);
        var bundle = Bundle(flags);
        var times = new List<string>();
        // Warm up once, then count what a leak would grow: this process's fds, and the mounts and
        // cgroups of its own containers (the host's others come and go with whatever else runs).
        var prefix = $"bench-{Environment.ProcessId}-";
        runtime.Run(prefix + "warmup", bundle);
        var report = Console.Error; // opened (the runtime dups stderr) before counting fds
        int Mounts() => File.ReadLines("/proc/self/mountinfo").Count(l => l.Contains(bundle, StringComparison.Ordinal) || l.Contains(prefix, StringComparison.Ordinal));
        var fdsBefore = Directory.GetFiles("/proc/self/fd").Length;
        var mountsBefore = Mounts();
        var cgroupsBefore = CountCgroups(prefix);
        for (var i = 0; i < runs; i++)
        {
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            var status = runtime.Run(prefix + i.ToString(CultureInfo.InvariantCulture), bundle);
            var ms = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            if (status != 0)
            {
                throw new InvalidOperationException($"bench run {i} exited with {status}");
            }
            times.Add(ms.ToString("F3", CultureInfo.InvariantCulture));
            if (pause > 0)
            {
                Thread.Sleep(pause);
            }
        }
        var fdsAfter = Directory.GetFiles("/proc/self/fd").Length;
        var mountsAfter = Mounts();
        var cgroupsAfter = CountCgroups(prefix);
        stdout.WriteLine("[" + string.Join(",", times) + "]");
        report.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"leaks: fds {fdsBefore} -> {fdsAfter}, mounts {mountsBefore} -> {mountsAfter}, cgroups {cgroupsBefore} -> {cgroupsAfter}"));
        return 0;
    }

    /// <summary>The cgroups under orchestrator/ named <paramref name="prefix"/>… (v1's pids hierarchy, or v2's).</summary>
    private static int CountCgroups(string prefix)
    {
        var root = Directory.Exists("/sys/fs/cgroup/pids/orchestrator") ? "/sys/fs/cgroup/pids/orchestrator"
            : Directory.Exists("/sys/fs/cgroup/orchestrator") ? "/sys/fs/cgroup/orchestrator" : null;
        return root is null ? 0 : Directory.GetDirectories(root).Count(d => Path.GetFileName(d).StartsWith(prefix, StringComparison.Ordinal));
    }

    /// <summary>
    /// features.md: what this runtime implements, derived from the code that implements it (the
    /// hooks it runs, the namespaces it creates, the mount options and seccomp names it accepts).
    /// </summary>
    internal static string FeaturesJson()
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            void Array(string name, IEnumerable<string> values)
            {
                json.WriteStartArray(name);
                foreach (var value in values)
                {
                    json.WriteStringValue(value);
                }
                json.WriteEndArray();
            }
            json.WriteStartObject();
            json.WriteString("ociVersionMin", "1.0.0");
            json.WriteString("ociVersionMax", "1.2.0");
            Array("hooks", ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]);
            Array("mountOptions", MountOptions.Names.Order(StringComparer.Ordinal));
            json.WriteStartObject("linux");
            Array("namespaces", SpecValidator.NamespaceTypes.Where(t => Spawn.ContainerPlan.NamespaceFlag(t) != 0).Order(StringComparer.Ordinal));
            Array("capabilities", Enumerable.Range(0, 64).Select(Capabilities.Name).TakeWhile(n => !n.StartsWith("cap_", StringComparison.Ordinal)));
            json.WriteStartObject("cgroup");
            json.WriteBoolean("v1", true);
            json.WriteBoolean("v2", true);
            json.WriteBoolean("systemd", false);
            json.WriteBoolean("systemdUser", false);
            json.WriteEndObject();
            json.WriteStartObject("seccomp");
            json.WriteBoolean("enabled", true);
            Array("actions", Security.SeccompCompiler.Actions);
            Array("operators", Security.SeccompCompiler.Operators);
            Array("archs", Security.SeccompCompiler.NativeArchitectures);
            json.WriteEndObject();
            json.WriteStartObject("apparmor");
            json.WriteBoolean("enabled", SpecValidator.AppArmorEnabled());
            json.WriteEndObject();
            json.WriteStartObject("selinux");
            json.WriteBoolean("enabled", false);
            json.WriteEndObject();
            json.WriteEndObject();
            json.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static int Features(TextWriter stdout)
    {
        stdout.WriteLine(FeaturesJson());
        return 0;
    }

    private static void WriteLog(string file, bool json, string message)
    {
        var time = DateTimeOffset.UtcNow.ToString("o", CultureInfo.InvariantCulture);
        var line = json
            ? $"{{\"level\":\"error\",\"msg\":{JsonSerializer.Serialize(message, LogJsonContext.Default.String)},\"time\":\"{time}\"}}"
            : $"time=\"{time}\" level=error msg=\"{message.Replace("\"", "\\\"", StringComparison.Ordinal)}\"";
        try
        {
            File.AppendAllText(file, line + "\n");
        }
        catch (IOException)
        {
        }
    }
}

[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
internal sealed partial class LogJsonContext : System.Text.Json.Serialization.JsonSerializerContext;

/// <summary>Signal names and numbers as `kill` takes them (SIGTERM, TERM, 15).</summary>
public static class Signals
{
    private static readonly Dictionary<string, int> s_names = new(StringComparer.Ordinal)
    {
        ["HUP"] = 1, ["INT"] = 2, ["QUIT"] = 3, ["ILL"] = 4, ["TRAP"] = 5, ["ABRT"] = 6, ["BUS"] = 7, ["FPE"] = 8,
        ["KILL"] = 9, ["USR1"] = 10, ["SEGV"] = 11, ["USR2"] = 12, ["PIPE"] = 13, ["ALRM"] = 14, ["TERM"] = 15,
        ["CHLD"] = 17, ["CONT"] = 18, ["STOP"] = 19, ["TSTP"] = 20, ["TTIN"] = 21, ["TTOU"] = 22, ["WINCH"] = 28,
    };

    public static int Parse(string text)
    {
        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is > 0 and < 65)
        {
            return n;
        }
        var name = text.StartsWith("SIG", StringComparison.Ordinal) ? text[3..] : text;
        return s_names.TryGetValue(name, out var number) ? number : throw new ArgumentException($"'{text}' is not a signal; use a name like SIGTERM or a number");
    }
}

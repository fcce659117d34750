using NATS.Client.Core;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Ctl;

/// <summary>One setting: its flag, its variable, its key in a context of the config file, its default.</summary>
internal sealed record SettingSpec(string Key, string Flag, string? Short, string Env, string Value, string Help, string? Default = null, bool IsFile = false);

/// <summary>
/// How orchctl reaches the fleet: server, credentials, TLS, default node, timeout, signing key.
/// Each comes from (highest first) a flag, an ORCH_* variable, the current context of
/// ~/.config/orchestrator/config.yaml, or the default, and remembers which (`config view`).
/// The TLS and nkey rules are orchd's (<see cref="NatsSettings"/>): a tls:// url or a CA means TLS.
/// </summary>
internal sealed class ConnectionFlags
{
    public static readonly SettingSpec[] Specs =
    [
        new("server", "--server", "-s", "ORCH_SERVER", "URL", "NATS server; several: comma-separated", "nats://127.0.0.1:4222"),
        new("creds", "--creds", null, "ORCH_CREDS", "FILE", "NATS credentials file, JWT + seed", IsFile: true),
        new("nkey", "--nkey", null, "ORCH_NKEY", "FILE", "nkey user seed file (SU…)", IsFile: true),
        new("tls-ca", "--tls-ca", null, "ORCH_TLS_CA", "FILE", "CA that signed the server's certificate; implies TLS", IsFile: true),
        new("tls-cert", "--tls-cert", null, "ORCH_TLS_CERT", "FILE", "client certificate, for servers that verify clients", IsFile: true),
        new("tls-key", "--tls-key", null, "ORCH_TLS_KEY", "FILE", "the client certificate's key", IsFile: true),
        new("node", "--node", "-n", "ORCH_NODE", "NODE", "the node for node commands (ps, logs, exec …)"),
        new("timeout", "--timeout", null, "ORCH_TIMEOUT", "DURATION", "how long to wait for answers: 2, 2s, 500ms", "2s"),
        new("sign-key", "--sign-key", null, "ORCH_SIGN_KEY", "FILE", "nkey seed that signs deployments (apply, rollout undo)", IsFile: true),
    ];

    public static string Help => string.Join("\n", Specs.Select(s =>
        $"  {(s.Short is null ? "    " : s.Short + ", ")}{s.Flag} {s.Value}".PadRight(32) + $"{s.Help} (env {s.Env}{(s.Default is null ? "" : $", default {s.Default}")})"))
        + "\n      --context NAME".PadRight(33) + "use this context of the config file (env ORCH_CONTEXT)"
        + "\n      --no-color".PadRight(33) + "no colour even on a terminal (NO_COLOR does the same)";

    private readonly Dictionary<string, (string? Value, string Source)> _values = new(StringComparer.Ordinal);

    public ContextConfig Config { get; private set; } = ContextConfig.Empty;

    /// <summary>The context in use (--context, ORCH_CONTEXT or the file's current-context), or null.</summary>
    public string? ContextName { get; private set; }

    public string? Get(string key) => _values.TryGetValue(key, out var v) ? v.Value : null;

    public string SourceOf(string key) => _values.TryGetValue(key, out var v) ? v.Source : "-";

    public string Server => Get("server")!;

    public string? Node => Get("node");

    public string? SignKey => Get("sign-key");

    public TimeSpan Timeout
    {
        get
        {
            var text = Get("timeout") ?? "2s";
            return ParseTimeout(text) ?? throw new UsageException($"timeout '{text}' ({SourceOf("timeout")}) is not a duration like 5s or a number of seconds");
        }
    }

    private static TimeSpan? ParseTimeout(string text)
        => Duration.TryParse(text, out var d) && d > TimeSpan.Zero ? d : null;

    private readonly Dictionary<string, string> _flags = new(StringComparer.Ordinal);
    private string? _contextFlag;

    /// <summary>The settings given as flags on this command line (key → value): what `config set-context` stores.</summary>
    public IReadOnlyDictionary<string, string> FlagsGiven => _flags;

    /// <summary>Where the context name came from, for `config view`.</summary>
    public string ContextSource => _contextFlag is not null ? "flag --context" : Environment.GetEnvironmentVariable("ORCH_CONTEXT") is { Length: > 0 } ? "env ORCH_CONTEXT"
        : ContextName is not null ? "current-context in the file" : "-";

    /// <summary>orchctl's global flags: the settings, --context, --no-color and help; they may stand anywhere before `--`.</summary>
    public static FlagSet GlobalFlags()
    {
        var flags = new FlagSet();
        foreach (var spec in Specs)
        {
            flags.Add(new Flag(spec.Short is null ? [spec.Flag] : [spec.Short, spec.Flag], TakesValue: true, spec.Value));
        }
        return flags.Add(new Flag(["--context"], TakesValue: true, "NAME")).Switch("--no-color").Switch("-h", "--help");
    }

    /// <summary>The rules of the global parse: what is not a global flag stays in place for the command's own parse.</summary>
    public static readonly ParseRules GlobalRules = new()
    {
        Unknown = UnknownFlagRule.Positional,
        MissingValueMessage = (name, flag) => $"{name} needs a value: {name} {flag.ValueName}",
    };

    /// <summary>Takes the settings given as global flags.</summary>
    public void Take(ParsedArguments parsed)
    {
        foreach (var (flag, value) in parsed.Given)
        {
            if (flag.Key == "--context")
            {
                _contextFlag = value;
            }
            else if (Specs.FirstOrDefault(s => s.Flag == flag.Key) is { } spec)
            {
                _flags[spec.Key] = value;
            }
        }
    }

    /// <summary>Resolves every setting: flags, then variables, then the context, then defaults.</summary>
    public void Resolve()
    {
        Config = ContextConfig.Load(ContextConfig.DefaultPath());
        var fromEnv = Environment.GetEnvironmentVariable("ORCH_CONTEXT") is { Length: > 0 } e ? e : null;
        ContextName = _contextFlag ?? fromEnv ?? Config.CurrentContext;
        IReadOnlyDictionary<string, string> context = new Dictionary<string, string>();
        if (ContextName is not null)
        {
            if (!Config.Contexts.TryGetValue(ContextName, out var found))
            {
                var where = _contextFlag is not null ? "--context" : fromEnv is not null ? "ORCH_CONTEXT" : $"current-context in {Config.Path}";
                throw new UsageException(Config.Contexts.Count == 0
                    ? $"{where} names context '{ContextName}', but {Config.Path} has no contexts; add one with `orchctl config set-context {ContextName} --server URL`"
                    : $"{where} names context '{ContextName}', which {Config.Path} does not have; use one of {string.Join(", ", Config.Contexts.Keys)}");
            }
            context = found;
        }
        foreach (var spec in Specs)
        {
            if (_flags.TryGetValue(spec.Key, out var flag))
            {
                _values[spec.Key] = (flag, "flag " + spec.Flag);
            }
            else if (Environment.GetEnvironmentVariable(spec.Env) is { Length: > 0 } env)
            {
                _values[spec.Key] = (env, "env " + spec.Env);
            }
            else if (context.TryGetValue(spec.Key, out var fromContext))
            {
                _values[spec.Key] = (fromContext, $"context {ContextName}");
            }
            else if (spec.Default is not null)
            {
                _values[spec.Key] = (spec.Default, "default");
            }
        }
    }

    /// <summary>The settings, with every file checked: a usage error naming the setting, its source and the fix otherwise.</summary>
    public NatsSettings ToSettings()
    {
        foreach (var spec in Specs.Where(s => s.IsFile && s.Key != "sign-key"))
        {
            if (Get(spec.Key) is { } path && !File.Exists(path))
            {
                throw new UsageException($"{spec.Key} {path} ({SourceOf(spec.Key)}): no such file; give an existing file");
            }
        }
        if ((Get("tls-cert") is null) != (Get("tls-key") is null))
        {
            throw new UsageException("--tls-cert and --tls-key go together: give the client certificate and its key");
        }
        if (Get("creds") is not null && Get("nkey") is not null)
        {
            throw new UsageException($"creds ({SourceOf("creds")}) and nkey ({SourceOf("nkey")}) are two ways to authenticate; give one");
        }
        if (Get("nkey") is { } nkey)
        {
            try
            {
                NatsSettings.ReadNKeySeed(nkey);
            }
            catch (FormatException e)
            {
                throw new UsageException($"--nkey: {e.Message}");
            }
        }
        var urls = Server.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (urls.Length == 0)
        {
            throw new UsageException($"server ({SourceOf("server")}) is empty; give a NATS url such as nats://127.0.0.1:4222");
        }
        foreach (var url in urls)
        {
            if (NatsSettings.UrlProblem(url) is { } problem)
            {
                throw new UsageException($"server ({SourceOf("server")}): {problem}");
            }
        }
        return new NatsSettings
        {
            Urls = urls,
            CredsFile = Get("creds"),
            NKeySeedFile = Get("nkey"),
            TlsCa = Get("tls-ca"),
            TlsCert = Get("tls-cert"),
            TlsKey = Get("tls-key"),
        };
    }

    public NatsOpts ToNatsOpts()
    {
        var settings = ToSettings();
        return NatsOpts.Default with
        {
            Url = Server,
            Name = "orchctl",
            AuthOpts = settings.ToAuthOpts(),
            TlsOpts = settings.ToTlsOpts(),
            ConnectTimeout = Timeout,
            RequestTimeout = Timeout < TimeSpan.FromSeconds(5) ? TimeSpan.FromSeconds(5) : Timeout,
        };
    }
}

using NATS.Client.Core;
using Orchestrator.Fleet.Agent;

namespace Orchestrator.Ctl;

/// <summary>
/// How orchctl reaches NATS: credentials and TLS from flags or ORCH_* variables (flags win),
/// turned into the one set of connection options every command uses. The TLS and nkey rules are
/// orchd's (<see cref="NatsSettings"/>): a tls:// url or a CA means TLS is required.
/// </summary>
internal sealed class ConnectionFlags
{
    public const string Help = """
          --creds FILE      NATS credentials file, JWT + seed (env ORCH_CREDS)
          --nkey FILE       nkey user seed file, SU… (env ORCH_NKEY)
          --tls-ca FILE     CA that signed the server's certificate (env ORCH_TLS_CA); implies TLS
          --tls-cert FILE   client certificate, for servers that verify clients (env ORCH_TLS_CERT)
          --tls-key FILE    the client certificate's key (env ORCH_TLS_KEY)
        """;

    private readonly Dictionary<string, string?> _files = new(StringComparer.Ordinal);

    private static readonly (string Flag, string Env)[] s_flags =
    [
        ("--creds", "ORCH_CREDS"), ("--nkey", "ORCH_NKEY"), ("--tls-ca", "ORCH_TLS_CA"), ("--tls-cert", "ORCH_TLS_CERT"), ("--tls-key", "ORCH_TLS_KEY"),
    ];

    public static ConnectionFlags FromEnvironment()
    {
        var flags = new ConnectionFlags();
        foreach (var (flag, env) in s_flags)
        {
            flags._files[flag] = Environment.GetEnvironmentVariable(env) is { Length: > 0 } v ? v : null;
        }
        return flags;
    }

    /// <summary>Takes one of the connection flags (and its value) at args[i]; false when args[i] is not one.</summary>
    public bool TryTake(string[] args, ref int i)
    {
        var arg = args[i];
        var eq = arg.IndexOf('=', StringComparison.Ordinal);
        var name = arg.StartsWith("--", StringComparison.Ordinal) && eq > 0 ? arg[..eq] : arg;
        if (!s_flags.Any(f => f.Flag == name))
        {
            return false;
        }
        if (eq > 0 && name.Length == eq)
        {
            _files[name] = arg[(eq + 1)..];
        }
        else if (i + 1 < args.Length)
        {
            _files[name] = args[++i];
        }
        else
        {
            return false; // left to the command, which says it does not know it
        }
        return true;
    }

    /// <summary>The settings, with every file checked: a usage error naming the flag and the fix otherwise.</summary>
    public NatsSettings ToSettings(string server)
    {
        foreach (var (flag, env) in s_flags)
        {
            if (_files[flag] is { } path && !File.Exists(path))
            {
                throw new UsageException($"{flag} {path}: no such file; give an existing file (or set {env})");
            }
        }
        if ((_files["--tls-cert"] is null) != (_files["--tls-key"] is null))
        {
            throw new UsageException("--tls-cert and --tls-key go together: give the client certificate and its key");
        }
        if (_files["--creds"] is not null && _files["--nkey"] is not null)
        {
            throw new UsageException("--creds and --nkey are two ways to authenticate; give one");
        }
        if (_files["--nkey"] is { } nkey)
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
        return new NatsSettings
        {
            Urls = [server],
            CredsFile = _files["--creds"],
            NKeySeedFile = _files["--nkey"],
            TlsCa = _files["--tls-ca"],
            TlsCert = _files["--tls-cert"],
            TlsKey = _files["--tls-key"],
        };
    }

    public NatsOpts ToNatsOpts(string server, TimeSpan timeout)
    {
        var settings = ToSettings(server);
        return NatsOpts.Default with
        {
            Url = server,
            Name = "orchctl",
            AuthOpts = settings.ToAuthOpts(),
            TlsOpts = settings.ToTlsOpts(),
            ConnectTimeout = timeout,
        };
    }
}

using Microsoft.Extensions.Logging;
using Orchestrator.Daemon.Configuration;
using Orchestrator.Syntax;

namespace Orchestrator.Daemon.Tests;

public sealed class ConfigTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly Dictionary<string, string?> _env = [];

    public void Dispose() => _dir.Dispose();

    private string WriteConfig(string yaml)
    {
        var path = _dir.Combine($"orchd-{Guid.NewGuid():N}.yaml");
        File.WriteAllText(path, yaml);
        return path;
    }

    private OrchdConfig Load(params string[] args)
        => ConfigLoader.Load(CommandLine.Parse(args), name => _env.GetValueOrDefault(name));

    private ConfigException LoadFails(params string[] args) => Assert.Throws<ConfigException>(() => Load(args));

    [Fact]
    public void Registry_settings_read_a_docker_style_auth_file_and_insecure_hosts()
    {
        var auth = _dir.Combine("auth.json");
        File.WriteAllText(auth, """
            {"auths": {
              "registry.local:5000": {"auth": "ZWRnZTpzM2NyZXQ="},
              "https://index.docker.io/v1/": {"username": "hub", "password": "p:w"}
            }}
            """);
        var config = Load("--config", WriteConfig($"registry:\n  insecure: [registry.local:5000]\n  auth_file: {auth}\n"), "--registry-insecure", "10.0.0.9:5000");
        Assert.Equal(["10.0.0.9:5000"], config.RegistryInsecure); // a list: the flag replaces the file's
        var options = RegistrySettings.Options(config, ["extra:1"]);
        Assert.Equal(["10.0.0.9:5000", "extra:1"], options.Insecure.Order(StringComparer.Ordinal));
        Assert.Equal(new Orchestrator.Images.Registry.RegistryCredentials("edge", "s3cret"), options.Credentials["registry.local:5000"]);
        Assert.Equal(new Orchestrator.Images.Registry.RegistryCredentials("hub", "p:w"), options.Credentials["docker.io"]);

        File.WriteAllText(auth, """{"auths": {"registry.local:5000": {"auth": "bm9jb2xvbg=="}}}""");
        Assert.Equal($"registry.auth_file '{auth}': the auth of 'registry.local:5000' does not decode to user:password",
            Assert.Throws<ConfigException>(() => RegistrySettings.Options(config)).Message);
        File.WriteAllText(auth, "{}");
        Assert.StartsWith($"registry.auth_file '{auth}' has no \"auths\" object", Assert.Throws<ConfigException>(() => RegistrySettings.Options(config)).Message, StringComparison.Ordinal);
        Assert.Contains("is not a registry host", LoadFails("--config", WriteConfig(""), "--registry-insecure", "http://x/").Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Image_disk_budget_is_none_by_default_and_takes_sizes_from_file_variable_and_flag()
    {
        Assert.Null(Load("--config", WriteConfig("")).ImageDiskBudget);
        Assert.Equal(2L << 30, Load("--config", WriteConfig("images:\n  disk_budget: 2Gi\n")).ImageDiskBudget);
        _env["ORCHD_IMAGE_DISK_BUDGET"] = "512Mi";
        Assert.Equal(512L << 20, Load("--config", WriteConfig("images:\n  disk_budget: 2Gi\n")).ImageDiskBudget);
        Assert.Null(Load("--config", WriteConfig(""), "--image-disk-budget", "none").ImageDiskBudget);
        _env.Remove("ORCHD_IMAGE_DISK_BUDGET");
        Assert.Contains("is not a size", LoadFails("--config", WriteConfig("images:\n  disk_budget: lots\n")).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Empty_file_gives_the_documented_defaults()
    {
        var config = Load("--config", WriteConfig(""));
        Assert.Equal("/var/lib/orchestrator", config.StateDir);
        Assert.Equal("/run/orchestrator", config.RunDir);
        Assert.Equal(["nats://127.0.0.1:4222"], config.NatsUrls);
        Assert.Equal(RuntimeBackend.Auto, config.Runtime);
        Assert.Equal(LogLevel.Information, config.LogLevel);
        Assert.Equal(TimeSpan.FromSeconds(20), config.ShutdownTimeout);
        Assert.Empty(config.Labels);
        Assert.Equal(ConfigValues.DefaultNodeName(), config.NodeName);
        Assert.Matches("^[A-Za-z0-9_-]{1,63}$", config.NodeName);
    }

    [Fact]
    public void File_sets_every_key()
    {
        var creds = WriteConfig("creds");
        var path = WriteConfig($"""
            node_name: gw-01
            state_dir: /srv/orch/state
            run_dir: /run/orch-test
            nats:
              urls:
                - nats://10.0.0.1:4222
                - tls://nats.example:4443
              creds_file: {creds}
              user: edge
              password: secret
              token: tok
            labels:
              zone: north
              example.com/tier: edge
            runtime: native
            containerd_socket: /run/k3s/containerd.sock
            log_level: debug
            log_format: journal
            shutdown_timeout: 1m30s
            """);
        var config = Load("--config", path);
        Assert.Equal("gw-01", config.NodeName);
        Assert.Equal("/srv/orch/state", config.StateDir);
        Assert.Equal("/run/orch-test", config.RunDir);
        Assert.Equal(["nats://10.0.0.1:4222", "tls://nats.example:4443"], config.NatsUrls);
        Assert.Equal(creds, config.NatsCredsFile);
        Assert.Equal("edge", config.NatsUser);
        Assert.Equal("secret", config.NatsPassword);
        Assert.Equal("tok", config.NatsToken);
        Assert.Equal("north", config.Labels["zone"]);
        Assert.Equal("edge", config.Labels["example.com/tier"]);
        Assert.Equal(RuntimeBackend.Native, config.Runtime);
        Assert.Equal("/run/k3s/containerd.sock", config.ContainerdSocket);
        Assert.Equal(LogLevel.Debug, config.LogLevel);
        Assert.Equal(LogFormat.Journal, config.LogFormat);
        Assert.Equal(TimeSpan.FromSeconds(90), config.ShutdownTimeout);
        Assert.Equal(Path.GetFullPath(path), config.ConfigFile);
    }

    [Fact]
    public void Flags_beat_environment_which_beats_the_file()
    {
        var path = WriteConfig("node_name: from-file\nstate_dir: /from/file\nrun_dir: /from/file-run\nlabels: {a: file, b: file}\n");
        _env["ORCHD_STATE_DIR"] = "/from/env";
        _env["ORCHD_RUN_DIR"] = "/from/env-run";
        _env["ORCHD_LABELS"] = "b=env,c=env";
        var config = Load("--config", path, "--run-dir", "/from/flag", "--label", "c=flag", "--label=d=flag");
        Assert.Equal("from-file", config.NodeName);
        Assert.Equal("/from/env", config.StateDir);
        Assert.Equal("/from/flag", config.RunDir);
        Assert.Equal(new Dictionary<string, string> { ["a"] = "file", ["b"] = "env", ["c"] = "flag", ["d"] = "flag" }, config.Labels);
    }

    [Fact]
    public void Nats_urls_from_a_later_source_replace_earlier_ones_and_repeat()
    {
        var path = WriteConfig("nats:\n  urls: nats://file-a:4222,nats://file-b:4222\n");
        Assert.Equal(["nats://file-a:4222", "nats://file-b:4222"], Load("--config", path).NatsUrls);
        _env["ORCHD_NATS_URL"] = "nats://env:4222";
        Assert.Equal(["nats://env:4222"], Load("--config", path).NatsUrls);
        Assert.Equal(["nats://f1:1", "nats://f2:2"], Load("--config", path, "--nats-url", "nats://f1:1", "--nats-url", "nats://f2:2").NatsUrls);
    }

    [Fact]
    public void Config_file_can_come_from_the_environment()
    {
        _env["ORCHD_CONFIG"] = WriteConfig("node_name: via-env\n");
        Assert.Equal("via-env", Load().NodeName);
    }

    [Theory]
    [InlineData("runtime: dockr\n", ":1:10: runtime: 'dockr' is not a runtime backend; use native, containerd or auto")]
    [InlineData("node_name: ok\nstat_dir: /x\n", ":2:1: unknown key 'stat_dir'; did you mean 'state_dir'?")]
    [InlineData("nats:\n  url: nats://x:1\n", ":2:3: unknown key 'nats.url'; did you mean 'nats.urls'?")]
    [InlineData("nats:\n  urls: [nats://ok:1, http://bad:2]\n", ":2:23: nats.urls: 'http://bad:2' is not a NATS url")]
    [InlineData("labels:\n  - zone=north\n", ":2:3: labels: expected a mapping of key: value, found a list")]
    [InlineData("labels:\n  zone: no spaces please\n", ":2:3: labels: label 'zone' has the invalid value 'no spaces please'")]
    [InlineData("node_name: gw.01\n", ":1:12: node_name: 'gw.01' is not a valid node name")]
    [InlineData("state_dir: relative/path\n", ":1:12: state_dir: 'relative/path' is not an absolute path")]
    [InlineData("shutdown_timeout: soon\n", ":1:19: shutdown_timeout: 'soon' is not a duration")]
    [InlineData("log_level: loud\n", ":1:12: log_level: 'loud' is not a log level")]
    [InlineData("node_name: [a, b]\n", ":1:12: node_name: expected a single value, found a list")]
    [InlineData("node_name: a\nnode_name: b\n", ":2:1: ")]
    [InlineData("a: [b\n", ":2:1: ")]
    [InlineData("- just\n- a list\n", ":1:1: expected a mapping of settings")]
    [InlineData("nats: nats://x:4222\n", ":1:7: nats: expected a mapping of nats settings")]
    [InlineData("node_name: a\n---\nnode_name: b\n", ":3:1: the file holds 2 YAML documents")]
    public void Bad_file_is_one_error_with_file_line_column_and_key(string yaml, string expected)
    {
        var path = WriteConfig(yaml);
        var error = LoadFails("--config", path);
        Assert.StartsWith(path + expected, error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void Missing_explicit_file_names_the_file_and_the_flag()
    {
        var missing = _dir.Combine("nope.yaml");
        var error = LoadFails("--config", missing);
        Assert.Equal($"{missing}: the config file given by --config does not exist; create it or point --config at the right file", error.Message);

        _env["ORCHD_CONFIG"] = missing;
        Assert.Contains("given by ORCHD_CONFIG does not exist", LoadFails().Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Missing_creds_file_is_an_error_naming_it()
    {
        var error = LoadFails("--config", WriteConfig(""), "--nats-creds", "/no/such.creds");
        Assert.Equal("flag --nats-creds: nats.creds_file: '/no/such.creds' does not exist; give the path of an existing file", error.Message);
    }

    [Fact]
    public void Missing_tls_ca_file_is_an_error_naming_the_setting()
    {
        var error = LoadFails("--config", WriteConfig(""), "--nats-tls-ca", "/no/such/ca.pem");
        Assert.Equal("flag --nats-tls-ca: nats.tls_ca: '/no/such/ca.pem' does not exist; give the path of an existing file", error.Message);

        var notPem = WriteConfig("not a certificate");
        error = LoadFails("--config", WriteConfig($"nats:\n  tls_ca: {notPem}\n"));
        Assert.Contains($"nats.tls_ca: '{notPem}' holds no certificate; give a PEM file with a -----BEGIN CERTIFICATE----- block", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_nkey_seed_file_is_an_error_naming_the_setting()
    {
        var garbled = WriteConfig("SUNOTAREALSEED\n");
        var error = LoadFails("--config", WriteConfig(""), "--nats-nkey", garbled);
        Assert.Equal($"flag --nats-nkey: nats.nkey_seed_file: '{garbled}' holds a line starting with SU that is not a valid nkey user seed; make the key again (packaging/nats/gen-fleet-users.sh or `nk -gen user`)", error.Message);

        var noSeed = WriteConfig("UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4\n");
        _env["ORCHD_NATS_NKEY"] = noSeed;
        error = LoadFails("--config", WriteConfig(""));
        Assert.Equal($"environment variable ORCHD_NATS_NKEY: nats.nkey_seed_file: '{noSeed}' holds no nkey user seed (a line starting with SU); give the seed file made for this node's NATS user", error.Message);
    }

    [Fact]
    public void Nkey_seed_and_tls_files_reach_the_nats_options()
    {
        using var pair = NATS.NKeys.KeyPair.CreatePair(NATS.NKeys.PrefixByte.User);
        var seed = WriteConfig($"# node gw-01\n{pair.GetSeed()}\n");
        using var key = System.Security.Cryptography.ECDsa.Create();
        var request = new System.Security.Cryptography.X509Certificates.CertificateRequest("CN=test", key, System.Security.Cryptography.HashAlgorithmName.SHA256);
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        var cert = WriteConfig(certificate.ExportCertificatePem());
        var keyFile = WriteConfig(key.ExportPkcs8PrivateKeyPem());
        var config = Load("--config", WriteConfig($"node_name: gw-01\nnats:\n  nkey_seed_file: {seed}\n  tls_ca: {cert}\n  tls_cert: {cert}\n  tls_key: {keyFile}\n"));
        var opts = config.ToNatsSettings().ToNatsOpts("test");
        Assert.Equal(pair.GetSeed(), opts.AuthOpts.Seed);
        Assert.Equal(pair.GetPublicKey(), opts.AuthOpts.NKey);
        Assert.Equal(cert, opts.TlsOpts.CaFile);
        Assert.Equal(cert, opts.TlsOpts.CertFile);
        Assert.Equal(keyFile, opts.TlsOpts.KeyFile);
        Assert.Equal(NATS.Client.Core.TlsMode.Require, opts.TlsOpts.Mode);
        Assert.Equal("_INBOX_gw-01", opts.InboxPrefix);

        // A tls:// url alone makes TLS required too; a nats:// url without TLS files leaves it to the server.
        Assert.Equal(NATS.Client.Core.TlsMode.Require, Load("--config", WriteConfig(""), "--nats-url", "tls://nats.example:4222").ToNatsSettings().ToNatsOpts("t").TlsOpts.Mode);
        Assert.Equal(NATS.Client.Core.TlsMode.Auto, Load("--config", WriteConfig("")).ToNatsSettings().ToNatsOpts("t").TlsOpts.Mode);

        // A certificate without its key, a key that is not the certificate's, or a seed next to a creds file: one error each.
        Assert.Equal("nats.tls_cert is set without nats.tls_key; give the certificate's private key too (or neither)",
            LoadFails("--config", WriteConfig(""), "--nats-tls-cert", cert).Message);
        using var otherKey = System.Security.Cryptography.ECDsa.Create();
        var wrongKey = WriteConfig(otherKey.ExportPkcs8PrivateKeyPem());
        Assert.StartsWith($"nats.tls_key: '{wrongKey}' is not the PEM private key of nats.tls_cert '{cert}'",
            LoadFails("--config", WriteConfig(""), "--nats-tls-cert", cert, "--nats-tls-key", wrongKey).Message, StringComparison.Ordinal);
        Assert.StartsWith("nats.creds_file and nats.nkey_seed_file are both set",
            LoadFails("--config", WriteConfig(""), "--nats-creds", seed, "--nats-nkey", seed).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_environment_variable_is_named()
    {
        _env["ORCHD_RUNTIME"] = "podman";
        var error = LoadFails("--config", WriteConfig(""));
        Assert.Equal("environment variable ORCHD_RUNTIME: runtime: 'podman' is not a runtime backend; use native, containerd or auto", error.Message);
    }

    [Fact]
    public void Bad_flag_value_is_named()
    {
        var error = LoadFails("--config", WriteConfig(""), "--label", "novalue");
        Assert.Equal("flag --label: labels: 'novalue' is not a label; write it as key=value", error.Message);
    }

    [Theory]
    [InlineData("--nod-name", "unknown flag '--nod-name'; did you mean --node-name? (see orchd --help)")]
    [InlineData("--frobnicate", "unknown flag '--frobnicate' (see orchd --help)")]
    [InlineData("serve", "unexpected argument 'serve'; orchd takes only flags (see orchd --help)")]
    [InlineData("--state-dir", "flag --state-dir needs a value")]
    public void Bad_command_line_is_a_usage_error(string arg, string expected)
        => Assert.Equal(expected, Assert.Throws<UsageException>(() => CommandLine.Parse([arg])).Message);

    [Theory]
    [InlineData("500ms", 500)]
    [InlineData("20s", 20_000)]
    [InlineData("1m30s", 90_000)]
    [InlineData("2h", 7_200_000)]
    [InlineData("1.5s", 1_500)]
    public void Durations_parse_like_go(string text, int milliseconds)
        => Assert.Equal(TimeSpan.FromMilliseconds(milliseconds), ConfigValues.Duration(text));

    [Fact]
    public void Every_setting_has_a_key_a_flag_and_a_variable_all_distinct()
    {
        var all = ConfigSchema.All;
        Assert.All(all, s =>
        {
            Assert.StartsWith("--", s.Flag, StringComparison.Ordinal);
            Assert.StartsWith("ORCHD_", s.Env, StringComparison.Ordinal);
            Assert.Matches("^[a-z_]+(\\.[a-z_]+)?$", s.Key);
            Assert.False(string.IsNullOrWhiteSpace(s.Help));
        });
        Assert.Equal(all.Count, all.Select(s => s.Flag).Distinct().Count());
        Assert.Equal(all.Count, all.Select(s => s.Env).Distinct().Count());
        Assert.Equal(all.Count, all.Select(s => s.Key).Distinct().Count());
    }

    [Fact]
    public void Readme_documents_every_setting_with_its_flag_variable_and_default()
    {
        var rows = File.ReadAllLines(Path.Combine(Repo.Root, "README.md")).Where(l => l.StartsWith("| `", StringComparison.Ordinal)).ToArray();
        Assert.All(ConfigSchema.All, s =>
        {
            var row = Assert.Single(rows, r => r.StartsWith($"| `{s.Key}` |", StringComparison.Ordinal));
            Assert.Contains($"`{s.Flag} {s.ValueName}`", row, StringComparison.Ordinal);
            Assert.Contains($"`{s.Env}`", row, StringComparison.Ordinal);
            Assert.Contains(s.Default, row, StringComparison.Ordinal);
        });
    }

    [Fact]
    public void Effective_config_printout_loads_back_to_the_same_config()
    {
        var original = Load("--config", WriteConfig("node_name: rt\nlabels: {zone: a, \"x.io/y\": b}\nnats: {urls: [nats://a:1, nats://b:2]}\nshutdown_timeout: 1500ms\n"));
        var printed = Help.EffectiveConfig(original);
        var reloaded = Load("--config", WriteConfig(printed));
        Assert.Equal(original with { ConfigFile = null, Labels = null!, NatsUrls = null! }, reloaded with { ConfigFile = null, Labels = null!, NatsUrls = null! });
        Assert.Equal(original.Labels, reloaded.Labels);
        Assert.Equal(original.NatsUrls, reloaded.NatsUrls);
    }

    [Fact]
    public void Effective_config_never_prints_secrets()
    {
        var config = Load("--config", WriteConfig("nats:\n  password: hunter2\n  token: t0k3n\n"));
        var printed = Help.EffectiveConfig(config);
        Assert.DoesNotContain("hunter2", printed, StringComparison.Ordinal);
        Assert.DoesNotContain("t0k3n", printed, StringComparison.Ordinal);
        Assert.Contains("# password: (set, not shown)", printed, StringComparison.Ordinal);
    }
}

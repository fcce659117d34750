using Orchestrator.Api.Workloads;

namespace Orchestrator.Node.Tests;

/// <summary>
/// What docker compose does on the client before a file means anything, done by orchctl the same
/// way: ${VAR} interpolation from the shell over .env, env_file:, build: with --image-map, balena's
/// feature labels, anonymous volumes, and every warning shown even when the file is refused.
/// </summary>
public sealed class ComposeInterpolationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("compose-env-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly Dictionary<string, string> Vars = new(StringComparer.Ordinal)
    {
        ["A"] = "a", ["EMPTY"] = "", ["A_B"] = "ab", ["TAG"] = "1.4",
    };

    [Theory]
    [InlineData("$A", "a")]
    [InlineData("${A}", "a")]
    [InlineData("x$A_B-y", "xab-y")]
    [InlineData("pre${A}post", "preapost")]
    [InlineData("${UNSET:-dflt}", "dflt")]
    [InlineData("${EMPTY:-dflt}", "dflt")]
    [InlineData("${EMPTY-dflt}", "")]
    [InlineData("${UNSET-dflt}", "dflt")]
    [InlineData("${A:-dflt}", "a")]
    [InlineData("${A:+alt}", "alt")]
    [InlineData("${EMPTY:+alt}", "")]
    [InlineData("${EMPTY+alt}", "alt")]
    [InlineData("${UNSET+alt}", "")]
    [InlineData("${UNSET:-${A}x}", "ax")]
    [InlineData("${UNSET:-${ALSO_UNSET:-deep}}", "deep")]
    [InlineData("$$A costs $$5", "$A costs $5")]
    [InlineData("$$$$", "$$")]
    [InlineData("${A:?must}", "a")]
    [InlineData("no dollars", "no dollars")]
    public void Interpolates_as_docker_compose(string text, string expected)
    {
        var unset = new List<string>();
        Assert.Equal(expected, ComposeEnvironment.Interpolate(text, n => Vars.GetValueOrDefault(n), unset));
        Assert.Empty(unset);
    }

    [Fact]
    public void An_unset_variable_reads_as_empty_and_is_named()
    {
        var unset = new List<string>();
        Assert.Equal("db::5432", ComposeEnvironment.Interpolate("db:$HOST:${PORT:-5432}${HOST}", n => Vars.GetValueOrDefault(n), unset));
        Assert.Equal(["HOST"], unset);
    }

    [Theory]
    [InlineData("${UNSET:?set the password}", "UNSET is required: set the password")]
    [InlineData("${EMPTY:?}", "EMPTY is required (set it")]
    [InlineData("echo $1", "'$1' is not a variable (write $$ for a literal $)")]
    [InlineData("cost: 5$", "'$' is not a variable")]
    [InlineData("${A", "is not closed")]
    [InlineData("${A:x}", "after the name comes")]
    [InlineData("${9A}", "does not start with a variable name")]
    public void A_bad_template_or_a_required_variable_is_an_error_saying_what(string text, string message)
    {
        var e = Assert.Throws<FormatException>(() => ComposeEnvironment.Interpolate(text, n => Vars.GetValueOrDefault(n), []));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Env_files_read_as_compose_reads_them()
    {
        var pairs = ComposeEnvironment.ReadEnvFile("""
            # a comment

            export HOST=db.local
            PORT = 5432
            URL=postgres://${HOST}:${PORT}/app   # trailing comment
            SINGLE='$HOST stays # here'
            DOUBLE="line1\nline2 ${HOST}"
            EMPTY=
            FROM_SHELL
            """, ".env", n => n == "SHELLVAR" ? "s" : null);
        Assert.Equal(
            [("HOST", "db.local"), ("PORT", "5432"), ("URL", "postgres://db.local:5432/app"), ("SINGLE", "$HOST stays # here"), ("DOUBLE", "line1\nline2 db.local"), ("EMPTY", "")],
            pairs);
        var e = Assert.Throws<ManifestException>(() => ComposeEnvironment.ReadEnvFile("OK=1\nthis is not a pair\n", "app.env", _ => null));
        Assert.StartsWith("app.env:2: 'this is not a pair' is not KEY=VALUE", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ManifestException>(() => ComposeEnvironment.ReadEnvFile("K=\"open\n", "app.env", _ => null));
        Assert.Equal("app.env:1: K: the quote \" is not closed on its line", e.Message);
    }

    [Fact]
    public void The_shell_wins_over_dot_env_and_env_file_replaces_it()
    {
        File.WriteAllText(Path.Combine(_dir, ".env"), "TAG=from-dotenv\nONLY_FILE=f\n");
        File.WriteAllText(Path.Combine(_dir, "prod.env"), "TAG=from-prod\n");
        var shell = new Dictionary<string, string>(StringComparer.Ordinal) { ["TAG"] = "from-shell" };
        Assert.Equal("from-shell", ComposeEnvironment.Load(_dir, [], shell)["TAG"]);
        Assert.Equal("f", ComposeEnvironment.Load(_dir, [], shell)["ONLY_FILE"]);
        Assert.Equal("from-dotenv", ComposeEnvironment.Load(_dir, [], new Dictionary<string, string>())["TAG"]);
        var prod = ComposeEnvironment.Load(_dir, [Path.Combine(_dir, "prod.env")], new Dictionary<string, string>());
        Assert.Equal("from-prod", prod["TAG"]);
        Assert.False(prod.ContainsKey("ONLY_FILE")); // --env-file instead of .env, as compose
        var e = Assert.Throws<ManifestException>(() => ComposeEnvironment.Load(_dir, [Path.Combine(_dir, "nope.env")], shell));
        Assert.Contains("nope.env: no such file", e.Message, StringComparison.Ordinal);
    }

    private FleetManifest Load(string yaml, Dictionary<string, string>? env = null, Dictionary<string, string>? images = null, bool app = false)
        => ManifestLoader.LoadFleetManifest(yaml, Path.Combine(_dir, "docker-compose.yml"),
            new ComposeShape(app, _dir) { Environment = env ?? Vars, ImageMap = images });

    [Fact]
    public void A_file_is_interpolated_everywhere_values_are_and_the_results_are_what_the_fleet_gets()
    {
        var manifest = Load("""
            x-common: &common
              image: "registry.local/web:${TAG}"
            services:
              web:
                <<: *common
                command: ["sh", "-c", "echo $$HOME ${A} $$$$"]
                environment:
                  - A
                  - NOT_IN_SHELL
                  - URL=http://${HOST:-api}:8080
                volumes: ["${VOL:-data}-${A}:/data"]
                ports: ["${PORT:-8080}:80"]
              api:
                <<: *common
            """);
        var web = manifest.Deployments.Single(d => d.Name == "web").Template;
        Assert.Equal("registry.local/web:1.4", web.Image);
        Assert.Equal("registry.local/web:1.4", manifest.Deployments.Single(d => d.Name == "api").Template.Image); // an anchor merged twice, interpolated once
        Assert.Equal(["sh", "-c", "echo $HOME a $$"], web.Args);
        Assert.Equal(new Dictionary<string, string> { ["A"] = "a", ["URL"] = "http://api:8080" }, web.Env);
        Assert.Equal("data-a", Assert.Single(web.Volumes!).Name);
        Assert.Equal(8080, Assert.Single(web.Ports!).HostPort);
        Assert.Contains(manifest.Warnings, w => w.EndsWith("services.web.environment[1]: 'NOT_IN_SHELL' is not set in the shell or .env, so the container does not get it (as in compose); write NOT_IN_SHELL=value to give one", StringComparison.Ordinal));
    }

    [Fact]
    public void An_unset_variable_is_warned_at_its_line_and_a_required_one_refuses_the_file_with_every_warning()
    {
        var manifest = Load("""
            services:
              web:
                image: "busybox:${VERSION}"
            """);
        Assert.Equal("busybox:", manifest.Deployments[0].Template.Image); // and the validator is happy with it: compose is too
        Assert.Equal($"{Path.Combine(_dir, "docker-compose.yml")}:3:12: services.web.image: VERSION is not set (in the shell or the project's .env), so 'busybox:${{VERSION}}' reads it as empty; set it, or give a default: ${{VERSION:-value}}", Assert.Single(manifest.Warnings));

        var e = Assert.Throws<ManifestException>(() => Load("""
            services:
              db:
                image: postgres
                networks: [back]
                environment: {POSTGRES_PASSWORD: "${DB_PASSWORD:?give the database a password}"}
            """));
        Assert.EndsWith("docker-compose.yml:5:38: services.db.environment.POSTGRES_PASSWORD: '${DB_PASSWORD:?give the database a password}': DB_PASSWORD is required: give the database a password (set it in the shell or the project's .env)", e.Message, StringComparison.Ordinal);
        Assert.Contains(e.Warnings, w => w.Contains("services.db.networks: ignored", StringComparison.Ordinal)); // said now, not after the fix
    }

    [Fact]
    public void Env_file_is_read_here_relative_to_the_project_and_environment_wins()
    {
        File.WriteAllText(Path.Combine(_dir, "web.env"), "MODE=file\nHOST=${A}.local\nKEEP=1\n");
        var manifest = Load("""
            services:
              web:
                image: busybox
                env_file: [web.env, {path: missing.env, required: false}]
                environment: {MODE: inline}
            """);
        Assert.Equal(new Dictionary<string, string> { ["MODE"] = "inline", ["HOST"] = "a.local", ["KEEP"] = "1" }, manifest.Deployments[0].Template.Env);
        var e = Assert.Throws<ManifestException>(() => Load("""
            services:
              web: {image: busybox, env_file: nope.env}
            """));
        Assert.Contains($"services.web.env_file: {Path.Combine(_dir, "nope.env")}: no such file; create it, or say required: false", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Build_needs_an_image_and_image_map_gives_it_without_editing_the_file()
    {
        const string File = """
            services:
              api:
                build: {context: ./api}
              web:
                build: ./web
                image: registry.local/web:2
              db:
                image: postgres
            """;
        var e = Assert.Throws<ManifestException>(() => Load(File));
        var line = Assert.Single(e.Message.Split('\n'));
        Assert.Contains("services.api.build: service api builds its image (./api) and names none;", line, StringComparison.Ordinal);
        Assert.Contains("--image-map api=REGISTRY/api:TAG", line, StringComparison.Ordinal);
        Assert.Contains(e.Warnings, w => w.Contains("services.web.build: ignored (orchd runs images and does not build them: registry.local/web:2 must be built and pushed", StringComparison.Ordinal));

        var manifest = Load(File, images: new() { ["api"] = "registry.local/api:7", ["db"] = "postgres:16" });
        Assert.Equal(["registry.local/api:7", "registry.local/web:2", "postgres:16"], manifest.Deployments.Select(d => d.Template.Image));

        e = Assert.Throws<ManifestException>(() => Load(File, images: new() { ["apii"] = "x", ["api"] = "y" }));
        Assert.Contains("--image-map apii=…: the file has no service 'apii' (did you mean 'api'?); its services are api, web, db", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Balena_feature_labels_are_honoured_as_binds_or_said_to_have_no_effect()
    {
        var manifest = Load("""
            services:
              gw:
                image: busybox
                labels:
                  io.balena.features.dbus: "1"
                  io.balena.features.kernel-modules: "true"
                  io.balena.features.balena-socket: "1"
                  io.balena.features.supervisor-api: "1"
                  io.balena.features.firmware: "0"
                environment: {OTHER: x}
            """);
        var gw = manifest.Deployments[0].Template;
        Assert.Equal([("/run/dbus", "/host/run/dbus", false), ("/lib/modules", "/lib/modules", true)], gw.Volumes!.Select(v => (v.HostPath!, v.Target, v.ReadOnly)));
        Assert.Equal("unix:path=/host/run/dbus/system_bus_socket", gw.Env!["DBUS_SYSTEM_BUS_ADDRESS"]);
        Assert.Equal("x", gw.Env["OTHER"]);
        Assert.Equal(4, manifest.Warnings.Count);
        Assert.Contains(manifest.Warnings, w => w.Contains("io.balena.features.balena-socket: has no effect: orchd has no Docker engine socket", StringComparison.Ordinal));
        Assert.Contains(manifest.Warnings, w => w.Contains("io.balena.features.dbus: honoured", StringComparison.Ordinal));
        Assert.DoesNotContain(manifest.Warnings, w => w.Contains("firmware", StringComparison.Ordinal));
    }

    [Fact]
    public void An_anonymous_volume_under_a_bind_is_a_volume_of_the_service_mounted_over_it()
    {
        var manifest = Load("""
            name: shop
            services:
              web:
                image: node:20
                volumes: ["./src:/app", /app/node_modules, {type: volume, target: /cache}]
            """, app: true);
        var web = Assert.Single(manifest.Deployments[0].Template.Containers!);
        Assert.Equal([(Path.Combine(_dir, "src"), (string?)null, "/app"), (null, "shop_web-app-node_modules", "/app/node_modules"), (null, "shop_web-cache", "/cache")],
            web.Volumes!.Select(v => (v.HostPath, v.Name, v.Target)));
        var longTarget = Load("""
            services:
              web: {image: busybox, volumes: [/a/very/long/path/that/goes/on/and/on/for/ever]}
            """).Deployments[0].Template.Volumes![0].Name!;
        Assert.True(longTarget.Length <= 40 && longTarget.StartsWith("web-a-very-long", StringComparison.Ordinal), longTarget);
    }

    [Fact]
    public void Without_variables_nothing_is_interpolated_and_the_reference_is_warned_about()
    {
        var manifest = ManifestLoader.LoadFleetManifest("""
            services:
              web: {image: busybox, command: "echo ${X} $$Y"}
            """, "c.yml");
        Assert.Equal(["echo", "${X}", "$$Y"], manifest.Deployments[0].Template.Args);
        Assert.Contains("is not interpolated", Assert.Single(manifest.Warnings), StringComparison.Ordinal);
    }

    [Fact]
    public void A_projects_env_file_is_read_only_for_a_compose_file()
    {
        File.WriteAllText(Path.Combine(_dir, ".env"), "not a pair\n");
        var shape = new ComposeShape(true, _dir) { LoadEnvironment = () => ComposeEnvironment.Load(_dir, [], new Dictionary<string, string>()) };
        var plain = ManifestLoader.LoadFleetManifest("kind: Deployment\nname: web\ntemplate: {image: busybox}\n", Path.Combine(_dir, "web.yaml"), shape);
        Assert.Equal("web", Assert.Single(plain.Deployments).Name);
        var e = Assert.Throws<ManifestException>(() => ManifestLoader.LoadFleetManifest("services: {web: {image: busybox}}\n", Path.Combine(_dir, "compose.yaml"), shape));
        Assert.Equal($"{Path.Combine(_dir, ".env")}:1: 'not a pair' is not KEY=VALUE; a key is letters, digits and _ (not starting with a digit)", e.Message);
    }
}

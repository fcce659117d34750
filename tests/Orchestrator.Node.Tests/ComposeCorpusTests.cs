using Orchestrator.Api.Workloads;

namespace Orchestrator.Node.Tests;

/// <summary>
/// Compose files shaped like the ones people run (docker's awesome-compose, balena's multicontainer
/// examples, a home-automation stack), read as orchctl apply reads them: each is accepted as its
/// author wrote it (with --image-map for what it builds), every service that another reaches by
/// name is a container of the same app, and no warning is a parse problem.
/// </summary>
public sealed class ComposeCorpusTests
{
    private static string Dir(string name) => Path.Combine(RepoRoot.Path, "tests", "Orchestrator.Node.Tests", "compose-corpus", name);

    private static FleetManifest Load(string name, Dictionary<string, string>? images = null, Dictionary<string, string>? shell = null)
    {
        var dir = Dir(name);
        var file = Directory.GetFiles(dir, "*.y*ml").Single();
        return ManifestLoader.LoadFleetManifest(File.ReadAllText(file), file, new ComposeShape(true, dir)
        {
            Environment = ComposeEnvironment.Load(dir, [], shell ?? []),
            ImageMap = images,
        });
    }

    [Theory]
    [InlineData("wordpress-mysql", "db wordpress", null)]
    [InlineData("gitea-postgres", "gitea db", null)]
    [InlineData("nextcloud-postgres", "nc db", null)]
    [InlineData("react-express-mongodb", "frontend backend mongo", "frontend backend")]
    [InlineData("balena-multicontainer", "frontend proxy data sensor", "frontend proxy data sensor")]
    [InlineData("home-automation", "mosquitto zigbee2mqtt homeassistant", null)]
    public void Each_file_applies_as_written_and_the_names_its_services_use_are_its_own(string name, string services, string? builds)
    {
        var images = builds?.Split(' ').ToDictionary(s => s, s => $"registry.local/{name}/{s}:1");
        var manifest = Load(name, images);
        var app = Assert.Single(manifest.Deployments);
        Assert.Equal(name, app.Name);
        var containers = app.Template.Containers!;
        Assert.Equal(services.Split(' '), containers.Select(c => c.Name));
        Assert.DoesNotContain(manifest.Warnings, w => w.Contains("not a compose key", StringComparison.Ordinal) || w.Contains("is not set", StringComparison.Ordinal));
        // Every host:port, scheme://host or HOST=service a container's environment names is a container of this app: reachable by name on its node.
        foreach (var container in containers)
        {
            foreach (var (key, value) in container.Env ?? [])
            {
                foreach (var other in containers.Where(c => c != container).Select(c => c.Name))
                {
                    if (System.Text.RegularExpressions.Regex.IsMatch(value, $@"(^|//|@){System.Text.RegularExpressions.Regex.Escape(other)}(:|/|$)"))
                    {
                        Assert.True(container.Network is null or NetworkMode.Bridge, $"{container.Name} reaches {other} by name ({key}={value}) from the host network");
                    }
                }
            }
        }
    }

    [Fact]
    public void What_the_files_say_arrives_as_they_mean_it()
    {
        var gitea = Load("gitea-postgres").Deployments[0].Template.Containers!;
        Assert.Equal("gitea/gitea:1.21", gitea[0].Image);
        Assert.Equal("correct-horse", gitea[0].Env!["GITEA__database__PASSWD"]);
        Assert.Equal("correct-horse", gitea[1].Env!["POSTGRES_PASSWORD"]);
        Assert.Equal((DependencyCondition?)DependencyCondition.Ready, Assert.Single(gitea[0].DependsOn!).Condition);

        // The password is required: without .env (another directory's shell) the file is refused at its line.
        var e = Assert.Throws<ManifestException>(() => ManifestLoader.LoadFleetManifest(File.ReadAllText(Path.Combine(Dir("gitea-postgres"), "compose.yaml")), "compose.yaml",
            new ComposeShape(true, Dir("gitea-postgres")) { Environment = new Dictionary<string, string>() }));
        Assert.True(e.Message.Contains("compose.yaml:12:9: services.gitea.environment[6]: 'GITEA__database__PASSWD=${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}': POSTGRES_PASSWORD is required: set POSTGRES_PASSWORD in .env", StringComparison.Ordinal), e.Message);

        var nextcloud = Load("nextcloud-postgres");
        var nc = nextcloud.Deployments[0].Template.Containers!;
        Assert.Equal(("nextcloud", "nextcloud", "db"), (nc[0].Env!["POSTGRES_DB"], nc[0].Env!["POSTGRES_USER"], nc[0].Env!["POSTGRES_HOST"]));
        Assert.Equal("postgres_password", Assert.Single(nc[1].Secrets!).Name);
        Assert.Equal("postgres_password", Assert.Single(nextcloud.Sources).Name);

        var react = Load("react-express-mongodb", new() { ["frontend"] = "f:1", ["backend"] = "b:1" }).Deployments[0].Template.Containers!;
        Assert.Equal([(Path.Combine(Dir("react-express-mongodb"), "frontend"), (string?)null), (null, "react-express-mongodb_frontend-usr-src-app-node_modules")],
            react[0].Volumes!.Select(v => (v.HostPath, v.Name)));

        var home = Load("home-automation", shell: new() { ["TZ"] = "Europe/Oslo" }).Deployments[0].Template.Containers!;
        Assert.Equal("Europe/Oslo", home[1].Env!["TZ"]); // the shell's, over the default
        Assert.Equal("koenkk/zigbee2mqtt:latest", home[1].Image);
        Assert.Equal(("/dev/serial/by-id/usb-ITead_Sonoff_Zigbee_3.0-if00", "/dev/ttyACM0"), (home[1].Devices![0].HostPath, home[1].Devices![0].ContainerPath));
    }

    [Fact]
    public void A_file_that_builds_says_every_service_that_needs_an_image_and_every_warning_at_once()
    {
        var e = Assert.Throws<ManifestException>(() => Load("balena-multicontainer"));
        var errors = e.Message.Split('\n');
        Assert.Equal(4, errors.Length);
        Assert.All(errors, line => Assert.Contains("builds its image", line, StringComparison.Ordinal));
        Assert.Equal(["frontend", "proxy", "data", "sensor"], errors.Select(l => l[(l.IndexOf("service ", StringComparison.Ordinal) + 8)..].Split(' ')[0]));
        Assert.Contains(e.Warnings, w => w.Contains("io.balena.features.supervisor-api: has no effect", StringComparison.Ordinal));
        Assert.Contains(e.Warnings, w => w.Contains("io.balena.features.dbus: honoured", StringComparison.Ordinal));
        Assert.Contains(e.Warnings, w => w.Contains("version: ignored", StringComparison.Ordinal));
    }
}

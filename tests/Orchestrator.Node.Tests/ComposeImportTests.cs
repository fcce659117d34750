using Orchestrator.Api.Workloads;

namespace Orchestrator.Node.Tests;

/// <summary>docker-compose files through <see cref="ManifestLoader.LoadFleetManifest"/>: one deployment per service, every other key reported by path.</summary>
public sealed class ComposeImportTests
{
    private static string Example => Path.Combine(RepoRoot.Path, "examples", "compose", "docker-compose.yml");

    [Fact]
    public void The_example_compose_file_becomes_one_deployment_per_service_and_lists_what_it_ignored()
    {
        var manifest = ManifestLoader.LoadFleetManifest(File.ReadAllText(Example), Example);
        Assert.True(manifest.FromCompose);
        Assert.Equal(["web", "api", "collector"], manifest.Deployments.Select(d => d.Name));

        var web = manifest.Deployments[0];
        Assert.Equal(2, web.Replicas);
        Assert.Equal("busybox:latest", web.Template.Image);
        Assert.Null(web.Template.Command);
        Assert.Equal(["httpd", "-f", "-p", "80", "-h", "/www"], web.Template.Args);
        Assert.Equal("hello", web.Template.Env!["GREETING"]);
        var port = Assert.Single(web.Template.Ports!);
        Assert.Equal((80, 8080, "tcp"), (port.ContainerPort, port.HostPort, port.Protocol));
        var www = Assert.Single(web.Template.Volumes!);
        Assert.Equal((Path.Combine(RepoRoot.Path, "examples", "compose", "www"), "/www", true), (www.HostPath, www.Target, www.ReadOnly));
        Assert.Equal(("0.25", "32Mi"), (web.Template.Resources!.Cpu, web.Template.Resources.Memory));
        Assert.Equal(RestartPolicyKind.Always, web.Template.Restart!.Policy); // unless-stopped, merged from x-defaults
        Assert.Equal("sensors", web.Template.Labels!["stack"]);
        foreach (var probe in new[] { web.Template.Probes!.Liveness!, web.Template.Probes.Readiness! })
        {
            Assert.Equal(["wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"], probe.Exec!.Command);
            Assert.Equal((10, 2, 3, 5), (probe.PeriodSeconds, probe.TimeoutSeconds, probe.FailureThreshold, probe.InitialDelaySeconds));
        }

        var api = manifest.Deployments[1];
        Assert.Equal(3, api.Replicas);
        Assert.Equal(["/app/api"], api.Template.Command);
        Assert.Equal(["--listen", ":9000", "--db", "/data/api.db"], api.Template.Args);
        Assert.Equal(new Dictionary<string, string> { ["LOG_LEVEL"] = "info", ["WORKERS"] = "4" }, api.Template.Env);
        Assert.Equal((9000, 9000), (api.Template.Ports![0].ContainerPort, api.Template.Ports[0].HostPort));
        Assert.Equal(("api-data", "/data"), (api.Template.Volumes![0].Name, api.Template.Volumes[0].Target));
        Assert.Equal(new Dictionary<string, string> { ["zone"] = "north" }, api.Selector);
        Assert.Equal((0, 1, true), (api.Rollout!.MaxUnavailable, api.Rollout.MaxSurge, api.Rollout.AutoRollback));
        Assert.Equal(("1", "256Mi"), (api.Template.Resources!.Cpu, api.Template.Resources.Memory));
        Assert.Equal(["/bin/sh", "-c", "curl -fsS http://127.0.0.1:9000/healthz || exit 1"], api.Template.Probes!.Liveness!.Exec!.Command);
        Assert.Equal((30, 30, 3), (api.Template.Probes.Liveness.PeriodSeconds, api.Template.Probes.Liveness.TimeoutSeconds, api.Template.Probes.Liveness.FailureThreshold));

        var collector = manifest.Deployments[2];
        Assert.Equal(1, collector.Replicas);
        Assert.Equal(["sh", "-c", "while true; do date; sleep 60; done"], collector.Template.Args);
        Assert.Equal((RestartPolicyKind.OnFailure, 5), (collector.Template.Restart!.Policy, collector.Template.Restart.MaxRetries));
        Assert.Equal(NetworkMode.Host, collector.Template.Network);
        Assert.Equal(("/var/log", "/host-logs", true), (collector.Template.Volumes![0].HostPath, collector.Template.Volumes[0].Target, collector.Template.Volumes[0].ReadOnly));
        Assert.Null(collector.Template.Labels);

        Assert.Equal(
        [
            "3:1: name: ignored (each deployment is named after its service)",
            "5:1: x-defaults: ignored (an extension field; its anchors still apply where they are merged)",
            $"18:9: services.web.volumes[0]: './www' is bound from {Path.Combine(RepoRoot.Path, "examples", "compose", "www")}, which must exist on every node that runs this service",
            "21:5: services.web.depends_on: ignored (every deployment starts at once and failed containers are restarted; make the service retry what it depends on)",
            "45:9: services.api.ports[0].mode: ignored (a port is published on the node that runs the replica, as mode: host)",
            "48:5: services.api.networks: ignored (orchd gives every container its node's bridge)",
            "55:52: services.api.deploy.placement.constraints[1]: ignored (only node.labels.KEY == VALUE maps: to selector:, matched against the labels nodes get from orchd --label)",
            "59:9: services.api.deploy.resources.reservations: ignored (orchd places replicas by their limits)",
            "68:5: services.collector.logging: ignored (orchd keeps every container's log; read it with orchctl logs)",
            "74:1: networks: ignored (orchd gives every container its node's bridge)",
        ], manifest.Warnings.Select(w => w[(Example.Length + 1)..]));
    }

    [Fact]
    public void Short_and_long_forms_map_and_the_rest_is_reported_by_path()
    {
        var manifest = ManifestLoader.LoadFleetManifest("""
            version: "3.8"
            services:
              dns:
                image: "coredns:1.11"
                imgae: typo
                environment: [A=1, "B=two words", UNSET]
                ports: ["127.0.0.1:53:53/udp", "9000-9001:9100-9101", "7000"]
                volumes:
                  - {type: bind, source: /etc/coredns, target: /etc/coredns, read_only: true}
                  - {type: tmpfs, target: /tmp}
                  - /cache
                  - conf:/conf:rw,z
                restart: "no"
                healthcheck: {test: ["NONE"]}
                user: "1000:1000"
                working_dir: /srv
                stop_grace_period: 1m30s
                mem_limit: 1g
                cpus: 0.5
                labels: [team=net, edge]
                cap_add: [NET_ADMIN]
                command: dig @127.0.0.1 "example. com" ${DOMAIN}
                deploy:
                  mode: global
                  restart_policy: {condition: on-failure, max_attempts: 4, delay: 5s}
                  placement: {max_replicas_per_node: 1}
            """, "stack.yml");
        var dns = Assert.Single(manifest.Deployments);
        var t = dns.Template;
        Assert.Equal("coredns:1.11", t.Image);
        Assert.Equal(new Dictionary<string, string> { ["A"] = "1", ["B"] = "two words" }, t.Env);
        Assert.Equal(["dig", "@127.0.0.1", "example. com", "${DOMAIN}"], t.Args);
        Assert.Equal(
            [(53, (int?)53, "udp", "127.0.0.1"), (9100, 9000, "tcp", null), (9101, 9001, "tcp", null), (7000, null, "tcp", null)],
            t.Ports!.Select(p => (p.ContainerPort, p.HostPort, p.Protocol, p.HostIp)));
        Assert.Equal([("/etc/coredns", (string?)null, "/etc/coredns", true), (null, "dns-cache", "/cache", false), (null, "conf", "/conf", false)], t.Volumes!.Select(v => (v.HostPath, v.Name, v.Target, v.ReadOnly)));
        Assert.Equal((RestartPolicyKind.OnFailure, 4, "5000ms"), (t.Restart!.Policy, t.Restart.MaxRetries, t.Restart.Backoff)); // deploy.restart_policy wins over restart: "no"
        Assert.Null(t.Probes);
        Assert.Equal(("1000:1000", "/srv", 90), (t.User, t.WorkingDir, t.StopGracePeriodSeconds));
        Assert.Equal(("0.5", "1Gi"), (t.Resources!.Cpu, t.Resources.Memory));
        Assert.Equal(new Dictionary<string, string> { ["team"] = "net", ["edge"] = "" }, t.Labels);
        Assert.True(dns.AntiAffinity);
        Assert.Equal(DeploymentMode.Global, dns.Mode);
        Assert.Equal(["NET_ADMIN"], t.CapAdd);
        Assert.Equal("/tmp", Assert.Single(t.Tmpfs!).Target);
        Assert.Equal(
        [
            "stack.yml:1:1: version: ignored (obsolete in compose too; only the services are read)",
            "stack.yml:5:5: services.dns.imgae: ignored (not a compose key; did you mean 'image'?)",
            "stack.yml:6:39: services.dns.environment[2]: ignored ('UNSET' has no value here; compose takes it from its shell: write UNSET=value)",
            "stack.yml:7:59: services.dns.ports[2]: '7000' publishes no host port in compose terms (a random one); orchd publishes it on host port 7000 (write \"7000:7000\" to say so)",
            "stack.yml:11:9: services.dns.volumes[2]: an anonymous volume: /cache is the node's volume 'dns-cache', filled from the image on first use as Docker does; it is kept when the container is replaced",
            "stack.yml:12:9: services.dns.volumes[3]: ignored (option 'z' is not supported, only ro and rw)",
            "stack.yml:22:14: services.dns.command: 'dig @127.0.0.1 \"example. com\" ${DOMAIN}' is not interpolated (orchd reads no .env and no shell variables); write the value out",
        ], manifest.Warnings);
    }

    [Fact]
    public void Secrets_and_configs_map_to_fleet_ones_with_their_sources_and_an_undeclared_one_is_an_error_at_its_line()
    {
        var manifest = ManifestLoader.LoadFleetManifest("""
            services:
              db:
                image: postgres
                environment: {POSTGRES_PASSWORD_FILE: /run/secrets/db_password}
                secrets:
                  - db_password
                  - source: tls_key
                    target: server.key
                    uid: "999"
                    mode: 0400
                configs:
                  - pg_conf
                  - source: pg_conf
                    target: /etc/postgresql/postgresql.conf
                    mode: 288
            secrets:
              db_password:
                file: ./db_password.txt
              tls_key:
                name: site-tls-key
                external: true
            configs:
              pg_conf:
                content: "max_connections = 20"
            """, "c.yml");
        var t = Assert.Single(manifest.Deployments).Template;
        Assert.Equal([("db_password", null, null, null, null), ("site-tls-key", "server.key", 999L, (long?)null, "0400")],
            t.Secrets!.Select(m => (m.Name, m.Target, m.Uid, m.Gid, m.Mode)));
        Assert.Equal("/run/secrets/server.key", SecretMounts.TargetOf(t.Secrets![1], SecretKind.Secret));
        Assert.Equal([("pg_conf", "/pg_conf", null), ("pg_conf", "/etc/postgresql/postgresql.conf", "0440")], t.Configs!.Select(m => (m.Name, m.Target, m.Mode)));
        Assert.Equal(
            [(SecretKind.Secret, "db_password", "./db_password.txt", false, null), (SecretKind.Secret, "site-tls-key", null, true, null), (SecretKind.Config, "pg_conf", null, false, "max_connections = 20")],
            manifest.Sources.Select(s => (s.Kind, s.Name, s.File, s.External, s.Content)));
        Assert.Empty(manifest.Warnings);

        var e = Assert.Throws<ManifestException>(() => ManifestLoader.LoadFleetManifest("""
            services:
              app:
                image: busybox
                secrets: [api_key]
            secrets:
              other:
                file: ./x
                environment: X
            """, "bad.yml"));
        Assert.Contains("bad.yml:4:15: services.app.secrets[0]: 'api_key' is not declared under the top-level secrets: (with file:, environment: or external: true)", e.Message, StringComparison.Ordinal);
        Assert.Contains("bad.yml:6:3: secrets.other: expected exactly one of file:, environment: or external: true, got 2", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Linux_settings_map_to_the_workloads_and_a_bad_one_is_an_error_at_its_line()
    {
        var manifest = ManifestLoader.LoadFleetManifest("""
            services:
              gw:
                image: busybox
                privileged: true
                init: true
                read_only: true
                cap_add: [SYS_RAWIO, NET_ADMIN]
                cap_drop: [ALL]
                tmpfs: ["/run:size=16m,mode=755", /var/cache]
                group_add: [20, dialout]
                sysctls: [net.ipv4.ip_forward=1]
                ulimits: {nofile: {soft: 1024, hard: 2048}, core: 0}
                shm_size: 128m
                stop_signal: SIGINT
                volumes: [{type: tmpfs, target: /scratch, tmpfs: {size: 1048576}}]
                devices:
                  - /dev/ttyUSB0
                  - "/dev/ttyACM*:/dev/serial:rw"
                  - /dev/video0:/dev/video0:r
                  - /dev/i2c-1:rw
                  - {source: /dev/gpiochip0, target: /dev/gpio, permissions: rwm}
                  - vendor.com/gpu=all
                device_cgroup_rules: ["c 188:* rmw"]
            """, "c.yml");
        var t = Assert.Single(manifest.Deployments).Template;
        Assert.Equal((true, true, true), (t.Privileged, t.Init, t.ReadOnlyRootfs));
        Assert.Equal(["SYS_RAWIO", "NET_ADMIN"], t.CapAdd);
        Assert.Equal(["ALL"], t.CapDrop);
        Assert.Equal([("/run", "16Mi", "755"), ("/var/cache", null, null), ("/scratch", "1048576", null)], t.Tmpfs!.Select(m => (m.Target, m.Size, m.Mode)));
        Assert.Equal(["20", "dialout"], t.Groups);
        Assert.Equal(
            [("/dev/ttyUSB0", null, null), ("/dev/ttyACM*", "/dev/serial", "rw"), ("/dev/video0", null, "r"), ("/dev/i2c-1", null, "rw"), ("/dev/gpiochip0", "/dev/gpio", "rwm")],
            t.Devices!.Select(d => (d.HostPath, d.ContainerPath, d.Permissions)));
        Assert.Equal(["c 188:* rmw"], t.DeviceCgroupRules);
        Assert.Equal("1", t.Sysctls!["net.ipv4.ip_forward"]);
        Assert.Equal((1024L, 2048L, 0L, 0L), (t.Ulimits!["nofile"].Soft, t.Ulimits["nofile"].Hard, t.Ulimits["core"].Soft, t.Ulimits["core"].Hard));
        Assert.Equal(("128Mi", "SIGINT"), (t.ShmSize, t.StopSignal));
        Assert.Equal(["c.yml:22:9: services.gw.devices[5]: ignored ('vendor.com/gpu=all' is a CDI device name, which needs a CDI registry nodes do not have; map the device nodes by path (/dev/…))"], manifest.Warnings);

        var bad = Assert.Throws<ManifestException>(() => ManifestLoader.LoadFleetManifest("""
            services:
              gw:
                image: busybox
                cap_add: [NET_ADMINN]
                sysctls: {kernel.hostname: x}
                stop_signal: SIGNOPE
                ulimits: {nofile: {soft: 4096, hard: 1024}}
                devices: ["dev/ttyUSB0", "/dev/../etc/x", "/dev/ttyS0:/dev/tty*", "/dev/x:/dev/y:rwx"]
                device_cgroup_rules: ["c 188 rwm"]
                group_add: ["bad group"]
            """, "c.yml"));
        Assert.Contains("c.yml:4:14: services.gw.cap_add[0]: 'NET_ADMINN' is not a Linux capability", bad.Message, StringComparison.Ordinal);
        Assert.Contains("services.gw.sysctls.kernel.hostname: not a setting of the container's own namespaces", bad.Message, StringComparison.Ordinal);
        Assert.Contains("services.gw.stop_signal: 'SIGNOPE' is not a signal", bad.Message, StringComparison.Ordinal);
        Assert.Contains("services.gw.ulimits.nofile: expected soft ≤ hard", bad.Message, StringComparison.Ordinal);
        Assert.Contains("c.yml:8:15: services.gw.devices[0].hostPath: expected an absolute path of a device node or a glob of them (/dev/ttyUSB0, /dev/ttyUSB*), got 'dev/ttyUSB0'", bad.Message, StringComparison.Ordinal);
        Assert.Contains("services.gw.devices[1].hostPath: expected a clean absolute path, without '.', '..' or '//', got '/dev/../etc/x'", bad.Message, StringComparison.Ordinal);
        Assert.Contains("services.gw.devices[2].containerPath: expected a clean absolute path inside the container without glob characters", bad.Message, StringComparison.Ordinal);
        Assert.Contains("services.gw.devices[3].permissions: expected r, w and m in any combination (rwm: read, write, mknod), got 'rwx'", bad.Message, StringComparison.Ordinal);
        Assert.Contains("services.gw.device_cgroup_rules[0]: expected 'TYPE MAJOR:MINOR ACCESS'", bad.Message, StringComparison.Ordinal);
        Assert.Contains("services.gw.group_add[0]: 'bad group' is neither a group id nor a group name", bad.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Tty_and_stdin_open_map_to_the_workloads_terminal_and_stdin_and_a_non_boolean_is_an_error()
    {
        var manifest = ManifestLoader.LoadFleetManifest("""
            services:
              console: {image: busybox, tty: true, stdin_open: "yes"}
              quiet: {image: busybox, tty: false, stdin_open: off}
            """, "c.yml");
        var console = manifest.Deployments.Single(d => d.Name == "console").Template;
        var quiet = manifest.Deployments.Single(d => d.Name == "quiet").Template;
        Assert.Equal((true, true), (console.Tty, console.Stdin));
        Assert.Equal((null, null), (quiet.Tty, quiet.Stdin)); // false is the default: left out, as the template's hash was
        Assert.Empty(manifest.Warnings);
        var e = Assert.Throws<ManifestException>(() => ManifestLoader.LoadFleetManifest("""
            services:
              console: {image: busybox, tty: sometimes}
            """, "c.yml"));
        Assert.Contains("c.yml:2:34: services.console.tty: expected true or false, got", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void What_cannot_map_is_an_error_at_its_node_with_the_compose_path()
    {
        var e = Assert.Throws<ManifestException>(() => ManifestLoader.LoadFleetManifest("""
            services:
              "my.app":
                image: busybox
              builder:
                build: .
              web:
                image: busybox
                ports: ["80:80:80:80", {published: 8080}]
                volumes: ["./data:/data", "~/x:/x"]
                mem_limit: 1m
                restart: sometimes
                user: www-data
                healthcheck: {test: [CMD], interval: soon}
                deploy: {replicas: many}
            """, "-"));
        Assert.Equal(
        [
            "-:2:3: services.my.app: expected 1-56 letters, digits, '-' or '_' starting with a letter or digit, got 'my.app'",
            "-:5:12: services.builder.build: service builder builds its image (.) and names none; orchd runs images and does not build them: build and push it (docker build -t REGISTRY/builder:TAG . && docker push REGISTRY/builder:TAG, podman and buildah alike; or docker save it, then on a node orchd image import FILE --name builder:TAG && orchd image push builder:TAG --nats, for image nats:builder:TAG), then give image: or apply the file unchanged with --image-map builder=REGISTRY/builder:TAG",
            "-:8:13: services.web.ports[0]: expected [host_ip:][host:]container[/protocol] with ports or equal ranges (\"8080:80\", \"127.0.0.1:53:53/udp\"), got '80:80:80:80'",
            "-:8:28: services.web.ports[1]: target: required; the container's port",
            "-:9:15: services.web.volumes[0]: './data' is relative to the compose file, and this one was read from stdin; give an absolute path on the nodes",
            "-:9:31: services.web.volumes[1]: '~/x' is under the home of whoever runs orchctl, which the nodes do not know; give an absolute path on the nodes",
            "-:10:16: services.web.mem_limit: '1Mi' is not a size of at least 4Mi; use bytes or a suffix (64Mi, 1Gi)",
            "-:11:14: services.web.restart: expected one of no, always, on-failure[:N], unless-stopped, got 'sometimes'",
            "-:12:11: services.web.user: expected a numeric uid or uid:gid, got 'www-data' (names need the image's /etc/passwd, which is not read)",
            "-:13:25: services.web.healthcheck.test: expected [CMD, prog, args…], [CMD-SHELL, \"command\"], a command string or [NONE], got a list",
            "-:13:42: services.web.healthcheck.interval: expected a duration such as 10s, 1m30s or 500ms, got 'soon'",
            "-:14:24: services.web.deploy.replicas: expected an integer, got 'many'",
        ], e.Message.Split('\n'));
    }

    [Theory]
    [InlineData("sh -c 'echo a b'", new[] { "sh", "-c", "echo a b" })]
    [InlineData("printf \"%s\\n\" x\\ y", new[] { "printf", "%s\\n", "x y" })]
    [InlineData("  a   b  ", new[] { "a", "b" })]
    public void Command_strings_split_as_compose_splits_them(string line, string[] words)
        => Assert.Equal(words, ComposeImporter.ShellWordsForTest(line));

    [Fact]
    public void A_deployment_file_is_not_taken_for_compose_and_compose_is_one_document()
    {
        Assert.False(ManifestLoader.LoadFleetManifest("kind: Deployment\nname: services\ntemplate: {image: b}\n", "d.yaml").FromCompose);
        var e = Assert.Throws<ManifestException>(() => ManifestLoader.LoadFleetManifest("services: {a: {image: b}}\n---\nkind: Deployment\n", "c.yml"));
        Assert.Equal("c.yml:3:1: a docker-compose file is one document; put deployments in a file of their own", e.Message);
    }
}

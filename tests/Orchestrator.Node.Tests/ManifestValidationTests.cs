using Orchestrator.Api.Workloads;

namespace Orchestrator.Node.Tests;

/// <summary>
/// Manifest validation: every error at once, each at the line and column of the offending node
/// (not of its document), with the field's path, what was expected, what was given, and the fix.
/// </summary>
public sealed class ManifestValidationTests
{
    private static string[] Errors(Action parse) => Assert.Throws<ManifestException>(parse).Message.Split('\n');

    [Fact]
    public void A_good_deployment_reads_with_every_field()
    {
        var deployments = ManifestLoader.ParseDeployments("""
            kind: Deployment
            name: web
            replicas: 3
            selector: {zone: north}
            strategy: binpack
            spreadBy: zone
            antiAffinity: true
            template:
              image: busybox:latest
              command: [httpd, -f]
              env: {PORT: 80}
              resources: {cpu: 250m, memory: 32Mi, pids: 64}
              probes:
                readiness: {tcpSocket: {port: 80}, periodSeconds: 2}
              ports: [{containerPort: 80, hostPort: 8080}]
            rollout:
              maxUnavailable: 0
              maxSurge: 1
              canary: {percent: 10, holdSeconds: 5}
              progressDeadlineSeconds: 60
              autoRollback: false
              paused: false
            autoscale:
              min: 1
              max: 5
              targetCpuPercent: 60.5
              cooldownSeconds: 30
              metric: {subject: orch.metrics.web.queue, targetPerReplica: 10, maxAgeSeconds: 30}
            ---
            kind: Deployment
            name: other
            template: {image: busybox}
            """, "web.yaml");
        Assert.Equal(["web", "other"], deployments.Select(d => d.Name));
        var web = deployments[0];
        Assert.Equal(3, web.Replicas);
        Assert.Equal("north", web.Selector!["zone"]);
        Assert.True(web.AntiAffinity);
        Assert.Equal("80", web.Template.Env!["PORT"]);
        Assert.Equal(64, web.Template.Resources!.Pids);
        Assert.Equal(10, web.Rollout!.Canary!.Percent);
        Assert.False(web.Rollout.AutoRollback);
        Assert.Equal(60.5, web.Autoscale!.TargetCpuPercent);
        Assert.Equal("orch.metrics.web.queue", web.Autoscale.Metric!.Subject);
        Assert.Equal(1, deployments[1].Replicas);
    }

    [Fact]
    public void A_type_error_names_the_field_the_expected_type_and_the_value_at_the_value()
    {
        var errors = Errors(() => ManifestLoader.ParseDeployments("""
            kind: Deployment
            name: web
            template: {image: busybox}
            replicas: three
            """, "web.yaml"));
        Assert.Equal(["web.yaml:4:11: replicas: expected an integer from 0 to 10000, got 'three'"], errors);
    }

    [Fact]
    public void Every_error_of_every_document_is_reported_at_once_each_at_its_node()
    {
        var errors = Errors(() => ManifestLoader.ParseDeployments("""
            kind: Deployment
            name: web
            replicas: -1
            template:
              image: busybox
              resources: {cpu: lots, memory: 64Mi, pids: many}
              restart: {policy: sometimes}
              command: httpd -f
              ports:
                - {containerPort: 80}
                - {containerPort: 70000, protocol: sctp}
              probes:
                liveness: {httpGet: {port: 80}, periodSeconds: 0}
              lables: {app: web}
            strategy: pack
            rollout: {maxUnavailable: 0, maxSurge: 0, canary: {replicas: 1, percent: 5}}
            autoscale: {min: 3, max: 2, metric: {subject: "orch.metrics.*", targetPerReplica: 0}}
            ---
            kind: Deployment
            name: web
            template: {image: busybox}
            """, "web.yaml"));
        Assert.Equal(
        [
            "web.yaml:3:11: replicas: expected an integer from 0 to 10000, got -1",
            "web.yaml:6:20: template.resources.cpu: 'lots' is not a CPU amount; use a number of CPUs (0.5) or millicores (500m)",
            "web.yaml:6:46: template.resources.pids: expected an integer ≥ 1, got 'many'",
            "web.yaml:7:21: template.restart.policy: expected one of always, on-failure, never, got 'sometimes'",
            "web.yaml:8:12: template.command: expected a list of strings, got 'httpd -f' (write a list: [httpd, -f])",
            "web.yaml:11:23: template.ports[1].containerPort: expected an integer from 1 to 65535, got 70000",
            "web.yaml:11:40: template.ports[1].protocol: expected one of tcp, udp, got 'sctp'",
            "web.yaml:13:52: template.probes.liveness.periodSeconds: expected a number > 0, got 0",
            "web.yaml:14:3: template.lables: unknown field; did you mean 'labels'?",
            "web.yaml:15:11: strategy: expected one of spread, binpack, got 'pack'",
            "web.yaml:16:10: rollout: maxUnavailable and maxSurge are both 0, so no replica could ever be updated; set maxUnavailable: 1 or maxSurge: 1",
            "web.yaml:16:51: rollout.canary: give exactly one of selector (node labels), replicas or percent, not 2",
            "web.yaml:17:26: autoscale.max: expected an integer ≥ min (3), got 2",
            "web.yaml:17:47: autoscale.metric.subject: expected a literal subject under orch.metrics. (no spaces or wildcards), got 'orch.metrics.*'",
            "web.yaml:17:83: autoscale.metric.targetPerReplica: expected a number > 0, got 0",
            "web.yaml:20:7: name: 'web' is already defined at web.yaml:2:7; deployment names must be unique in the fleet",
        ], errors);
    }

    [Theory]
    [InlineData("name: a\nimage: b\nlables: {a: b}\n", "m.yaml:3:1: lables: unknown field; did you mean 'labels'?")]
    [InlineData("name: a\nimage: b\nresources: {memroy: 64Mi}\n", "m.yaml:3:13: resources.memroy: unknown field; did you mean 'memory'?")]
    [InlineData("name: a\nimage: b\nworking_dir: /x\n", "m.yaml:3:1: working_dir: unknown field; did you mean 'workingDir'?")]
    [InlineData("name: a\nimage: b\nreplicas: 3\n", "m.yaml:3:1: replicas: unknown field in a workload; 'replicas' belongs to a fleet deployment (kind: Deployment, with the workload under template:)")]
    [InlineData("name: a\nimage: b\nresources: {disk: 1Gi}\n", "m.yaml:3:13: resources.disk: unknown field in resources; its fields are cpu, memory, pids")]
    [InlineData("name: a\nimage: b\nrestart: {policy: sometimes}\n", "m.yaml:3:19: restart.policy: expected one of always, on-failure, never, got 'sometimes'")]
    [InlineData("name: a\nimage: b\nnetwork: overlay\n", "m.yaml:3:10: network: expected one of bridge, host, none, got 'overlay'")]
    [InlineData("name: a\nimage: b\nstopGracePeriodSeconds: 7200\n", "m.yaml:3:25: stopGracePeriodSeconds: expected an integer from 0 to 3600, got 7200")]
    [InlineData("name: a\nimage: b\nstopGracePeriodSeconds: soon\n", "m.yaml:3:25: stopGracePeriodSeconds: expected an integer from 0 to 3600, got 'soon'")]
    [InlineData("name: a\nimage: b\nstopGracePeriodSeconds: \"30\"\n", "m.yaml:3:25: stopGracePeriodSeconds: expected an integer from 0 to 3600, got '30' (quoted, so a string: write it without quotes)")]
    [InlineData("name: a\nimage: b\nports: [{containerPort: 80, hostPort: 0}]\n", "m.yaml:3:39: ports[0].hostPort: expected an integer from 1 to 65535, got 0")]
    [InlineData("name: a\nimage: b\nports: {containerPort: 80}\n", "m.yaml:3:8: ports: expected a list of mappings (containerPort:, hostPort:, protocol:, hostIp:), got a mapping")]
    [InlineData("name: a\nimage: b\nenv: [A=1]\n", "m.yaml:3:6: env: expected a mapping of names to strings (NAME: value), got a list")]
    [InlineData("name: a\nimage: b\nenv: {A: }\n", "m.yaml:3:10: env.A: expected a string, got nothing; write '' for an empty value")]
    [InlineData("name: a\nimage: b\nprobes: {readiness: {exec: {command: [x]}, periodSeconds: fast}}\n", "m.yaml:3:59: probes.readiness.periodSeconds: expected a number > 0, got 'fast'")]
    [InlineData("name: a\nimage: b\nvolumes: [{name: data, target: /data, readOnly: yes}]\n", "m.yaml:3:49: volumes[0].readOnly: expected true or false, got 'yes'")]
    [InlineData("name: a\nimage: b\nresources: 64Mi\n", "m.yaml:3:12: resources: expected a mapping (cpu:, memory:, pids:), got '64Mi'")]
    [InlineData("image: b\n", "m.yaml:1:1: name: '' is not a valid name; use 1-63 letters, digits, '-' or '_', starting with a letter or digit")]
    [InlineData("name: a\n", "m.yaml:1:1: image: required; name an image such as busybox:latest")]
    [InlineData("name: a\nimage: b\nuser: nobody\n", "m.yaml:3:7: user: expected a numeric uid or uid:gid, got 'nobody' (names need the image's /etc/passwd, which is not read)")]
    [InlineData("kind: Deployment\nname: a\n", "m.yaml:1:7: kind: expected Workload, got 'Deployment'; a node's manifest directory holds workloads (deployments go to the fleet with orchctl apply)")]
    [InlineData("name: [a\n", "m.yaml:2:1: not valid YAML")]
    [InlineData("- a\n- b\n", "m.yaml:1:1: a workload must be a mapping (name: …, image: …)")]
    [InlineData("name: a\nimage: b\nprobes: {liveness: {exec: {command: [x]}, tcpSocket: {port: 1}}}\n", "m.yaml:3:20: probes.liveness: give exactly one of exec, httpGet, tcpSocket")]
    [InlineData("name: a\nimage: b\nnetwork: none\nprobes: {readiness: {tcpSocket: {port: 1}}}\n", "m.yaml:4:21: probes.readiness: a container with network none has no address to probe; use an exec probe")]
    [InlineData("name: a\nimage: b\nvolumes: [{target: /x}]\n", "m.yaml:3:11: volumes[0]: give exactly one of name (a named volume) or hostPath (a bind mount)")]
    [InlineData("name: a\nimage: b\n---\nname: a\nimage: c\n", "m.yaml:4:7: name: 'a' is already defined at m.yaml:1:7; workload names must be unique on a node")]
    public void Each_kind_of_bad_workload_is_reported_with_its_message_and_position(string yaml, string expected)
    {
        var errors = Errors(() => ManifestLoader.Parse(yaml, "m.yaml"));
        Assert.Contains(errors, e => e.StartsWith(expected, StringComparison.Ordinal));
        Assert.Single(errors);
    }

    /// <summary>Syntax errors in an editor's words with the fix (#22: broken YAML showed the parser's wording).</summary>
    [Theory]
    [InlineData("name: a\ncommand: [sh, -c\n", "m.yaml:3:1: not valid YAML: a list opened with '[' is not closed: add the ']'")]
    [InlineData("name: a\nenv: {A: 1\n", "m.yaml:3:1: not valid YAML: a mapping opened with '{' is not closed: add the '}'")]
    [InlineData("name: \"a\nimage: b\n", "not valid YAML: a quoted string is not closed: add the closing quote")]
    [InlineData("name: a\nimage: busybox: latest\n", "m.yaml:2:15: not valid YAML: a ': ' inside a plain value: quote the value if it contains ': '")]
    [InlineData("name: a\n  image: b\n", "m.yaml:2:8: not valid YAML: a ': ' inside a plain value: quote the value if it contains ': ', or if this is a key, line it up with the keys above it")]
    [InlineData("name: a\nimage: b\nenv:\n  A: 1\n B: 2\n", "not valid YAML: this line is not indented as the keys above it")]
    [InlineData("name: a\n\timage: b\n", "not valid YAML: a tab used for indentation: indent with spaces")]
    [InlineData("name: a\nimage: b\ncommand:\n  - sh\n - x\n", "not valid YAML: ")]
    [InlineData("name: a\nname: b\n", "m.yaml:2:1: not valid YAML: the same key twice in one mapping: keep one")]
    [InlineData("name: *x\n", "not valid YAML: an alias (*name) with no anchor (&name) before it")]
    public void Yaml_syntax_errors_say_what_is_wrong_and_the_fix(string yaml, string expected)
    {
        var errors = Errors(() => ManifestLoader.Parse(yaml, "m.yaml"));
        var error = Assert.Single(errors);
        Assert.True(error.Contains(expected, StringComparison.Ordinal), error);
        Assert.DoesNotContain("While parsing", error, StringComparison.Ordinal);
        Assert.DoesNotContain("While scanning", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("kind: Deployment\nname: web\nreplcas: 3\ntemplate: {image: b}\n", "m.yaml:3:1: replcas: unknown field; did you mean 'replicas'?")]
    [InlineData("kind: Deployment\nname: web\ntemplate: {image: b}\nimage: busybox\n", "m.yaml:4:1: image: unknown field in a deployment; 'image' is a workload field: move it under template:")]
    [InlineData("kind: Deployment\nname: web\ntemplate: {image: b}\nrollout: {canary: {}}\n", "m.yaml:4:19: rollout.canary: give exactly one of selector (node labels), replicas or percent, not none")]
    [InlineData("kind: Deployment\nname: web\nmode: everywhere\ntemplate: {image: b}\n", "m.yaml:3:7: mode: expected one of replicated, global, got 'everywhere'")]
    [InlineData("kind: Deployment\nname: web\nmode: global\nreplicas: 3\ntemplate: {image: b}\n", "m.yaml:4:11: replicas: a global deployment runs one copy on every node that matches its selector, so it has no count; take replicas out")]
    [InlineData("kind: Deployment\nname: web\nmode: global\ntemplate: {image: b}\nautoscale: {max: 3}\n", "m.yaml:5:12: autoscale: a global deployment runs one copy on every matching node")]
    [InlineData("kind: Deployment\nname: web\nmode: global\ntemplate: {image: b}\nrollout: {maxSurge: 1}\n", "m.yaml:5:21: rollout.maxSurge: a global deployment runs one copy per node")]
    [InlineData("kind: Deployment\nname: web\nmode: global\nspreadBy: zone\ntemplate: {image: b}\n", "m.yaml:4:11: spreadBy: a global deployment places one copy on every matching node")]
    [InlineData("kind: Deployment\nname: web\ntemplate: {image: b}\nrollout: {waves: [{percent: 10}, {percent: 5}]}\n", "m.yaml:4:44: rollout.waves[1].percent: expected more than the wave before it (10), got 5; percentages are cumulative")]
    [InlineData("kind: Deployment\nname: web\ntemplate: {image: b}\nrollout: {waves: [{percent: 10, replicas: 2}]}\n", "m.yaml:4:19: rollout.waves[0]: give exactly one of selector (node labels), replicas or percent, not 2")]
    [InlineData("kind: Deployment\nname: web\ntemplate: {image: b}\nrollout: {waves: [{percent: 101}]}\n", "m.yaml:4:29: rollout.waves[0].percent: expected an integer from 1 to 100, got 101")]
    [InlineData("kind: Deployment\nname: web\ntemplate: {image: b}\nrollout: {waves: [{percent: 1}], canary: {percent: 1}}\n", "m.yaml:4:42: rollout.canary: give waves or canary, not both")]
    [InlineData("kind: Deployment\nname: web\ntemplate: {image: b}\nrollout: {maxFailed: -1}\n", "m.yaml:4:22: rollout.maxFailed: expected an integer ≥ 0, got -1")]
    [InlineData("kind: Deployment\nname: web\ntemplate: {image: b}\nrollout: {maxUnavailablePercent: 0}\n", "m.yaml:4:34: rollout.maxUnavailablePercent: expected an integer from 1 to 100, got 0")]
    [InlineData("kind: Deployment\nname: web\ntemplate: {image: b}\nautoscale: {targetCpuPercent: 0}\n", "m.yaml:4:31: autoscale.targetCpuPercent: expected a number > 0, got 0")]
    [InlineData("kind: Deployment\nname: web.v2\ntemplate: {image: b}\n", "m.yaml:2:7: name: expected 1-56 letters, digits, '-' or '_' starting with a letter or digit, got 'web.v2'")]
    [InlineData("kind: Deployment\nname: web\n", "m.yaml:1:1: template.image: required; name an image such as busybox:latest")]
    [InlineData("name: web\ntemplate: {image: b}\n", "m.yaml:1:1: kind: missing; the fleet takes kind: Deployment documents")]
    [InlineData("kind: Workload\nname: web\n", "m.yaml:1:7: kind: expected Deployment, got 'Workload'")]
    public void Each_kind_of_bad_deployment_is_reported_with_its_message_and_position(string yaml, string expected)
    {
        var errors = Errors(() => ManifestLoader.ParseDeployments(yaml, "m.yaml"));
        Assert.Contains(errors, e => e.StartsWith(expected, StringComparison.Ordinal));
        Assert.Single(errors);
    }

    [Fact]
    public void LoadFleetManifest_reads_deployment_documents_with_no_warnings()
    {
        var manifest = ManifestLoader.LoadFleetManifest("kind: Deployment\nname: web\ntemplate: {image: busybox}\n", "web.yaml");
        Assert.False(manifest.FromCompose);
        Assert.Equal("web", Assert.Single(manifest.Deployments).Name);
        Assert.Empty(manifest.Warnings);
        var e = Assert.Throws<ManifestException>(() => ManifestLoader.LoadFleetManifest("kind: Deployment\nname: web\nreplicas: x\ntemplate: {image: busybox}\n", "web.yaml"));
        Assert.Equal("web.yaml:3:11: replicas: expected an integer from 0 to 10000, got 'x'", e.Message);
    }

    [Fact]
    public void Closest_names_are_suggested_only_when_close()
    {
        string[] known = ["replicas", "selector", "template", "strategy", "spreadBy", "antiAffinity"];
        Assert.Equal("replicas", ManifestRules.Closest("replcias", known));
        Assert.Equal("antiAffinity", ManifestRules.Closest("anti_affinity", known));
        Assert.Equal("spreadBy", ManifestRules.Closest("spredBy", known));
        Assert.Null(ManifestRules.Closest("colour", known));
    }
}

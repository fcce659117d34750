using System.Globalization;
using System.Text.Json.Nodes;

namespace Orchestrator.Runtime.Tests.Privileged;

/// <summary>
/// OCI runtime spec, config.md: each MUST and SHOULD that applies to Linux, run for real through
/// the published orch-runc. Each test names the section and quotes the requirement. (Parse-only
/// requirements are in OciSpecParseTests, unprivileged.)
/// </summary>
[Trait("Category", "Privileged")]
[Collection(HostState.Collection)]
public sealed class OciConformanceConfigTests : OciHarness
{
    // config.md#root: "If true then the root filesystem MUST be read-only inside the container, defaults to false."
    [Theory(Timeout = 120_000)]
    [InlineData(true, "read-only")]
    [InlineData(false, "writable")]
    public async Task Root_readonly_MUST_make_the_root_read_only_and_defaults_to_false(bool readOnly, string expected)
    {
        using var bundle = Shell("touch /x 2>/dev/null && echo writable || echo read-only");
        bundle.Edit(s =>
        {
            if (readOnly)
            {
                s["root"]!["readonly"] = true;
            }
            else
            {
                s["root"]!.AsObject().Remove("readonly");
            }
        });
        Assert.Equal(expected, await RunOk(bundle));
    }

    // config.md#root: "A directory MUST exist at the path declared by the field."
    [Fact(Timeout = 120_000)]
    public async Task Root_path_MUST_be_an_existing_directory()
    {
        using var bundle = Shell("true");
        bundle.Edit(s => s["root"]!["path"] = "no-such-rootfs");
        Assert.Contains("root.path", await RunFails(bundle), StringComparison.Ordinal);
    }

    // config.md#root: "path is either an absolute path or a relative path to the bundle."
    [Fact(Timeout = 120_000)]
    public async Task Root_path_may_be_absolute()
    {
        using var bundle = Shell("echo ok");
        bundle.Edit(s => s["root"]!["path"] = bundle.Rootfs);
        Assert.Equal("ok", await RunOk(bundle));
    }

    // config.md#mounts: "The runtime MUST mount entries in the listed order."
    [Fact(Timeout = 120_000)]
    public async Task Mounts_MUST_be_mounted_in_the_listed_order()
    {
        using var bundle = Shell("stat -c %a /m");
        bundle.Edit(s =>
        {
            var mounts = s["mounts"]!.AsArray();
            mounts.Add(new JsonObject { ["destination"] = "/m", ["type"] = "tmpfs", ["source"] = "first", ["options"] = new JsonArray("mode=700") });
            mounts.Add(new JsonObject { ["destination"] = "/m", ["type"] = "tmpfs", ["source"] = "second", ["options"] = new JsonArray("mode=751") });
        });
        Assert.Equal("751", await RunOk(bundle)); // the later one is on top
    }

    // config.md#mounts: "Path values for bind mounts are either absolute or relative to the bundle.
    // A mount is a bind mount if it has either bind or rbind in the options."
    [Fact(Timeout = 120_000)]
    public async Task Bind_mount_source_is_relative_to_the_bundle_and_bind_in_options_makes_a_bind()
    {
        using var bundle = Shell("cat /data/hello");
        Directory.CreateDirectory(Path.Combine(bundle.Path, "vol"));
        await File.WriteAllTextAsync(Path.Combine(bundle.Path, "vol", "hello"), "from-bundle");
        bundle.Edit(s => s["mounts"]!.AsArray().Add(new JsonObject { ["destination"] = "/data", ["type"] = "none", ["source"] = "vol", ["options"] = new JsonArray("rbind", "ro") }));
        Assert.Equal("from-bundle", await RunOk(bundle));
        Assert.True(File.Exists(Path.Combine(bundle.Path, "vol", "hello")), "the bind source is not the runtime's to delete");
    }

    // config.md#mounts (1.1): "For compatibility with old tools and configs, [destination] MAY be a
    // relative path, in which case it MUST be interpreted as relative to "/"."
    [Fact(Timeout = 120_000)]
    public async Task Relative_mount_destination_MUST_be_interpreted_relative_to_root()
    {
        using var bundle = Shell("grep -c ' /relative ' /proc/self/mountinfo");
        bundle.Edit(s => s["mounts"]!.AsArray().Add(new JsonObject { ["destination"] = "relative", ["type"] = "tmpfs", ["source"] = "tmpfs" }));
        Assert.Equal("1", await RunOk(bundle));
    }

    // config.md#process: args "with similar semantics to execvp's argv ... used with the same
    // semantics as execvp's file" (PATH lookup); env "with the same semantics as environ"; cwd
    // "is the working directory that will be set for the executable".
    [Fact(Timeout = 120_000)]
    public async Task Args_are_looked_up_on_PATH_env_is_the_environment_and_cwd_is_set()
    {
        // /proc/$$/environ is the environment execve gave the shell, before the shell adds its own
        // (read by a child: a last command replaces the shell, and its environ with it).
        using var bundle = Shell("echo $0; pwd; cat /proc/$$/environ | tr '\\0' '\\n'");
        bundle.Edit(s =>
        {
            s["process"]!["env"] = new JsonArray("PATH=/usr/bin:/bin", "GREETING=hello world");
            s["process"]!["cwd"] = "/tmp";
        });
        var lines = (await RunOk(bundle)).Split('\n');
        Assert.Equal("sh", lines[0]); // argv[0] as given, the program found on PATH
        Assert.Equal("/tmp", lines[1]);
        Assert.Equal(["PATH=/usr/bin:/bin", "GREETING=hello world"], lines[2..]);
    }

    // config.md#process: "Runtimes MUST ignore consoleSize if terminal is false or unset."
    [Fact(Timeout = 120_000)]
    public async Task ConsoleSize_MUST_be_ignored_without_a_terminal()
    {
        using var bundle = Shell("test -t 0 && echo tty || echo no-tty");
        bundle.Edit(s => s["process"]!["consoleSize"] = new JsonObject { ["height"] = 10, ["width"] = 20 });
        Assert.Equal("no-tty", await RunOk(bundle));
    }

    // config.md#posix-process: "rlim.rlim_cur MUST match the configured value", "rlim.rlim_max MUST
    // match the configured value"; "For each entry in rlimits, a getrlimit(3) on type MUST succeed."
    [Fact(Timeout = 120_000)]
    public async Task Rlimits_soft_and_hard_MUST_match()
    {
        using var bundle = Shell("ulimit -Sn; ulimit -Hn; ulimit -Sc; ulimit -Hc");
        bundle.Edit(s => s["process"]!["rlimits"] = new JsonArray(
            new JsonObject { ["type"] = "RLIMIT_NOFILE", ["soft"] = 100, ["hard"] = 200 },
            new JsonObject { ["type"] = "RLIMIT_CORE", ["soft"] = 1024, ["hard"] = 2048 }));
        // busybox reports RLIMIT_CORE in 512-byte blocks.
        Assert.Equal(["100", "200", "2", "4"], (await RunOk(bundle)).Split('\n'));
    }

    // config.md#linux-process: capabilities "effective / bounding / inheritable / permitted /
    // ambient ... capabilities that are kept for the process". Compared with runc on the same bundle.
    [Fact(Timeout = 120_000)]
    public async Task All_five_capability_sets_are_kept_as_runc_keeps_them()
    {
        using var bundle = Shell("grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status");
        bundle.Edit(s =>
        {
            s["process"]!["user"] = new JsonObject { ["uid"] = 1000, ["gid"] = 1000 };
            s["process"]!["capabilities"] = new JsonObject
            {
                ["bounding"] = new JsonArray("CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"),
                ["effective"] = new JsonArray("CAP_KILL", "CAP_NET_BIND_SERVICE"),
                ["permitted"] = new JsonArray("CAP_KILL", "CAP_NET_BIND_SERVICE"),
                ["inheritable"] = new JsonArray("CAP_NET_BIND_SERVICE"),
                ["ambient"] = new JsonArray("CAP_NET_BIND_SERVICE"),
            };
        });
        var ours = StatusFields(await RunOk(bundle));
        Assert.Equal("0000000000000400", ours["CapInh"]);
        Assert.Equal("0000000000000400", ours["CapAmb"]);
        Assert.Equal("0000000000000400", ours["CapPrm"]); // a non-root execve keeps the ambient set
        Assert.Equal("0000000000000400", ours["CapEff"]);
        Assert.Equal("0000000000000421", ours["CapBnd"]);
        var (code, reference, stderr) = await ReferenceRunc("run", "--bundle", bundle.Path, "caps-ref");
        Assert.True(code == 0, stderr);
        Assert.Equal(StatusFields(reference), ours);
    }

    // config.md#linux-process: "noNewPrivileges (bool, OPTIONAL) setting noNewPrivileges to true
    // prevents the process from gaining additional privileges."
    [Theory(Timeout = 120_000)]
    [InlineData(true, "1")]
    [InlineData(false, "0")]
    public async Task NoNewPrivileges_sets_no_new_privs(bool value, string expected)
    {
        using var bundle = Shell("grep NoNewPrivs /proc/self/status | cut -f2");
        bundle.Edit(s => s["process"]!["noNewPrivileges"] = value);
        Assert.Equal(expected, await RunOk(bundle));
    }

    // config.md#linux-process: "If oomScoreAdj is set, the runtime MUST set oom_score_adj to the
    // given value. If oomScoreAdj is not set, the runtime MUST NOT change the value of oom_score_adj."
    [Fact(Timeout = 120_000)]
    public async Task OomScoreAdj_MUST_be_set_when_given_and_left_alone_when_not()
    {
        using var set = Shell("cat /proc/self/oom_score_adj");
        set.Edit(s => s["process"]!["oomScoreAdj"] = 123);
        Assert.Equal("123", await RunOk(set, "oom-set"));

        using var unset = Shell("cat /proc/self/oom_score_adj");
        var ours = (await File.ReadAllTextAsync("/proc/self/oom_score_adj")).Trim(); // orch-runc inherits it from us
        Assert.Equal(ours, await RunOk(unset, "oom-unset"));
    }

    // config.md#posix-platform-user: uid, gid "in the container namespace", additionalGids "to be added to the process".
    [Fact(Timeout = 120_000)]
    public async Task User_uid_gid_and_additional_gids_are_the_process_s()
    {
        using var bundle = Shell("id");
        bundle.Edit(s => s["process"]!["user"] = new JsonObject { ["uid"] = 1234, ["gid"] = 4321, ["additionalGids"] = new JsonArray(7, 8) });
        Assert.Equal("uid=1234 gid=4321 groups=7,8", await RunOk(bundle));
    }

    // config.md#hostname / #domainname (1.1): "the container's hostname [domainname] as seen by processes running inside the container".
    [Fact(Timeout = 120_000)]
    public async Task Hostname_and_domainname_are_set_in_the_container_s_uts_namespace()
    {
        var hostName = System.Net.Dns.GetHostName();
        using var bundle = Shell("hostname; cat /proc/sys/kernel/domainname");
        bundle.Edit(s =>
        {
            s["hostname"] = "box";
            s["domainname"] = "example.test";
        });
        Assert.Equal(["box", "example.test"], (await RunOk(bundle)).Split('\n'));
        Assert.Equal(hostName, System.Net.Dns.GetHostName());
    }

    // config.md#posix-platform-hooks: "Hooks MUST be called in the listed order."; "Hooks MUST be
    // executed in the runtime namespace."; path "Runtimes MUST resolve this value in the runtime
    // namespace"; args "with the same semantics as execv's argv" (args[0] is argv[0], which
    // docker's network hook relies on); env "with the same semantics as environ".
    [Fact(Timeout = 120_000)]
    public async Task Hooks_run_in_order_in_the_runtime_namespace_with_argv_and_env_verbatim()
    {
        using var bundle = Shell("true");
        using var host = new TempDir("hook-bin");
        var log = host.Combine("log");
        // `sh -c` makes $0 its own argv[0]; /proc/$$/environ is exactly what execve passed.
        JsonObject Hook(string argv0, string phase) => new()
        {
            ["path"] = "/bin/sh",
            ["args"] = new JsonArray(argv0, "-c", $"echo \"$0 {phase} $(readlink /proc/self/ns/mnt) $(tr '\\0' ' ' < /proc/$$/environ)\" >> {log}"),
            ["env"] = new JsonArray("ONLY=this"),
        };
        // A program that exists only on the host, not in the rootfs: resolved in the runtime namespace.
        var script = host.Combine("host-only-hook");
        await File.WriteAllTextAsync(script, $"#!/bin/sh\necho host-only >> {log}\n");
        File.SetUnixFileMode(script, (UnixFileMode)0x1ED);
        bundle.Edit(s => s["hooks"] = new JsonObject
        {
            ["prestart"] = new JsonArray(Hook("first", "prestart")),
            ["createRuntime"] = new JsonArray(Hook("second", "createRuntime"), new JsonObject { ["path"] = script }, Hook("third", "createRuntime")),
            ["poststart"] = new JsonArray(Hook("fourth", "poststart")),
            ["poststop"] = new JsonArray(Hook("fifth", "poststop")),
        });
        await RunOk(bundle);
        var lines = (await File.ReadAllLinesAsync(log)).Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)).ToArray();
        Assert.Equal(["first", "second", "host-only", "third", "fourth", "fifth"], lines.Select(l => l[0]));
        var phases = lines.Where(l => l.Length > 1).ToArray();
        Assert.Equal(["prestart", "createRuntime", "createRuntime", "poststart", "poststop"], phases.Select(l => l[1]));
        Assert.All(phases, l => Assert.Equal(HostNs("mnt"), l[2]));
        Assert.All(phases, l => Assert.Equal(["ONLY=this"], l[3..]));
    }

    // config.md#posix-platform-hooks: "The state of the container MUST be passed to hooks over stdin";
    // prestart "called after the container namespaces are created".
    [Fact(Timeout = 120_000)]
    public async Task Prestart_hooks_get_the_state_on_stdin_after_the_namespaces_exist()
    {
        using var bundle = Shell("true");
        using var host = new TempDir("hook-out");
        var output = host.Combine("out");
        bundle.Edit(s => s["hooks"] = new JsonObject
        {
            ["prestart"] = new JsonArray(new JsonObject
            {
                ["path"] = "/bin/sh",
                ["args"] = new JsonArray("sh", "-c", $"state=$(tr -d '\\n'); pid=$(echo \"$state\" | sed 's/.*\"pid\": *\\([0-9]*\\).*/\\1/'); echo \"$state\" > {output}; readlink /proc/$pid/ns/net >> {output}"),
            }),
        });
        await RunOk(bundle, "prestate");
        var lines = await File.ReadAllLinesAsync(output);
        var state = JsonNode.Parse(lines[0])!;
        Assert.Equal("prestate", (string?)state["id"]);
        Assert.Equal(bundle.Path, (string?)state["bundle"]);
        Assert.NotEqual(HostNs("net"), lines[1]); // the container's own network namespace exists already
    }

    // config.md#createcontainer-hooks: "called ... after the createRuntime hooks ... executed in the
    // container namespace ... before the pivot_root operation"; config.md#startcontainer-hooks:
    // "called before the user-specified process is executed as part of the start operation ...
    // executed in the container namespace" (so, on the container's root).
    [Fact(Timeout = 120_000)]
    public async Task CreateContainer_and_startContainer_hooks_run_in_the_container_at_their_points()
    {
        using var bundle = OciBundle.CreateBusybox("sleep", "30");
        using var host = new TempDir("hook-out");
        File.SetUnixFileMode(host.Path, (UnixFileMode)0x1FF);
        var createLog = host.Combine("create");
        bundle.Edit(s =>
        {
            s["root"]!["readonly"] = false;
            s["hooks"] = new JsonObject
            {
                // Before pivot_root the host's paths still resolve: it can write to the host dir.
                ["createContainer"] = new JsonArray(new JsonObject { ["path"] = "/bin/sh", ["args"] = new JsonArray("sh", "-c", $"readlink /proc/self/ns/mnt > {createLog}") }),
                // After start, inside the container's root: the rootfs's /tmp.
                ["startContainer"] = new JsonArray(new JsonObject { ["path"] = "/bin/sh", ["args"] = new JsonArray("sh", "-c", "readlink /proc/self/ns/mnt > /tmp/start-hook") }),
            };
        });
        Assert.Equal(0, (await Runc("create", "--bundle", bundle.Path, "cc")).Code);
        var containerMnt = (await File.ReadAllTextAsync(createLog)).Trim();
        Assert.NotEqual(HostNs("mnt"), containerMnt);
        var startLog = Path.Combine(bundle.Rootfs, "tmp", "start-hook");
        Assert.False(File.Exists(startLog), "startContainer ran at create");
        Assert.Equal(0, (await Runc("start", "cc")).Code);
        Assert.Equal(containerMnt, await WaitForFile(startLog));
        Assert.Equal(0, (await Runc("delete", "--force", "cc")).Code);
    }

    // config.md#poststart: "The post-start hooks MUST be called after the user-specified process is
    // executed but before the start operation returns."
    [Fact(Timeout = 120_000)]
    public async Task Poststart_hooks_run_after_the_program_was_executed()
    {
        using var bundle = OciBundle.CreateBusybox("sleep", "30");
        using var host = new TempDir("hook-out");
        var output = host.Combine("cmdline");
        bundle.Edit(s => s["hooks"] = new JsonObject
        {
            ["poststart"] = new JsonArray(new JsonObject
            {
                ["path"] = "/bin/sh",
                ["args"] = new JsonArray("sh", "-c", $"pid=$(tr -d '\\n' | sed 's/.*\"pid\": *\\([0-9]*\\).*/\\1/'); tr '\\0' ' ' < /proc/$pid/cmdline > {output}"),
            }),
        });
        Assert.Equal(0, (await Runc("create", "--bundle", bundle.Path, "ps1")).Code);
        Assert.False(File.Exists(output));
        Assert.Equal(0, (await Runc("start", "ps1")).Code);
        Assert.Equal("sleep 30", (await File.ReadAllTextAsync(output)).Trim()); // written before start returned
        Assert.Equal(0, (await Runc("delete", "--force", "ps1")).Code);
    }

    // config.md#posix-platform-hooks: timeout "is the number of seconds before aborting the hook."
    [Fact(Timeout = 120_000)]
    public async Task A_hook_past_its_timeout_is_aborted()
    {
        using var bundle = Shell("echo should-not-run");
        bundle.Edit(s => s["hooks"] = new JsonObject { ["createRuntime"] = new JsonArray(new JsonObject { ["path"] = "/bin/sleep", ["args"] = new JsonArray("sleep", "30"), ["timeout"] = 1 }) });
        var started = System.Diagnostics.Stopwatch.StartNew();
        var stderr = await RunFails(bundle);
        Assert.Contains("did not finish within 1 s", stderr, StringComparison.Ordinal);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(20), started.Elapsed.ToString());
    }

    // config.md#annotations: "Implementations that are reading/processing this configuration file
    // MUST NOT generate an error if they encounter an unknown annotation key."
    [Fact(Timeout = 120_000)]
    public async Task Unknown_annotation_keys_are_no_error_and_reach_the_state()
    {
        using var bundle = OciBundle.CreateBusybox("sleep", "30");
        bundle.Edit(s => s["annotations"] = new JsonObject { ["com.example.unknown"] = "x", ["org.opencontainers.whatever"] = "" });
        Assert.Equal(0, (await Runc("create", "--bundle", bundle.Path, "ann")).Code);
        var state = JsonNode.Parse((await Runc("state", "ann")).Stdout)!;
        Assert.Equal("x", (string?)state["annotations"]!["com.example.unknown"]);
        Assert.Equal(0, (await Runc("delete", "--force", "ann")).Code);
    }

    // config.md#extensibility: "Runtimes that are reading or processing this configuration file MUST
    // NOT generate an error if they encounter an unknown property. Instead they MUST ignore unknown
    // properties." (issue #16 class 7)
    [Fact(Timeout = 120_000)]
    public async Task Unknown_properties_MUST_be_ignored_at_every_level()
    {
        using var bundle = Shell("echo ran");
        bundle.Edit(s =>
        {
            s["futureTopLevel"] = new JsonObject { ["x"] = 1 };
            s["process"]!["futureProcessField"] = true;
            s["root"]!["futureRootField"] = "y";
            s["mounts"]![0]!["futureMountField"] = 3;
            s["linux"]!["futureLinuxField"] = new JsonArray(1, 2);
            s["linux"]!["resources"]!["futureController"] = new JsonObject { ["limit"] = 5 };
            s["linux"]!["namespaces"]![0]!["futureNamespaceField"] = "z";
        });
        Assert.Equal("ran", await RunOk(bundle));
    }

    // config.md#valid-values: "Runtimes that are reading or processing this configuration file MUST
    // generate an error when invalid or unsupported values are encountered."
    [Fact(Timeout = 120_000)]
    public async Task Unsupported_values_MUST_be_an_error()
    {
        using var bundle = Shell("true");
        bundle.Edit(s => s["linux"]!["namespaces"]!.AsArray().Add(new JsonObject { ["type"] = "sideways" }));
        Assert.Contains("'sideways' is not a namespace type", await RunFails(bundle), StringComparison.Ordinal);
    }

    // config.md#specification-version: ociVersion "MUST be in SemVer v2.0.0 format".
    [Fact(Timeout = 120_000)]
    public async Task OciVersion_that_is_not_semver_is_an_error()
    {
        using var bundle = Shell("true");
        bundle.Edit(s => s["ociVersion"] = "1.0");
        Assert.Contains("ociVersion", await RunFails(bundle), StringComparison.Ordinal);
    }

    internal static string Int(int value) => value.ToString(CultureInfo.InvariantCulture);
}

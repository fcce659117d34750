using System.Text.Json.Nodes;

namespace Orchestrator.Runtime.Tests.Privileged;

/// <summary>
/// OCI runtime spec, runtime.md (state, lifecycle, errors, warnings, operations): each MUST and
/// SHOULD, through the published orch-runc.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(HostState.Collection)]
public sealed class OciConformanceRuntimeTests : OciHarness
{
    private async Task<JsonNode> State(string id)
    {
        var (code, stdout, stderr) = await Runc("state", id);
        Assert.True(code == 0, stderr);
        return JsonNode.Parse(stdout)!;
    }

    // runtime.md#state: ociVersion, id, status, pid ("REQUIRED when status is created or running on
    // Linux"), bundle ("the absolute path to the container's bundle directory"), annotations;
    // runtime.md#query-state: "This operation MUST generate an error if it is not provided the ID of a container."
    [Fact(Timeout = 120_000)]
    public async Task State_has_the_required_fields_through_the_lifecycle()
    {
        using var bundle = OciBundle.CreateBusybox("sleep", "30");
        bundle.Edit(s => s["annotations"] = new JsonObject { ["com.example.a"] = "b" });
        Assert.Equal(0, (await Runc("create", "--bundle", bundle.Path, "st")).Code);
        var created = await State("st");
        Assert.Matches(@"^1\.\d+\.\d+", (string?)created["ociVersion"]);
        Assert.Equal("st", (string?)created["id"]);
        Assert.Equal("created", (string?)created["status"]);
        Assert.True((int)created["pid"]! > 0);
        Assert.Equal(bundle.Path, (string?)created["bundle"]);
        Assert.True(Path.IsPathRooted((string?)created["bundle"]));
        Assert.Equal("b", (string?)created["annotations"]!["com.example.a"]);

        Assert.Equal(0, (await Runc("start", "st")).Code);
        var running = await State("st");
        Assert.Equal("running", (string?)running["status"]);
        Assert.Equal((int)created["pid"]!, (int)running["pid"]!);

        Assert.Equal(0, (await Runc("kill", "st", "KILL")).Code);
        for (var i = 0; i < 100 && (string?)(await State("st"))["status"] != "stopped"; i++)
        {
            await Task.Delay(50);
        }
        Assert.Equal("stopped", (string?)(await State("st"))["status"]);
        Assert.Equal(0, (await Runc("delete", "st")).Code);
        Assert.NotEqual(0, (await Runc("state", "st")).Code);
    }

    // runtime.md#create: "This operation MUST generate an error if it is not provided a path to the
    // bundle and the container ID to associate with the container. If the ID provided is not unique
    // across all containers within the scope of the runtime, or is not valid in any other way, the
    // implementation MUST generate an error and a new container MUST NOT be created."
    [Fact(Timeout = 120_000)]
    public async Task Create_with_an_id_in_use_MUST_fail_and_create_nothing()
    {
        using var bundle = OciBundle.CreateBusybox("sleep", "30");
        Assert.Equal(0, (await Runc("create", "--bundle", bundle.Path, "dup")).Code);
        var pid = (int)(await State("dup"))["pid"]!;
        var (code, _, stderr) = await Runc("create", "--bundle", bundle.Path, "dup");
        Assert.NotEqual(0, code);
        Assert.Contains("already exists", stderr, StringComparison.Ordinal);
        Assert.Equal(pid, (int)(await State("dup"))["pid"]!); // the first one untouched
        Assert.NotEqual(0, (await Runc("create", "--bundle", bundle.Path, "bad/id")).Code);
        Assert.Equal(0, (await Runc("delete", "--force", "dup")).Code);
    }

    // runtime.md#create: "the user-specified program (from process) MUST NOT be run at this time";
    // "Any updates to config.json after this operation MUST NOT have an effect on the container."
    // runtime.md#start: "This operation MUST run the user-specified program as specified by process."
    [Fact(Timeout = 120_000)]
    public async Task Create_does_not_run_the_program_and_later_config_changes_have_no_effect()
    {
        using var bundle = Shell("echo ran > /tmp/marker; sleep 30");
        using var host = new TempDir("hook-out");
        var poststart = host.Combine("poststart");
        bundle.Edit(s =>
        {
            s["root"]!["readonly"] = false;
            s["hooks"] = new JsonObject { ["poststart"] = new JsonArray(new JsonObject { ["path"] = "/bin/sh", ["args"] = new JsonArray("sh", "-c", $"echo original > {poststart}") }) };
        });
        var marker = Path.Combine(bundle.Rootfs, "tmp", "marker");
        Assert.Equal(0, (await Runc("create", "--bundle", bundle.Path, "cr")).Code);
        await Task.Delay(300);
        Assert.False(File.Exists(marker), "the program ran at create");
        bundle.Edit(s =>
        {
            s["process"]!["args"] = new JsonArray("sh", "-c", "echo changed > /tmp/marker; sleep 30");
            s["hooks"]!["poststart"]![0]!["args"] = new JsonArray("sh", "-c", $"echo changed > {poststart}");
        });
        Assert.Equal(0, (await Runc("start", "cr")).Code);
        Assert.Equal("ran", await WaitForFile(marker));
        Assert.Equal("original", (await File.ReadAllTextAsync(poststart)).Trim());
        Assert.Equal(0, (await Runc("delete", "--force", "cr")).Code);
    }

    // runtime.md#start: "Attempting to start a container that is not created MUST have no effect on
    // the container and MUST generate an error."
    [Fact(Timeout = 120_000)]
    public async Task Start_of_a_container_that_is_not_created_MUST_fail()
    {
        using var bundle = OciBundle.CreateBusybox("sleep", "30");
        Assert.Equal(0, (await Runc("create", "--bundle", bundle.Path, "st2")).Code);
        Assert.Equal(0, (await Runc("start", "st2")).Code);
        var pid = (int)(await State("st2"))["pid"]!;
        Assert.NotEqual(0, (await Runc("start", "st2")).Code);
        Assert.Equal("running", (string?)(await State("st2"))["status"]);
        Assert.Equal(pid, (int)(await State("st2"))["pid"]!);
        Assert.NotEqual(0, (await Runc("start", "never-created")).Code);
        Assert.Equal(0, (await Runc("delete", "--force", "st2")).Code);
    }

    // runtime.md#start with config.md#posix-platform-user (issue #16 class 2): create then start for
    // a process that is not root and has no capabilities, or runs in a user namespace. The child
    // opened a root-owned path to wait on; now it inherits what it waits on, and start works.
    [Theory(Timeout = 120_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Create_then_start_works_for_an_unprivileged_process_and_in_a_user_namespace(bool userNamespace)
    {
        using var bundle = Shell("id -u > /out/id; sleep 30");
        File.SetUnixFileMode(bundle.Path, (UnixFileMode)0x1ED);
        using var output = new TempDir("start-out");
        File.SetUnixFileMode(output.Path, (UnixFileMode)0x1FF);
        bundle.Edit(s =>
        {
            s["mounts"]!.AsArray().Add(new JsonObject { ["destination"] = "/out", ["type"] = "bind", ["source"] = output.Path, ["options"] = new JsonArray("rbind", "rw") });
            if (userNamespace)
            {
                s["linux"]!["namespaces"]!.AsArray().Add(new JsonObject { ["type"] = "user" });
                s["linux"]!["uidMappings"] = new JsonArray(new JsonObject { ["containerID"] = 0, ["hostID"] = 100000, ["size"] = 65536 });
                s["linux"]!["gidMappings"] = new JsonArray(new JsonObject { ["containerID"] = 0, ["hostID"] = 100000, ["size"] = 65536 });
            }
            else
            {
                s["process"]!["user"] = new JsonObject { ["uid"] = 1000, ["gid"] = 1000 };
                s["process"]!["capabilities"] = new JsonObject();
            }
        });
        Assert.Equal(0, (await Runc("create", "--bundle", bundle.Path, "unpriv")).Code);
        var (code, _, stderr) = await Runc("start", "unpriv");
        Assert.True(code == 0, stderr);
        Assert.Equal(userNamespace ? "0" : "1000", await WaitForFile(Path.Combine(output.Path, "id")));
        Assert.Equal("running", (string?)(await State("unpriv"))["status"]);
        Assert.Equal(0, (await Runc("delete", "--force", "unpriv")).Code);
    }

    // runtime.md#kill: "Attempting to send a signal to a container that is neither created nor
    // running MUST have no effect on the container and MUST generate an error. This operation MUST
    // send the specified signal to the container process."
    [Fact(Timeout = 120_000)]
    public async Task Kill_signals_a_created_container_and_fails_on_a_stopped_one()
    {
        using var bundle = OciBundle.CreateBusybox("sleep", "30");
        Assert.Equal(0, (await Runc("create", "--bundle", bundle.Path, "k")).Code);
        var pid = (int)(await State("k"))["pid"]!;
        Assert.Equal(0, (await Runc("kill", "k", "9")).Code);
        for (var i = 0; i < 100 && (string?)(await State("k"))["status"] != "stopped"; i++)
        {
            await Task.Delay(50);
        }
        Assert.Equal("stopped", (string?)(await State("k"))["status"]);
        Assert.False(Directory.Exists($"/proc/{pid}") && !File.ReadAllText($"/proc/{pid}/stat").Contains(") Z ", StringComparison.Ordinal));
        Assert.NotEqual(0, (await Runc("kill", "k", "9")).Code);
        Assert.Equal(0, (await Runc("delete", "k")).Code);
    }

    // runtime.md#delete: "Attempting to delete a container that is not stopped MUST have no effect on
    // the container and MUST generate an error. Deleting a container MUST delete the resources that
    // were created during the create step. Note that resources associated with the container, but
    // not created by this container, MUST NOT be deleted."
    [Fact(Timeout = 120_000)]
    public async Task Delete_refuses_a_running_container_and_removes_only_what_create_made()
    {
        using var bundle = OciBundle.CreateBusybox("sleep", "30");
        using var volume = new TempDir("volume");
        await File.WriteAllTextAsync(volume.Combine("keep"), "x");
        bundle.Edit(s => s["mounts"]!.AsArray().Add(new JsonObject { ["destination"] = "/vol", ["type"] = "bind", ["source"] = volume.Path, ["options"] = new JsonArray("rbind") }));
        Assert.Equal(0, (await Runc("run", "-d", "--bundle", bundle.Path, "del")).Code);
        Assert.NotEqual(0, (await Runc("delete", "del")).Code);
        Assert.Equal("running", (string?)(await State("del"))["status"]);
        Assert.True(Directory.Exists("/sys/fs/cgroup/pids/orchestrator/del"));

        Assert.Equal(0, (await Runc("kill", "del", "KILL")).Code);
        for (var i = 0; i < 100 && (string?)(await State("del"))["status"] != "stopped"; i++)
        {
            await Task.Delay(50);
        }
        Assert.Equal(0, (await Runc("delete", "del")).Code);
        Assert.False(Directory.Exists("/sys/fs/cgroup/pids/orchestrator/del"));
        Assert.False(Directory.Exists(Path.Combine(StateRoot, "del")));
        Assert.True(File.Exists(volume.Combine("keep")));
        Assert.True(Directory.Exists(bundle.Rootfs));
    }

    // runtime.md#lifecycle: "If any prestart [createRuntime, createContainer] hook fails, the runtime
    // MUST generate an error, stop the container, and continue the lifecycle at step 12" (destroy,
    // then step 13: "The poststop hooks MUST be invoked by the runtime.").
    [Fact(Timeout = 120_000)]
    public async Task A_failing_creation_hook_is_an_error_and_the_lifecycle_continues_to_poststop()
    {
        using var bundle = Shell("echo should-not-run");
        using var host = new TempDir("hook-out");
        var poststop = host.Combine("poststop");
        bundle.Edit(s => s["hooks"] = new JsonObject
        {
            ["createRuntime"] = new JsonArray(new JsonObject { ["path"] = "/bin/false" }),
            ["poststop"] = new JsonArray(new JsonObject { ["path"] = "/bin/sh", ["args"] = new JsonArray("sh", "-c", $"cat > {poststop}") }),
        });
        var stderr = await RunFails(bundle, "hookfail");
        Assert.Contains("hooks.createRuntime: '/bin/false' exited with 1", stderr, StringComparison.Ordinal);
        Assert.Equal("stopped", (string?)JsonNode.Parse(await File.ReadAllTextAsync(poststop))!["status"]);
        Assert.False(Directory.Exists("/sys/fs/cgroup/pids/orchestrator/hookfail"));
    }

    // runtime.md#lifecycle: poststart "If any poststart hook fails, the runtime MUST log a warning,
    // but the remaining hooks and lifecycle continue as if the hook had succeeded"; the same for
    // poststop (issue #16 class 5: the remaining hooks were skipped).
    [Fact(Timeout = 120_000)]
    public async Task A_failing_poststart_or_poststop_hook_is_a_warning_and_the_remaining_hooks_run()
    {
        using var bundle = Shell("echo ran");
        using var host = new TempDir("hook-out");
        var log = host.Combine("log");
        JsonObject Append(string text) => new() { ["path"] = "/bin/sh", ["args"] = new JsonArray("sh", "-c", $"echo {text} >> {log}") };
        JsonObject Fail() => new() { ["path"] = "/bin/sh", ["args"] = new JsonArray("sh", "-c", "echo hook-said-no >&2; exit 3") };
        bundle.Edit(s => s["hooks"] = new JsonObject
        {
            ["poststart"] = new JsonArray(Fail(), Append("poststart-2")),
            ["poststop"] = new JsonArray(Append("poststop-1"), Fail(), Append("poststop-3")),
        });
        var (code, stdout, stderr) = await Runc("run", "--bundle", bundle.Path, "warn");
        Assert.True(code == 0, stderr);
        Assert.Equal("ran", stdout);
        Assert.Equal(["poststart-2", "poststop-1", "poststop-3"], await File.ReadAllLinesAsync(log));
        var warnings = stderr.Split('\n').Where(l => l.StartsWith("warning: ", StringComparison.Ordinal)).ToArray();
        Assert.Equal(2, warnings.Length);
        Assert.Contains("hooks.poststart: '/bin/sh' exited with 3: hook-said-no", warnings[0], StringComparison.Ordinal);
        Assert.Contains("hooks.poststop: '/bin/sh' exited with 3: hook-said-no", warnings[1], StringComparison.Ordinal);
    }

    // runtime.md#errors: "When a runtime encounters an error, it MUST ... If an operation was not
    // successful, the state of the environment MUST be as if the operation was never attempted
    // (modulo possible trivial ancillary changes such as logging)."
    [Fact(Timeout = 120_000)]
    public async Task A_failed_create_leaves_the_environment_as_it_was()
    {
        using var bundle = Shell("true");
        bundle.Edit(s => s["mounts"]!.AsArray().Add(new JsonObject { ["destination"] = "/x", ["type"] = "nosuchfs", ["source"] = "none" }));
        int OurMounts() => File.ReadAllLines("/proc/self/mountinfo").Count(l => l.Contains(bundle.Path, StringComparison.Ordinal));
        var before = OurMounts();
        var (code, _, _) = await Runc("create", "--bundle", bundle.Path, "failed");
        Assert.NotEqual(0, code);
        Assert.Empty(Directory.GetDirectories(StateRoot));
        Assert.False(Directory.Exists("/sys/fs/cgroup/pids/orchestrator/failed"));
        Assert.Equal(before, OurMounts());
    }

    // runtime.md#operations: "Unless otherwise stated, runtimes MUST support the following
    // operations": state, create, start, kill, delete (each above), and features.md's features.
    [Fact(Timeout = 120_000)]
    public async Task Features_lists_what_is_implemented()
    {
        var (code, stdout, stderr) = await Runc("features");
        Assert.True(code == 0, stderr);
        var features = JsonNode.Parse(stdout)!;
        Assert.Equal(["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"], features["hooks"]!.AsArray().Select(h => (string?)h));
        Assert.Contains("user", features["linux"]!["namespaces"]!.AsArray().Select(n => (string?)n));
        Assert.Equal(1, features["linux"]!["namespaces"]!.AsArray().Count(n => (string?)n == "user"));
    }
}

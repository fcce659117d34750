using System.Formats.Tar;
using System.Security.Cryptography;
using System.Text;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Daemon.Tests.Node;

/// <summary>
/// orchctl cp against a real orchd and real containers (both backends): files, directories,
/// symlinks, modes and a multi-frame file both ways, docker cp's rules for where a copy lands,
/// owners (root's by default, kept with -a), tar on stdin and stdout; and what a hostile container
/// or archive tries: symlinks out of the container's root, "..", a symlink to write through, a
/// stream that is not tar. Each refusal is one sentence, and the container goes on running.
/// </summary>
[Trait("Category", "Privileged")]
[Collection(NodeTests.Collection)]
public sealed class CopyTests
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);

    private static async Task<NodeHost> StartWithBoxAsync(string runtime)
    {
        var node = await NodeHost.StartAsync(runtime: runtime);
        await node.Client.RunAsync(NodeHost.Sh("box", "exec sleep 100000", w =>
        {
            w.Volumes = [new Volume { Name = "data", Target = "/data" }];
            w.StopGracePeriodSeconds = 0;
        }));
        await node.WaitForAsync("box", c => c.State == ContainerState.Running, s_wait, "running");
        return node;
    }

    private static async Task<Orchctl.Result> Cp(NodeHost node, params string[] args)
    {
        var result = await Orchctl.RunAsync(["--server", node.Nats!.Url, "-n", node.NodeName, "cp", .. args], null);
        if (Environment.GetEnvironmentVariable("ORCH_DEBUG_CP") is { } dump)
        {
            File.AppendAllText(dump, $"$ cp {string.Join(' ', args)} -> {result.Code}\n{result.All}\n--- orchd:\n{node.Daemon.Output}\n");
        }
        return result;
    }

    private static async Task<string> Sh(NodeHost node, string script)
    {
        var exec = await node.Client.ExecAsync("box", ["sh", "-c", script]);
        Assert.True(exec.ExitCode == 0, $"{script}: exit {exec.ExitCode}\n{exec.Stdout}{exec.Stderr}");
        return exec.Stdout;
    }

    private static string Sha256(byte[] data) => Convert.ToHexStringLower(SHA256.HashData(data));

    [Theory(Timeout = 180_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task Files_directories_and_links_go_in_and_come_out_as_they_were(string runtime)
    {
        await using var node = await StartWithBoxAsync(runtime);
        var src = node.Dir.Combine("src");
        Directory.CreateDirectory(Path.Combine(src, "sub"));
        File.WriteAllText(Path.Combine(src, "a.txt"), "hello\n");
        var big = RandomNumberGenerator.GetBytes(3 * 1024 * 1024 + 17); // several 512 KiB frames, and a ragged end
        File.WriteAllBytes(Path.Combine(src, "big.bin"), big);
        File.WriteAllText(Path.Combine(src, "sub", "deep.sh"), "#!/bin/sh\necho deep\n");
        File.SetUnixFileMode(Path.Combine(src, "sub", "deep.sh"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute);
        File.WriteAllBytes(Path.Combine(src, "empty"), []);
        File.CreateSymbolicLink(Path.Combine(src, "link"), "a.txt");
        Assert.Equal(0, Orchestrator.Linux.Libc.lchown(Path.Combine(src, "a.txt"), 1234, 4321));

        // In: a directory into an existing directory (the volume, a mount of its own in the container).
        var into = await Cp(node, src, "box:/data");
        Assert.True(into.Code == 0, into.All);
        Assert.Matches(@"^copied .*/src to box:/data \(7 entries, 3\.0Mi\)\n$", into.Out);
        Assert.Equal($"{Sha256(big)}  big.bin\n", await Sh(node, "cd /data/src && sha256sum big.bin"));
        Assert.Equal("0:0:750 deep\n", await Sh(node, "stat -c %u:%g:%a /data/src/sub/deep.sh | tr -d '\\n'; echo -n ' '; /data/src/sub/deep.sh"));
        Assert.Equal("a.txt\n0\n", await Sh(node, "readlink /data/src/link; stat -c %s /data/src/empty"));
        Assert.Equal("0:0\n", await Sh(node, "stat -c %u:%g /data/src/a.txt"));

        // -a keeps the owners; a file onto a path that is not a directory takes that name.
        Assert.Equal(0, (await Cp(node, "-a", Path.Combine(src, "a.txt"), "box:/tmp/kept.txt")).Code);
        Assert.Equal("1234:4321 hello\n", await Sh(node, "echo -n $(stat -c %u:%g /tmp/kept.txt)' '; cat /tmp/kept.txt"));

        // Out: the directory under a new name, byte for byte, modes and the link as they were.
        var back = node.Dir.Combine("back");
        var outOf = await Cp(node, "box:/data/src", back);
        Assert.True(outOf.Code == 0, outOf.All);
        Assert.Equal($"copied box:/data/src to {back} (7 entries, 3.0Mi)\n", outOf.Out);
        Assert.Equal(big, File.ReadAllBytes(Path.Combine(back, "big.bin")));
        Assert.Equal("hello\n", File.ReadAllText(Path.Combine(back, "a.txt")));
        Assert.Equal("a.txt", new FileInfo(Path.Combine(back, "link")).LinkTarget);
        Assert.Equal(File.GetUnixFileMode(Path.Combine(src, "sub", "deep.sh")), File.GetUnixFileMode(Path.Combine(back, "sub", "deep.sh")));
        Assert.Empty(File.ReadAllBytes(Path.Combine(back, "empty")));
        // Into an existing directory: under its own name there.
        Assert.Equal(0, (await Cp(node, "box:/etc/hostname", back)).Code);
        Assert.Equal((await Sh(node, "cat /etc/hostname")), File.ReadAllText(Path.Combine(back, "hostname")));

        // tar on stdout and stdin, as docker cp and kubectl habits have it.
        var tar = await Orchctl.RunAsync(["--server", node.Nats!.Url, "cp", "box:/data/src/a.txt", "-"], null);
        Assert.Equal(0, tar.Code);
        Assert.Contains("a.txt", tar.Out, StringComparison.Ordinal);
        Assert.Contains("hello\n", tar.Out, StringComparison.Ordinal);
        var piped = await Orchctl.RunAsync(["--server", node.Nats.Url, "cp", "-", "box:/tmp"], null, stdin: AsciiTar(("note.txt", "from stdin\n", null)));
        Assert.True(piped.Code == 0, piped.All);
        Assert.Equal("from stdin\n", await Sh(node, "cat /tmp/note.txt"));
    }

    [Theory(Timeout = 180_000)]
    [MemberData(nameof(NodeHost.Runtimes), MemberType = typeof(NodeHost))]
    public async Task A_hostile_container_or_archive_cannot_reach_the_host_and_each_refusal_says_why(string runtime)
    {
        await using var node = await StartWithBoxAsync(runtime);
        var marker = $"orch-cp-{Guid.NewGuid():N}";
        await Sh(node, "ln -s / /tmp/evil && ln -s /etc /tmp/etclink && ln -s ../../../../.. /tmp/up");
        var file = node.Dir.Combine("marker.txt");
        File.WriteAllText(file, "inside\n");

        // The container's symlinks resolve in its own root: "/" and "../.." end there, never on the host.
        Assert.Equal(0, (await Cp(node, file, $"box:/tmp/evil/{marker}")).Code);
        Assert.Equal(0, (await Cp(node, file, $"box:/tmp/up/{marker}-up")).Code);
        Assert.False(File.Exists($"/{marker}"), "cp wrote to the host's root through the container's symlink");
        Assert.False(File.Exists($"/{marker}-up"), "cp wrote to the host's root through ../..");
        Assert.Equal("inside\ninside\n", await Sh(node, $"cat /{marker} /{marker}-up"));
        var hostname = node.Dir.Combine("hostname");
        Assert.Equal(0, (await Cp(node, "box:/tmp/etclink/hostname", hostname)).Code);
        Assert.Equal(await Sh(node, "cat /etc/hostname"), File.ReadAllText(hostname));

        // Archives that try to leave their destination are refused, and write nothing outside it.
        async Task Refused(string tar, string says)
        {
            var result = await Orchctl.RunAsync(["--server", node.Nats!.Url, "cp", "-", "box:/tmp/d"], null, stdin: tar);
            Assert.True(result.Code == 1, $"exit {result.Code}: {result.All}");
            Assert.Contains(says, result.Err, StringComparison.Ordinal);
            Assert.Single(result.Err.TrimEnd('\n').Split('\n'));
        }
        await Sh(node, "mkdir -p /tmp/d");
        await Refused(AsciiTar(($"../../{marker}-dots", "x\n", null)), "climbs out with '..'");
        await Refused(AsciiTar(("/abs", "x\n", null)), "is an absolute path");
        await Refused(AsciiTar(("link", null, "/"), ($"link/{marker}-through", "x\n", null)), "goes through a symlink");
        await Refused(AsciiTar(("evil", null, "/tmp/evil"), ($"evil/{marker}-again", "x\n", null)), "goes through a symlink");
        await Refused("this is not a tar stream, only some text that is long enough to fill a block or two" + new string('x', 1200), "is not a tar archive");
        Assert.Equal("absent\n", await Sh(node, $"test -e /{marker}-dots || test -e /tmp/{marker}-dots || test -e /{marker}-through || test -e /{marker}-again || echo absent"));
        Assert.False(File.Exists($"/{marker}-through") || File.Exists($"/{marker}-again") || File.Exists($"/{marker}-dots"));

        // Plain mistakes: one sentence each.
        var missing = await Cp(node, "box:/no/such/file", node.Dir.Combine("x"));
        Assert.Equal(1, missing.Code);
        Assert.Equal("orchctl: '/no/such/file' does not exist in the container; `orchctl exec CONTAINER -- ls DIR` shows what does\n", missing.Err);
        var noDir = await Cp(node, file, "box:/no/such/dir/f");
        Assert.Equal(1, noDir.Code);
        Assert.Contains("the directory '/no/such/dir' does not exist in the container; create it first", noDir.Err, StringComparison.Ordinal);
        Assert.Equal(2, (await Cp(node, file, node.Dir.Combine("y"))).Code);
        Assert.Equal(2, (await Cp(node, "box:/etc/hostname", "box:/tmp/x")).Code);
        Assert.Equal(1, (await Cp(node, "ghost:/etc/hostname", node.Dir.Combine("z"))).Code);

        // Through all of it the container ran on; a stopped one is refused with the fix.
        Assert.Equal(ContainerState.Running, (await node.Client.InspectAsync("box")).State);
        await node.Client.StopAsync("box");
        await node.WaitForAsync("box", c => c.State == ContainerState.Stopped, s_wait, "stopped");
        var stopped = await Cp(node, "box:/etc/hostname", node.Dir.Combine("w"));
        Assert.Equal(1, stopped.Code);
        Assert.Contains("container 'box' is not running; cp reaches a running container's files (start it first)", stopped.Err, StringComparison.Ordinal);
    }

    /// <summary>A ustar archive as text (headers and contents are ASCII): files (content) and symlinks (target).</summary>
    private static string AsciiTar(params (string Name, string? Content, string? LinkTarget)[] entries)
    {
        using var buffer = new MemoryStream();
        using (var writer = new TarWriter(buffer, TarEntryFormat.Ustar, leaveOpen: true))
        {
            foreach (var (name, content, link) in entries)
            {
                var entry = link is not null
                    ? new UstarTarEntry(TarEntryType.SymbolicLink, name) { LinkName = link }
                    : new UstarTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(Encoding.ASCII.GetBytes(content!)) };
                entry.Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
                writer.WriteEntry(entry);
            }
        }
        return Encoding.Latin1.GetString(buffer.ToArray());
    }
}

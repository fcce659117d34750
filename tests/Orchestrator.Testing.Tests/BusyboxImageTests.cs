using System.Diagnostics;
using System.Text.Json;

namespace Orchestrator.Testing.Tests;

public sealed class BusyboxImageTests
{
    [Fact]
    public void Layout_is_read_by_skopeo_with_our_digests()
    {
        var skopeo = Requires.Program("skopeo", "skopeo");
        using var dir = new TempDir();
        var image = BusyboxImage.CreateLayout(dir.Path, "v1");

        var (code, output) = Run(skopeo, "inspect", $"oci:{dir.Path}:v1");
        Assert.True(code == 0, output);
        using var doc = JsonDocument.Parse(output);
        Assert.Equal(image.ManifestDigest, doc.RootElement.GetProperty("Digest").GetString());
        Assert.Equal(image.LayerDigest, doc.RootElement.GetProperty("Layers")[0].GetString());
        Assert.Equal("linux", doc.RootElement.GetProperty("Os").GetString());
    }

    [Fact]
    public void Archive_is_read_by_skopeo()
    {
        var skopeo = Requires.Program("skopeo", "skopeo");
        using var dir = new TempDir();
        var archive = dir.Combine("busybox.tar");
        var image = BusyboxImage.CreateArchive(archive);

        var (code, output) = Run(skopeo, "inspect", $"oci-archive:{archive}:latest");
        Assert.True(code == 0, output);
        Assert.Contains(image.ManifestDigest, output, StringComparison.Ordinal);
    }

    [Fact]
    public void Same_input_gives_the_same_digests()
    {
        using var a = new TempDir();
        using var b = new TempDir();
        var first = BusyboxImage.CreateLayout(a.Path);
        var second = BusyboxImage.CreateLayout(b.Path);
        Assert.Equal(first.ManifestDigest, second.ManifestDigest);
        Assert.StartsWith("sha256:", first.DiffId, StringComparison.Ordinal);
        Assert.NotEqual(first.DiffId, first.LayerDigest);
    }

    [Fact]
    [Trait("Category", "Privileged")]
    public void Unpacked_layer_runs_busybox_in_a_chroot()
    {
        Requires.Root();
        using var dir = new TempDir();
        var image = BusyboxImage.CreateLayout(dir.Path, extraFiles: new Dictionary<string, string> { ["etc/motd"] = "hello from the layer\n" });
        var rootfs = Directory.CreateDirectory(dir.Combine("rootfs")).FullName;
        var blob = dir.Combine("blobs", "sha256", image.LayerDigest["sha256:".Length..]);

        var (untar, untarOut) = Run("tar", "-xzf", blob, "-C", rootfs);
        Assert.True(untar == 0, untarOut);
        var (code, output) = Run("chroot", rootfs, "/bin/sh", "-c", "cat /etc/motd; id -u; ls /bin | wc -l");
        Assert.True(code == 0, output);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("hello from the layer", lines[0]);
        Assert.Equal("0", lines[1]);
        Assert.Equal((BusyboxImage.Applets.Count + 1).ToString(System.Globalization.CultureInfo.InvariantCulture), lines[2].Trim());
    }

    internal static (int Code, string Output) Run(string program, params string[] args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
        {
            psi.ArgumentList.Add(arg);
        }
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, stdout.Result + stderr);
    }
}

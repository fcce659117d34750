using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Text.Json.Nodes;

namespace Orchestrator.Testing;

/// <summary>
/// An OCI runtime bundle for tests and benchmarks: the busybox image's layer unpacked into
/// rootfs/ and the default config.json that `orch-runc spec` writes (runc's default), which
/// a test edits as JSON. The same bundle runs under orch-runc, runc and crun.
/// </summary>
public sealed class OciBundle : IDisposable
{
    private readonly TempDir _dir = new("orch-bundle");

    private OciBundle()
    {
    }

    public string Path => _dir.Path;
    public string Rootfs => _dir.Combine("rootfs");
    public string ConfigPath => _dir.Combine("config.json");

    public static OciBundle CreateBusybox(params string[] args)
    {
        var bundle = new OciBundle();
        using var layout = new TempDir("orch-layout");
        var image = BusyboxImage.CreateLayout(layout.Path);
        var blob = layout.Combine("blobs", "sha256", image.LayerDigest["sha256:".Length..]);
        Directory.CreateDirectory(bundle.Rootfs);
        using (var gz = new GZipStream(File.OpenRead(blob), CompressionMode.Decompress))
        {
            TarFile.ExtractToDirectory(gz, bundle.Rootfs, overwriteFiles: false);
        }
        var psi = new ProcessStartInfo(Repo.Binary("orch-runc")) { RedirectStandardError = true };
        foreach (var a in new[] { "spec", "--bundle", bundle.Path, "--" }.Concat(args))
        {
            psi.ArgumentList.Add(a);
        }
        using var spec = Process.Start(psi)!;
        var error = spec.StandardError.ReadToEnd();
        spec.WaitForExit();
        if (spec.ExitCode != 0)
        {
            throw new InvalidOperationException($"orch-runc spec failed: {error}");
        }
        return bundle;
    }

    /// <summary>Edits config.json in place.</summary>
    public void Edit(Action<JsonObject> edit)
    {
        var node = JsonNode.Parse(File.ReadAllText(ConfigPath))!.AsObject();
        edit(node);
        File.WriteAllText(ConfigPath, node.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
    }

    public void Dispose() => _dir.Dispose();
}

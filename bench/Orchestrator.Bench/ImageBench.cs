using System.Diagnostics;
using System.Formats.Tar;
using System.Globalization;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using Orchestrator.Testing;

namespace Orchestrator.Bench;

/// <summary>
/// Pull + unpack of one multi-layer image from one local registry: orchd (image pull --unpack)
/// against `ctr pull` into a private containerd (which unpacks into its snapshotter) and
/// `skopeo copy` to an OCI directory (no unpack). Fresh stores every run; medians.
/// </summary>
internal static class ImageBench
{
    public static async Task<int> RunAsync(int runs)
    {
        var orchd = Repo.Binary("orchd");
        var skopeo = Requires.Which("skopeo") ?? throw new InvalidOperationException("skopeo is not installed");
        var ctr = Requires.Which("ctr") ?? throw new InvalidOperationException("ctr (containerd) is not installed");
        using var work = new TempDir("bench-image");
        await using var registry = await RegistryServer.StartAsync();
        var (layers, bytes) = BuildImage(work.Combine("layout"));
        await registry.PushAsync($"{work.Combine("layout")}:bench", "bench/fat", "1");
        var reference = $"{registry.Host}/bench/fat:1";
        await using var containerd = await ContainerdServer.StartAsync();

        var results = new Dictionary<string, (List<double> Ms, List<double> RssMiB)>
        {
            ["orchd image pull --unpack"] = ([], []),
            ["ctr pull (containerd, unpacks)"] = ([], []),
            ["skopeo copy to oci: (no unpack)"] = ([], []),
        };
        for (var run = 0; run < runs; run++)
        {
            using var state = new TempDir("bench-image-orchd");
            Record(results["orchd image pull --unpack"], await TimeAsync(orchd, ["image", "pull", reference, "--unpack", "--state-dir", state.Path, "--config", "/dev/null"]));
            var ns = $"bench{run}";
            Record(results["ctr pull (containerd, unpacks)"], await TimeAsync(ctr, ["--address", containerd.Socket, "--namespace", ns, "image", "pull", "--plain-http", reference]));
            using var oci = new TempDir("bench-image-skopeo");
            Record(results["skopeo copy to oci: (no unpack)"], await TimeAsync(skopeo, ["copy", "--src-tls-verify=false", $"docker://{reference}", $"oci:{oci.Combine("img")}:1"]));
        }

        Console.WriteLine($"## Images: pull + unpack of {layers} layers, {bytes / 1048576.0:F0} MiB compressed, from a local registry, {runs} runs, medians");
        Console.WriteLine();
        Console.WriteLine("| tool | time | vs ctr | peak RSS of the process |");
        Console.WriteLine("|---|---|---|---|");
        var ctrMedian = Median(results["ctr pull (containerd, unpacks)"].Ms);
        foreach (var (name, (ms, rss)) in results)
        {
            Console.WriteLine($"| {name} | {Median(ms):F0} ms | {Median(ms) / ctrMedian:F2}× | {Median(rss):F1} MiB{(name.StartsWith("ctr", StringComparison.Ordinal) ? " (client only; containerd does the work)" : "")} |");
        }
        Console.WriteLine();
        return 0;
    }

    private static void Record((List<double> Ms, List<double> Rss) into, (double Ms, double Rss) sample)
    {
        into.Ms.Add(sample.Ms);
        into.Rss.Add(sample.Rss);
    }

    private static async Task<(double Ms, double RssMiB)> TimeAsync(string program, string[] args)
    {
        using var rss = new TempDir("bench-rss");
        var psi = new ProcessStartInfo("/usr/bin/time") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-o", rss.Combine("rss"), "-f", "%M", program }.Concat(args))
        {
            psi.ArgumentList.Add(a);
        }
        var started = Stopwatch.GetTimestamp();
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        var ms = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', args)} failed: {await stderr}");
        }
        return (ms, double.Parse((await File.ReadAllTextAsync(rss.Combine("rss"))).Trim(), CultureInfo.InvariantCulture) / 1024);
    }

    /// <summary>busybox plus four layers of 8 MiB of random (incompressible) data each.</summary>
    private static (int Layers, long Bytes) BuildImage(string layout)
    {
        var image = BusyboxImage.CreateLayout(layout, "bench");
        var blobs = Path.Combine(layout, "blobs", "sha256");
        var manifestPath = Path.Combine(blobs, image.ManifestDigest[7..]);
        var manifest = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(manifestPath))!;
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(blobs, image.ConfigDigest[7..])))!;
        for (var i = 0; i < 4; i++)
        {
            var tar = new MemoryStream();
            using (var writer = new TarWriter(tar, TarEntryFormat.Pax, leaveOpen: true))
            {
                writer.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, $"data/blob{i}") { DataStream = new MemoryStream(RandomNumberGenerator.GetBytes(8 << 20)), Mode = (UnixFileMode)0x1A4 });
            }
            var diffId = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(tar.ToArray()));
            var gz = new MemoryStream();
            using (var z = new GZipStream(gz, CompressionLevel.Fastest, leaveOpen: true))
            {
                z.Write(tar.ToArray());
            }
            var layer = gz.ToArray();
            var digest = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(layer));
            File.WriteAllBytes(Path.Combine(blobs, digest[7..]), layer);
            manifest["layers"]!.AsArray().Add(new System.Text.Json.Nodes.JsonObject { ["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip", ["digest"] = digest, ["size"] = layer.Length });
            config["rootfs"]!["diff_ids"]!.AsArray().Add(diffId);
        }
        var configBytes = Encoding.UTF8.GetBytes(config.ToJsonString());
        var configDigest = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(configBytes));
        File.WriteAllBytes(Path.Combine(blobs, configDigest[7..]), configBytes);
        manifest["config"]!["digest"] = configDigest;
        manifest["config"]!["size"] = configBytes.Length;
        var manifestBytes = Encoding.UTF8.GetBytes(manifest.ToJsonString());
        var manifestDigest = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(manifestBytes));
        File.WriteAllBytes(Path.Combine(blobs, manifestDigest[7..]), manifestBytes);
        var index = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(layout, "index.json")))!;
        index["manifests"]![0]!["digest"] = manifestDigest;
        index["manifests"]![0]!["size"] = manifestBytes.Length;
        File.WriteAllText(Path.Combine(layout, "index.json"), index.ToJsonString());
        var total = manifest["layers"]!.AsArray().Sum(l => long.Parse(l!["size"]!.ToJsonString(), CultureInfo.InvariantCulture));
        return (manifest["layers"]!.AsArray().Count, total);
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }
}

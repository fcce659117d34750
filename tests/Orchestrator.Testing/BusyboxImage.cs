using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Orchestrator.Testing;

/// <summary>What <see cref="BusyboxImage"/> made: the layout and the digests a test can check against.</summary>
public sealed record OciImage(
    string LayoutDir,
    string Tag,
    string ManifestDigest,
    string ConfigDigest,
    string LayerDigest,
    string DiffId,
    long LayerSize);

/// <summary>
/// Builds a real OCI image from Debian's busybox-static at test time: one gzip layer with
/// /bin/busybox and its applet links, an image config, a manifest and index.json. The output
/// is byte-for-byte deterministic (fixed mtimes and owners), so digests are stable between runs.
/// </summary>
public static class BusyboxImage
{
    public const string BusyboxPath = "/bin/busybox";

    /// <summary>The applets linked into /bin, enough for shells, probes and log tests.</summary>
    public static readonly IReadOnlyList<string> Applets =
    [
        "sh", "true", "false", "echo", "cat", "sleep", "ls", "env", "id", "hostname", "mount", "ps",
        "grep", "wc", "head", "tail", "touch", "mkdir", "rm", "kill", "nc", "wget", "httpd", "ip",
        "ifconfig", "printf", "test", "yes", "dd", "stat", "readlink", "uname", "whoami", "date",
    ];

    private static readonly DateTimeOffset s_epoch = new(2024, 1, 1, 0, 0, 0, TimeSpan.Zero);

    /// <summary>Writes an OCI image layout into <paramref name="layoutDir"/> (created if needed).</summary>
    public static OciImage CreateLayout(string layoutDir, string tag = "latest", IReadOnlyDictionary<string, string>? extraFiles = null)
    {
        Requires.Program("busybox", "busybox-static");
        if (!IsStatic(BusyboxPath))
        {
            throw new InvalidOperationException($"{BusyboxPath} is not statically linked; apt-get install busybox-static");
        }
        var blobs = Path.Combine(layoutDir, "blobs", "sha256");
        Directory.CreateDirectory(blobs);

        var layerTar = BuildLayerTar(extraFiles);
        var diffId = Sha256(layerTar);
        var layerGz = Gzip(layerTar);
        var layerDigest = WriteBlob(blobs, layerGz);

        var config = Json(w =>
        {
            w.WriteString("created", s_epoch.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture));
            w.WriteString("architecture", GoArch());
            w.WriteString("os", "linux");
            w.WriteStartObject("config");
            w.WriteStartArray("Env");
            w.WriteStringValue("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
            w.WriteEndArray();
            w.WriteStartArray("Cmd");
            w.WriteStringValue("sh");
            w.WriteEndArray();
            w.WriteString("WorkingDir", "/");
            w.WriteEndObject();
            w.WriteStartObject("rootfs");
            w.WriteString("type", "layers");
            w.WriteStartArray("diff_ids");
            w.WriteStringValue(diffId);
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteStartArray("history");
            w.WriteStartObject();
            w.WriteString("created_by", "Orchestrator.Testing.BusyboxImage from busybox-static");
            w.WriteEndObject();
            w.WriteEndArray();
        });
        var configDigest = WriteBlob(blobs, config);

        var manifest = Json(w =>
        {
            w.WriteNumber("schemaVersion", 2);
            w.WriteString("mediaType", "application/vnd.oci.image.manifest.v1+json");
            w.WriteStartObject("config");
            Descriptor(w, "application/vnd.oci.image.config.v1+json", configDigest, config.Length);
            w.WriteEndObject();
            w.WriteStartArray("layers");
            w.WriteStartObject();
            Descriptor(w, "application/vnd.oci.image.layer.v1.tar+gzip", layerDigest, layerGz.Length);
            w.WriteEndObject();
            w.WriteEndArray();
        });
        var manifestDigest = WriteBlob(blobs, manifest);

        var index = Json(w =>
        {
            w.WriteNumber("schemaVersion", 2);
            w.WriteString("mediaType", "application/vnd.oci.image.index.v1+json");
            w.WriteStartArray("manifests");
            w.WriteStartObject();
            Descriptor(w, "application/vnd.oci.image.manifest.v1+json", manifestDigest, manifest.Length);
            w.WriteStartObject("annotations");
            w.WriteString("org.opencontainers.image.ref.name", tag);
            w.WriteEndObject();
            w.WriteStartObject("platform");
            w.WriteString("architecture", GoArch());
            w.WriteString("os", "linux");
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndArray();
        });
        File.WriteAllBytes(Path.Combine(layoutDir, "index.json"), index);
        File.WriteAllText(Path.Combine(layoutDir, "oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}");

        return new OciImage(layoutDir, tag, manifestDigest, configDigest, layerDigest, diffId, layerGz.Length);
    }

    /// <summary>Writes the layout as an OCI archive (a tar of the layout), as `ctr image import` and skopeo's oci-archive take.</summary>
    public static OciImage CreateArchive(string archivePath, string tag = "latest")
    {
        var layout = Directory.CreateTempSubdirectory("orch-oci-").FullName;
        try
        {
            var image = CreateLayout(layout, tag);
            using (var output = File.Create(archivePath))
            using (var tar = new TarWriter(output, TarEntryFormat.Pax, leaveOpen: false))
            {
                foreach (var file in Directory.EnumerateFiles(layout, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
                {
                    var name = Path.GetRelativePath(layout, file);
                    var entry = new PaxTarEntry(TarEntryType.RegularFile, name)
                    {
                        ModificationTime = s_epoch,
                        Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead,
                        DataStream = File.OpenRead(file),
                    };
                    tar.WriteEntry(entry);
                    entry.DataStream.Dispose();
                }
            }
            return image with { LayoutDir = archivePath };
        }
        finally
        {
            Directory.Delete(layout, recursive: true);
        }
    }

    /// <summary>
    /// The layer alone, gzipped: a root filesystem tar for `docker import` and `podman import`.
    /// It holds /tmp/keep ("kept"), which a tmpfs with tmpcopyup on /tmp must show.
    /// </summary>
    public static string CreateRootfsTar(string path, IReadOnlyDictionary<string, string>? extraFiles = null)
    {
        Requires.Program("busybox", "busybox-static");
        var files = new Dictionary<string, string>(extraFiles ?? new Dictionary<string, string>(), StringComparer.Ordinal) { ["tmp/keep"] = "kept\n" };
        File.WriteAllBytes(path, Gzip(BuildLayerTar(files)));
        return path;
    }

    /// <summary>The uncompressed layer: a minimal root filesystem around busybox.</summary>
    private static byte[] BuildLayerTar(IReadOnlyDictionary<string, string>? extraFiles)
    {
        using var buffer = new MemoryStream();
        using (var tar = new TarWriter(buffer, TarEntryFormat.Pax, leaveOpen: true))
        {
            const UnixFileMode dirMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
                | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;
            foreach (var dir in new[] { "bin/", "dev/", "etc/", "proc/", "sys/", "root/", "tmp/", "usr/", "usr/bin/", "var/", "var/log/" })
            {
                var mode = dir == "tmp/" ? dirMode | UnixFileMode.GroupWrite | UnixFileMode.OtherWrite | UnixFileMode.StickyBit : dirMode;
                tar.WriteEntry(Entry(TarEntryType.Directory, dir, mode));
            }

            var busybox = Entry(TarEntryType.RegularFile, "bin/busybox", dirMode);
            using (var data = File.OpenRead(BusyboxPath))
            {
                busybox.DataStream = data;
                tar.WriteEntry(busybox);
            }
            foreach (var applet in Applets)
            {
                var link = Entry(TarEntryType.SymbolicLink, $"bin/{applet}", dirMode);
                link.LinkName = "busybox";
                tar.WriteEntry(link);
            }

            var files = new Dictionary<string, string>(StringComparer.Ordinal)
            {
                ["etc/passwd"] = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
                ["etc/group"] = "root:x:0:\nnogroup:x:65534:\n",
                ["etc/hostname"] = "busybox\n",
            };
            foreach (var (name, text) in extraFiles ?? new Dictionary<string, string>())
            {
                files[name.TrimStart('/')] = text;
            }
            foreach (var (name, text) in files.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                var entry = Entry(TarEntryType.RegularFile, name, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
                entry.DataStream = new MemoryStream(Encoding.UTF8.GetBytes(text));
                tar.WriteEntry(entry);
            }
        }
        return buffer.ToArray();
    }

    private static PaxTarEntry Entry(TarEntryType type, string name, UnixFileMode mode) => new(type, name)
    {
        ModificationTime = s_epoch,
        Mode = mode,
        Uid = 0,
        Gid = 0,
        UserName = "root",
        GroupName = "root",
    };

    private static bool IsStatic(string path)
    {
        // A dynamically linked ELF has a PT_INTERP program header; look for the loader path.
        var bytes = File.ReadAllBytes(path);
        return bytes.AsSpan().IndexOf("/lib64/ld-linux"u8) < 0 && bytes.AsSpan().IndexOf("/lib/ld-linux"u8) < 0;
    }

    private static string GoArch() => System.Runtime.InteropServices.RuntimeInformation.OSArchitecture switch
    {
        System.Runtime.InteropServices.Architecture.X64 => "amd64",
        System.Runtime.InteropServices.Architecture.Arm64 => "arm64",
        System.Runtime.InteropServices.Architecture.Arm => "arm",
        var other => other.ToString().ToLowerInvariant(),
    };

    private static void Descriptor(Utf8JsonWriter w, string mediaType, string digest, long size)
    {
        w.WriteString("mediaType", mediaType);
        w.WriteString("digest", digest);
        w.WriteNumber("size", size);
    }

    private static byte[] Json(Action<Utf8JsonWriter> body)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }
        return buffer.ToArray();
    }

    private static byte[] Gzip(byte[] data)
    {
        using var buffer = new MemoryStream();
        using (var gz = new GZipStream(buffer, CompressionLevel.Optimal, leaveOpen: true))
        {
            gz.Write(data);
        }
        return buffer.ToArray();
    }

    private static string Sha256(byte[] data) => "sha256:" + Convert.ToHexStringLower(SHA256.HashData(data));

    private static string WriteBlob(string blobsDir, byte[] data)
    {
        var digest = Sha256(data);
        File.WriteAllBytes(Path.Combine(blobsDir, digest["sha256:".Length..]), data);
        return digest;
    }
}

using System.Text.Json.Serialization;

namespace Orchestrator.Images.Oci;

// The OCI image spec's documents, as far as this store reads them (unknown fields are ignored:
// registries add their own).

public static class MediaTypes
{
    public const string OciIndex = "application/vnd.oci.image.index.v1+json";
    public const string OciManifest = "application/vnd.oci.image.manifest.v1+json";
    public const string OciConfig = "application/vnd.oci.image.config.v1+json";
    public const string DockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json";
    public const string DockerManifest = "application/vnd.docker.distribution.manifest.v2+json";

    public static bool IsIndex(string? mediaType) => mediaType is OciIndex or DockerManifestList;
    public static bool IsManifest(string? mediaType) => mediaType is OciManifest or DockerManifest;
}

public sealed class Descriptor
{
    public string MediaType { get; set; } = "";
    public string Digest { get; set; } = "";
    public long Size { get; set; }
    public Dictionary<string, string>? Annotations { get; set; }
    public Platform? Platform { get; set; }
}

public sealed class Platform
{
    public string Architecture { get; set; } = "";
    public string Os { get; set; } = "";
    public string? Variant { get; set; }

    public override string ToString() => Variant is { Length: > 0 } v ? $"{Os}/{Architecture}/{v}" : $"{Os}/{Architecture}";

    /// <summary>This machine: linux/amd64, linux/arm64 or linux/arm/v7.</summary>
    public static Platform Current => System.Runtime.InteropServices.RuntimeInformation.OSArchitecture switch
    {
        System.Runtime.InteropServices.Architecture.Arm64 => new() { Os = "linux", Architecture = "arm64" },
        System.Runtime.InteropServices.Architecture.Arm => new() { Os = "linux", Architecture = "arm", Variant = "v7" },
        _ => new() { Os = "linux", Architecture = "amd64" },
    };

    public static Platform Parse(string text)
    {
        var parts = text.Split('/');
        return parts.Length is 2 or 3
            ? new Platform { Os = parts[0], Architecture = parts[1], Variant = parts.Length == 3 ? parts[2] : null }
            : throw new ArgumentException($"'{text}' is not a platform; write it as os/arch[/variant], e.g. linux/arm/v7");
    }

    public bool Matches(Platform? other)
        => other is not null && other.Os == Os && other.Architecture == Architecture
           && (Variant is null || other.Variant is null || other.Variant == Variant);
}

public sealed class ImageIndex
{
    public int SchemaVersion { get; set; }
    public string? MediaType { get; set; }
    public List<Descriptor> Manifests { get; set; } = [];
}

public sealed class ImageManifest
{
    public int SchemaVersion { get; set; }
    public string? MediaType { get; set; }
    public Descriptor Config { get; set; } = new();
    public List<Descriptor> Layers { get; set; } = [];
}

/// <summary>What the store knows of an image: its name, the manifest it resolved to, its platform.</summary>
public sealed class ImageRecord
{
    public string Name { get; set; } = "";
    public string ManifestDigest { get; set; } = "";
    public string Platform { get; set; } = "";
    public long Size { get; set; }
    public DateTimeOffset Created { get; set; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, WriteIndented = true)]
[JsonSerializable(typeof(ImageIndex))]
[JsonSerializable(typeof(ImageManifest))]
[JsonSerializable(typeof(Dictionary<string, ImageRecord>))]
[JsonSerializable(typeof(List<DockerSaveEntry>))]
[JsonSerializable(typeof(ImageConfigFile))]
public sealed partial class OciJsonContext : JsonSerializerContext;

/// <summary>The parts of an image's config blob that say how to run it (OCI image-spec config.json).</summary>
public sealed class ImageConfigFile
{
    public string? Architecture { get; set; }
    public string? Os { get; set; }
    public ImageRunConfig? Config { get; set; }
}

/// <summary>The "config" object: the image's defaults for the process (Go-style capitalised names).</summary>
public sealed class ImageRunConfig
{
    [JsonPropertyName("User")] public string? User { get; set; }
    [JsonPropertyName("Env")] public List<string>? Env { get; set; }
    [JsonPropertyName("Entrypoint")] public List<string>? Entrypoint { get; set; }
    [JsonPropertyName("Cmd")] public List<string>? Cmd { get; set; }
    [JsonPropertyName("WorkingDir")] public string? WorkingDir { get; set; }
    [JsonPropertyName("StopSignal")] public string? StopSignal { get; set; }
}

/// <summary>One entry of a `docker save` archive's manifest.json.</summary>
public sealed class DockerSaveEntry
{
    [JsonPropertyName("Config")]
    public string Config { get; set; } = "";

    [JsonPropertyName("RepoTags")]
    public List<string>? RepoTags { get; set; }

    [JsonPropertyName("Layers")]
    public List<string> Layers { get; set; } = [];
}

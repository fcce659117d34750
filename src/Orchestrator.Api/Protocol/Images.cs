namespace Orchestrator.Api;

/// <summary>An image in the node's store, with the containers that use it.</summary>
public sealed class ImageSummary
{
    public string Name { get; set; } = "";
    public string ManifestDigest { get; set; } = "";
    public string Platform { get; set; } = "";
    public long Size { get; set; }
    public DateTimeOffset Created { get; set; }
    public List<string> UsedBy { get; set; } = [];
    /// <summary>containerd when the image is in containerd's image store (a containerd node's); absent for orchd's own store.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public string? Store { get; set; }
    /// <summary>inspect only: the layers, bottom first.</summary>
    public List<LayerDescriptor>? Layers { get; set; }
}

/// <summary>What an image gc freed.</summary>
public sealed class ImageGcResult
{
    public long FreedBytes { get; set; }
    public int PrunedLayers { get; set; }
}

/// <summary>A layer of an image as the node API shows it: the OCI descriptor's fields, same JSON.</summary>
public sealed class LayerDescriptor
{
    public string MediaType { get; set; } = "";
    public string Digest { get; set; } = "";
    public long Size { get; set; }
    public Dictionary<string, string>? Annotations { get; set; }
    public LayerPlatform? Platform { get; set; }
}

/// <summary>The platform of an OCI descriptor: os, architecture, variant.</summary>
public sealed class LayerPlatform
{
    public string Architecture { get; set; } = "";
    public string Os { get; set; } = "";
    public string? Variant { get; set; }
}

namespace Orchestrator.Images.Registry;

/// <summary>"registry/repo:tag" or "registry/repo@sha256:…", with Docker Hub's defaults.</summary>
public sealed record ImageReference(string Registry, string Repository, string? Tag, string? Digest)
{
    public string Reference => Digest ?? Tag ?? "latest";

    public override string ToString() => $"{Registry}/{Repository}{(Digest is not null ? "@" + Digest : ":" + (Tag ?? "latest"))}";

    public static ImageReference Parse(string text)
    {
        string? digest = null;
        var at = text.IndexOf('@', StringComparison.Ordinal);
        if (at >= 0)
        {
            digest = text[(at + 1)..];
            text = text[..at];
            if (!Store.ContentStore.IsValidDigest(digest))
            {
                throw new ArgumentException($"'{digest}' is not a sha256 digest; pin images as name@sha256:<64 hex digits>");
            }
        }
        var slash = text.IndexOf('/', StringComparison.Ordinal);
        var first = slash > 0 ? text[..slash] : "";
        string registry, rest;
        if (slash > 0 && (first.Contains('.', StringComparison.Ordinal) || first.Contains(':', StringComparison.Ordinal) || first == "localhost"))
        {
            registry = first;
            rest = text[(slash + 1)..];
        }
        else
        {
            registry = "docker.io";
            rest = text.Contains('/', StringComparison.Ordinal) ? text : "library/" + text;
        }
        string? tag = null;
        var colon = rest.LastIndexOf(':');
        if (colon > rest.LastIndexOf('/'))
        {
            tag = rest[(colon + 1)..];
            rest = rest[..colon];
        }
        if (rest.Length == 0 || rest.Any(c => !(char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '.' or '_' or '-' or '/')))
        {
            throw new ArgumentException($"'{text}' is not an image reference; write it like registry.example:5000/team/app:1.2");
        }
        return new ImageReference(registry, rest, digest is null ? tag ?? "latest" : tag, digest);
    }
}

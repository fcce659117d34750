using Orchestrator.Api;
using Orchestrator.Images.Store;

namespace Orchestrator.Images.Registry;

/// <summary>
/// An image's name: "registry/repo:tag" or "registry/repo@sha256:…", with Docker Hub's defaults.
/// The one rule for image names (docs/images.md): every name a user writes (a workload's image,
/// pull, push, rm, inspect) is parsed here, and the store, the fleet's NATS bucket and containerd
/// all key an image by <see cref="Canonical"/>. So `busybox`, `busybox:latest`,
/// `docker.io/library/busybox:latest` and `nats:busybox:latest` are one image; the `nats:` prefix
/// says where to pull from (the fleet's bucket), never what the image is called.
/// </summary>
public sealed record ImageReference(string Registry, string Repository, string? Tag, string? Digest)
{
    /// <summary>Before a reference: pull it from the fleet's NATS bucket instead of its registry.</summary>
    public const string NatsPrefix = "nats:";

    public const string DockerHub = "docker.io";

    public string Reference => Digest ?? Tag ?? "latest";

    /// <summary>
    /// The name the store, the bucket and containerd key the image by: the registry and the
    /// repository in full, then the digest when pinned (the tag is then only a comment, as in a
    /// registry pull by digest), else the tag.
    /// </summary>
    public string Canonical => $"{Registry}/{Repository}{(Digest is not null ? "@" + Digest : ":" + (Tag ?? "latest"))}";

    /// <summary>The short form people write: Docker Hub's registry and "library/" left out (busybox:latest).</summary>
    public string Familiar
    {
        get
        {
            var repository = Registry == DockerHub && Repository.StartsWith("library/", StringComparison.Ordinal) ? Repository["library/".Length..]
                : Registry == DockerHub ? Repository : $"{Registry}/{Repository}";
            return repository + (Digest is not null ? "@" + Digest : ":" + (Tag ?? "latest"));
        }
    }

    public override string ToString() => Canonical;

    /// <summary>
    /// Names an earlier version may have stored this image under (in images.json or the NATS
    /// bucket): it kept the name as written (busybox:latest, busybox) for imports and NATS pulls.
    /// </summary>
    public IEnumerable<string> LegacyNames()
    {
        var names = new List<string> { Familiar };
        if (Digest is null && (Tag ?? "latest") == "latest")
        {
            names.Add(Familiar[..Familiar.LastIndexOf(':')]);
        }
        if (Registry == DockerHub)
        {
            // docker.io/busybox:latest: Docker Hub's host without library/.
            names.Add($"{DockerHub}/{Familiar}");
        }
        return names.Where(n => n != Canonical).Distinct(StringComparer.Ordinal);
    }

    /// <summary>The canonical name of <paramref name="text"/> (with or without nats:), or an <see cref="ImageException"/> that says how to write it.</summary>
    public static string Normalize(string text) => Parse(text).Canonical;

    /// <summary>Whether the two texts name the same image by the rule above (false when either is not a reference, unless they are equal).</summary>
    public static bool SameImage(string a, string b)
        => string.Equals(a, b, StringComparison.Ordinal) || (TryParse(a, out var x) && TryParse(b, out var y) && x.Canonical == y.Canonical);

    public static bool TryParse(string text, out ImageReference reference)
    {
        try
        {
            reference = Parse(text);
            return true;
        }
        catch (ImageException)
        {
            reference = null!;
            return false;
        }
    }

    /// <summary>True when <paramref name="text"/> asks for the fleet's NATS bucket (nats:NAME): where to pull from, not part of the name.</summary>
    public static bool IsFromNats(string text) => text.StartsWith(NatsPrefix, StringComparison.Ordinal);

    /// <summary>Parses a reference, ignoring a nats: prefix (<see cref="Parse(string, out bool)"/> says whether there was one).</summary>
    public static ImageReference Parse(string text) => Parse(text, out _);

    /// <summary>Parses a reference; <paramref name="fromNats"/>: it began with nats: (pull it from the fleet's bucket).</summary>
    public static ImageReference Parse(string text, out bool fromNats)
    {
        ArgumentNullException.ThrowIfNull(text);
        var original = text;
        fromNats = IsFromNats(text);
        if (fromNats)
        {
            text = text[NatsPrefix.Length..];
        }
        const string Example = "write it like busybox:1.36, registry.example:5000/team/app:1.2 or app@sha256:<64 hex digits>";
        ImageException Bad(string why) => new(ErrorKind.Invalid, $"'{original}' is not an image reference: {why}; {Example}");
        if (text.Length == 0)
        {
            throw Bad("the name is empty");
        }
        if (text.Any(char.IsWhiteSpace))
        {
            throw Bad("it contains white space");
        }
        string? digest = null;
        var at = text.IndexOf('@', StringComparison.Ordinal);
        if (at >= 0)
        {
            digest = text[(at + 1)..];
            text = text[..at];
            if (!ContentStore.IsValidDigest(digest))
            {
                throw new ImageException(ErrorKind.Invalid, $"'{original}': '{digest}' is not a sha256 digest; pin images as name@sha256:<64 hex digits>");
            }
        }
        var slash = text.IndexOf('/', StringComparison.Ordinal);
        var first = slash > 0 ? text[..slash] : "";
        string registry, rest;
        var official = false;
        // Docker's rule: the first component is a registry host when it has a dot or a port, or is localhost.
        if (slash > 0 && (first.Contains('.', StringComparison.Ordinal) || first.Contains(':', StringComparison.Ordinal) || first == "localhost"))
        {
            // index.docker.io is Docker Hub's old name; a one-part name there is an official image (library/).
            registry = first == "index.docker.io" ? DockerHub : first;
            rest = text[(slash + 1)..];
            if (registry == DockerHub && !rest.Contains('/', StringComparison.Ordinal))
            {
                rest = "library/" + rest;
                official = true;
            }
            if (registry.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or ':' or '[' or ']')) || registry.EndsWith(':'))
            {
                throw Bad($"'{registry}' is not a registry host[:port]");
            }
        }
        else
        {
            registry = DockerHub;
            official = !text.Contains('/', StringComparison.Ordinal);
            rest = official ? "library/" + text : text;
        }
        string? tag = null;
        var colon = rest.LastIndexOf(':');
        if (colon > rest.LastIndexOf('/'))
        {
            tag = rest[(colon + 1)..];
            rest = rest[..colon];
            if (tag.Length == 0 || tag.Length > 128 || !(char.IsAsciiLetterOrDigit(tag[0]) || tag[0] == '_') || tag.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '_' or '.' or '-')))
            {
                throw Bad($"the tag '{tag}' is not letters, digits, '_', '.' and '-' (at most 128, not starting with '.' or '-')");
            }
        }
        if (rest.Length == 0 || rest.Split('/').Any(c => c.Length == 0))
        {
            throw Bad("a part of the name is empty");
        }
        if (rest.Any(char.IsAsciiLetterUpper))
        {
            throw Bad($"repository names are lower case ('{(official ? rest["library/".Length..] : rest).ToLowerInvariant()}')");
        }
        if (rest.Any(c => !(char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '.' or '_' or '-' or '/')))
        {
            throw Bad("a repository name has only lower-case letters, digits, '.', '_', '-' and '/'");
        }
        return new ImageReference(registry, rest, digest is null ? tag ?? "latest" : tag, digest);
    }
}

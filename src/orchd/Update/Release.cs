using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Serialization;
using NATS.NKeys;

namespace Orchestrator.Daemon.Update;

/// <summary>
/// A signed orchd release in the fleet's object store: the binary at <see cref="BinaryObject"/>,
/// this manifest (its size, SHA-256 and the operator's ed25519 signature over them) at
/// <see cref="ManifestObject"/>. Nodes verify both before they swap anything.
/// </summary>
public sealed class ReleaseManifest
{
    public string Version { get; set; } = "";
    public string Arch { get; set; } = "";
    public string Sha256 { get; set; } = "";
    public long Size { get; set; }
    /// <summary>The public nkey (U…) that signed it; must be among the node's fleet.trusted_keys.</summary>
    public string Key { get; set; } = "";
    public string Signature { get; set; } = "";
}

/// <summary>What a node's update subject answers: what runs, and how the last update ended.</summary>
public sealed class UpdateStatus
{
    public string Version { get; set; } = "";
    public string Sha256 { get; set; } = "";
    public string Arch { get; set; } = "";
    /// <summary>An update swapped in and not yet confirmed healthy.</summary>
    public string? Pending { get; set; }
    public UpdateResult? Last { get; set; }
}

public sealed class UpdateResult
{
    public string Version { get; set; } = "";
    /// <summary>updated, or rolled-back.</summary>
    public string Outcome { get; set; } = "";
    public string Message { get; set; } = "";
    public DateTimeOffset At { get; set; }
}

public sealed class UpdateRequest
{
    public string Version { get; set; } = "";
}

public sealed class UpdateReply
{
    public bool Ok { get; set; }
    public string? Error { get; set; }
    public string? Message { get; set; }
}

/// <summary>The marker an update leaves in the state dir until the new orchd proves healthy.</summary>
public sealed class PendingUpdate
{
    public string Version { get; set; } = "";
    public string FromSha256 { get; set; } = "";
    public string ToSha256 { get; set; } = "";
    public string Executable { get; set; } = "";
    public DateTimeOffset At { get; set; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, WriteIndented = true)]
[JsonSerializable(typeof(ReleaseManifest))]
[JsonSerializable(typeof(UpdateStatus))]
[JsonSerializable(typeof(UpdateRequest))]
[JsonSerializable(typeof(UpdateReply))]
[JsonSerializable(typeof(PendingUpdate))]
[JsonSerializable(typeof(UpdateResult))]
public sealed partial class UpdateJsonContext : JsonSerializerContext;

public sealed class ReleaseException(string message) : OrchestratorException(ErrorKind.Invalid, message);

public static class Release
{
    public const string Bucket = "orch-releases";

    public static string BinaryObject(string version, string arch) => $"orchd/{version}/{arch}";

    public static string ManifestObject(string version, string arch) => $"orchd/{version}/{arch}.json";

    /// <summary>A node's self-update subjects (five tokens: below the node API's orch.node.NODE.*).</summary>
    public static string ApplySubject(string node) => $"orch.node.{node}.update.apply";

    public static string StatusSubject(string node) => $"orch.node.{node}.update.status";

    /// <summary>This machine's architecture in Debian's names, as releases are published.</summary>
    public static string ThisArch => RuntimeInformation.OSArchitecture switch
    {
        Architecture.X64 => "amd64",
        Architecture.Arm64 => "arm64",
        var other => other.ToString().ToLowerInvariant(),
    };

    private static byte[] SignedBytes(ReleaseManifest m)
        => Encoding.UTF8.GetBytes($"orchd-release\n{m.Version}\n{m.Arch}\n{m.Sha256}\n{m.Size}\n");

    public static string Sha256Of(string path)
    {
        using var file = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(file));
    }

    public static ReleaseManifest Sign(string binaryPath, string version, string arch, string seed)
    {
        var manifest = new ReleaseManifest { Version = version, Arch = arch, Sha256 = Sha256Of(binaryPath), Size = new FileInfo(binaryPath).Length };
        using var pair = KeyPair.FromSeed(seed.Trim());
        var signature = new byte[64];
        pair.Sign(SignedBytes(manifest), signature);
        manifest.Key = pair.GetPublicKey();
        manifest.Signature = Convert.ToBase64String(signature);
        return manifest;
    }

    /// <summary>Null when the manifest is signed by a trusted key and matches the binary; otherwise the reason.</summary>
    public static string? Verify(ReleaseManifest manifest, IReadOnlyList<string> trustedKeys, string? binaryPath = null)
    {
        var name = $"release {manifest.Version} ({manifest.Arch})";
        if (trustedKeys.Count == 0)
        {
            return $"{name} refused: this node has no fleet.trusted_keys, so it cannot check who signed a release; add the operator's public key";
        }
        if (!trustedKeys.Contains(manifest.Key, StringComparer.Ordinal))
        {
            return $"{name} is signed by {manifest.Key}, which is not among this node's fleet.trusted_keys; sign it with a trusted key";
        }
        bool good;
        try
        {
            var signature = Convert.FromBase64String(manifest.Signature);
            using var pair = KeyPair.FromPublicKey(manifest.Key);
            good = signature.Length == 64 && pair.Verify(SignedBytes(manifest), signature);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            good = false;
        }
        if (!good)
        {
            return $"{name} has a bad signature; publish it again with orchd release publish --sign-key";
        }
        if (binaryPath is not null)
        {
            var size = new FileInfo(binaryPath).Length;
            var sha = Sha256Of(binaryPath);
            if (size != manifest.Size || sha != manifest.Sha256)
            {
                return $"{name}: the downloaded binary ({size} bytes, sha256 {sha[..12]}…) is not the signed one ({manifest.Size} bytes, sha256 {manifest.Sha256[..12]}…); publish it again";
            }
        }
        return null;
    }
}

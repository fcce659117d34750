using System.Text;
using System.Text.Json;
using NATS.NKeys;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Client;

/// <summary>
/// Operators sign deployments with an ed25519 nkey; nodes verify before they run anything.
/// The signature covers what decides what runs and where: the name, the serial, the node
/// selector and the template. Replica count, rollout settings and autoscaling are not signed:
/// they change how many copies of a signed template run, never what runs.
/// </summary>
public static class ManifestSigning
{
    private const string Domain = "orch-deployment-v1";

    /// <summary>The exact bytes signed: a domain tag, then each covered field on its own line.</summary>
    public static byte[] SignedBytes(string name, long serial, IReadOnlyDictionary<string, string>? selector, Workload template)
    {
        var text = new StringBuilder();
        text.Append(Domain).Append('\n').Append(name).Append('\n')
            .Append(serial.ToString(System.Globalization.CultureInfo.InvariantCulture)).Append('\n');
        foreach (var (key, value) in (selector ?? new Dictionary<string, string>()).OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            text.Append(key).Append('=').Append(value).Append('\n');
        }
        text.Append('\n');
        var head = Encoding.UTF8.GetBytes(text.ToString());
        // The template as the fleet stores it, with no name (replicas get theirs from the deployment).
        var body = JsonSerializer.SerializeToUtf8Bytes(template, WorkloadJsonContext.Default.Workload);
        return [.. head, .. body];
    }

    /// <summary>A new user nkey: (seed, public key).</summary>
    public static (string Seed, string PublicKey) CreateKey()
    {
        using var pair = KeyPair.CreatePair(PrefixByte.User);
        return (pair.GetSeed(), pair.GetPublicKey());
    }

    /// <summary>Reads a seed (SU…) from a file that holds it alone or among other lines (a .creds or .nk file).</summary>
    public static string ReadSeed(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ManifestSignatureException($"signing key '{path}' cannot be read ({e.Message}); give the seed file `orchctl keys create` wrote");
        }
        var seed = text.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.StartsWith("SU", StringComparison.Ordinal));
        return seed ?? throw new ManifestSignatureException($"signing key '{path}' holds no user seed (a line starting with SU); give the seed file `orchctl keys create` wrote");
    }

    /// <summary>Signs the deployment in place with a new serial (now, in milliseconds; later than any earlier one by this clock).</summary>
    public static void Sign(Deployment deployment, string seed, long? serial = null)
    {
        KeyPair pair;
        try
        {
            pair = KeyPair.FromSeed(seed.Trim());
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new ManifestSignatureException("the signing key is not a valid nkey seed; create one with `orchctl keys create`");
        }
        using (pair)
        {
            var s = serial ?? DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            var data = SignedBytes(deployment.Name, s, deployment.Selector, deployment.Template);
            var signature = new byte[64];
            pair.Sign(data, signature);
            deployment.Signature = new ManifestSignature { Key = pair.GetPublicKey(), Serial = s, Sig = Convert.ToBase64String(signature) };
        }
    }

    /// <summary>Null when the signature is good and by a trusted key; otherwise why not, in a sentence.</summary>
    public static string? Verify(string name, IReadOnlyDictionary<string, string>? selector, Workload template, ManifestSignature? signature, IReadOnlyList<string> trustedKeys)
    {
        if (signature is null || signature.Sig.Length == 0)
        {
            return $"deployment '{name}' is not signed and this node runs only signed deployments; sign it with `orchctl apply --sign-key FILE` (or `orchctl sign`)";
        }
        if (!trustedKeys.Contains(signature.Key, StringComparer.Ordinal))
        {
            return $"deployment '{name}' is signed by {Short(signature.Key)}, which is not among this node's fleet.trusted_keys; sign with a trusted key or add its public key to the nodes' configuration";
        }
        byte[] sig;
        try
        {
            sig = Convert.FromBase64String(signature.Sig);
        }
        catch (FormatException)
        {
            return $"deployment '{name}': its signature is not base64; sign it again";
        }
        bool good;
        try
        {
            using var pair = KeyPair.FromPublicKey(signature.Key);
            good = sig.Length == 64 && pair.Verify(SignedBytes(name, signature.Serial, selector, template), sig);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            good = false;
        }
        return good ? null : $"deployment '{name}': the signature by {Short(signature.Key)} does not match its content (forged or altered after signing); apply a manifest signed by the operator";
    }

    private static string Short(string key) => key.Length > 12 ? key[..12] + "…" : key;
}

/// <summary>A signing key or signature problem, said in one sentence with the fix.</summary>
public sealed class ManifestSignatureException(string message) : OrchestratorException(ErrorKind.Forbidden, message);

using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using NATS.NKeys;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Client;

/// <summary>
/// Secrets sealed to each node's own x25519 key (NATS xkeys: a box of the sender's and the
/// receiver's keys, so only that node opens its copy and it knows who sealed it), configs in clear;
/// both signed with the operator's ed25519 key as deployments are. The operator's curve key is
/// derived from its signing seed, so the same key that signs deployments can open its own escrow
/// copy later and seal for nodes that joined since (<c>orchctl secret sync</c>).
/// </summary>
public static class SecretSealing
{
    private const string Domain = "orch-secret-v1";

    /// <summary>The exact bytes signed: a domain tag, each field on its own line, the SHA-256 of the data.</summary>
    public static byte[] SignedBytes(SealedSecret sealedSecret)
    {
        var head = string.Create(CultureInfo.InvariantCulture,
            $"{Domain}\n{WireNames.Of(sealedSecret.Kind)}\n{sealedSecret.Name}\n{sealedSecret.Version}\n{sealedSecret.Node}\n{sealedSecret.Sender}\n{sealedSecret.Receiver}\n");
        return [.. Encoding.UTF8.GetBytes(head), .. SHA256.HashData(Encoding.UTF8.GetBytes(sealedSecret.Data))];
    }

    /// <summary>The operator's curve key pair, derived from its signing seed (the same seed: the same key, on any machine).</summary>
    public static KeyPair CurveKey(string signingSeed)
    {
        using (Signer(signingSeed))
        {
        }
        var prk = HKDF.Extract(HashAlgorithmName.SHA256, Encoding.UTF8.GetBytes(signingSeed.Trim()), Encoding.UTF8.GetBytes("orch-secrets"));
        using var derived = new DerivedBytes(prk);
        return KeyPair.CreatePair(PrefixByte.Curve, derived);
    }

    /// <summary>A node's curve key pair: a new one (the node keeps its seed), or read from its seed.</summary>
    public static KeyPair NewNodeKey() => KeyPair.CreatePair(PrefixByte.Curve);

    /// <summary>True for a curve public key (X…) a node can be sealed for.</summary>
    public static bool IsNodeKey(string? key) => key is { Length: > 0 } && KeyPair.IsValidPublicKey(PrefixByte.Curve, key);

    /// <summary>One version of a secret sealed for one node (by its curve key), signed.</summary>
    public static SealedSecret SealFor(string name, long version, string node, string nodeKey, byte[] value, string signingSeed)
    {
        using var curve = CurveKey(signingSeed);
        var data = Convert.ToBase64String(curve.Seal(value, nodeKey));
        return Sign(new SealedSecret { Name = name, Kind = SecretKind.Secret, Version = version, Node = node, Sender = curve.GetPublicKey(), Receiver = nodeKey, Data = data }, signingSeed);
    }

    /// <summary>The value sealed to the operator's own curve key (key NAME.VERSION, no node): what sync opens later.</summary>
    public static SealedSecret Escrow(string name, long version, byte[] value, string signingSeed)
    {
        using var curve = CurveKey(signingSeed);
        var data = Convert.ToBase64String(curve.Seal(value, curve.GetPublicKey()));
        return Sign(new SealedSecret { Name = name, Kind = SecretKind.Secret, Version = version, Sender = curve.GetPublicKey(), Receiver = curve.GetPublicKey(), Data = data }, signingSeed);
    }

    /// <summary>Opens an escrow copy with the operator's key; a message when it was sealed by another key.</summary>
    public static byte[] OpenEscrow(SealedSecret escrow, string signingSeed)
    {
        using var curve = CurveKey(signingSeed);
        if (escrow.Sender != curve.GetPublicKey())
        {
            throw new ManifestSignatureException($"secret '{escrow.Name}' version {escrow.Version} was sealed with another operator key ({Short(escrow.Sender)}); give that key (--sign-key), or update the secret from its file (orchctl secret update {escrow.Name} --from-file FILE)");
        }
        try
        {
            return curve.Open(Convert.FromBase64String(escrow.Data), curve.GetPublicKey());
        }
        catch (Exception e) when (e is NKeysException or FormatException or CryptographicException or ArgumentException or IndexOutOfRangeException)
        {
            throw new ManifestSignatureException($"secret '{escrow.Name}' version {escrow.Version}: its escrow copy does not open with this key ({e.Message}); update the secret from its file");
        }
    }

    /// <summary>A config's version: the value in clear, signed when a seed is given.</summary>
    public static SealedSecret Config(string name, long version, byte[] value, string? signingSeed)
    {
        var config = new SealedSecret { Name = name, Kind = SecretKind.Config, Version = version, Data = Convert.ToBase64String(value) };
        return signingSeed is null ? config : Sign(config, signingSeed);
    }

    private static SealedSecret Sign(SealedSecret value, string signingSeed)
    {
        using var pair = Signer(signingSeed);
        var signature = new byte[64];
        pair.Sign(SignedBytes(value), signature);
        return value with { Signature = new ManifestSignature { Key = pair.GetPublicKey(), Serial = value.Version, Sig = Convert.ToBase64String(signature) } };
    }

    private static KeyPair Signer(string seed)
    {
        try
        {
            var pair = KeyPair.FromSeed(seed.Trim());
            if (pair.Prefix != PrefixByte.User)
            {
                pair.Dispose();
                throw new ManifestSignatureException("the signing key is not a user nkey seed (SU…); create one with `orchctl keys create`");
            }
            return pair;
        }
        catch (Exception e) when (e is not ManifestSignatureException and not OutOfMemoryException)
        {
            throw new ManifestSignatureException("the signing key is not a valid nkey seed; create one with `orchctl keys create`");
        }
    }

    /// <summary>Null when the value is signed by a trusted key and whole; otherwise why not, naming the secret and the fix.</summary>
    public static string? Verify(SealedSecret value, IReadOnlyList<string> trustedKeys)
    {
        var noun = $"{SecretMounts.Noun(value.Kind)} '{value.Name}' version {value.Version}";
        if (value.Signature is not { Sig.Length: > 0 } signature)
        {
            return $"{noun} is not signed and this node takes only what a fleet.trusted_keys key signed; create it with --sign-key";
        }
        if (!trustedKeys.Contains(signature.Key, StringComparer.Ordinal))
        {
            return $"{noun} is signed by {Short(signature.Key)}, which is not among this node's fleet.trusted_keys; create it with a trusted key";
        }
        bool good;
        try
        {
            using var pair = KeyPair.FromPublicKey(signature.Key);
            var sig = Convert.FromBase64String(signature.Sig);
            good = sig.Length == 64 && signature.Serial == value.Version && pair.Verify(SignedBytes(value), sig);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            good = false;
        }
        return good ? null : $"{noun}: the signature by {Short(signature.Key)} does not match its content (forged or altered after signing); create the secret again with the operator's key";
    }

    /// <summary>The value: a config's as it is, a secret's opened with the node's key (which must be the one it was sealed for).</summary>
    public static byte[] Open(SealedSecret value, KeyPair nodeKey)
    {
        var noun = $"{SecretMounts.Noun(value.Kind)} '{value.Name}' version {value.Version}";
        try
        {
            var data = Convert.FromBase64String(value.Data);
            return value.Kind == SecretKind.Config ? data : nodeKey.Open(data, value.Sender ?? "");
        }
        catch (Exception e) when (e is NKeysException or FormatException or CryptographicException or ArgumentException or IndexOutOfRangeException)
        {
            return value.Kind == SecretKind.Config
                ? throw new ManifestSignatureException($"{noun}: its value is not base64; create it again")
                : throw new ManifestSignatureException($"{noun} does not open with node '{value.Node}''s key (sealed for another key, or damaged); seal it again: orchctl secret sync {value.Name}");
        }
    }

    private static string Short(string? key) => key is null ? "none" : key.Length > 12 ? key[..12] + "…" : key;

    /// <summary>HKDF-Expand as a byte stream: the "random" bytes of a key pair made from a seed.</summary>
    private sealed class DerivedBytes(byte[] prk) : RandomNumberGenerator
    {
        private int _block;

        public override void GetBytes(byte[] data) => GetBytes(data.AsSpan());

        public override void GetBytes(byte[] data, int offset, int count) => GetBytes(data.AsSpan(offset, count));

        public override void GetBytes(Span<byte> data)
        {
            var info = Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"orch-secrets-curve-v1/{_block++}"));
            HKDF.Expand(HashAlgorithmName.SHA256, prk, data, info);
        }

        public override void GetNonZeroBytes(byte[] data) => throw new NotSupportedException();
    }
}

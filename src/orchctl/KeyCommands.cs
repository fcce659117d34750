using System.Text;
using System.Text.Json;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Ctl;

/// <summary>Manifest signing, which needs no NATS: keys create|show, sign.</summary>
internal static class KeyCommands
{
    public static int Run(string command, List<string> args, ConnectionFlags settings)
    {
        switch (command)
        {
            case "keys" when args is ["create", ..]:
                var output = Option(args, "-o", "--output") ?? throw new UsageException("keys create needs -o FILE for the seed (keep it secret; nodes get the public key)");
                if (File.Exists(output))
                {
                    Console.Error.WriteLine($"orchctl: {output} exists; refusing to overwrite a key (remove it first or pick another file)");
                    return 1;
                }
                var (seed, publicKey) = ManifestSigning.CreateKey();
                using (var stream = new FileStream(output, new FileStreamOptions
                {
                    Mode = FileMode.CreateNew, Access = FileAccess.Write,
                    UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
                }))
                {
                    stream.Write(Encoding.ASCII.GetBytes(seed + "\n"));
                }
                Console.Out.WriteLine(publicKey);
                Console.Error.WriteLine($"seed written to {output}; put the public key above in each node's fleet.trusted_keys");
                return 0;
            case "keys" when args is ["show", var file]:
                using (var pair = NATS.NKeys.KeyPair.FromSeed(ManifestSigning.ReadSeed(file)))
                {
                    Console.Out.WriteLine(pair.GetPublicKey());
                }
                return 0;
            case "keys":
                throw new UsageException("keys create -o FILE | keys show FILE");
            case "sign":
                var manifest = Option(args, "-f", "--file") ?? throw new UsageException("sign needs -f FILE (deployments)");
                var key = Option(args, "--key", "--sign-key") ?? settings.SignKey
                    ?? throw new UsageException("sign needs --key SEEDFILE (or ORCH_SIGN_KEY); create one with `orchctl keys create -o FILE`");
                // A compose file is one app, as apply reads it.
                var deployments = ManifestLoader.LoadFleetManifest(manifest == "-" ? Console.In.ReadToEnd() : File.ReadAllText(manifest), manifest,
                    ApplyCommands.ComposeShapeFor(manifest, stack: false, Options(args, "--env-file"), Options(args, "--image-map"))).Deployments;
                var seedText = ManifestSigning.ReadSeed(key);
                var text = new StringBuilder();
                foreach (var deployment in deployments)
                {
                    ManifestSigning.Sign(deployment, seedText);
                    deployment.Revision = null;
                    text.Append("---\n# signed by orchctl sign; any change breaks the signature\n");
                    text.Append(SignedDocument(deployment)).Append('\n');
                }
                if (Option(args, "-o", "--output") is { } target)
                {
                    File.WriteAllText(target, text.ToString());
                    Console.Error.WriteLine($"{deployments.Count} deployment(s) signed into {target}");
                }
                else
                {
                    Console.Out.Write(text.ToString());
                }
                return 0;
            default:
                throw new UsageException($"unknown command '{command}'");
        }
    }

    /// <summary>
    /// A deployment as a JSON document with kind: Deployment first (the manifest loader wants it).
    /// A replica count the source left out stays out (it is not signed): written, it would take an
    /// autoscaled deployment's count back to 1 on every apply of the signed file.
    /// </summary>
    private static string SignedDocument(Deployment deployment)
    {
        var body = JsonSerializer.Serialize(deployment, WorkloadJsonContext.Default.Deployment);
        if (deployment.ReplicasOmitted())
        {
            var node = System.Text.Json.Nodes.JsonNode.Parse(body)!.AsObject();
            node.Remove("replicas");
            using var buffer = new MemoryStream();
            using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
            {
                node.WriteTo(writer);
            }
            body = System.Text.Encoding.UTF8.GetString(buffer.ToArray());
        }
        return "{\n  \"kind\": \"Deployment\"," + body[1..];
    }

    private static List<string> Options(List<string> args, string name)
        => [.. args.Select((a, i) => (a, i)).Where(p => p.a == name && p.i + 1 < args.Count).Select(p => args[p.i + 1])];

    private static string? Option(List<string> args, string name, string alias)
        => args.SkipWhile(a => a != name && a != alias).Skip(1).FirstOrDefault();
}

using System.Globalization;
using Orchestrator.Daemon.Configuration;
using Orchestrator.Daemon.Images;
using Orchestrator.Images.Distribution;
using Orchestrator.Images.Oci;
using Orchestrator.Images.Registry;
using Orchestrator.Images.Store;

namespace Orchestrator.Daemon;

/// <summary>
/// `orchd image …`: the node's image store from the command line (the same store orchd uses,
/// under the state dir). pull takes a registry reference, or nats:NAME for the fleet's bucket;
/// a registry that cannot be reached falls back to the bucket when NATS is configured.
/// </summary>
internal static class ImageCommand
{
    private const string Usage = """
        Usage: orchd image COMMAND [flags]   (plus orchd's --config, --state-dir, --nats-url…)

          list                                 images in the store
          inspect NAME                         an image's manifest digest, platform, layers
          pull REF [--platform os/arch[/v]] [--unpack]
                                               from a registry (REF) or the fleet's NATS bucket (nats:NAME);
                                               --unpack: unpack the layers now, ready to run
          push NAME --nats                     publish to the fleet's NATS bucket
          import FILE|DIR [--name NAME]        an OCI layout, OCI archive or docker save archive
          export NAME FILE                     as an OCI archive
          rm NAME                              forget an image (gc frees its blobs)
          gc                                   free blobs no image uses

        Flags: --budget BYTES (the store's disk budget; default images.disk_budget), --insecure HOST (plain HTTP registry),
               --creds HOST=USER:PASSWORD (basic auth for a registry)
        """;

    /// <summary>image's own flags with a value (and what the value is), and its switches; the rest of the --flags are orchd's.</summary>
    private static readonly Dictionary<string, string?> s_flags = new(StringComparer.Ordinal)
    {
        ["--platform"] = null, ["--name"] = null, ["--budget"] = null, ["--insecure"] = "a registry host", ["--creds"] = "HOST=USER:PASSWORD",
    };

    private static readonly string[] s_switches = ["--nats", "--unpack"];

    public static async Task<int> RunAsync(string[] args)
    {
        var own = SubcommandArgs.Split(args, s_flags, s_switches);
        if (own.Help)
        {
            Console.Out.Write(Usage);
            return ExitCodes.Ok;
        }
        var positional = own.Positional;
        var insecure = own.Values("--insecure").ToHashSet(StringComparer.Ordinal);
        var credentials = new Dictionary<string, RegistryCredentials>(StringComparer.Ordinal);
        foreach (var spec in own.Values("--creds"))
        {
            var eq = spec.IndexOf('=', StringComparison.Ordinal);
            var colon = spec.IndexOf(':', eq + 1);
            if (eq <= 0 || colon <= eq)
            {
                throw new UsageException($"--creds '{spec}' is not HOST=USER:PASSWORD");
            }
            credentials[spec[..eq]] = new RegistryCredentials(spec[(eq + 1)..colon], spec[(colon + 1)..]);
        }
        if (positional.Count == 0)
        {
            Console.Error.Write(Usage);
            return ExitCodes.Usage;
        }
        var config = ConfigLoader.Load(CommandLine.Parse(own.DaemonFlags), Environment.GetEnvironmentVariable);
        var budget = own.Value("--budget") is { } b ? long.Parse(b, CultureInfo.InvariantCulture) : config.ImageDiskBudget ?? long.MaxValue;
        var images = new ImageStore(Path.Combine(config.StateDir, "images"), budget);
        var platform = own.Value("--platform") is { } p ? Platform.Parse(p) : null;
        string Arg(int index, string what) => positional.Count > index ? positional[index] : throw new UsageException($"image {positional[0]} needs {what}");

        switch (positional[0])
        {
            case "list" or "ls":
                Console.Out.WriteLine($"{"NAME",-40} {"PLATFORM",-14} {"SIZE",10}  MANIFEST");
                foreach (var image in images.List())
                {
                    Console.Out.WriteLine($"{image.Name,-40} {image.Platform,-14} {image.Size / 1048576.0,8:F1}MB  {image.ManifestDigest[..19]}");
                }
                return ExitCodes.Ok;
            case "inspect":
                var record = images.Inspect(Arg(1, "an image name"));
                var manifest = images.Manifest(record);
                Console.Out.WriteLine($"name: {record.Name}\nmanifest: {record.ManifestDigest}\nplatform: {record.Platform}\nconfig: {manifest.Config.Digest}");
                foreach (var layer in manifest.Layers)
                {
                    Console.Out.WriteLine($"layer: {layer.Digest} {layer.Size} {layer.MediaType}");
                }
                return ExitCodes.Ok;
            case "pull":
                var reference = Arg(1, "an image reference");
                var pulled = await new NodeImagePuller(images, config, RegistrySettings.Options(config, insecure, credentials)).PullAsync(reference, platform, quiet: false).ConfigureAwait(false);
                if (own.Has("--unpack"))
                {
                    // Ready to run: the layers unpacked into the snapshot store now rather than at first start.
                    await new Orchestrator.Images.Snapshots.SnapshotStore(images, Path.Combine(config.StateDir, "snapshots")).UnpackLayersAsync(pulled.Name).ConfigureAwait(false);
                }
                Console.Out.WriteLine($"pulled {pulled.Name} {pulled.ManifestDigest} ({pulled.Platform})");
                return ExitCodes.Ok;
            case "push" when own.Has("--nats"):
                await using (var nats = await NodeImagePuller.ConnectAsync(config).ConfigureAwait(false))
                {
                    var name = Arg(1, "an image name");
                    var sent = await new NatsImageDistribution(nats, images).PushAsync(name).ConfigureAwait(false);
                    // The bucket keys it by the canonical name: say so when that is not what was written.
                    var canonical = ImageReference.TryParse(name, out var parsed) ? parsed.Canonical : name;
                    Console.Out.WriteLine($"published {name}{(canonical != name ? $" (as {canonical})" : "")} to NATS ({sent} new blobs)");
                }
                return ExitCodes.Ok;
            case "push":
                throw new UsageException("image push publishes to the fleet's NATS bucket: add --nats (pushing to registries is skopeo's job)");
            case "import":
                var source = Arg(1, "a file or directory");
                var imported = Directory.Exists(source)
                    ? await images.ImportLayoutAsync(source, own.Value("--name"), platform).ConfigureAwait(false)
                    : await images.ImportArchiveAsync(source, own.Value("--name"), platform).ConfigureAwait(false);
                Console.Out.WriteLine($"imported {imported.Name} {imported.ManifestDigest}");
                return ExitCodes.Ok;
            case "export":
                await images.ExportArchiveAsync(Arg(1, "an image name"), Arg(2, "an output file")).ConfigureAwait(false);
                return ExitCodes.Ok;
            case "rm" or "remove":
                images.Remove(Arg(1, "an image name"));
                return ExitCodes.Ok;
            case "gc":
                Console.Out.WriteLine($"freed {images.Gc()} bytes");
                return ExitCodes.Ok;
            default:
                throw new UsageException($"'{positional[0]}' is not an image command; see orchd image --help");
        }
    }
}

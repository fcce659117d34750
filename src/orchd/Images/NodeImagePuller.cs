using NATS.Client.Core;
using Orchestrator.Daemon.Configuration;
using Orchestrator.Images.Distribution;
using Orchestrator.Images.Oci;
using Orchestrator.Images.Registry;
using Orchestrator.Images.Store;
using Orchestrator.Node.Images;

namespace Orchestrator.Daemon.Images;

/// <summary>
/// orchd's pull into its own image store: a registry reference, or nats:NAME for the fleet's
/// bucket; a registry that cannot be reached falls back to the bucket when NATS is configured.
/// The node's supervisor pulls through it (as its <see cref="IImagePuller"/>), and so does
/// `orchd image pull`.
/// </summary>
internal sealed class NodeImagePuller(ImageStore images, OrchdConfig config, RegistryOptions registryOptions) : IImagePuller
{
    /// <summary>The node's pull: quiet, progress to whoever asked (the node API streams it to orchctl).</summary>
    public async Task PullAsync(string reference, IProgress<PullProgress>? progress, CancellationToken cancellationToken)
        => await PullAsync(reference, platform: null, quiet: true, progress).ConfigureAwait(false);

    /// <summary>A registry pull, or the fleet's NATS bucket for nats:NAME and when the registry is out of reach.</summary>
    /// <param name="progress">Where a registry pull reports each blob stored; by default stderr unless quiet.</param>
    public async Task<ImageRecord> PullAsync(string reference, Platform? platform, bool quiet, IProgress<PullProgress>? progress = null)
    {
        // One rule for names (docs/images.md): whichever way it is written, the image is stored,
        // and looked up in the bucket, by its canonical name; nats: only says where to pull from.
        _ = ImageReference.Parse(reference, out var fromNats);
        if (fromNats)
        {
            await using var nats = await ConnectAsync(config).ConfigureAwait(false);
            return await new NatsImageDistribution(nats, images).PullAsync(reference).ConfigureAwait(false);
        }
        using var registry = new RegistryClient(images, registryOptions);
        try
        {
            return await registry.PullAsync(reference, platform, progress ?? (quiet ? null : new Progress<PullProgress>(p =>
                Console.Error.WriteLine($"  {p.LayersDone}/{p.LayersTotal} blobs, {p.BytesDone}/{p.BytesTotal} bytes")))).ConfigureAwait(false);
        }
        catch (ImageException e) when (e.Message.StartsWith("cannot reach registry", StringComparison.Ordinal))
        {
            // The registry is not reachable from here: the fleet's bucket may have it.
            if (!quiet)
            {
                Console.Error.WriteLine($"orchd: {e.Message}; trying the fleet's NATS bucket");
            }
            await using var nats = await ConnectAsync(config).ConfigureAwait(false);
            return await new NatsImageDistribution(nats, images).PullAsync(reference).ConfigureAwait(false);
        }
    }

    /// <summary>A connection to the fleet's NATS as orchd is configured, or an error that says where it looked.</summary>
    public static async Task<NatsConnection> ConnectAsync(OrchdConfig config)
    {
        var nats = new NatsConnection(config.ToNatsSettings().ToNatsOpts("orchd-image"));
        try
        {
            await nats.ConnectAsync().ConfigureAwait(false);
        }
        catch (NatsException e)
        {
            await nats.DisposeAsync().ConfigureAwait(false);
            throw new ImageException($"cannot reach NATS at {string.Join(",", config.NatsUrls)}: {e.InnerException?.Message ?? e.Message}; start it or set --nats-url", e);
        }
        return nats;
    }
}

using Orchestrator.Images.Registry;

namespace Orchestrator.Node.Images;

/// <summary>
/// orchd's pull into its own image store (a registry, or the fleet's NATS bucket, as orchd is
/// configured): what the node uses when an image it needs is missing and when the node API pulls.
/// </summary>
public interface IImagePuller
{
    /// <summary>Pulls <paramref name="reference"/> into orchd's store; a registry pull reports the blobs it has stored to <paramref name="progress"/>.</summary>
    Task PullAsync(string reference, IProgress<PullProgress>? progress, CancellationToken cancellationToken);
}

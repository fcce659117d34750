namespace Orchestrator.Api.Workloads;

/// <summary>
/// What <see cref="ManifestLoader.LoadFleetManifest"/> read: the deployments, valid and ready to
/// apply, and the warnings to show the operator (compose keys that were ignored, each
/// "file:line:col: services.web.networks: ignored (why)").
/// </summary>
public sealed class FleetManifest
{
    public FleetManifest(IReadOnlyList<Deployment> deployments, IReadOnlyList<string> warnings, bool fromCompose)
    {
        Deployments = deployments;
        Warnings = warnings;
        FromCompose = fromCompose;
    }

    public IReadOnlyList<Deployment> Deployments { get; }

    /// <summary>Nothing is wrong, but something was left out or changed in meaning: tell the operator.</summary>
    public IReadOnlyList<string> Warnings { get; }

    /// <summary>A compose file's top-level secrets and configs: what orchctl apply creates or updates in the fleet before the deployments that use them.</summary>
    public IReadOnlyList<SecretSource> Sources { get; init; } = [];

    /// <summary>The file was a docker-compose file (a top-level <c>services:</c> mapping).</summary>
    public bool FromCompose { get; }
}

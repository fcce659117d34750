namespace Orchestrator.Runtime.Tests.Privileged;

/// <summary>
/// Tests that change the host's mounts and cgroups run one class at a time: a leak check
/// must not see another test's mount come and go.
/// </summary>
[CollectionDefinition(Collection)]
public sealed class HostState
{
    public const string Collection = "host mounts and cgroups";
}

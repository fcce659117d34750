namespace Orchestrator.Client.Identity;

/// <summary>
/// The NATS rights of each kind of fleet user, as the enrolment service writes them into user
/// JWTs. They are packaging/nats/gen-fleet-users.sh's lists for static nkey users (docs/nats-security.md
/// explains each), plus the identity subjects; FleetPermissionsTests keeps the two the same.
/// </summary>
public static class FleetPermissions
{
    private static readonly string[] BucketNames =
        [Buckets.Nodes, Buckets.Deployments, Buckets.Assignments, Buckets.Leader, Buckets.DeploymentStatus, Buckets.NodeSettings, Buckets.Endpoints];

    private static readonly string[] OperatorPublish = ["orch.>", "$KV.>", "$O.>", "$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "_INBOX.>"];
    private static readonly string[] OperatorSubscribe = ["_INBOX.>", "orch.events.>", "orch.metrics.>"];

    /// <summary>A worker node: its own heartbeat, events, replies and assignments, reading images and releases, renewing its own JWT.</summary>
    public static NatsPermissions Node(string node)
    {
        var publish = new List<string> { $"$KV.{Buckets.Nodes}.{node}", $"orch.events.{node}.>", "_INBOX.>" };
        publish.AddRange(BucketNames.Select(b => $"$JS.API.STREAM.INFO.KV_{b}"));
        publish.Add($"$JS.API.CONSUMER.CREATE.KV_{Buckets.Assignments}.*.$KV.{Buckets.Assignments}.{node}");
        publish.Add($"$JS.API.STREAM.INFO.{NodeEvent.Stream}");
        foreach (var store in (string[])["orch-images", "orch-releases"])
        {
            publish.AddRange([$"$JS.API.STREAM.INFO.OBJ_{store}", $"$JS.API.CONSUMER.CREATE.OBJ_{store}.>", $"$JS.API.DIRECT.GET.OBJ_{store}.>", $"$JS.API.STREAM.MSG.GET.OBJ_{store}"]);
        }
        // Its own sealed copies of the fleet's secrets (NAME.VERSION.NODE: no other node's, no escrow copy), and configs.
        publish.AddRange([$"$JS.API.STREAM.INFO.KV_{Buckets.Secrets}", $"$JS.API.DIRECT.GET.KV_{Buckets.Secrets}.$KV.{Buckets.Secrets}.*.*.{node}",
            $"$JS.API.STREAM.INFO.KV_{Buckets.Configs}", $"$JS.API.DIRECT.GET.KV_{Buckets.Configs}.$KV.{Buckets.Configs}.>"]);
        // The operators' variables (orchctl env), watched: every scope, as they are not secret.
        publish.AddRange([$"$JS.API.STREAM.INFO.KV_{Buckets.Variables}", $"$JS.API.CONSUMER.CREATE.KV_{Buckets.Variables}.>"]);
        // Deployment names across nodes: its own endpoints written, everyone's watched, and a
        // connection to another node's ready replica (connect answers for those only).
        publish.AddRange([$"$KV.{Buckets.Endpoints}.{node}", $"$JS.API.CONSUMER.CREATE.KV_{Buckets.Endpoints}.>", $"orch.node.*.{NodeOps.Connect}", $"orch.node.*.{NodeOps.Connect}.*"]);
        publish.Add(IdentitySubjects.Renew);
        return new NatsPermissions(publish, [$"orch.node.{node}.>", Subjects.FleetInfo, $"_INBOX_{node}.>"]);
    }

    /// <summary>A node that may take the scheduler lease: a worker's rights, reading every bucket, writing assignments, the lease and status.</summary>
    public static NatsPermissions Scheduler(string node)
    {
        var worker = Node(node);
        var publish = worker.PublishAllow.ToList();
        foreach (var b in BucketNames)
        {
            publish.AddRange([$"$JS.API.STREAM.CREATE.KV_{b}", $"$JS.API.CONSUMER.CREATE.KV_{b}.>", $"$JS.API.DIRECT.GET.KV_{b}", $"$JS.API.DIRECT.GET.KV_{b}.>", $"$JS.API.STREAM.MSG.GET.KV_{b}"]);
        }
        publish.AddRange([$"$JS.API.STREAM.CREATE.{NodeEvent.Stream}", $"$KV.{Buckets.Assignments}.>", $"$KV.{Buckets.Leader}.scheduler", $"$KV.{Buckets.DeploymentStatus}.>"]);
        return new NatsPermissions(publish, [.. worker.SubscribeAllow, "orch.metrics.>"]);
    }

    /// <summary>
    /// The roles `orchctl identity user create --role` issues: operators (viewer, deployer, admin)
    /// and a site's leaf server (leaf: its connection to the hub carries every device behind it,
    /// so it is limited by those devices' own JWTs at the leaf, not here).
    /// </summary>
    public static readonly IReadOnlyList<string> Roles = ["viewer", "deployer", "admin", "leaf"];

    /// <summary>
    /// An operator in a role. admin: the whole fleet (gen-fleet-users.sh's --operator) and the
    /// identity service's admin requests. deployer: deployments, rollouts, logs, exec, images, but no
    /// node settings (cordon, drain), labels, tokens or revocation. viewer: reads only (buckets through
    /// watches, node API reads, events, metrics).
    /// </summary>
    public static NatsPermissions Operator(string role)
    {
        switch (role)
        {
            case "admin":
                return new NatsPermissions(OperatorPublish, OperatorSubscribe);
            case "leaf":
                return new NatsPermissions([], [], AllowResponses: false);
            case "deployer":
                return new NatsPermissions(OperatorPublish, OperatorSubscribe)
                {
                    PublishDeny = [$"$KV.{Buckets.NodeSettings}.>", $"orch.node.*.{NodeOps.Label}", "orch.identity.>",
                        "$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.UPDATE.>"],
                };
            case "viewer":
                var reads = new[] { NodeOps.Info, NodeOps.List, NodeOps.Inspect, NodeOps.Logs, NodeOps.Stats, NodeOps.Status, NodeOps.Images, NodeOps.ImageInspect };
                return new NatsPermissions(
                    [.. reads.Select(op => $"orch.node.*.{op}"), Subjects.FleetInfo, "$JS.API.INFO", "$JS.API.STREAM.INFO.>", "$JS.API.STREAM.NAMES",
                     "$JS.API.STREAM.LIST", "$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.DELETE.>", "$JS.API.CONSUMER.INFO.>", "$JS.API.DIRECT.GET.>",
                     "$JS.API.STREAM.MSG.GET.>", "$JS.FC.>", "_INBOX.>"],
                    OperatorSubscribe);
            default:
                throw new ArgumentException($"'{role}' is not a role; give one of {string.Join(", ", Roles)}");
        }
    }

    /// <summary>An enrolment token's own user: it may only ask to enrol, and read its replies.</summary>
    public static NatsPermissions Enrolment(string tokenId)
        => new([IdentitySubjects.Enroll], [$"{IdentitySubjects.EnrollInbox(tokenId)}.>"], AllowResponses: false);

    /// <summary>The identity service: an admin's rights, and its own requests to serve.</summary>
    public static NatsPermissions Service()
        => new(OperatorPublish, [.. OperatorSubscribe, IdentitySubjects.All]);
}

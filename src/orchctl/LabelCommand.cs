using Orchestrator.Api;

namespace Orchestrator.Ctl;

/// <summary>
/// `orchctl label node NAME KEY=VALUE… KEY-…`, as kubectl label: the node changes its own labels
/// (it keeps them, and checks signed selectors against them) and its next heartbeat carries them
/// to the scheduler and to `get nodes -l`. A deployment's and a container's labels are in their
/// files; only nodes are labelled here.
/// </summary>
internal static class LabelCommand
{
    public static async Task<int> RunAsync(List<string> args, CommandContext context)
    {
        var parsed = ParsedArgs.Parse("label", args);
        var positional = parsed.Positional.ToList();
        if (positional.Count > 0 && positional[0].Contains('/', StringComparison.Ordinal))
        {
            // kubectl's kind/name: label node/gw-01 zone=a
            var slash = positional[0].IndexOf('/', StringComparison.Ordinal);
            positional.InsertRange(0, [positional[0][..slash], positional[0][(slash + 1)..]]);
            positional.RemoveAt(2);
        }
        if (positional.Count == 0 || positional[0] is not ("node" or "nodes" or "no"))
        {
            throw new UsageException(positional.Count == 0
                ? $"label needs a node: orchctl {Commands.Find("label")!.Usage}"
                : $"label {positional[0]}: only nodes are labelled here; a deployment's or a container's labels are in its file (apply it again)");
        }
        if (positional.Count < 3)
        {
            throw new UsageException($"label node needs a node and at least one KEY=VALUE or KEY-: orchctl {Commands.Find("label")!.Usage}");
        }
        var node = positional[1];
        var set = new Dictionary<string, string>(StringComparer.Ordinal);
        var remove = new List<string>();
        foreach (var change in positional.Skip(2))
        {
            var eq = change.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0)
            {
                set[change[..eq]] = change[(eq + 1)..];
            }
            else if (change.EndsWith('-') && change.Length > 1)
            {
                remove.Add(change[..^1]);
            }
            else
            {
                throw new UsageException($"'{change}' is not a label change: KEY=VALUE sets one, KEY- removes it");
            }
        }
        if (set.Select(kv => Orchestrator.Api.Workloads.LabelSelector.Problem(kv.Key, kv.Value)).OfType<string>().FirstOrDefault() is { } problem)
        {
            throw new UsageException(problem);
        }
        LabelReply reply;
        try
        {
            reply = await context.Node(node).LabelAsync(new LabelRequest { Set = set, Remove = remove, Overwrite = parsed.Has("--overwrite") }).ConfigureAwait(false);
        }
        catch (Orchestrator.Client.NodeRequestException e) when (e.Kind != ErrorKind.Unavailable)
        {
            throw new Orchestrator.Client.NodeRequestException(e.Kind, $"node '{node}': {e.Message}", e); // the node's refusal, said as the node's
        }
        Console.Out.WriteLine(reply.Changed ? $"node/{node} labeled" : $"node/{node} not labeled (no change)");
        return 0;
    }
}

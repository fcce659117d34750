using System.Text.Json;
using Orchestrator.Client;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;

namespace Orchestrator.Ctl;

/// <summary>apply -f (file, directory, stdin; --dry-run diffs against the fleet) and delete.</summary>
internal static class ApplyCommands
{
    /// <summary>An apply or delete with its flags parsed and its -f files read and checked: before orchctl connects.</summary>
    internal sealed record Prepared(string Command, ParsedArgs Parsed, List<(Deployment Deployment, string Source)>? Deployments)
    {
        /// <summary>A compose file's top-level secrets and configs, each with the file it was declared in.</summary>
        public List<(SecretSource Secret, string File)> Secrets { get; init; } = [];
    }

    /// <summary>
    /// Parses the flags and loads the manifests. A broken file is the user's input, as a bad flag is:
    /// it is said (every error of every file, each line "orchctl: FILE:LINE:COL: …") and exits 2
    /// before NATS is asked anything, reachable or not.
    /// </summary>
    public static Prepared Prepare(string command, List<string> args)
    {
        var parsed = ParsedArgs.Parse(command, args);
        var files = parsed.Values("--file");
        if (command == "apply" || files.Count > 0)
        {
            try
            {
                var secrets = new List<(SecretSource, string)>();
                var loaded = Load(ReadSources(files, command), secrets, source => ComposeShapeFor(source, parsed.Has("--stack"), parsed.Values("--env-file"), parsed.Values("--image-map")));
                if (command == "apply")
                {
                    Target(parsed, loaded);
                }
                return new Prepared(command, parsed, loaded) { Secrets = secrets };
            }
            catch (ManifestException e)
            {
                throw new UsageException(string.Join("\n", e.Message.Split('\n').Select(l => l.StartsWith("orchctl: ", StringComparison.Ordinal) ? l : "orchctl: " + l)), e);
            }
        }
        return new Prepared(command, parsed, null);
    }

    public static async Task<int> RunAsync(Prepared prepared, CommandContext context)
        => prepared.Command == "apply"
            ? await ApplyAsync(prepared.Parsed, prepared.Deployments!, prepared.Secrets, context).ConfigureAwait(false)
            : await DeleteAsync(prepared.Parsed, prepared.Deployments, context).ConfigureAwait(false);

    /// <summary>The manifests named by -f: a file, every *.yaml/*.yml/*.json of a directory (name order), or - (stdin).</summary>
    private static List<(string Source, string Text)> ReadSources(IReadOnlyList<string> files, string command)
    {
        if (files.Count == 0)
        {
            throw new UsageException($"{command} needs -f FILE, -f DIR or -f - (deployments, kind: Deployment; see docs/manifest.md)");
        }
        var sources = new List<(string, string)>();
        foreach (var file in files)
        {
            if (file == "-")
            {
                sources.Add(("stdin", Console.In.ReadToEnd()));
            }
            else if (Directory.Exists(file))
            {
                var found = Directory.EnumerateFiles(file)
                    .Where(f => f.EndsWith(".yaml", StringComparison.Ordinal) || f.EndsWith(".yml", StringComparison.Ordinal) || f.EndsWith(".json", StringComparison.Ordinal))
                    .Order(StringComparer.Ordinal).ToList();
                if (found.Count == 0)
                {
                    throw new UsageException($"{file} has no *.yaml, *.yml or *.json files; give a directory of manifests or a file");
                }
                sources.AddRange(found.Select(f => (f, File.ReadAllText(f))));
            }
            else if (File.Exists(file))
            {
                sources.Add((file, File.ReadAllText(file)));
            }
            else
            {
                throw new UsageException($"-f {file}: no such file or directory; give a manifest file, a directory or - for stdin");
            }
        }
        return sources;
    }

    /// <summary>
    /// Every deployment in the sources (kind: Deployment documents, or a docker-compose file, through
    /// ManifestLoader.LoadFleetManifest); all errors of all files at once (ManifestException), and the
    /// loader's warnings (compose keys that do not map) on stderr.
    /// </summary>
    /// <param name="stack">A compose file's services as deployments of their own (--stack), not one app.</param>
    private static List<(Deployment Deployment, string Source)> Load(List<(string Source, string Text)> sources, List<(SecretSource, string)> secrets, Func<string, ComposeShape> shapeOf)
    {
        var deployments = new List<(Deployment, string)>();
        var errors = new List<string>();
        var seen = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (source, text) in sources)
        {
            try
            {
                var manifest = ManifestLoader.LoadFleetManifest(text, source, shapeOf(source));
                foreach (var warning in manifest.Warnings)
                {
                    Output.Warning(warning);
                }
                secrets.AddRange(manifest.Sources.Select(s => (s, source)));
                foreach (var deployment in manifest.Deployments)
                {
                    if (seen.TryGetValue(deployment.Name, out var first))
                    {
                        errors.Add($"{source}: deployment '{deployment.Name}' is also in {first}; each deployment once");
                        continue;
                    }
                    seen[deployment.Name] = source;
                    deployments.Add((deployment, source));
                }
            }
            catch (ManifestException e)
            {
                foreach (var warning in e.Warnings)
                {
                    Output.Warning(warning); // all of them now, so that fixing the errors brings no second batch
                }
                errors.Add(e.Message);
            }
        }
        if (errors.Count > 0)
        {
            throw new ManifestException(string.Join("\n", errors));
        }
        if (deployments.Count == 0)
        {
            throw new ManifestException($"{string.Join(", ", sources.Select(s => s.Source))}: no deployments (kind: Deployment) in it; see docs/manifest.md");
        }
        return deployments;
    }

    /// <summary>
    /// How a compose file named <paramref name="source"/> is read (apply and sign alike): one app
    /// unless <paramref name="stack"/>; interpolated from the shell over the project's .env (or the
    /// --env-file files), as docker compose does; --image-map SERVICE=IMAGE pairs.
    /// </summary>
    internal static ComposeShape ComposeShapeFor(string source, bool stack, IReadOnlyList<string> envFiles, IReadOnlyList<string> imageMaps)
    {
        var directory = source is "stdin" or "-" ? Environment.CurrentDirectory : Path.GetDirectoryName(Path.GetFullPath(source));
        var images = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in imageMaps)
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0 || eq == pair.Length - 1)
            {
                throw new UsageException($"--image-map '{pair}': give SERVICE=IMAGE, e.g. --image-map web=registry.local/web:1.4");
            }
            images[pair[..eq]] = pair[(eq + 1)..];
        }
        return new ComposeShape(!stack, directory)
        {
            LoadEnvironment = () => ComposeEnvironment.Load(directory, envFiles, ComposeEnvironment.Process()),
            ImageMap = images,
        };
    }

    /// <summary>
    /// apply --global and -l: every deployment of the files runs on every node with these labels
    /// (a compose file is written for one device: `orchctl apply -f docker-compose.yml --global -l
    /// fleet=sensors` is the whole fleet's deployment). Checked again as a manifest would be.
    /// </summary>
    private static void Target(ParsedArgs parsed, List<(Deployment Deployment, string Source)> deployments)
    {
        var global = parsed.Has("--global");
        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var term in parsed.Values("--node-selector").SelectMany(v => v.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)))
        {
            var eq = term.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0 || term.Contains("!=", StringComparison.Ordinal) || term[..eq].Any(c => char.IsWhiteSpace(c) || c == ','))
            {
                throw new UsageException($"-l '{term}': apply takes node labels as key=value (a deployment's selector is labels a node must all have)");
            }
            labels[term[..eq]] = term[(eq + 1)..];
        }
        if (!global && labels.Count == 0)
        {
            return;
        }
        var errors = new List<string>();
        foreach (var (deployment, source) in deployments)
        {
            if (global)
            {
                if (deployment.Replicas != 1 || deployment.Autoscale is not null)
                {
                    errors.Add($"{source}: deployment '{deployment.Name}': --global runs one copy on every matching node, but it sets {(deployment.Autoscale is not null ? "autoscale" : $"replicas {deployment.Replicas} (scale, deploy.replicas)")}; take that out of the file");
                    continue;
                }
                deployment.Mode = DeploymentMode.Global;
                deployment.AntiAffinity = false;
            }
            if (labels.Count > 0)
            {
                deployment.Selector = new Dictionary<string, string>(deployment.Selector ?? [], StringComparer.Ordinal);
                foreach (var (key, value) in labels)
                {
                    deployment.Selector[key] = value;
                }
            }
            errors.AddRange(ManifestLoader.ValidateDeployment(deployment).Select(e => $"{source}: deployment '{deployment.Name}' with {(global ? "--global" : "")}{(global && labels.Count > 0 ? " and " : "")}{(labels.Count > 0 ? "-l" : "")}: {e}"));
        }
        if (errors.Count > 0)
        {
            throw new ManifestException(string.Join("\n", errors));
        }
    }

    /// <summary>A deployment as the fleet stores it, indented, without revision, signature and who wrote it (those are compared apart).</summary>
    private static string Canonical(Deployment deployment)
    {
        var copy = JsonSerializer.Deserialize(JsonSerializer.SerializeToUtf8Bytes(deployment, WorkloadJsonContext.Default.Deployment), WorkloadJsonContext.Default.Deployment)!;
        copy.Revision = null;
        copy.Generation = null;
        copy.Signature = null;
        copy.ChangedBy = null;
        copy.ChangedAt = null;
        return Output.PrettyJson(JsonSerializer.SerializeToUtf8Bytes(copy, WorkloadJsonContext.Default.Deployment));
    }

    private static string Signer(ManifestSignature? signature) => signature is null ? "unsigned" : $"signed by {signature.Key[..Math.Min(12, signature.Key.Length)]}…";

    private static async Task<int> ApplyAsync(ParsedArgs parsed, List<(Deployment Deployment, string Source)> deployments, List<(SecretSource Secret, string File)> secrets, CommandContext context)
    {
        var dryRun = parsed.Has("--dry-run");
        var seed = FleetCommands.SigningSeed(parsed, context);
        string? signingKey = null;
        if (seed is not null)
        {
            using var pair = NATS.NKeys.KeyPair.FromSeed(seed);
            signingKey = pair.GetPublicKey();
        }
        var fleet = (await context.Fleet.GetDeploymentsAsync().ConfigureAwait(false)).ToDictionary(v => v.Deployment.Name, v => v.Deployment, StringComparer.Ordinal);
        // A compose file's secrets and configs are made (or given a new version) first: its services pin them.
        var planned = await ApplySecretsAsync(secrets, seed, dryRun, context).ConfigureAwait(false);
        var color = Terminal.Color;
        var toWrite = new List<(Deployment Deployment, bool Created, ReplicaDecision Replicas)>();
        foreach (var (deployment, source) in deployments)
        {
            // A file signed elsewhere (orchctl sign) is checked here, before anything is written.
            if (seed is null && deployment.Signature is { } signature
                && ManifestSigning.Verify(deployment.Name, deployment.Selector, deployment.Template, signature, [signature.Key]) is { } why)
            {
                throw new NodeRequestException(why);
            }
            // Each secret and config it uses gets the current version (what the diff shows, and what is signed).
            // (A dry run's compose secrets: the version this apply would make.)
            await context.Fleet.PinSecretsAsync(deployment, signing: seed is not null, planned).ConfigureAwait(false);
            fleet.TryGetValue(deployment.Name, out var existing);
            // The count the fleet will store (the autoscaler's, kept, when the file leaves replicas out): what the diff compares.
            var replicas = ReplicaOwnership.Apply(deployment, existing);
            var incoming = Canonical(deployment);
            if (existing is null)
            {
                if (dryRun)
                {
                    Console.Out.WriteLine($"deployment {deployment.Name}: {Terminal.Paint("created", Terminal.Green, color)} (dry run)");
                    WriteNote(replicas.Note);
                    // What the fleet would store, values filled in (a compose file's variables, env files, image map).
                    foreach (var line in incoming.Split('\n'))
                    {
                        Console.Out.WriteLine("  " + Terminal.Paint("+" + line, Terminal.Green, color));
                    }
                }
                toWrite.Add((deployment, true, replicas));
                continue;
            }
            var stored = Canonical(existing);
            // With --sign-key every deployment is signed afresh (a new serial), so it is written even when its content is unchanged.
            var sameSignature = seed is null && (deployment.Signature is null ? existing.Signature is null
                : existing.Signature is { } s && s.Key == deployment.Signature.Key && s.Serial == deployment.Signature.Serial && s.Sig == deployment.Signature.Sig);
            if (incoming == stored && sameSignature)
            {
                Console.Out.WriteLine($"deployment {deployment.Name}: unchanged");
                WriteNote(replicas.Note);
                continue;
            }
            toWrite.Add((deployment, false, replicas));
            if (!dryRun)
            {
                continue;
            }
            Console.Out.WriteLine($"deployment {deployment.Name}: {Terminal.Paint(incoming == stored ? "re-signed" : "changed", Terminal.Yellow, color)} (dry run)");
            WriteNote(replicas.Note);
            foreach (var line in Diff.Unified($"the fleet ({deployment.Name}, revision {existing.ShownRevision()})", $"{source} ({deployment.Name})", stored, incoming))
            {
                var code = line.StartsWith("+++", StringComparison.Ordinal) || line.StartsWith("---", StringComparison.Ordinal) ? Terminal.Bold
                    : line.StartsWith('+') ? Terminal.Green : line.StartsWith('-') ? Terminal.Red : line.StartsWith('@') ? Terminal.Cyan : null;
                Console.Out.WriteLine("  " + (code is null ? line : Terminal.Paint(line, code, color)));
            }
            if (!sameSignature)
            {
                var after = seed is not null ? $"signed by {signingKey![..12]}… (on apply)" : Signer(deployment.Signature);
                Console.Out.WriteLine($"  signature: {Signer(existing.Signature)} → {after}");
            }
        }
        if (dryRun)
        {
            var created = toWrite.Count(w => w.Created);
            Console.Out.WriteLine($"dry run: {created} to create, {toWrite.Count - created} to change, {deployments.Count - toWrite.Count} unchanged; nothing written");
            return 0;
        }
        if (toWrite.Count == 0)
        {
            return 0;
        }
        var revisions = await context.Fleet.ApplyAsync(toWrite.Select(w => w.Deployment), seed).ConfigureAwait(false);
        foreach (var ((name, revision), (written, created, replicas)) in revisions.Zip(toWrite))
        {
            var what = created ? Terminal.Paint("created", Terminal.Green, color) : Terminal.Paint("configured", Terminal.Yellow, color);
            Console.Out.WriteLine($"deployment {name}: {what} (revision {revision}{(seed is null ? "" : ", signed")})");
            WriteNote(replicas.Note);
            // The fleet decides again on the value it replaces: the autoscaler may have moved in between.
            if (written.Replicas != replicas.Replicas)
            {
                WriteNote($"replicas {written.Replicas} written: the fleet's count changed while this applied (the autoscaler), and its new count was kept");
            }
        }
        return 0;
    }

    /// <summary>
    /// A compose file's top-level secrets and configs: each read from its file (beside the compose
    /// file), orchctl's environment or inline content, then made in the fleet when it is not there,
    /// or given a new version when its value changed (which rolls out the services that use it);
    /// external ones must exist. Returns the version each will have (for a dry run's diff).
    /// </summary>
    private static async Task<Dictionary<(SecretKind, string), long>> ApplySecretsAsync(List<(SecretSource Secret, string File)> secrets, string? seed, bool dryRun, CommandContext context)
    {
        var versions = new Dictionary<(SecretKind, string), long>();
        foreach (var (secret, composeFile) in secrets.DistinctBy(s => (s.Secret.Kind, s.Secret.Name)))
        {
            var noun = SecretMounts.Noun(secret.Kind);
            if (secret.External)
            {
                continue; // pinned (and checked to exist) with the deployment
            }
            byte[] value;
            string from;
            if (secret.File is { } file)
            {
                var path = Path.IsPathRooted(file) ? file : Path.Combine(Path.GetDirectoryName(Path.GetFullPath(composeFile)) ?? ".", file);
                try
                {
                    value = File.ReadAllBytes(path);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw new NodeRequestException(ErrorKind.NotFound, $"{secret.Where}: file '{file}' cannot be read ({e.Message}); it is read beside the compose file, on the machine that applies it");
                }
                from = file;
            }
            else if (secret.Environment is { } variable)
            {
                value = System.Text.Encoding.UTF8.GetBytes(Environment.GetEnvironmentVariable(variable)
                    ?? throw new NodeRequestException(ErrorKind.NotFound, $"{secret.Where}: the variable {variable} is not set in this shell; export it, or give file:"));
                from = "$" + variable;
            }
            else
            {
                value = System.Text.Encoding.UTF8.GetBytes(secret.Content ?? "");
                from = "content:";
            }
            var current = await context.Fleet.ReadSecretValueAsync(secret.Kind, secret.Name, seed).ConfigureAwait(false);
            if (current is not null && current.AsSpan().SequenceEqual(value))
            {
                Console.Out.WriteLine($"{noun} {secret.Name}: unchanged");
                continue;
            }
            if (dryRun)
            {
                var next = current is null ? 1 : (await context.Fleet.GetSecretAsync(secret.Kind, secret.Name).ConfigureAwait(false)).Version + 1;
                versions[(secret.Kind, secret.Name)] = next;
                Console.Out.WriteLine($"{noun} {secret.Name}: {(current is null ? "created" : "updated")} from {from} (version {next}, dry run)");
                continue;
            }
            var written = await context.Fleet.PutSecretAsync(secret.Kind, secret.Name, value, seed, update: current is not null).ConfigureAwait(false);
            Console.Out.WriteLine($"{noun} {secret.Name}: {(current is null ? "created" : "updated")} from {from} (version {written.Info.Version}{(secret.Kind == SecretKind.Secret ? $", sealed for {written.Sealed.Count} node(s)" : "")})");
            foreach (var skip in written.Skipped)
            {
                Output.Warning(skip);
            }
        }
        return versions;
    }

    /// <summary>Why the replica count is not simply the file's (kept for the autoscaler, clamped, handed back to the file), under the deployment's line.</summary>
    private static void WriteNote(string? note)
    {
        if (note is not null)
        {
            Console.Out.WriteLine("  " + note);
        }
    }

    private static async Task<int> DeleteAsync(ParsedArgs parsed, List<(Deployment Deployment, string Source)>? fromFiles, CommandContext context)
    {
        // -f: the files' deployments; and KIND A B, or KIND/A KIND/B.
        var targets = new List<(string Kind, string Name)>();
        targets.AddRange((fromFiles ?? []).Select(d => ("deployment", d.Deployment.Name)));
        targets.AddRange(Targets(parsed.Positional, "delete"));
        if (targets.Count == 0)
        {
            throw new UsageException("delete deployment|container|node NAME…, or delete -f FILE|DIR|- (the deployments in it)");
        }
        var failed = 0;
        foreach (var (what, name) in targets.Distinct())
        {
            try
            {
                switch (what)
                {
                    case "deployment":
                        await context.Fleet.DeleteDeploymentAsync(name).ConfigureAwait(false);
                        Console.Out.WriteLine($"deployment {name}: deleted");
                        break;
                    case "node":
                        await context.Fleet.DeleteNodeAsync(name, parsed.Has("--force")).ConfigureAwait(false);
                        Console.Out.WriteLine($"node {name}: deleted (its replicas are placed elsewhere)");
                        break;
                    default:
                        // One node's container, found as logs and exec find it; a fleet replica is
                        // run again by its deployment (as kubectl delete pod).
                        var node = await context.FindContainerNodeAsync(name).ConfigureAwait(false);
                        var client = context.Node(node);
                        var fleetOwned = (await client.InspectAsync(name).ConfigureAwait(false)).Source == "fleet";
                        await client.RemoveAsync(name).ConfigureAwait(false);
                        Console.Out.WriteLine($"container {name}: deleted on {node}{(fleetOwned ? "; its deployment runs it again" : "")}");
                        break;
                }
            }
            catch (OrchestratorException e) when (e.Kind == ErrorKind.NotFound)
            {
                if (parsed.Has("--ignore-not-found"))
                {
                    Console.Out.WriteLine($"{what} {name}: not found (ignored)");
                }
                else
                {
                    Output.Error(e.Message);
                    failed++;
                }
            }
            catch (OrchestratorException e) when (e.Kind == ErrorKind.Conflict)
            {
                Output.Error(e.Message);
                failed++;
            }
        }
        return failed == 0 ? 0 : 1;
    }

    /// <summary>
    /// The objects a command names, in kubectl's two forms: <c>KIND A B</c> or <c>KIND/A KIND/B</c>
    /// (delete, wait). Kinds: deployment, container, node (plural and short forms too).
    /// </summary>
    internal static List<(string Kind, string Name)> Targets(IReadOnlyList<string> positional, string command)
    {
        var targets = new List<(string Kind, string Name)>();
        string? kind = null;
        foreach (var word in positional)
        {
            var slash = word.IndexOf('/', StringComparison.Ordinal);
            if (slash > 0)
            {
                targets.Add((Kind(word[..slash]), word[(slash + 1)..]));
            }
            else if (kind is null)
            {
                kind = Kind(word);
            }
            else
            {
                targets.Add((kind, word));
            }
        }
        return targets;

        string Kind(string word) => word switch
        {
            "deployment" or "deployments" or "deploy" => "deployment",
            "container" or "containers" or "ctr" => "container",
            "node" or "nodes" or "no" => "node",
            _ => throw new UsageException($"{command} {word}: {command} deployment, container or node NAME…{(command == "delete" ? " (or delete -f FILE)" : "")}"),
        };
    }
}

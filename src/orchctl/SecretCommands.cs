using System.Globalization;
using System.Text.Json;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Client;

namespace Orchestrator.Ctl;

/// <summary>
/// `orchctl secret create|update|sync|ls|rm` and `orchctl configmap create|update|ls|rm`: a
/// secret is sealed to each node's own key with the operator's (--sign-key), a config is stored in
/// clear (signed when a key is given); an update is a new version, and every deployment that uses
/// it is re-applied pinned to it, which rolls it out as any other change.
/// </summary>
internal static class SecretCommands
{
    public static async Task<int> RunAsync(string command, List<string> args, CommandContext context)
    {
        var kind = command == "secret" ? SecretKind.Secret : SecretKind.Config;
        var parsed = ParsedArgs.Parse(command, args);
        var positional = parsed.Positional;
        var usage = $"orchctl {Commands.Find(command)!.Usage}";
        var client = context.Fleet;
        switch (positional)
        {
            case [var verb and ("create" or "update"), var name]:
                {
                    var value = ReadValue(parsed, kind, name);
                    var seed = FleetCommands.SigningSeed(parsed, context);
                    var users = verb == "update" ? await client.SecretUsersAsync(kind, name).ConfigureAwait(false) : [];
                    if (seed is null && users.FirstOrDefault(d => d.Signature is not null) is { } signed)
                    {
                        throw new NodeRequestException(ErrorKind.Invalid, $"deployment '{signed.Name}' uses {SecretMounts.Noun(kind)} '{name}' and is signed; give --sign-key so it can be signed again with the new version (nothing was written)");
                    }
                    var written = await client.PutSecretAsync(kind, name, value, seed, update: verb == "update").ConfigureAwait(false);
                    var sealedNote = kind == SecretKind.Secret ? $", sealed for {Count(written.Sealed.Count, "node")}" : "";
                    Console.Out.WriteLine($"{SecretMounts.Noun(kind)} {name}: {(verb == "create" ? "created" : "updated")} (version {written.Info.Version}, {Count(value.Length, "byte")}{sealedNote})");
                    foreach (var skip in written.Skipped)
                    {
                        Output.Warning(skip);
                    }
                    if (users.Count > 0)
                    {
                        foreach (var deployment in users)
                        {
                            foreach (var mount in SecretMounts.Named(deployment.Template, kind, name))
                            {
                                mount.Version = written.Info.Version;
                            }
                        }
                        foreach (var (deployment, revision) in await client.ApplyAsync(users, seed).ConfigureAwait(false))
                        {
                            Console.Out.WriteLine($"deployment {deployment}: rolling out version {written.Info.Version} (revision {revision}); `orchctl rollout status {deployment} -w` follows it");
                        }
                    }
                    return 0;
                }
            case ["sync", .. var names] when kind == SecretKind.Secret:
                {
                    var seed = FleetCommands.SigningSeed(parsed, context)
                        ?? throw new NodeRequestException(ErrorKind.Invalid, "secret sync opens the escrow copies with the operator's key: give --sign-key FILE (or ORCH_SIGN_KEY)");
                    var all = names.Count == 0 ? (await client.ListSecretsAsync(kind).ConfigureAwait(false)).Select(s => s.Name).ToList() : names.ToList();
                    if (all.Count == 0)
                    {
                        Console.Out.WriteLine("no secrets in the fleet");
                        return 0;
                    }
                    foreach (var name in all)
                    {
                        var synced = await client.SyncSecretAsync(name, seed).ConfigureAwait(false);
                        Console.Out.WriteLine(synced.Sealed.Count == 0
                            ? $"secret {name}: every node has its copy"
                            : $"secret {name}: sealed for {Count(synced.Sealed.Count, "node")} ({string.Join(", ", synced.Sealed.Take(10))}{(synced.Sealed.Count > 10 ? ", …" : "")})");
                        foreach (var skip in synced.Skipped)
                        {
                            Output.Warning(skip);
                        }
                    }
                    return 0;
                }
            case ["ls" or "list" or "get"]:
                {
                    var list = await client.ListSecretsAsync(kind).ConfigureAwait(false);
                    var format = ListFormat(parsed);
                    if (format == "json")
                    {
                        Console.Out.WriteLine(Output.PrettyJson(JsonSerializer.SerializeToUtf8Bytes(list.ToList(), SecretJsonContext.Default.ListSecretInfo)));
                        return 0;
                    }
                    if (format == "name")
                    {
                        foreach (var s in list)
                        {
                            Console.Out.WriteLine(s.Name);
                        }
                        return 0;
                    }
                    string[] header = kind == SecretKind.Secret ? ["NAME", "VERSION", "SIZE", "NODES", "CREATED", "BY"] : ["NAME", "VERSION", "SIZE", "CREATED", "BY"];
                    Output.Table(header, list.Select(s => kind == SecretKind.Secret
                        ? new[] { s.Name, V(s.Version), V(s.Size), V(s.Nodes?.Count ?? 0), Age(s.CreatedAt), s.CreatedBy ?? "" }
                        : new[] { s.Name, V(s.Version), V(s.Size), Age(s.CreatedAt), s.CreatedBy ?? "" }));
                    return 0;
                }
            case ["rm" or "delete", .. var names] when names.Count > 0:
                {
                    var failed = 0;
                    foreach (var name in names)
                    {
                        try
                        {
                            await client.DeleteSecretAsync(kind, name).ConfigureAwait(false);
                            Console.Out.WriteLine($"{SecretMounts.Noun(kind)} {name}: deleted");
                        }
                        catch (OrchestratorException e) when (e.Kind is ErrorKind.NotFound or ErrorKind.Conflict)
                        {
                            Output.Error(e.Message);
                            failed++;
                        }
                    }
                    return failed == 0 ? 0 : 1;
                }
            default:
                throw new UsageException(usage);
        }
    }

    /// <summary>The value: --from-file FILE (- for stdin) or --from-literal VALUE, exactly one.</summary>
    private static byte[] ReadValue(ParsedArgs parsed, SecretKind kind, string name)
    {
        var file = parsed.Value("--from-file");
        var literal = parsed.Value("--from-literal");
        if ((file is null) == (literal is null))
        {
            throw new UsageException($"{SecretMounts.Noun(kind)} {name}: give the value with --from-file FILE (- for stdin) or --from-literal VALUE (one of them)");
        }
        if (literal is not null)
        {
            return System.Text.Encoding.UTF8.GetBytes(literal);
        }
        try
        {
            if (file == "-")
            {
                using var stdin = Console.OpenStandardInput();
                using var buffer = new MemoryStream();
                stdin.CopyTo(buffer);
                return buffer.ToArray();
            }
            return File.ReadAllBytes(file!);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"--from-file {file}: {e.Message}");
        }
    }

    private static string V(long n) => n.ToString(CultureInfo.InvariantCulture);

    private static string Count(int n, string noun) => $"{V(n)} {noun}{(n == 1 ? "" : "s")}";

    private static string Age(DateTimeOffset at)
    {
        var age = DateTimeOffset.UtcNow - at;
        return age.TotalDays >= 1 ? $"{(int)age.TotalDays}d" : age.TotalHours >= 1 ? $"{(int)age.TotalHours}h" : age.TotalMinutes >= 1 ? $"{(int)age.TotalMinutes}m" : $"{Math.Max(0, (int)age.TotalSeconds)}s";
    }

    private static string ListFormat(ParsedArgs parsed)
        => parsed.Value("--output") is not { } format ? "table"
            : format is "table" or "json" or "name" ? format
            : throw new UsageException($"-o {format}: use table, json or name");
}

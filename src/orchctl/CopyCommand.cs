using System.Formats.Tar;
using System.IO.Pipelines;
using Orchestrator.Api;

namespace Orchestrator.Ctl;

/// <summary>
/// `orchctl cp SRC DEST`: files and directories into or out of a running container, over NATS,
/// as docker cp and kubectl cp do it. One side is CONTAINER:PATH, the other a local path or "-"
/// (a tar stream on stdin or stdout). The node reads and writes in the container's own root
/// (docs/orchctl.md, "cp"); here, an archive coming out is held to its destination as strictly:
/// no "..", no absolute names, nothing written through a symlink, no device files.
/// </summary>
internal static class CopyCommand
{
    public static async Task<int> RunAsync(ParsedArgs parsed, CommandContext context)
    {
        if (parsed.Positional.Count != 2)
        {
            throw new UsageException($"cp needs a source and a destination: orchctl {Commands.Find("cp")!.Usage}");
        }
        var (from, to) = (Remote(parsed.Positional[0]), Remote(parsed.Positional[1]));
        if (from is not null && to is not null)
        {
            throw new UsageException("cp copies between a container and this machine, not between two containers; copy out, then in");
        }
        if (from is null && to is null)
        {
            throw new UsageException($"cp needs one side in a container, written CONTAINER:PATH (e.g. web-0:/etc/hosts); '{parsed.Positional[0]}' and '{parsed.Positional[1]}' are both local");
        }
        var keepOwners = parsed.Has("--archive");
        return from is { } source
            ? await CopyOutAsync(source.Container, source.Path, parsed.Positional[1], context).ConfigureAwait(false)
            : await CopyInAsync(parsed.Positional[0], to!.Value.Container, to.Value.Path, keepOwners, context).ConfigureAwait(false);
    }

    /// <summary>CONTAINER:PATH (the part before the colon a name, no slash in it), or null for a local path.</summary>
    private static (string Container, string Path)? Remote(string arg)
    {
        var colon = arg.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0 || arg[..colon].Contains('/', StringComparison.Ordinal) || arg.StartsWith('.'))
        {
            return null;
        }
        var path = arg[(colon + 1)..];
        return path.Length == 0
            ? throw new UsageException($"'{arg}' needs a path in the container after the colon, e.g. {arg}/tmp")
            : (arg[..colon], path);
    }

    private static async Task<int> CopyOutAsync(string container, string path, string destination, CommandContext context)
    {
        var client = context.Node(await context.FindContainerNodeAsync(container).ConfigureAwait(false));
        if (destination == "-")
        {
            var stdout = Console.OpenStandardOutput();
            await using (stdout.ConfigureAwait(false))
            {
                Warn((await client.CopyFromAsync(container, path, stdout).ConfigureAwait(false)).Skipped, "left out");
            }
            return 0;
        }
        var local = LocalTarget.Of(destination);
        var pipe = new Pipe();
        var copying = Task.Run(async () =>
        {
            try
            {
                var done = await client.CopyFromAsync(container, path, pipe.Writer.AsStream(leaveOpen: true)).ConfigureAwait(false);
                await pipe.Writer.CompleteAsync().ConfigureAwait(false);
                return done;
            }
            catch (Exception e)
            {
                await pipe.Writer.CompleteAsync(e).ConfigureAwait(false);
                throw;
            }
        });
        int written;
        try
        {
            written = await ExtractAsync(pipe.Reader.AsStream(leaveOpen: true), local).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            await pipe.Reader.CompleteAsync().ConfigureAwait(false);
            if (copying.IsFaulted)
            {
                await copying.ConfigureAwait(false); // the node's error, when it was the node's
            }
            if (e is InvalidDataException or FormatException)
            {
                throw new NodeRequestException(ErrorKind.Invalid, $"the archive from {container}:{path} is damaged ({e.Message}); nothing more was written", e);
            }
            throw;
        }
        var result = await copying.ConfigureAwait(false);
        Warn(result.Skipped, "left out");
        Console.Out.WriteLine($"copied {container}:{path} to {destination} ({written} {(written == 1 ? "entry" : "entries")}, {Output.Bytes(result.Bytes)})");
        return 0;
    }

    private static async Task<int> CopyInAsync(string source, string container, string path, bool keepOwners, CommandContext context)
    {
        if (source != "-" && !File.Exists(source) && !Directory.Exists(source) && new FileInfo(source).LinkTarget is null)
        {
            throw new UsageException($"'{source}' does not exist here");
        }
        var client = context.Node(await context.FindContainerNodeAsync(container).ConfigureAwait(false));
        CopyDone done;
        if (source == "-")
        {
            var stdin = Console.OpenStandardInput();
            await using (stdin.ConfigureAwait(false))
            {
                done = await client.CopyToAsync(container, path, stdin, keepOwners).ConfigureAwait(false);
            }
        }
        else
        {
            var pipe = new Pipe();
            var archiving = Task.Run(async () =>
            {
                try
                {
                    await ArchiveAsync(source, pipe.Writer.AsStream(leaveOpen: true)).ConfigureAwait(false);
                    await pipe.Writer.CompleteAsync().ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    await pipe.Writer.CompleteAsync(e).ConfigureAwait(false);
                    throw;
                }
            });
            try
            {
                done = await client.CopyToAsync(container, path, pipe.Reader.AsStream(leaveOpen: true), keepOwners).ConfigureAwait(false);
            }
            finally
            {
                await pipe.Reader.CompleteAsync().ConfigureAwait(false);
            }
            await archiving.ConfigureAwait(false);
        }
        Warn(done.Skipped, "not created in the container");
        Console.Out.WriteLine($"copied {source} to {container}:{path} ({done.Entries} {(done.Entries == 1 ? "entry" : "entries")}, {Output.Bytes(done.Bytes)})");
        return 0;
    }

    private static void Warn(IReadOnlyList<string> skipped, string what)
    {
        if (skipped.Count > 0)
        {
            Output.Warning($"{string.Join(", ", skipped)}{(skipped.Count >= 20 ? " and more" : "")}: sockets, device files and fifos are {what}");
        }
    }

    // ---------------------------------------------------------------- this machine's side

    /// <summary>A local file or directory as a tar stream, named by its last part (a directory's contents with "DIR/.").</summary>
    private static async Task ArchiveAsync(string source, Stream output)
    {
        var contents = source.EndsWith("/.", StringComparison.Ordinal);
        var full = Path.GetFullPath(contents ? source[..^2] : source).TrimEnd('/');
        var top = contents ? "." : Path.GetFileName(full);
        var writer = new TarWriter(output, TarEntryFormat.Pax, leaveOpen: true);
        await using (writer.ConfigureAwait(false))
        {
            await AddAsync(writer, full, top.Length == 0 ? "." : top).ConfigureAwait(false);
        }
    }

    private static async Task AddAsync(TarWriter writer, string path, string name)
    {
        var info = new FileInfo(path);
        var isDirectory = info.LinkTarget is null && Directory.Exists(path);
        if (name != ".")
        {
            await writer.WriteEntryAsync(path, name).ConfigureAwait(false); // a symlink goes as itself, never followed
        }
        if (isDirectory)
        {
            foreach (var child in Directory.EnumerateFileSystemEntries(path).Order(StringComparer.Ordinal))
            {
                var childName = Path.GetFileName(child);
                await AddAsync(writer, child, name == "." ? childName : $"{name}/{childName}").ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Where an archive from a container lands, as docker cp decides: into an existing directory,
    /// or as the named path in its (existing) directory, the archive's top entry renamed.
    /// </summary>
    private sealed record LocalTarget(string Directory, string? Rename, bool IsExistingFile)
    {
        public static LocalTarget Of(string destination)
        {
            var full = Path.GetFullPath(destination);
            if (System.IO.Directory.Exists(full))
            {
                return new LocalTarget(full, null, false);
            }
            var parent = Path.GetDirectoryName(full.TrimEnd('/')) ?? "/";
            if (!System.IO.Directory.Exists(parent))
            {
                throw new UsageException($"the directory '{parent}' does not exist here; create it first");
            }
            return new LocalTarget(parent, Path.GetFileName(full.TrimEnd('/')), File.Exists(full));
        }
    }

    /// <summary>Unpacks the archive at the target; returns the entries written.</summary>
    private static async Task<int> ExtractAsync(Stream tar, LocalTarget target)
    {
        using var reader = new TarReader(tar, leaveOpen: true);
        var written = 0;
        string? top = null;
        var directories = new List<(string Path, UnixFileMode Mode)>();
        TarEntry? entry;
        while ((entry = await reader.GetNextEntryAsync().ConfigureAwait(false)) is not null)
        {
            if (entry.EntryType is TarEntryType.GlobalExtendedAttributes or TarEntryType.ExtendedAttributes)
            {
                continue;
            }
            var parts = Parts(entry.Name);
            if (parts.Count == 0)
            {
                continue;
            }
            top ??= parts[0];
            if (parts[0] != top)
            {
                throw new NodeRequestException(ErrorKind.Invalid, $"the container sent an archive with two tops ('{top}', '{parts[0]}'): refused");
            }
            if (target.Rename is { } rename)
            {
                if (target.IsExistingFile && (parts.Count > 1 || entry.EntryType == TarEntryType.Directory))
                {
                    throw new UsageException($"'{Path.Combine(target.Directory, rename)}' is a file here; a directory cannot be copied onto it");
                }
                parts[0] = rename;
            }
            var path = Beneath(target.Directory, parts, entry.Name);
            switch (entry.EntryType)
            {
                case TarEntryType.Directory:
                    if (new FileInfo(path).LinkTarget is not null || File.Exists(path))
                    {
                        File.Delete(path);
                    }
                    Directory.CreateDirectory(path);
                    directories.Add((path, entry.Mode));
                    break;
                case TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile:
                    RemoveLink(path);
                    var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None);
                    await using (file.ConfigureAwait(false))
                    {
                        if (entry.DataStream is { } data)
                        {
                            await data.CopyToAsync(file).ConfigureAwait(false);
                        }
                    }
                    File.SetUnixFileMode(path, entry.Mode);
                    File.SetLastWriteTimeUtc(path, entry.ModificationTime.UtcDateTime);
                    break;
                case TarEntryType.SymbolicLink:
                    RemoveLink(path);
                    if (File.Exists(path))
                    {
                        File.Delete(path);
                    }
                    File.CreateSymbolicLink(path, entry.LinkName);
                    break;
                case TarEntryType.HardLink:
                    var linkParts = Parts(entry.LinkName);
                    if (linkParts.Count == 0 || linkParts[0] != top)
                    {
                        throw new NodeRequestException(ErrorKind.Invalid, $"archive entry '{entry.Name}' links to '{entry.LinkName}', outside the archive: refused");
                    }
                    if (target.Rename is { } again)
                    {
                        linkParts[0] = again;
                    }
                    RemoveLink(path);
                    File.Copy(Beneath(target.Directory, linkParts, entry.LinkName), path, overwrite: true);
                    break;
                default:
                    continue; // device files, fifos: never made here (the node names them)
            }
            written++;
        }
        // Modes of directories last: a read-only one would have refused its own contents.
        foreach (var (path, mode) in Enumerable.Reverse(directories))
        {
            File.SetUnixFileMode(path, mode);
        }
        return top is null ? throw new NodeRequestException(ErrorKind.Invalid, "the container sent an empty archive") : written;
    }

    private static List<string> Parts(string name)
    {
        var parts = name.Split('/', StringSplitOptions.RemoveEmptyEntries).Where(p => p != ".").ToList();
        return name.StartsWith('/') || parts.Contains("..")
            ? throw new NodeRequestException(ErrorKind.Forbidden, $"the container sent an archive entry '{name}' that leaves the destination: refused, nothing written outside it")
            : parts;
    }

    /// <summary>The path under the target, refused when any directory on the way is a symlink (the archive's own or one already here).</summary>
    private static string Beneath(string directory, List<string> parts, string entryName)
    {
        var path = directory;
        for (var i = 0; i < parts.Count - 1; i++)
        {
            path = Path.Combine(path, parts[i]);
            if (new FileInfo(path).LinkTarget is not null)
            {
                throw new NodeRequestException(ErrorKind.Forbidden, $"archive entry '{entryName}' goes through the symlink '{path}': refused, nothing written through it");
            }
        }
        return Path.Combine(path, parts[^1]);
    }

    /// <summary>A symlink where a file goes is removed, never written through.</summary>
    private static void RemoveLink(string path)
    {
        if (new FileInfo(path).LinkTarget is not null)
        {
            File.Delete(path);
        }
    }
}

using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Orchestrator.Containerd.Api.Content;
using Orchestrator.Containerd.Api.Events;
using Orchestrator.Containerd.Api.Images;
using Orchestrator.Containerd.Api.Leases;
using Orchestrator.Containerd.Api.Snapshots;
using Info = Orchestrator.Containerd.Api.Content.Info;
using Orchestrator.Containerd.Api.Types;

namespace Orchestrator.Containerd;

/// <summary>Content, images, leases, snapshots, diff and events: what an image needs to exist in containerd.</summary>
public sealed partial class ContainerdClient
{
    /// <summary>The header that puts a call's new objects under a lease (kept from the garbage collector).</summary>
    public const string LeaseHeader = "containerd-lease";

    private const int WriteChunk = 1024 * 1024;

    private readonly Api.Content.Content.ContentClient _content;
    private readonly Api.Images.Images.ImagesClient _images;
    private readonly Api.Leases.Leases.LeasesClient _leases;
    private readonly Api.Snapshots.Snapshots.SnapshotsClient _snapshots;
    private readonly Api.Diff.Diff.DiffClient _diff;
    private readonly Api.Events.Events.EventsClient _events;

    private static Metadata? Under(string? lease) => lease is null ? null : new Metadata { { LeaseHeader, lease } };

    // ---------------------------------------------------------------- leases

    /// <summary>A lease that expires by itself after <paramref name="expiresAfter"/> (containerd.io/gc.expire), should its holder die.</summary>
    public async Task<string> CreateLeaseAsync(string id, TimeSpan expiresAfter, CancellationToken cancellationToken = default)
    {
        var request = new CreateRequest { Id = id };
        request.Labels["containerd.io/gc.expire"] = DateTimeOffset.UtcNow.Add(expiresAfter).ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture);
        var response = await Call("create lease", id, () => _leases.CreateAsync(request, deadline: Deadline(10), cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false);
        return response.Lease.Id;
    }

    public async Task DeleteLeaseAsync(string id, bool sync = false, CancellationToken cancellationToken = default)
        => await Call("delete lease", id, () => _leases.DeleteAsync(new DeleteRequest { Id = id, Sync = sync }, deadline: Deadline(60), cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false);

    public async Task<IReadOnlyList<Lease>> ListLeasesAsync(CancellationToken cancellationToken = default)
        => [.. (await Call("list", "leases", () => _leases.ListAsync(new ListRequest(), deadline: Deadline(10), cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false)).Leases];

    // ---------------------------------------------------------------- content

    /// <summary>The blob's size and labels, or null when the content store does not have it.</summary>
    public async Task<Info?> ContentInfoAsync(string digest, CancellationToken cancellationToken = default)
    {
        try
        {
            return (await _content.InfoAsync(new InfoRequest { Digest = digest }, deadline: Deadline(10), cancellationToken: cancellationToken).ResponseAsync.ConfigureAwait(false)).Info;
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return null;
        }
        catch (RpcException e)
        {
            throw Translate(e, "inspect content", digest);
        }
    }

    /// <summary>
    /// Ingests a blob: streamed in 1 MiB writes under <paramref name="reference"/>, then committed
    /// against its digest and size (containerd verifies both). A blob already there only gets
    /// the labels. True when bytes were written.
    /// </summary>
    public async Task<bool> WriteContentAsync(string reference, Stream data, string digest, long size, IReadOnlyDictionary<string, string>? labels = null,
        string? lease = null, CancellationToken cancellationToken = default)
    {
        if (await ContentInfoAsync(digest, cancellationToken).ConfigureAwait(false) is not null)
        {
            await LabelContentAsync(digest, labels, cancellationToken).ConfigureAwait(false);
            return false;
        }
        try
        {
            using var call = _content.Write(Under(lease), cancellationToken: cancellationToken);
            var buffer = new byte[WriteChunk];
            long offset = 0;
            while (true)
            {
                var read = await data.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
                var last = read < buffer.Length || offset + read >= size;
                var request = new WriteContentRequest
                {
                    Action = last ? WriteAction.Commit : WriteAction.Write,
                    Ref = reference,
                    Total = size,
                    Expected = digest,
                    Offset = offset,
                    Data = ByteString.CopyFrom(buffer, 0, read),
                };
                if (last)
                {
                    foreach (var (key, value) in labels ?? new Dictionary<string, string>())
                    {
                        request.Labels[key] = value;
                    }
                }
                await call.RequestStream.WriteAsync(request, cancellationToken).ConfigureAwait(false);
                if (!await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
                {
                    throw new ContainerdException($"containerd ended the write of {digest} at offset {offset} without a word", StatusCode.Internal);
                }
                offset += read;
                if (last)
                {
                    var committed = call.ResponseStream.Current;
                    await call.RequestStream.CompleteAsync().ConfigureAwait(false);
                    if (committed.Digest.Length > 0 && committed.Digest != digest)
                    {
                        throw new ContainerdException($"containerd committed {committed.Digest} for blob {digest}", StatusCode.DataLoss);
                    }
                    return true;
                }
            }
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.AlreadyExists)
        {
            await LabelContentAsync(digest, labels, cancellationToken).ConfigureAwait(false); // written meanwhile by someone else
            return false;
        }
        catch (RpcException e)
        {
            throw Translate(e, "write content", digest);
        }
    }

    /// <summary>Adds labels to a blob the store has (the GC's references, the uncompressed digest).</summary>
    internal async Task LabelContentAsync(string digest, IReadOnlyDictionary<string, string>? labels, CancellationToken cancellationToken)
    {
        if (labels is not { Count: > 0 })
        {
            return;
        }
        var request = new UpdateRequest { Info = new Info { Digest = digest }, UpdateMask = new FieldMask() };
        foreach (var (key, value) in labels)
        {
            request.Info.Labels[key] = value;
            request.UpdateMask.Paths.Add("labels." + key);
        }
        await Call("label content", digest, () => _content.UpdateAsync(request, deadline: Deadline(10), cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false);
    }

    /// <summary>A whole blob (for manifests and configs; layers are for the diff service).</summary>
    public async Task<byte[]> ReadContentAsync(string digest, CancellationToken cancellationToken = default)
    {
        try
        {
            using var call = _content.Read(new ReadContentRequest { Digest = digest }, cancellationToken: cancellationToken);
            using var buffer = new MemoryStream();
            while (await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
            {
                call.ResponseStream.Current.Data.WriteTo(buffer);
            }
            return buffer.ToArray();
        }
        catch (RpcException e)
        {
            throw Translate(e, "read content", digest);
        }
    }

    public async Task DeleteContentAsync(string digest, CancellationToken cancellationToken = default)
        => await Call("delete content", digest, () => _content.DeleteAsync(new DeleteContentRequest { Digest = digest }, deadline: Deadline(30), cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false);

    // ---------------------------------------------------------------- images

    /// <summary>Creates the image record, or points an existing one at <paramref name="target"/>.</summary>
    public async Task<Image> PutImageAsync(string name, ContentDescriptor target, IReadOnlyDictionary<string, string>? labels = null, CancellationToken cancellationToken = default)
    {
        var image = new Image { Name = name, Target = target };
        foreach (var (key, value) in labels ?? new Dictionary<string, string>())
        {
            image.Labels[key] = value;
        }
        try
        {
            return (await _images.CreateAsync(new CreateImageRequest { Image = image }, deadline: Deadline(10), cancellationToken: cancellationToken).ResponseAsync.ConfigureAwait(false)).Image;
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.AlreadyExists)
        {
            return (await Call("update image", name, () => _images.UpdateAsync(new UpdateImageRequest { Image = image }, deadline: Deadline(10), cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false)).Image;
        }
        catch (RpcException e)
        {
            throw Translate(e, "create image", name);
        }
    }

    public async Task<Image?> GetImageAsync(string name, CancellationToken cancellationToken = default)
    {
        try
        {
            return (await _images.GetAsync(new GetImageRequest { Name = name }, deadline: Deadline(10), cancellationToken: cancellationToken).ResponseAsync.ConfigureAwait(false)).Image;
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return null;
        }
        catch (RpcException e)
        {
            throw Translate(e, "inspect image", name);
        }
    }

    public async Task<IReadOnlyList<Image>> ListImagesAsync(CancellationToken cancellationToken = default)
        => [.. (await Call("list", "images", () => _images.ListAsync(new ListImagesRequest(), deadline: Deadline(30), cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false)).Images];

    /// <summary>Deletes the record; with <paramref name="sync"/> the garbage collector has run when this returns.</summary>
    public async Task DeleteImageAsync(string name, bool sync = false, CancellationToken cancellationToken = default)
        => await Call("delete image", name, () => _images.DeleteAsync(new DeleteImageRequest { Name = name, Sync = sync }, deadline: Deadline(60), cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false);

    // ---------------------------------------------------------------- snapshots, diff

    public async Task<IReadOnlyList<Mount>> PrepareSnapshotAsync(string snapshotter, string key, string parent, string? lease = null,
        IReadOnlyDictionary<string, string>? labels = null, CancellationToken cancellationToken = default)
    {
        var request = new PrepareSnapshotRequest { Snapshotter = snapshotter, Key = key, Parent = parent };
        foreach (var (k, v) in labels ?? new Dictionary<string, string>())
        {
            request.Labels[k] = v;
        }
        return [.. (await Call("prepare snapshot", key, () => _snapshots.PrepareAsync(request, Under(lease), Deadline(60), cancellationToken).ResponseAsync).ConfigureAwait(false)).Mounts];
    }

    public async Task<IReadOnlyList<Mount>> SnapshotMountsAsync(string snapshotter, string key, CancellationToken cancellationToken = default)
        => [.. (await Call("get the mounts of snapshot", key, () => _snapshots.MountsAsync(new MountsRequest { Snapshotter = snapshotter, Key = key },
            deadline: Deadline(10), cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false)).Mounts];

    public async Task CommitSnapshotAsync(string snapshotter, string name, string key, IReadOnlyDictionary<string, string>? labels = null, string? lease = null,
        CancellationToken cancellationToken = default)
    {
        var request = new CommitSnapshotRequest { Snapshotter = snapshotter, Name = name, Key = key };
        foreach (var (k, v) in labels ?? new Dictionary<string, string>())
        {
            request.Labels[k] = v;
        }
        await Call("commit snapshot", name, () => _snapshots.CommitAsync(request, Under(lease), Deadline(60), cancellationToken).ResponseAsync).ConfigureAwait(false);
    }

    /// <summary>False when there was no such snapshot.</summary>
    public async Task<bool> RemoveSnapshotAsync(string snapshotter, string key, CancellationToken cancellationToken = default)
    {
        try
        {
            await _snapshots.RemoveAsync(new RemoveSnapshotRequest { Snapshotter = snapshotter, Key = key }, deadline: Deadline(60), cancellationToken: cancellationToken).ResponseAsync.ConfigureAwait(false);
            return true;
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return false;
        }
        catch (RpcException e)
        {
            throw Translate(e, "remove snapshot", key);
        }
    }

    public async Task<Api.Snapshots.Info?> StatSnapshotAsync(string snapshotter, string key, CancellationToken cancellationToken = default)
    {
        try
        {
            return (await _snapshots.StatAsync(new StatSnapshotRequest { Snapshotter = snapshotter, Key = key }, deadline: Deadline(10), cancellationToken: cancellationToken).ResponseAsync.ConfigureAwait(false)).Info;
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return null;
        }
        catch (RpcException e)
        {
            throw Translate(e, "inspect snapshot", key);
        }
    }

    /// <summary>Unpacks a layer blob (already in the content store) onto a prepared snapshot's mounts; returns the uncompressed descriptor.</summary>
    public async Task<ContentDescriptor> ApplyLayerAsync(ContentDescriptor layer, IEnumerable<Mount> mounts, string? lease = null, CancellationToken cancellationToken = default)
    {
        var request = new Api.Diff.ApplyRequest { Diff = layer };
        request.Mounts.Add(mounts);
        return (await Call("unpack layer", layer.Digest, () => _diff.ApplyAsync(request, Under(lease), Deadline(600), cancellationToken).ResponseAsync).ConfigureAwait(false)).Applied;
    }

    // ---------------------------------------------------------------- events

    /// <summary>containerd's events as they happen (this namespace's and global ones), until cancelled.</summary>
    public async IAsyncEnumerable<Envelope> SubscribeAsync(IEnumerable<string> filters, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var request = new SubscribeRequest();
        request.Filters.Add(filters);
        using var call = _events.Subscribe(request, cancellationToken: cancellationToken);
        while (true)
        {
            bool more;
            try
            {
                more = await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false);
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Cancelled && cancellationToken.IsCancellationRequested)
            {
                yield break;
            }
            catch (RpcException e)
            {
                throw Translate(e, "subscribe to", "events");
            }
            if (!more)
            {
                yield break;
            }
            yield return call.ResponseStream.Current;
        }
    }
}

using System.Text.Json;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.ObjectStore;
using Orchestrator.Daemon.Configuration;
using Orchestrator.Fleet.Agent;

namespace Orchestrator.Daemon.Update;

/// <summary>
/// orchd's self-update, on the node. A request on orch.node.NODE.update.apply names a release;
/// the node fetches it from the fleet's object store, verifies its signature (fleet.trusted_keys)
/// and digest, keeps the running binary as ORCHD.prev, renames the new one over ORCHD (atomic
/// in one directory), leaves a marker in the state dir and stops with exit code 75, so that
/// systemd starts the new binary (containers keep running: KillMode=process). The new orchd
/// confirms once it is connected to NATS, and the marker goes. If it never gets that far,
/// orchd-update-guard (the unit's ExecStartPre) puts ORCHD.prev back after three starts; a new
/// orchd that starts but cannot reach NATS in time puts it back itself.
/// </summary>
internal sealed partial class UpdateService(OrchdConfig config, NodeIdentity identity, NodeAgent agent,
    IHostApplicationLifetime lifetime, ILogger<UpdateService> logger) : BackgroundService
{
    /// <summary>Exit code after an update or a self-rollback: systemd restarts orchd on it (the unit's Restart=on-failure).</summary>
    public const int RestartExitCode = 75;

    /// <summary>Set when orchd stops to let systemd start the binary that is now in place.</summary>
    public static bool RestartRequested { get; private set; }

    private static readonly TimeSpan s_confirmWithin = TimeSpan.FromSeconds(
        double.TryParse(Environment.GetEnvironmentVariable("ORCHD_UPDATE_CONFIRM_SECONDS"), System.Globalization.CultureInfo.InvariantCulture, out var s) ? s : 120);

    private readonly SemaphoreSlim _applying = new(1, 1);
    private string MarkerPath => Path.Combine(config.StateDir, "update-pending.json");
    private string GuardPath => Path.Combine(config.StateDir, "update.guard");
    private string ResultPath => Path.Combine(config.StateDir, "update-result.json");
    // Taken once at start: after a swap the path holds the new binary, and /proc/self/exe says "(deleted)".
    private static readonly string s_executable = (Environment.ProcessPath ?? "orchd").Replace(" (deleted)", "", StringComparison.Ordinal);
    private static readonly Lazy<string> s_runningSha = new(() => Release.Sha256Of(s_executable));
    private static string Executable => s_executable;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        _ = s_runningSha.Value; // the binary this process runs, hashed before anything can replace it
        var confirming = ConfirmPendingAsync(stoppingToken);
        if (config.TrustedKeys.Count == 0)
        {
            // Without trusted keys no release could be verified: no subscription, no connection.
            await confirming.ConfigureAwait(false);
            return;
        }
        try
        {
            // The agent's connection (one per node), once it has one.
            var connection = await agent.ConnectionAsync(stoppingToken).ConfigureAwait(false);
            await foreach (var msg in connection.SubscribeAsync<byte[]>($"orch.node.{identity.NodeName}.update.*", cancellationToken: stoppingToken).ConfigureAwait(false))
            {
                if (msg.ReplyTo is null)
                {
                    continue;
                }
                byte[] reply;
                if (msg.Subject == Release.StatusSubject(identity.NodeName))
                {
                    reply = JsonSerializer.SerializeToUtf8Bytes(Status(), UpdateJsonContext.Default.UpdateStatus);
                }
                else if (msg.Subject == Release.ApplySubject(identity.NodeName))
                {
                    var result = await ApplyAsync(connection, msg.Data, stoppingToken).ConfigureAwait(false);
                    reply = JsonSerializer.SerializeToUtf8Bytes(result, UpdateJsonContext.Default.UpdateReply);
                    await msg.ReplyAsync(reply, cancellationToken: stoppingToken).ConfigureAwait(false);
                    if (result.Ok)
                    {
                        RestartRequested = true;
                        lifetime.StopApplication();
                    }
                    continue;
                }
                else
                {
                    reply = JsonSerializer.SerializeToUtf8Bytes(new UpdateReply { Error = $"unknown update operation '{msg.Subject}'; use update.apply or update.status" }, UpdateJsonContext.Default.UpdateReply);
                }
                await msg.ReplyAsync(reply, cancellationToken: stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        await confirming.ConfigureAwait(false);
    }

    private UpdateStatus Status() => new()
    {
        Version = identity.Version,
        Sha256 = s_runningSha.Value,
        Arch = Release.ThisArch,
        Pending = Read(MarkerPath, UpdateJsonContext.Default.PendingUpdate)?.Version,
        Last = Read(ResultPath, UpdateJsonContext.Default.UpdateResult),
    };

    private async Task<UpdateReply> ApplyAsync(NatsConnection connection, byte[]? body, CancellationToken cancellationToken)
    {
        if (!await _applying.WaitAsync(0, cancellationToken).ConfigureAwait(false))
        {
            return new UpdateReply { Error = $"node '{identity.NodeName}' is already applying an update; wait for it" };
        }
        var staged = Executable + ".new";
        try
        {
            var request = body is { Length: > 0 } ? JsonSerializer.Deserialize(body, UpdateJsonContext.Default.UpdateRequest) : null;
            if (request is not { Version.Length: > 0 })
            {
                return new UpdateReply { Error = "update.apply wants {\"version\": \"…\"}" };
            }
            if (File.Exists(MarkerPath))
            {
                return new UpdateReply { Error = $"node '{identity.NodeName}' has an update that is not confirmed yet; wait for it to finish or roll back" };
            }
            var arch = Release.ThisArch;
            var store = await new NatsObjContext(new NatsJSContext(connection)).GetObjectStoreAsync(Release.Bucket, cancellationToken).ConfigureAwait(false);
            ReleaseManifest manifest;
            try
            {
                var manifestBytes = await store.GetBytesAsync(Release.ManifestObject(request.Version, arch), cancellationToken).ConfigureAwait(false);
                manifest = JsonSerializer.Deserialize(manifestBytes, UpdateJsonContext.Default.ReleaseManifest)
                           ?? throw new ReleaseException("empty release manifest");
            }
            catch (NatsObjNotFoundException)
            {
                return new UpdateReply { Error = $"no release {request.Version} for {arch} in bucket {Release.Bucket}; publish it with orchd release publish --arch {arch}" };
            }
            if (manifest.Version != request.Version || manifest.Arch != arch)
            {
                return new UpdateReply { Error = $"release manifest {Release.ManifestObject(request.Version, arch)} describes {manifest.Version} ({manifest.Arch}); publish it again" };
            }
            if (Release.Verify(manifest, config.TrustedKeys) is { } untrusted)
            {
                LogRefused(logger, untrusted);
                return new UpdateReply { Error = untrusted };
            }
            await using (var file = File.Create(staged))
            {
                await store.GetAsync(Release.BinaryObject(request.Version, arch), file, leaveOpen: true, cancellationToken: cancellationToken).ConfigureAwait(false);
                file.Flush(flushToDisk: true);
            }
            if (Release.Verify(manifest, config.TrustedKeys, staged) is { } mismatch)
            {
                LogRefused(logger, mismatch);
                return new UpdateReply { Error = mismatch };
            }
            File.SetUnixFileMode(staged, (UnixFileMode)0b111_101_101);
            var current = Executable;
            var pending = new PendingUpdate
            {
                Version = manifest.Version, FromSha256 = s_runningSha.Value, ToSha256 = manifest.Sha256, Executable = current, At = DateTimeOffset.UtcNow,
            };
            // The previous binary stays next to the new one until the new one has proved itself.
            File.Copy(current, current + ".prev", overwrite: true);
            await File.WriteAllTextAsync(GuardPath, $"exe={current}\nattempts=0\n", cancellationToken).ConfigureAwait(false);
            await File.WriteAllBytesAsync(MarkerPath, JsonSerializer.SerializeToUtf8Bytes(pending, UpdateJsonContext.Default.PendingUpdate), cancellationToken).ConfigureAwait(false);
            File.Move(staged, current, overwrite: true); // rename(2): the path always holds a whole binary
            LogSwapped(logger, manifest.Version, manifest.Sha256[..12]);
            return new UpdateReply { Ok = true, Message = $"node '{identity.NodeName}' swapped in orchd {manifest.Version}; restarting" };
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or ReleaseException or NatsJSException or NatsException)
        {
            File.Delete(staged);
            return new UpdateReply { Error = $"node '{identity.NodeName}' could not apply the update: {e.Message}" };
        }
        finally
        {
            _applying.Release();
        }
    }

    /// <summary>After an update: the new binary confirms once connected; the old one, back after a rollback, records that.</summary>
    private async Task ConfirmPendingAsync(CancellationToken stoppingToken)
    {
        if (Read(MarkerPath, UpdateJsonContext.Default.PendingUpdate) is not { } pending)
        {
            return;
        }
        if (s_runningSha.Value != pending.ToSha256)
        {
            Finish(pending, "rolled-back", $"orchd {pending.Version} did not come up healthy; the previous binary was put back");
            LogRolledBack(logger, pending.Version);
            return;
        }
        var deadline = DateTime.UtcNow + s_confirmWithin;
        try
        {
            while (!agent.IsConnected)
            {
                if (DateTime.UtcNow > deadline)
                {
                    // Up but not able to reach the fleet: go back to what worked.
                    File.Move(pending.Executable + ".prev", pending.Executable, overwrite: true);
                    LogSelfRollback(logger, pending.Version, s_confirmWithin.TotalSeconds);
                    RestartRequested = true;
                    lifetime.StopApplication();
                    return;
                }
                await Task.Delay(250, stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
            return;
        }
        File.Delete(pending.Executable + ".prev");
        Finish(pending, "updated", $"orchd {pending.Version} is running and connected");
        LogConfirmed(logger, pending.Version);
    }

    private void Finish(PendingUpdate pending, string outcome, string message)
    {
        var result = new UpdateResult { Version = pending.Version, Outcome = outcome, Message = message, At = DateTimeOffset.UtcNow };
        File.WriteAllBytes(ResultPath, JsonSerializer.SerializeToUtf8Bytes(result, UpdateJsonContext.Default.UpdateResult));
        File.Delete(MarkerPath);
        File.Delete(GuardPath);
    }

    private static T? Read<T>(string path, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) where T : class
    {
        try
        {
            return File.Exists(path) ? JsonSerializer.Deserialize(File.ReadAllBytes(path), type) : null;
        }
        catch (Exception e) when (e is IOException or JsonException)
        {
            return null;
        }
    }

    public override void Dispose()
    {
        _applying.Dispose();
        base.Dispose();
    }

    [LoggerMessage(EventId = 1030, Level = LogLevel.Warning, Message = "self-update: swapped in orchd {Version} (sha256 {Sha}…); restarting to run it")]
    private static partial void LogSwapped(ILogger logger, string version, string sha);

    [LoggerMessage(EventId = 1031, Level = LogLevel.Information, Message = "self-update: orchd {Version} is running and connected; update confirmed")]
    private static partial void LogConfirmed(ILogger logger, string version);

    [LoggerMessage(EventId = 1032, Level = LogLevel.Error, Message = "self-update: orchd {Version} did not come up healthy; running the previous binary again")]
    private static partial void LogRolledBack(ILogger logger, string version);

    [LoggerMessage(EventId = 1033, Level = LogLevel.Error, Message = "self-update: orchd {Version} could not reach NATS within {Seconds} s; putting the previous binary back and restarting")]
    private static partial void LogSelfRollback(ILogger logger, string version, double seconds);

    [LoggerMessage(EventId = 1034, Level = LogLevel.Error, Message = "self-update refused: {Reason}")]
    private static partial void LogRefused(ILogger logger, string reason);
}

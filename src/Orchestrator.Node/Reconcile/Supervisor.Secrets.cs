using System.Text;
using Orchestrator.Api;
using Orchestrator.Api.Workloads;
using Orchestrator.Node.Secrets;
using Orchestrator.Runtime.Spec;

namespace Orchestrator.Node.Reconcile;

/// <summary>
/// A container's secrets and configs at each start: opened by the node's <see cref="ISecretSource"/>
/// and written only to a memory file system (RUN_DIR/secrets, a tmpfs orchd mounts there when the run
/// directory is on a disk), one directory per container, bind-mounted read-only file by file. Removed
/// with the container.
/// </summary>
public sealed partial class Supervisor
{
    /// <summary>The fleet's secrets and configs for this node; null outside a fleet (a workload that asks for one does not start).</summary>
    public ISecretSource? Secrets { get; set; }

    private string SecretsRoot => Path.Combine(_options.RunDir, "secrets");

    private string SecretsDir(string name) => Path.Combine(SecretsRoot, name);

    /// <param name="variables">The operators' variables (orchctl env), given before the secrets' variables so a secret wins.</param>
    private async Task<ResolvedSecrets?> ResolveSecretsAsync(Workload workload, IReadOnlyDictionary<string, string> variables)
    {
        var wanted = SecretMounts.All(workload).ToList();
        if (wanted.Count == 0)
        {
            return variables.Count == 0 ? null : new ResolvedSecrets([], [.. variables.Select(kv => (kv.Key, kv.Value))]);
        }
        if (Secrets is not { } source)
        {
            throw new SpecException($"workload '{workload.Name}' uses {SecretMounts.Noun(wanted[0].Kind)} '{wanted[0].Mount.Name}', which come from the fleet; this node is not in one (run it as a deployment: orchctl apply)");
        }
        EnsureSecretsOnMemory();
        var dir = SecretsDir(workload.Name);
        TryDelete(dir);
        Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var files = new List<(string, string)>();
        var env = new List<(string, string)>(variables.Select(kv => (kv.Key, kv.Value)));
        string? secretVariable = null;
        for (var i = 0; i < wanted.Count; i++)
        {
            var (kind, mount) = wanted[i];
            var noun = $"{SecretMounts.Noun(kind)} '{mount.Name}'";
            if (mount.Version is not { } version)
            {
                throw new SpecException($"workload '{workload.Name}': {noun} has no version; apply the deployment with orchctl apply, which pins the current one");
            }
            var value = await source.OpenAsync(kind, mount.Name, version, CancellationToken.None).ConfigureAwait(false);
            if (mount.Env is { } variable)
            {
                string text;
                try
                {
                    text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(value);
                }
                catch (DecoderFallbackException)
                {
                    text = "\0";
                }
                if (text.Contains('\0', StringComparison.Ordinal))
                {
                    throw new SpecException($"workload '{workload.Name}': {noun} version {version} is not text (binary, or a NUL byte), so it cannot be the variable {variable}; give it as a file (drop env)");
                }
                env.Add((variable, text));
                secretVariable ??= kind == SecretKind.Secret ? variable : null;
                continue;
            }
            var file = Path.Combine(dir, $"{i}-{mount.Name}");
            using (var stream = new FileStream(file, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite }))
            {
                stream.Write(value);
            }
            if (Linux.Libc.fchownat(-100 /* AT_FDCWD */, file, (uint)(mount.Uid ?? 0), (uint)(mount.Gid ?? 0), 0x100 /* AT_SYMLINK_NOFOLLOW */) != 0)
            {
                throw Linux.LinuxException.FromLastError("fchownat", file);
            }
            File.SetUnixFileMode(file, (UnixFileMode)SecretMounts.ModeOf(mount));
            files.Add((file, SecretMounts.TargetOf(mount, kind)));
        }
        // A variable is in the container's spec (config.json in its bundle and the runtime's state),
        // both under the run directory: that must be memory too.
        if (secretVariable is not null && Linux.MountInfo.FileSystemOf(ContainersRunDir) is not ("tmpfs" or "ramfs") and { } fs)
        {
            throw new SpecException($"workload '{workload.Name}': a secret as a variable ({secretVariable}) is written into the container's spec under {ContainersRunDir}, which is on {fs} (a disk); put orchd's run_dir on a tmpfs (/run/orchd) or give the secret as a file (drop env)");
        }
        return new ResolvedSecrets(files, env);
    }

    /// <summary>
    /// RUN_DIR/secrets on a memory file system: under systemd the run directory is on /run (a
    /// tmpfs) already; anywhere else orchd mounts a tmpfs of its own there, so a secret never
    /// reaches a disk in clear. A node that can do neither refuses to start the container.
    /// </summary>
    private void EnsureSecretsOnMemory()
    {
        Directory.CreateDirectory(SecretsRoot, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        if (Linux.MountInfo.FileSystemOf(SecretsRoot) is "tmpfs" or "ramfs")
        {
            return;
        }
        if (Linux.Libc.mount("orchd-secrets", SecretsRoot, "tmpfs", 0x2 | 0x4 | 0x8 /* nosuid, nodev, noexec */, "mode=0700,size=16m") != 0)
        {
            var error = Linux.LinuxException.FromLastError("mount tmpfs", SecretsRoot);
            throw new SpecException($"{SecretsRoot} is not on a memory file system and a tmpfs cannot be mounted there ({error.Message}); secrets are never written to a disk: run orchd with run_dir on a tmpfs (/run/orchd)");
        }
    }
}

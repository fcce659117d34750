using Orchestrator.Api;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Orchestrator.Runtime.State;

/// <summary>What the runtime keeps about a container under --root/&lt;id&gt;/state.json.</summary>
public sealed class ContainerRecord
{
    public string Id { get; set; } = "";
    public int Pid { get; set; }
    /// <summary>Field 22 of /proc/pid/stat at creation: tells our process from a later one that got the same pid.</summary>
    public ulong PidStartTime { get; set; }
    public string Bundle { get; set; } = "";
    public string Rootfs { get; set; } = "";
    public string CgroupPath { get; set; } = "";
    public DateTimeOffset Created { get; set; }
    public Dictionary<string, string>? Annotations { get; set; }
    /// <summary>The first process was started in its cgroup by clone3(CLONE_INTO_CGROUP) (cgroup v2).</summary>
    public bool BornInCgroup { get; set; }

    /// <summary>
    /// The cgroup's OOM kill count at creation (a reused cgroup path carries an earlier container's):
    /// `events` reports the kills after it, whenever the stream itself started.
    /// </summary>
    public long? OomKillsAtCreate { get; set; }

    /// <summary>Known only when this runtime reaped the process itself (run, or in-process use).</summary>
    public int? ExitStatus { get; set; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ContainerRecord))]
[JsonSerializable(typeof(List<ContainerListEntry>))]
internal sealed partial class StateJsonContext : JsonSerializerContext;

/// <summary>One row of `list --format json`, shaped like runc's.</summary>
public sealed class ContainerListEntry
{
    public string Id { get; set; } = "";
    public int Pid { get; set; }
    public string Status { get; set; } = "";
    public string Bundle { get; set; } = "";
    public string Rootfs { get; set; } = "";
    public DateTimeOffset Created { get; set; }
    public Dictionary<string, string>? Annotations { get; set; }
}

/// <summary>The --root directory: one subdirectory per container.</summary>
public sealed class StateStore(string root)
{
    public string Root { get; } = root;

    public string Dir(string id) => Path.Combine(Root, id);

    public string ExecFifo(string id) => Path.Combine(Dir(id), "exec.fifo");

    public bool Exists(string id) => File.Exists(Path.Combine(Dir(id), "state.json"));

    public ContainerRecord Load(string id)
    {
        var path = Path.Combine(Dir(id), "state.json");
        if (!File.Exists(path))
        {
            throw new ContainerNotFoundException(id, Root);
        }
        return JsonSerializer.Deserialize(File.ReadAllBytes(path), StateJsonContext.Default.ContainerRecord)
            ?? throw new IOException($"'{path}' is empty; delete the directory {Dir(id)}");
    }

    public void Save(ContainerRecord record)
    {
        Directory.CreateDirectory(Dir(record.Id));
        var path = Path.Combine(Dir(record.Id), "state.json");
        var temp = path + ".tmp";
        File.WriteAllBytes(temp, JsonSerializer.SerializeToUtf8Bytes(record, StateJsonContext.Default.ContainerRecord));
        File.Move(temp, path, overwrite: true);
    }

    public IEnumerable<string> Ids() => Directory.Exists(Root)
        ? Directory.EnumerateDirectories(Root).Select(Path.GetFileName).Where(id => id is not null && Exists(id)).Order(StringComparer.Ordinal)!
        : [];

    public void Remove(string id) => Directory.Delete(Dir(id), recursive: true);
}

public sealed class ContainerNotFoundException(string id, string root)
    : OrchestratorException(ErrorKind.NotFound, $"container '{id}' does not exist (under {root}); `list` shows the ones that do")
{
    public string Id { get; } = id;
}

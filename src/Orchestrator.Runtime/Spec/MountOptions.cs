using static Orchestrator.Linux.Libc;

namespace Orchestrator.Runtime.Spec;

/// <summary>Mount options as fstab and the spec write them, turned into MS_* flags and data.</summary>
public static class MountOptions
{
    private static readonly Dictionary<string, (bool Clear, ulong Flag)> s_flags = new(StringComparer.Ordinal)
    {
        ["ro"] = (false, MS_RDONLY), ["rw"] = (true, MS_RDONLY),
        ["nosuid"] = (false, MS_NOSUID), ["suid"] = (true, MS_NOSUID),
        ["nodev"] = (false, MS_NODEV), ["dev"] = (true, MS_NODEV),
        ["noexec"] = (false, MS_NOEXEC), ["exec"] = (true, MS_NOEXEC),
        ["sync"] = (false, MS_SYNCHRONOUS), ["async"] = (true, MS_SYNCHRONOUS),
        ["dirsync"] = (false, MS_DIRSYNC), ["mand"] = (false, MS_MANDLOCK), ["nomand"] = (true, MS_MANDLOCK),
        ["noatime"] = (false, MS_NOATIME), ["atime"] = (true, MS_NOATIME),
        ["nodiratime"] = (false, MS_NODIRATIME), ["diratime"] = (true, MS_NODIRATIME),
        ["relatime"] = (false, MS_RELATIME), ["norelatime"] = (true, MS_RELATIME),
        ["strictatime"] = (false, MS_STRICTATIME), ["nostrictatime"] = (true, MS_STRICTATIME),
        ["bind"] = (false, MS_BIND), ["rbind"] = (false, MS_BIND | MS_REC),
        ["defaults"] = (false, 0),
        // Not a flag: a tmpfs that gets the content of the directory it covers (ContainerPlan).
        [TmpCopyUp] = (false, 0),
    };

    /// <summary>runc's and crun's extension: copy the covered directory's content up into the new tmpfs.</summary>
    public const string TmpCopyUp = "tmpcopyup";

    private static readonly Dictionary<string, ulong> s_propagation = new(StringComparer.Ordinal)
    {
        ["private"] = MS_PRIVATE, ["rprivate"] = MS_PRIVATE | MS_REC,
        ["shared"] = MS_SHARED, ["rshared"] = MS_SHARED | MS_REC,
        ["slave"] = MS_SLAVE, ["rslave"] = MS_SLAVE | MS_REC,
        ["unbindable"] = MS_UNBINDABLE, ["runbindable"] = MS_UNBINDABLE | MS_REC,
    };

    /// <summary>Options passed to the filesystem as data (tmpfs size=…, devpts newinstance…).</summary>
    private static bool IsData(string option)
        => option.Contains('=', StringComparison.Ordinal) || option is "newinstance";

    /// <summary>Every option name this runtime understands (data options like size=… aside), for `features`.</summary>
    public static IEnumerable<string> Names => s_flags.Keys.Concat(s_propagation.Keys);

    public static bool IsKnown(string option) => s_flags.ContainsKey(option) || s_propagation.ContainsKey(option) || IsData(option);

    public static (ulong Flags, ulong Propagation, string? Data) Parse(IEnumerable<string>? options)
    {
        ulong flags = 0, propagation = 0;
        var data = new List<string>();
        foreach (var option in options ?? [])
        {
            if (s_flags.TryGetValue(option, out var f))
            {
                flags = f.Clear ? flags & ~f.Flag : flags | f.Flag;
            }
            else if (s_propagation.TryGetValue(option, out var p))
            {
                propagation |= p;
            }
            else
            {
                data.Add(option);
            }
        }
        return (flags, propagation, data.Count > 0 ? string.Join(",", data) : null);
    }
}

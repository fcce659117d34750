using System.Runtime.InteropServices;

namespace Orchestrator.Runtime.Spawn;

// The managed mirror of native/orch_spawn.c's structs. Field order and types must match the C
// exactly; CheckAbi compares sizes with the C compiler's at first use.

[StructLayout(LayoutKind.Sequential)]
internal unsafe struct NativeMount
{
    public byte* Source;
    public byte* Target;
    public byte* FsType;
    public nuint Flags;
    public byte* Data;
    public nuint Propagation;
    public int Op;
    public int RemountFlags;
}

[StructLayout(LayoutKind.Sequential)]
internal unsafe struct NativeHook
{
    public byte* Path;
    public byte** Argv;
    public byte** Envp;
}

[StructLayout(LayoutKind.Sequential)]
internal unsafe struct NativeSockFprog
{
    public ushort Len;
    public Security.BpfInstruction* Filter;
}

[StructLayout(LayoutKind.Sequential)]
internal struct NativeRlimit
{
    public int Resource;
    public ulong Soft;
    public ulong Hard;
}

[StructLayout(LayoutKind.Sequential)]
internal unsafe struct NativePlan
{
    public int CloneFlags;
    public int NJoin;
    public int* JoinFds;
    public int* JoinTypes;
    public byte* Rootfs;
    public int ReadonlyRoot;
    public nuint RootPropagation;
    public int NMounts;
    public NativeMount* Mounts;
    public int NMasked;
    public byte** Masked;
    public int NReadonly;
    public byte** ReadonlyPaths;
    public byte* Hostname;
    public int NSysctl;
    public byte** SysctlPaths;
    public byte** SysctlValues;
    public int NRlimits;
    public NativeRlimit* Rlimits;
    public int SetOomScore;
    public int OomScoreAdj;
    public uint Uid;
    public uint Gid;
    public int NGroups;
    public uint* Groups;
    public ulong CapBounding;
    public ulong CapEffective;
    public ulong CapPermitted;
    public ulong CapInheritable;
    public ulong CapAmbient;
    public int NoNewPrivs;
    public void* Seccomp;
    public int UmaskValue;
    public byte* Cwd;
    public byte* Path;
    public byte** Argv;
    public byte** Envp;
    public int StdinFd;
    public int StdoutFd;
    public int StderrFd;
    public int KeepFds;
    public int SyncFd;
    public int SyncWriteFd;
    public int SyncLate;
    public int UnshareCgroupns;
    public int BecomeRoot;
    public int ForkAfterJoin;
    public int NoPivot;
    public int Terminal;
    public int ConsoleFd;
    public ushort ConsoleRows;
    public ushort ConsoleCols;
    public int NCreateHooks;
    public NativeHook* CreateHooks;
    public int NStartHooks;
    public NativeHook* StartHooks;
    public int CgroupFd;
    public int ReportFd;
    public int ExecFifoFd;
    public int NoMountNs;
    public nuint RootPropagationFinal;
    public byte* ApparmorProfile;
    public byte* Domainname;
}

/// <summary>What the child reports over the report pipe; mirrors enum orch_stage.</summary>
public enum SpawnStage
{
    Ok = 0, Sync = 1, Setns = 2, MountPrivate = 3, RootfsBind = 4, Mount = 5, PivotRoot = 6, MaskPath = 7,
    ReadonlyPath = 8, ReadonlyRoot = 9, Hostname = 10, Sysctl = 11, Rlimit = 12, OomScore = 13,
    Groups = 14, Gid = 15, Uid = 16, Capabilities = 17, Cwd = 18, ExecFifo = 19, NoNewPrivs = 20,
    Seccomp = 21, Exec = 22, CloseFds = 23, Stdio = 24, Fork = 25, Terminal = 26, Hook = 27, Device = 28, Apparmor = 29,
    Propagation = 30, Ready = 100, ChildPid = 101, WarnAmbient = 102,
}

internal static unsafe partial class NativeSpawn
{
    private const string Library = "orchspawn";

    [LibraryImport(Library, EntryPoint = "orch_spawn", SetLastError = true)]
    public static partial int Spawn(NativePlan* plan, int* pidfd, int* inCgroup);

    [LibraryImport(Library, EntryPoint = "orch_spawn_hook", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int SpawnHook(string path, byte** argv, byte** envp, int inFd, int outFd);

    /// <summary>ioctl(2) with no argument (NS_GET_NSTYPE).</summary>
    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    public static partial int Ioctl(int fd, nuint request);

    /// <summary>NS_GET_NSTYPE from &lt;linux/nsfs.h&gt;: the CLONE_NEW* type of a namespace fd.</summary>
    public const nuint NS_GET_NSTYPE = 0xb703;

    [LibraryImport(Library, EntryPoint = "orch_pidfd_open", SetLastError = true)]
    public static partial int PidfdOpen(int pid);

    [LibraryImport(Library, EntryPoint = "orch_set_subreaper", SetLastError = true)]
    public static partial int SetSubreaper();

    [LibraryImport(Library, EntryPoint = "orch_syscall_number", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int SyscallNumber(string name);

    [LibraryImport(Library, EntryPoint = "orch_audit_arch")]
    public static partial uint AuditArch();

    [LibraryImport(Library, EntryPoint = "orch_send_fd", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int SendFd(int socket, int fd, string name);

    [LibraryImport(Library, EntryPoint = "orch_recv_fd", SetLastError = true)]
    public static partial int RecvFd(int socket);

    [LibraryImport(Library, EntryPoint = "orch_spawn_abi")]
    private static partial int Abi(int which);

    private static bool s_checked;

    /// <summary>Fails loudly if the C and C# layouts ever drift apart.</summary>
    public static void CheckAbi()
    {
        if (s_checked)
        {
            return;
        }
        Check(0, sizeof(NativePlan), nameof(NativePlan));
        Check(1, sizeof(NativeMount), nameof(NativeMount));
        Check(2, sizeof(NativeRlimit), nameof(NativeRlimit));
        Check(4, sizeof(NativeHook), nameof(NativeHook));
        s_checked = true;

        static void Check(int which, int managed, string name)
        {
            var native = Abi(which);
            if (native != managed)
            {
                throw new InvalidOperationException($"orch_spawn ABI mismatch: {name} is {native} bytes in C and {managed} in C#; rebuild both from the same tree");
            }
        }
    }
}

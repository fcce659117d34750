using Orchestrator.Node.Reconcile;
using Orchestrator.Runtime.Security;
using Orchestrator.Testing.Seccomp;

namespace Orchestrator.Node.Tests;

/// <summary>
/// orchd's default seccomp profile compiled for arm64, on this (x86-64) machine: the same profile,
/// arm64's syscall numbers and AUDIT_ARCH_AARCH64, run through the BPF interpreter. An arm64 build
/// gets its numbers from the cross compiler's headers (OrchSpawn.targets); tests/arm64/vm-e2e.sh
/// checks the real filter in an arm64 VM.
/// </summary>
public sealed class DefaultSeccompArm64Tests
{
    private const uint Aarch64 = 0xC00000B7, Arm = 0x40000028, X86_64 = 0xC000003E;
    private const uint Eperm = SeccompCompiler.RetErrno | 1, Enosys = SeccompCompiler.RetErrno | 38;

    /// <summary>arm64's numbers (asm-generic/unistd.h, as aarch64-linux-gnu-gcc's sys/syscall.h has them) for the
    /// profile's names arm64 has, and a few ordinary calls. arm64 has no open, stat, fork, umount, ustat, iopl…</summary>
    private static readonly Dictionary<string, int> s_arm64 = new()
    {
        ["acct"] = 89, ["add_key"] = 217, ["bpf"] = 280, ["clock_adjtime"] = 266, ["clock_settime"] = 112, ["delete_module"] = 106,
        ["finit_module"] = 273, ["fsconfig"] = 431, ["fsmount"] = 432, ["fsopen"] = 430, ["fspick"] = 433, ["get_mempolicy"] = 236,
        ["init_module"] = 105, ["kcmp"] = 272, ["kexec_file_load"] = 294, ["kexec_load"] = 104, ["keyctl"] = 219, ["lookup_dcookie"] = 18,
        ["mbind"] = 235, ["mount"] = 40, ["mount_setattr"] = 442, ["move_mount"] = 429, ["move_pages"] = 239, ["name_to_handle_at"] = 264,
        ["nfsservctl"] = 42, ["open_by_handle_at"] = 265, ["open_tree"] = 428, ["perf_event_open"] = 241, ["pivot_root"] = 41,
        ["process_vm_readv"] = 270, ["process_vm_writev"] = 271, ["quotactl"] = 60, ["reboot"] = 142, ["request_key"] = 218,
        ["set_mempolicy"] = 237, ["setns"] = 268, ["settimeofday"] = 170, ["swapoff"] = 225, ["swapon"] = 224, ["syslog"] = 116,
        ["umount2"] = 39, ["unshare"] = 97, ["userfaultfd"] = 282, ["io_uring_setup"] = 425, ["io_uring_enter"] = 426,
        ["io_uring_register"] = 427, ["clone3"] = 435, ["clone"] = 220, ["openat"] = 56, ["read"] = 63, ["write"] = 64,
        ["execve"] = 221, ["exit_group"] = 94,
    };

    private static readonly BpfInstruction[] s_program = SeccompCompiler.Compile(SpecBuilder.DefaultSeccomp(), n => s_arm64.GetValueOrDefault(n, -1), Aarch64);

    private static uint Run(int nr, uint arch = Aarch64, params ulong[] args) => SeccompInterpreter.Run(s_program, nr, arch, args);

    [Theory]
    [InlineData("unshare")]
    [InlineData("mount")]
    [InlineData("umount2")]
    [InlineData("setns")]
    [InlineData("keyctl")]
    [InlineData("add_key")]
    [InlineData("bpf")]
    [InlineData("init_module")]
    [InlineData("finit_module")]
    [InlineData("reboot")]
    [InlineData("perf_event_open")]
    [InlineData("io_uring_setup")]
    [InlineData("pivot_root")]
    public void Kernel_wide_calls_are_refused_with_eperm_under_arm64_numbers(string name)
        => Assert.Equal(Eperm, Run(s_arm64[name]));

    [Theory]
    [InlineData("openat")]
    [InlineData("read")]
    [InlineData("write")]
    [InlineData("execve")]
    [InlineData("exit_group")]
    public void Ordinary_calls_are_allowed(string name) => Assert.Equal(SeccompCompiler.RetAllow, Run(s_arm64[name]));

    [Fact]
    public void Clone3_gets_enosys_and_clone_is_refused_only_with_a_namespace_flag()
    {
        Assert.Equal(Enosys, Run(s_arm64["clone3"]));
        // fork as glibc does it on arm64: clone(SIGCHLD | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID, …)
        Assert.Equal(SeccompCompiler.RetAllow, Run(s_arm64["clone"], Aarch64, 0x01200011));
        // threads: CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_SETTLS | …
        Assert.Equal(SeccompCompiler.RetAllow, Run(s_arm64["clone"], Aarch64, 0x003d0f00));
        foreach (var flag in new ulong[] { 0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000 })
        {
            Assert.Equal(Eperm, Run(s_arm64["clone"], Aarch64, 0x01200011 | flag));
        }
    }

    [Fact]
    public void Calls_of_32_bit_arm_programs_and_of_other_machines_are_killed()
    {
        // unshare is 337 in 32-bit arm's (EABI) table; under the default action it would get around the rule.
        Assert.Equal(SeccompCompiler.RetKillProcess, Run(337, Arm));
        Assert.Equal(SeccompCompiler.RetKillProcess, Run(272, X86_64));
    }

    [Fact]
    public void The_names_arm64_lacks_are_skipped_and_the_program_fits()
    {
        Assert.InRange(s_program.Length, 10, 4096);
        Assert.DoesNotContain(s_program, i => i.Code == 0x35 && i.K == 0x40000000); // no x32 check on arm64
    }
}

using System.Runtime.InteropServices;
using Orchestrator.Runtime.Spec;

namespace Orchestrator.Runtime.Security;

/// <summary>One classic BPF instruction (struct sock_filter).</summary>
[StructLayout(LayoutKind.Sequential)]
public readonly record struct BpfInstruction(ushort Code, byte JumpTrue, byte JumpFalse, uint K);

/// <summary>
/// Compiles the spec's seccomp section into a classic BPF program for SECCOMP_MODE_FILTER,
/// without libseccomp: check the architecture, then one small block per rule (syscall number,
/// then its argument conditions), first match wins, else the default action. Every jump stays
/// inside its block, so the 8-bit jump offsets of classic BPF never overflow whatever the
/// number of rules.
/// </summary>
public static class SeccompCompiler
{
    // seccomp return actions (linux/seccomp.h)
    public const uint RetKillProcess = 0x80000000, RetKillThread = 0, RetTrap = 0x00030000, RetErrno = 0x00050000,
        RetTrace = 0x7ff00000, RetLog = 0x7ffc0000, RetAllow = 0x7fff0000;

    // classic BPF opcodes
    private const ushort LdAbs = 0x20, JeqK = 0x15, JgtK = 0x25, JgeK = 0x35, AndK = 0x54, RetK = 0x06;

    private const int OffsetNr = 0, OffsetArch = 4, OffsetArgs = 16;
    private const uint X32SyscallBit = 0x40000000;

    /// <summary>The names <see cref="Action"/> and the operators accept (for `features`; a test checks each compiles).</summary>
    public static readonly string[] Actions =
        ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"];

    public static readonly string[] Operators =
        ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"];

    /// <summary>Architectures with an AUDIT_ARCH value here (the others are accepted names of other machines).</summary>
    public static readonly string[] NativeArchitectures =
        ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"];

    public static uint Action(string action, uint? errnoRet, uint defaultErrno = 1) => action switch
    {
        "SCMP_ACT_KILL" or "SCMP_ACT_KILL_THREAD" => RetKillThread,
        "SCMP_ACT_KILL_PROCESS" => RetKillProcess,
        "SCMP_ACT_TRAP" => RetTrap,
        "SCMP_ACT_ERRNO" => RetErrno | ((errnoRet ?? defaultErrno) & 0xffff),
        "SCMP_ACT_TRACE" => RetTrace | ((errnoRet ?? defaultErrno) & 0xffff),
        "SCMP_ACT_LOG" => RetLog,
        "SCMP_ACT_ALLOW" => RetAllow,
        _ => throw new SpecException($"linux.seccomp: action '{action}' is not supported; use SCMP_ACT_ALLOW, _ERRNO, _KILL, _KILL_PROCESS, _TRAP, _TRACE or _LOG"),
    };

    /// <param name="syscallNumber">Name → number for the native architecture; -1 when it has no such syscall.</param>
    /// <param name="nativeArch">The AUDIT_ARCH_* of this machine.</param>
    public static BpfInstruction[] Compile(SeccompSpec spec, Func<string, int> syscallNumber, uint nativeArch)
    {
        if (spec.ListenerPath is { Length: > 0 })
        {
            throw new SpecException("linux.seccomp.listenerPath: seccomp notify is not supported; remove it");
        }
        if (spec.Flags is { Count: > 0 } flags)
        {
            throw new SpecException($"linux.seccomp.flags: {string.Join(", ", flags)} not supported; remove them");
        }
        var defaultErrno = spec.DefaultErrnoRet ?? 1;
        var defaultAction = Action(spec.DefaultAction, spec.DefaultErrnoRet, defaultErrno);
        foreach (var arch in spec.Architectures ?? [])
        {
            if (ArchValue(arch) is null)
            {
                throw new SpecException($"linux.seccomp.architectures: '{arch}' is not an architecture; use names like SCMP_ARCH_X86_64 or SCMP_ARCH_AARCH64");
            }
        }

        var foreign = ForeignAction(spec, defaultAction, defaultErrno);
        var program = new List<BpfInstruction>
        {
            // Syscalls of another architecture (32-bit compat calls: arm on arm64, i386 on
            // x86-64) carry other numbers than the rules' native ones: see ForeignAction.
            new(LdAbs, 0, 0, OffsetArch),
            new(JeqK, 1, 0, nativeArch),
            new(RetK, 0, 0, foreign),
            new(LdAbs, 0, 0, OffsetNr),
        };
        if (nativeArch == 0xC000003E)
        {
            // x32 calls share x86_64's arch value with bit 30 set in the number: never let them past.
            program.Add(new(JgeK, 0, 1, X32SyscallBit));
            program.Add(new(RetK, 0, 0, foreign));
        }

        foreach (var rule in spec.Syscalls ?? [])
        {
            var action = Action(rule.Action, rule.ErrnoRet, defaultErrno);
            foreach (var name in rule.Names)
            {
                var nr = syscallNumber(name);
                if (nr < 0)
                {
                    continue; // not a syscall of this architecture (profiles list every arch's): as runc does
                }
                program.AddRange(RuleBlock((uint)nr, rule.Args ?? [], action));
            }
        }
        program.Add(new(RetK, 0, 0, defaultAction));
        if (program.Count > 4096)
        {
            throw new SpecException($"linux.seccomp: the profile compiles to {program.Count} BPF instructions, more than the kernel's 4096; merge rules");
        }
        return program.ToArray();
    }

    /// <summary>
    /// What syscalls of another architecture get. The rules hold native numbers only, so such a
    /// call is never matched by a rule. With a restrictive default (an allow list) the default
    /// refuses it anyway. With a permissive default (a deny list, like orchd's default profile)
    /// the default would let a 32-bit program (an armhf binary on arm64, an int 0x80 call on
    /// x86-64) make every call the rules refuse, under the other architecture's number: such
    /// calls kill the process instead, as runc's libseccomp does with an architecture its
    /// filter does not map. A permissive profile that refuses nothing keeps its default.
    /// </summary>
    private static uint ForeignAction(SeccompSpec spec, uint defaultAction, uint defaultErrno)
    {
        static bool Permissive(uint action) => action is RetAllow or RetLog;
        if (!Permissive(defaultAction))
        {
            return defaultAction;
        }
        var refusesSomething = (spec.Syscalls ?? []).Any(rule => rule.Names.Count > 0 && !Permissive(Action(rule.Action, rule.ErrnoRet, defaultErrno)));
        return refusesSomething ? RetKillProcess : defaultAction;
    }

    /// <summary>
    /// [nr == N ? continue : skip block] [each argument condition: on mismatch skip block] [ret action].
    /// The accumulator is reloaded with the syscall number before leaving, for the next block.
    /// </summary>
    private static List<BpfInstruction> RuleBlock(uint nr, List<SeccompArgSpec> args, uint action)
    {
        // Conditions carry symbolic "fail" jumps, resolved once the block's length is known.
        var body = new List<(BpfInstruction Insn, bool FailOnTrue, bool FailOnFalse)>();
        foreach (var arg in args)
        {
            if (arg.Index > 5)
            {
                throw new SpecException($"linux.seccomp: argument index {arg.Index} does not exist; syscalls have arguments 0 to 5");
            }
            EmitCondition(body, arg);
        }
        var block = new List<BpfInstruction> { new(JeqK, 0, 0, nr) };
        block.AddRange(body.Select(b => b.Insn));
        block.Add(new(RetK, 0, 0, action));
        if (args.Count > 0)
        {
            block.Add(new(LdAbs, 0, 0, OffsetNr)); // conditions clobbered the accumulator: reload nr for the next block
        }
        // Mismatch lands on the reload (with conditions) or on the next block (without).
        var failTarget = args.Count > 0 ? block.Count - 1 : block.Count;
        block[0] = block[0] with { JumpFalse = Jump(failTarget - 1) };
        for (var i = 0; i < body.Count; i++)
        {
            var (insn, failOnTrue, failOnFalse) = body[i];
            var toFail = Jump(failTarget - (i + 1) - 1);
            block[i + 1] = insn with
            {
                JumpTrue = failOnTrue ? toFail : insn.JumpTrue,
                JumpFalse = failOnFalse ? toFail : insn.JumpFalse,
            };
        }
        return block;
    }

    private static byte Jump(int offset) => offset is >= 0 and <= 255 ? (byte)offset : throw new SpecException("linux.seccomp: a rule has too many argument conditions; split it");

    private static void EmitCondition(List<(BpfInstruction, bool, bool)> body, SeccompArgSpec arg)
    {
        var lo = (uint)(arg.Value & 0xffffffff);
        var hi = (uint)(arg.Value >> 32);
        var offLo = (uint)(OffsetArgs + 8 * arg.Index);
        var offHi = offLo + 4;
        switch (arg.Op)
        {
            case "SCMP_CMP_EQ":
                body.Add((new(LdAbs, 0, 0, offHi), false, false));
                body.Add((new(JeqK, 0, 0, hi), false, true));
                body.Add((new(LdAbs, 0, 0, offLo), false, false));
                body.Add((new(JeqK, 0, 0, lo), false, true));
                break;
            case "SCMP_CMP_NE":
                // Matches when either half differs: hi differs → jump over the lo test to the next condition.
                body.Add((new(LdAbs, 0, 0, offHi), false, false));
                body.Add((new(JeqK, 0, 2, hi), false, false));
                body.Add((new(LdAbs, 0, 0, offLo), false, false));
                body.Add((new(JeqK, 0, 0, lo), true, false));
                break;
            case "SCMP_CMP_MASKED_EQ":
                var maskLo = lo;
                var maskHi = hi;
                var wantLo = (uint)(arg.ValueTwo & 0xffffffff);
                var wantHi = (uint)(arg.ValueTwo >> 32);
                body.Add((new(LdAbs, 0, 0, offHi), false, false));
                body.Add((new(AndK, 0, 0, maskHi), false, false));
                body.Add((new(JeqK, 0, 0, wantHi), false, true));
                body.Add((new(LdAbs, 0, 0, offLo), false, false));
                body.Add((new(AndK, 0, 0, maskLo), false, false));
                body.Add((new(JeqK, 0, 0, wantLo), false, true));
                break;
            case "SCMP_CMP_GT" or "SCMP_CMP_GE" or "SCMP_CMP_LT" or "SCMP_CMP_LE":
                // Unsigned 64-bit: decide on the high words unless they are equal, then on the low words.
                // GT/GE match when greater; LT/LE are their negations (!GE, !GT).
                var greater = arg.Op is "SCMP_CMP_GT" or "SCMP_CMP_GE";
                var lowOp = arg.Op is "SCMP_CMP_GT" or "SCMP_CMP_LE" ? JgtK : JgeK;
                body.Add((new(LdAbs, 0, 0, offHi), false, false));
                if (greater)
                {
                    body.Add((new(JgtK, 3, 0, hi), false, false));   // hi > vhi: match, skip to next condition
                    body.Add((new(JeqK, 0, 0, hi), false, true));    // hi < vhi: fail
                    body.Add((new(LdAbs, 0, 0, offLo), false, false));
                    body.Add((new(lowOp, 0, 0, lo), false, true));   // lo test decides
                }
                else
                {
                    body.Add((new(JgtK, 0, 0, hi), true, false));    // hi > vhi: not less: fail
                    body.Add((new(JeqK, 0, 2, hi), false, false));   // hi < vhi: match, skip the lo test
                    body.Add((new(LdAbs, 0, 0, offLo), false, false));
                    body.Add((new(lowOp, 0, 0, lo), true, false));   // lo >= / > : fail
                }
                break;
            default:
                throw new SpecException($"linux.seccomp: operator '{arg.Op}' is not supported; use SCMP_CMP_EQ, _NE, _LT, _LE, _GT, _GE or _MASKED_EQ");
        }
    }

    public static uint? ArchValue(string name) => name switch
    {
        "SCMP_ARCH_X86_64" or "SCMP_ARCH_X32" => 0xC000003E,
        "SCMP_ARCH_X86" => 0x40000003,
        "SCMP_ARCH_AARCH64" => 0xC00000B7,
        "SCMP_ARCH_ARM" => 0x40000028,
        "SCMP_ARCH_MIPS" or "SCMP_ARCH_MIPS64" or "SCMP_ARCH_MIPS64N32" or "SCMP_ARCH_MIPSEL" or "SCMP_ARCH_MIPSEL64"
            or "SCMP_ARCH_MIPSEL64N32" or "SCMP_ARCH_PPC" or "SCMP_ARCH_PPC64" or "SCMP_ARCH_PPC64LE" or "SCMP_ARCH_S390"
            or "SCMP_ARCH_S390X" or "SCMP_ARCH_RISCV64" or "SCMP_ARCH_LOONGARCH64" => 0, // known names of other machines
        _ => null,
    };
}

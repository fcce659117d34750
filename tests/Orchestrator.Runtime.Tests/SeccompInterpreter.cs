using Orchestrator.Runtime.Security;

namespace Orchestrator.Testing.Seccomp;

/// <summary>
/// A classic-BPF interpreter for seccomp filters: runs a compiled program over made-up syscalls.
/// Shared by the compiler's tests and the default profile's (Orchestrator.Node.Tests links this file).
/// </summary>
internal static class SeccompInterpreter
{
    /// <summary>Runs a program over seccomp_data { nr, arch, ip, args[6] } as the kernel would.</summary>
    public static uint Run(BpfInstruction[] program, int nr, uint arch, params ulong[] args)
    {
        var data = new byte[64];
        BitConverter.TryWriteBytes(data.AsSpan(0), nr);
        BitConverter.TryWriteBytes(data.AsSpan(4), arch);
        for (var i = 0; i < args.Length; i++)
        {
            BitConverter.TryWriteBytes(data.AsSpan(16 + 8 * i), args[i]);
        }
        uint a = 0;
        for (var pc = 0; pc < program.Length; pc++)
        {
            var insn = program[pc];
            switch (insn.Code)
            {
                case 0x20: a = BitConverter.ToUInt32(data, (int)insn.K); break;
                case 0x54: a &= insn.K; break;
                case 0x15: pc += a == insn.K ? insn.JumpTrue : insn.JumpFalse; break;
                case 0x25: pc += a > insn.K ? insn.JumpTrue : insn.JumpFalse; break;
                case 0x35: pc += a >= insn.K ? insn.JumpTrue : insn.JumpFalse; break;
                case 0x06: return insn.K;
                default: throw new InvalidOperationException($"unexpected opcode {insn.Code:x}");
            }
        }
        throw new InvalidOperationException("the program fell off its end");
    }
}

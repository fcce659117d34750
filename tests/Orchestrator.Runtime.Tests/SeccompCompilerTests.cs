using Orchestrator.Runtime.Security;
using Orchestrator.Runtime.Spec;

using Orchestrator.Testing.Seccomp;

namespace Orchestrator.Runtime.Tests;

/// <summary>The compiled filters, run through a classic-BPF interpreter over made-up syscalls.</summary>
public sealed class SeccompCompilerTests
{
    private const uint X86_64 = 0xC000003E;

    private static readonly Dictionary<string, int> s_numbers = new() { ["read"] = 0, ["write"] = 1, ["mkdir"] = 83, ["kill"] = 62, ["personality"] = 135 };

    private static BpfInstruction[] Compile(SeccompSpec spec) => SeccompCompiler.Compile(spec, n => s_numbers.GetValueOrDefault(n, -1), X86_64);

    private static uint Run(BpfInstruction[] program, int nr, uint arch = X86_64, params ulong[] args) => SeccompInterpreter.Run(program, nr, arch, args);

    private static SeccompSpec Rule(string op, ulong value, ulong valueTwo = 0) => new()
    {
        DefaultAction = "SCMP_ACT_ALLOW",
        Syscalls = [new SeccompSyscallSpec { Names = ["personality"], Action = "SCMP_ACT_ERRNO", ErrnoRet = 13, Args = [new SeccompArgSpec { Index = 0, Value = value, ValueTwo = valueTwo, Op = op }] }],
    };

    private const uint Denied = SeccompCompiler.RetErrno | 13;

    [Fact]
    public void Rules_by_name_with_errno_and_the_default_action()
    {
        var program = Compile(new SeccompSpec
        {
            DefaultAction = "SCMP_ACT_ERRNO",
            DefaultErrnoRet = 1,
            Syscalls =
            [
                new() { Names = ["read", "write", "no_such_call"], Action = "SCMP_ACT_ALLOW" },
                new() { Names = ["mkdir"], Action = "SCMP_ACT_ERRNO", ErrnoRet = 38 },
            ],
        });
        Assert.Equal(SeccompCompiler.RetAllow, Run(program, 0));
        Assert.Equal(SeccompCompiler.RetAllow, Run(program, 1));
        Assert.Equal(SeccompCompiler.RetErrno | 38, Run(program, 83));
        Assert.Equal(SeccompCompiler.RetErrno | 1, Run(program, 62));
    }

    [Fact]
    public void Other_architectures_and_x32_calls_get_the_default_action()
    {
        var program = Compile(new SeccompSpec { DefaultAction = "SCMP_ACT_KILL_PROCESS", Syscalls = [new() { Names = ["read"], Action = "SCMP_ACT_ALLOW" }] });
        Assert.Equal(SeccompCompiler.RetAllow, Run(program, 0));
        Assert.Equal(SeccompCompiler.RetKillProcess, Run(program, 0, arch: 0x40000003));
        Assert.Equal(SeccompCompiler.RetKillProcess, Run(program, 0x40000000));
    }

    private const uint I386 = 0x40000003, Aarch64 = 0xC00000B7, Arm = 0x40000028;

    [Fact]
    public void A_deny_list_kills_the_calls_of_other_architectures_instead_of_allowing_them()
    {
        // personality refused under x86_64's number; an i386 (int 0x80) or x32 call of it would
        // carry another number and, with the default action, get around the rule.
        var program = Compile(Rule("SCMP_CMP_EQ", 0xffffffffUL));
        Assert.Equal(Denied, Run(program, 135, X86_64, 0xffffffffUL));
        Assert.Equal(SeccompCompiler.RetAllow, Run(program, 0));
        Assert.Equal(SeccompCompiler.RetKillProcess, Run(program, 136, I386, 0xffffffffUL));
        Assert.Equal(SeccompCompiler.RetKillProcess, Run(program, 0x40000000 + 135, X86_64, 0xffffffffUL));
    }

    [Fact]
    public void On_arm64_the_32_bit_arm_calls_of_a_deny_list_are_killed()
    {
        // The same profile on arm64: personality is 92 there; compat (AArch32) calls carry AUDIT_ARCH_ARM.
        var numbers = new Dictionary<string, int> { ["personality"] = 92, ["read"] = 63 };
        var program = SeccompCompiler.Compile(Rule("SCMP_CMP_EQ", 0xffffffffUL), n => numbers.GetValueOrDefault(n, -1), Aarch64);
        Assert.Equal(Denied, Run(program, 92, Aarch64, 0xffffffffUL));
        Assert.Equal(SeccompCompiler.RetAllow, Run(program, 63, Aarch64));
        Assert.Equal(SeccompCompiler.RetKillProcess, Run(program, 136, Arm, 0xffffffffUL));
        // No x32 check on arm64: a number with bit 30 set is just an unknown native call.
        Assert.Equal(SeccompCompiler.RetAllow, Run(program, 0x40000000 + 92, Aarch64, 0xffffffffUL));
    }

    [Fact]
    public void A_permissive_profile_that_refuses_nothing_keeps_its_default_for_other_architectures()
    {
        var program = Compile(new SeccompSpec { DefaultAction = "SCMP_ACT_ALLOW", Syscalls = [new() { Names = ["read"], Action = "SCMP_ACT_LOG" }] });
        Assert.Equal(SeccompCompiler.RetLog, Run(program, 0));
        Assert.Equal(SeccompCompiler.RetAllow, Run(program, 3, I386));
        var logAll = Compile(new SeccompSpec { DefaultAction = "SCMP_ACT_LOG", Syscalls = [new() { Names = ["mkdir"], Action = "SCMP_ACT_ERRNO" }] });
        Assert.Equal(SeccompCompiler.RetKillProcess, Run(logAll, 39, I386));
    }

    [Theory]
    [InlineData("SCMP_CMP_EQ", 0xffffffffUL, 0xffffffffUL, true)]
    [InlineData("SCMP_CMP_EQ", 0xffffffffUL, 0x1ffffffffUL, false)]
    [InlineData("SCMP_CMP_NE", 5UL, 5UL, false)]
    [InlineData("SCMP_CMP_NE", 5UL, 0x100000005UL, true)]
    [InlineData("SCMP_CMP_GT", 0x100000000UL, 0x100000001UL, true)]
    [InlineData("SCMP_CMP_GT", 0x100000000UL, 0x100000000UL, false)]
    [InlineData("SCMP_CMP_GT", 0x100000000UL, 0xffffffffUL, false)]
    [InlineData("SCMP_CMP_GE", 0x100000000UL, 0x100000000UL, true)]
    [InlineData("SCMP_CMP_GE", 7UL, 6UL, false)]
    [InlineData("SCMP_CMP_LT", 0x100000000UL, 0xffffffffUL, true)]
    [InlineData("SCMP_CMP_LT", 7UL, 7UL, false)]
    [InlineData("SCMP_CMP_LT", 7UL, 0x100000000UL, false)]
    [InlineData("SCMP_CMP_LE", 7UL, 7UL, true)]
    [InlineData("SCMP_CMP_LE", 7UL, 8UL, false)]
    public void Argument_conditions_compare_all_64_bits(string op, ulong value, ulong actual, bool denied)
        => Assert.Equal(denied ? Denied : SeccompCompiler.RetAllow, Run(Compile(Rule(op, value)), 135, X86_64, actual));

    [Theory]
    [InlineData(0xff00UL, 0x1200UL, 0x12345UL, false)]
    [InlineData(0xff00UL, 0x2300UL, 0x12345UL, true)]
    public void Masked_equal_masks_then_compares(ulong mask, ulong want, ulong actual, bool denied)
        => Assert.Equal(denied ? Denied : SeccompCompiler.RetAllow, Run(Compile(Rule("SCMP_CMP_MASKED_EQ", mask, want)), 135, X86_64, actual));

    [Fact]
    public void Several_conditions_must_all_hold_and_later_rules_still_run()
    {
        var program = Compile(new SeccompSpec
        {
            DefaultAction = "SCMP_ACT_ALLOW",
            Syscalls =
            [
                new() { Names = ["kill"], Action = "SCMP_ACT_ERRNO", ErrnoRet = 13, Args = [new() { Index = 1, Value = 9, Op = "SCMP_CMP_EQ" }, new() { Index = 0, Value = 1, Op = "SCMP_CMP_EQ" }] },
                new() { Names = ["mkdir"], Action = "SCMP_ACT_ERRNO", ErrnoRet = 38 },
            ],
        });
        Assert.Equal(Denied, Run(program, 62, X86_64, 1, 9));
        Assert.Equal(SeccompCompiler.RetAllow, Run(program, 62, X86_64, 2, 9));
        Assert.Equal(SeccompCompiler.RetErrno | 38, Run(program, 83));
    }

    [Theory]
    [InlineData("SCMP_ACT_NOTIFY", "SCMP_CMP_EQ", "action 'SCMP_ACT_NOTIFY' is not supported")]
    [InlineData("SCMP_ACT_ERRNO", "SCMP_CMP_ALMOST", "operator 'SCMP_CMP_ALMOST' is not supported")]
    public void Unsupported_actions_and_operators_are_clear_errors(string action, string op, string expected)
    {
        var spec = new SeccompSpec { DefaultAction = "SCMP_ACT_ALLOW", Syscalls = [new() { Names = ["read"], Action = action, Args = [new() { Index = 0, Op = op }] }] };
        Assert.Contains(expected, Assert.Throws<SpecException>(() => Compile(spec)).Message, StringComparison.Ordinal);
    }
}

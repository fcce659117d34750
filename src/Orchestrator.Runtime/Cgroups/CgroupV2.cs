using System.Globalization;
using Orchestrator.Runtime.Spec;

namespace Orchestrator.Runtime.Cgroups;

/// <summary>cgroup v2: one unified directory; controllers enabled through the parents' subtree_control.</summary>
internal sealed class CgroupV2(string mountRoot, string path) : ICgroup
{
    public string Path { get; } = path;

    private readonly List<string> _warnings = [];

    public IReadOnlyList<string> Warnings => _warnings;

    public string? UnifiedDirectory => Dir;

    private string Dir => System.IO.Path.Join(mountRoot, Path);

    private string F(string name) => System.IO.Path.Combine(Dir, name);

    public void Create(ResourcesSpec? resources)
    {
        // Enable on every level above the leaf what that level offers and does not enable yet (a
        // leaf with processes cannot have children, so the leaf itself enables nothing). Inside a
        // systemd scope the levels above it (the root, the slices) are systemd's: it enabled there
        // what it delegated, and only the scope and below are written.
        var parts = Path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        var firstOwned = Array.FindIndex(parts, p => p.EndsWith(".scope", StringComparison.Ordinal));
        var current = mountRoot;
        for (var level = 0; level < parts.Length; level++)
        {
            if (firstOwned < 0 || level > firstOwned)
            {
                var control = System.IO.Path.Combine(current, "cgroup.subtree_control");
                var enabled = (CgroupFactory.Read(control) ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries);
                var available = (CgroupFactory.Read(System.IO.Path.Combine(current, "cgroup.controllers")) ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries);
                foreach (var controller in available.Except(enabled))
                {
                    try
                    {
                        File.WriteAllText(control, "+" + controller);
                    }
                    catch (IOException)
                    {
                        // Not every controller can be delegated everywhere (cpuset on some kernels); limits on it then fail loudly.
                    }
                }
            }
            current = System.IO.Path.Combine(current, parts[level]);
            Directory.CreateDirectory(current);
        }
        if (resources is not null)
        {
            Update(resources);
            if (resources.Devices is { Count: > 0 })
            {
                // v2 has no devices files: runc and crun attach an eBPF program, which this runtime
                // does not do yet. Said, not hidden: /dev still holds only the default devices and
                // mknod still needs CAP_MKNOD.
                _warnings.Add("linux.resources.devices is not enforced on cgroup v2 yet (no eBPF device filter); the container's /dev holds only its default and spec devices");
            }
        }
    }

    public void Update(ResourcesSpec resources)
    {
        if (resources.Memory is { } memory)
        {
            if (memory.Limit is { } limit)
            {
                CgroupFactory.Write(F("memory.max"), limit > 0 ? V(limit) : "max");
            }
            if (memory.Reservation is { } reservation)
            {
                CgroupFactory.Write(F("memory.low"), V(reservation));
            }
            if (memory.Swap is { } swap)
            {
                // v1's memsw is memory+swap; v2's swap.max is swap alone.
                var swapOnly = swap < 0 ? "max" : V(Math.Max(0, swap - (memory.Limit ?? 0)));
                CgroupFactory.Write(F("memory.swap.max"), swapOnly);
            }
        }
        if (resources.Cpu is { } cpu)
        {
            if (cpu.Shares is { } shares)
            {
                CgroupFactory.Write(F("cpu.weight"), SharesToWeight(shares).ToString(CultureInfo.InvariantCulture));
            }
            if (cpu.Quota is not null || cpu.Period is not null)
            {
                var quota = cpu.Quota is { } q && q > 0 ? V(q) : "max";
                CgroupFactory.Write(F("cpu.max"), $"{quota} {(cpu.Period ?? 100_000).ToString(CultureInfo.InvariantCulture)}");
            }
            if (cpu.Cpus is { Length: > 0 } cpus)
            {
                CgroupFactory.Write(F("cpuset.cpus"), cpus);
            }
            if (cpu.Mems is { Length: > 0 } mems)
            {
                CgroupFactory.Write(F("cpuset.mems"), mems);
            }
        }
        if (resources.Pids is { } pids)
        {
            CgroupFactory.Write(F("pids.max"), pids.Limit > 0 ? V(pids.Limit) : "max");
        }
        if (resources.BlockIO is { } blockIO)
        {
            // As runc on v2: blkio weight 10..1000 onto io.weight 1..10000 (0: not set); throttles to io.max.
            if (blockIO.Weight is > 0 and var weight)
            {
                RequiredWrite("io.weight", (1 + ((Math.Clamp((int)weight, 10, 1000) - 10) * 9999 / 990)).ToString(CultureInfo.InvariantCulture), "linux.resources.blockIO.weight");
            }
            foreach (var (list, key) in new[] { (blockIO.ThrottleReadBpsDevice, "rbps"), (blockIO.ThrottleWriteBpsDevice, "wbps"), (blockIO.ThrottleReadIopsDevice, "riops"), (blockIO.ThrottleWriteIopsDevice, "wiops") })
            {
                foreach (var device in list ?? [])
                {
                    RequiredWrite("io.max", string.Create(CultureInfo.InvariantCulture, $"{device.Major}:{device.Minor} {key}={device.Rate}"), "linux.resources.blockIO");
                }
            }
        }
        foreach (var hugepage in resources.HugepageLimits ?? [])
        {
            RequiredWrite($"hugetlb.{hugepage.PageSize}.max", hugepage.Limit.ToString(CultureInfo.InvariantCulture), "linux.resources.hugepageLimits");
        }
        if (resources.Network is { ClassId: > 0 } or { Priorities.Count: > 0 })
        {
            throw new CgroupException("linux.resources.network: cgroup v2 has no net_cls or net_prio controller; remove the setting (runc refuses it on v2 too)");
        }
    }

    /// <summary>Writes a controller's file; a clear error when the controller is not enabled here.</summary>
    private void RequiredWrite(string file, string value, string field)
    {
        if (!File.Exists(F(file)))
        {
            throw new CgroupException($"{field}: '{F(file)}' does not exist (the controller is not enabled for this cgroup); remove the setting or enable the controller");
        }
        CgroupFactory.Write(F(file), value);
    }

    /// <summary>The conversion runc and crun use: shares 2..262144 onto weight 1..10000.</summary>
    internal static ulong SharesToWeight(ulong shares)
        => shares == 0 ? 100 : 1 + ((Math.Clamp(shares, 2, 262144) - 2) * 9999 / 262142);

    private static string V(long value) => value.ToString(CultureInfo.InvariantCulture);

    public void Attach(int pid) => CgroupFactory.Write(F("cgroup.procs"), pid.ToString(CultureInfo.InvariantCulture));

    public IReadOnlyList<int> Pids() => CgroupFactory.ReadPids(F("cgroup.procs"));

    public CgroupStats Stats() => new(
        CgroupFactory.ReadLong(F("memory.current")),
        CgroupFactory.ReadLong(F("memory.peak")),
        CgroupFactory.KeyedValue(F("cpu.stat"), "usage_usec") * 1000,
        CgroupFactory.ReadLong(F("pids.current")),
        CgroupFactory.KeyedValue(F("memory.events"), "oom_kill"));

    public void Freeze() => CgroupFactory.Write(F("cgroup.freeze"), "1");

    public void Thaw() => CgroupFactory.Write(F("cgroup.freeze"), "0");

    public void Remove() => CgroupFactory.RemoveDirectory(Dir);
}

using System.Globalization;
using Orchestrator.Runtime.Spec;

namespace Orchestrator.Runtime.Cgroups;

/// <summary>cgroup v1: one directory per controller hierarchy (/sys/fs/cgroup/memory/…, …).</summary>
internal sealed class CgroupV1(string mountRoot, string path) : ICgroup
{
    private static readonly string[] s_controllers = ["memory", "cpu", "cpuacct", "cpuset", "pids", "freezer", "devices", "blkio", "net_cls", "net_prio", "hugetlb"];

    /// <summary>Devices every container gets (the ones the runtime bind-mounts into /dev), as runc allows them.</summary>
    private static readonly string[] s_defaultDevices =
        ["c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm"];

    public string Path { get; } = path;

    public IReadOnlyList<string> Warnings { get; } = [];

    public string? UnifiedDirectory => null;

    /// <summary>
    /// Hierarchies with no controller that only track processes: systemd's own `name=systemd`
    /// (mounted at /sys/fs/cgroup/systemd) and, on a hybrid host, the cgroup2 hierarchy at
    /// /sys/fs/cgroup/unified, which systemd uses for the same purpose there. A container joins
    /// them at its own path, as runc does, so that it is not a process of orchd.service (systemd
    /// would report it as "left-over" on every restart of orchd and count it in the unit's
    /// status). Both are joined only where they are mounted.
    /// </summary>
    private static readonly string[] s_trackingHierarchies = ["systemd", "unified"];


    /// <summary>Controller name → its directory for this cgroup; joint mounts (cpu,cpuacct) appear once each name.</summary>
    private IEnumerable<(string Name, string Dir)> Dirs()
    {
        foreach (var name in s_controllers)
        {
            var root = System.IO.Path.Combine(mountRoot, name);
            if (Directory.Exists(root))
            {
                yield return (name, System.IO.Path.Join(root, Path));
            }
        }
        foreach (var name in s_trackingHierarchies)
        {
            var root = System.IO.Path.Combine(mountRoot, name);
            if (File.Exists(System.IO.Path.Combine(root, "cgroup.procs")))
            {
                yield return (name, System.IO.Path.Join(root, Path));
            }
        }
    }

    private static bool IsTracking(string name) => name is "systemd" or "unified";

    /// <summary>
    /// A tracking hierarchy is best effort: where it is mounted read-only (inside some
    /// containers) the container stays where its parent is, as before, with nothing lost.
    /// </summary>
    private static void Tracking(Action action)
    {
        try
        {
            action();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CgroupException)
        {
        }
    }

    private string Dir(string controller) => System.IO.Path.Join(mountRoot, controller, Path);

    public void Create(ResourcesSpec? resources)
    {
        foreach (var (name, dir) in Dirs())
        {
            if (name == "cpuset")
            {
                CreateCpuset();
            }
            else if (IsTracking(name))
            {
                Tracking(() => Directory.CreateDirectory(dir));
            }
            else
            {
                Directory.CreateDirectory(dir);
            }
        }
        if (resources is not null)
        {
            Update(resources);
        }
        Apply(Dir("devices"), resources?.Devices);
    }

    /// <summary>New cpuset cgroups start empty; a task cannot join until cpus and mems are copied down.</summary>
    private void CreateCpuset()
    {
        var root = System.IO.Path.Combine(mountRoot, "cpuset");
        var current = root;
        foreach (var part in Path.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            var parent = current;
            current = System.IO.Path.Combine(current, part);
            Directory.CreateDirectory(current);
            foreach (var file in new[] { "cpuset.cpus", "cpuset.mems" })
            {
                if (string.IsNullOrEmpty(CgroupFactory.Read(System.IO.Path.Combine(current, file))))
                {
                    CgroupFactory.Write(System.IO.Path.Combine(current, file), CgroupFactory.Read(System.IO.Path.Combine(parent, file)) ?? "");
                }
            }
        }
    }

    private static void Apply(string devicesDir, List<DeviceRuleSpec>? rules)
    {
        if (!Directory.Exists(devicesDir) || rules is null)
        {
            return;
        }
        foreach (var rule in rules)
        {
            var type = rule.Type ?? "a";
            var major = rule.Major?.ToString(CultureInfo.InvariantCulture) ?? "*";
            var minor = rule.Minor?.ToString(CultureInfo.InvariantCulture) ?? "*";
            var entry = type == "a" && rule.Major is null && rule.Minor is null ? "a" : $"{type} {major}:{minor} {rule.Access ?? "rwm"}";
            CgroupFactory.Write(System.IO.Path.Combine(devicesDir, rule.Allow ? "devices.allow" : "devices.deny"), entry);
        }
        foreach (var device in s_defaultDevices)
        {
            CgroupFactory.Write(System.IO.Path.Combine(devicesDir, "devices.allow"), device);
        }
    }

    public void Update(ResourcesSpec resources)
    {
        if (resources.Memory is { } memory)
        {
            var dir = Dir("memory");
            if (memory.Limit is { } limit)
            {
                // Raising the limit above memsw fails: raise memsw first when both grow.
                var memsw = System.IO.Path.Combine(dir, "memory.memsw.limit_in_bytes");
                if (memory.Swap is { } swapFirst && File.Exists(memsw) && swapFirst > CgroupFactory.ReadLong(memsw))
                {
                    CgroupFactory.Write(memsw, V(swapFirst));
                }
                CgroupFactory.Write(System.IO.Path.Combine(dir, "memory.limit_in_bytes"), V(limit));
            }
            if (memory.Reservation is { } reservation)
            {
                CgroupFactory.Write(System.IO.Path.Combine(dir, "memory.soft_limit_in_bytes"), V(reservation));
            }
            if (memory.Swap is { } swap)
            {
                var memsw = System.IO.Path.Combine(dir, "memory.memsw.limit_in_bytes");
                if (!File.Exists(memsw))
                {
                    throw new CgroupException("linux.resources.memory.swap: this kernel has no swap accounting (memory.memsw.*); remove the swap limit or boot with swapaccount=1");
                }
                CgroupFactory.Write(memsw, V(swap));
            }
            if (memory.Swappiness is { } swappiness)
            {
                CgroupFactory.Write(System.IO.Path.Combine(dir, "memory.swappiness"), swappiness.ToString(CultureInfo.InvariantCulture));
            }
            if (memory.DisableOOMKiller == true)
            {
                CgroupFactory.Write(System.IO.Path.Combine(dir, "memory.oom_control"), "1");
            }
        }
        if (resources.Cpu is { } cpu)
        {
            var dir = Dir("cpu");
            if (cpu.Shares is { } shares)
            {
                CgroupFactory.Write(System.IO.Path.Combine(dir, "cpu.shares"), shares.ToString(CultureInfo.InvariantCulture));
            }
            if (cpu.Period is { } period)
            {
                CgroupFactory.Write(System.IO.Path.Combine(dir, "cpu.cfs_period_us"), period.ToString(CultureInfo.InvariantCulture));
            }
            if (cpu.Quota is { } quota)
            {
                CgroupFactory.Write(System.IO.Path.Combine(dir, "cpu.cfs_quota_us"), V(quota));
            }
            if (cpu.Cpus is { Length: > 0 } cpus)
            {
                CgroupFactory.Write(System.IO.Path.Combine(Dir("cpuset"), "cpuset.cpus"), cpus);
            }
            if (cpu.Mems is { Length: > 0 } mems)
            {
                CgroupFactory.Write(System.IO.Path.Combine(Dir("cpuset"), "cpuset.mems"), mems);
            }
            // Real-time bandwidth, as runc: written when non-zero (period first: runtime ≤ period).
            if (cpu.RealtimePeriod is > 0 and var rtPeriod)
            {
                CgroupFactory.Write(System.IO.Path.Combine(dir, "cpu.rt_period_us"), rtPeriod.ToString(CultureInfo.InvariantCulture));
            }
            if (cpu.RealtimeRuntime is { } rtRuntime and not 0)
            {
                CgroupFactory.Write(System.IO.Path.Combine(dir, "cpu.rt_runtime_us"), V(rtRuntime));
            }
        }
        if (resources.Pids is { } pids)
        {
            CgroupFactory.Write(System.IO.Path.Combine(Dir("pids"), "pids.max"), pids.Limit > 0 ? V(pids.Limit) : "max");
        }
        if (resources.BlockIO is { } blockIO)
        {
            ApplyBlockIO(Dir("blkio"), blockIO);
        }
        foreach (var hugepage in resources.HugepageLimits ?? [])
        {
            var dir = Dir("hugetlb");
            if (!Directory.Exists(dir))
            {
                throw new CgroupException($"linux.resources.hugepageLimits: this host has no cgroup v1 hugetlb hierarchy (/sys/fs/cgroup/hugetlb) to set the {hugepage.PageSize} limit in; remove hugepageLimits (runc refuses it too)");
            }
            var file = System.IO.Path.Combine(dir, $"hugetlb.{hugepage.PageSize}.limit_in_bytes");
            if (!File.Exists(file))
            {
                throw new CgroupException($"linux.resources.hugepageLimits: this kernel has no {hugepage.PageSize} huge pages ({file} is missing); use one of /sys/kernel/mm/hugepages");
            }
            CgroupFactory.Write(file, hugepage.Limit.ToString(CultureInfo.InvariantCulture));
        }
        if (resources.Network is { } network)
        {
            if (network.ClassId is { } classId and not 0)
            {
                CgroupFactory.Write(System.IO.Path.Combine(Required("net_cls", "linux.resources.network.classID"), "net_cls.classid"), classId.ToString(CultureInfo.InvariantCulture));
            }
            foreach (var priority in network.Priorities ?? [])
            {
                CgroupFactory.Write(System.IO.Path.Combine(Required("net_prio", "linux.resources.network.priorities"), "net_prio.ifpriomap"), $"{priority.Name} {priority.Priority.ToString(CultureInfo.InvariantCulture)}");
            }
        }
    }

    /// <summary>A controller's directory for this cgroup; a clear error (as runc fails too) when the host lacks the hierarchy.</summary>
    private string Required(string controller, string field)
    {
        var dir = Dir(controller);
        return Directory.Exists(dir)
            ? dir
            : throw new CgroupException($"{field}: this host has no cgroup v1 {controller} hierarchy (/sys/fs/cgroup/{controller}); remove the setting (runc refuses it too)");
    }

    /// <summary>
    /// blockIO as runc's v1 driver: a weight of 0 means "not set" (docker always sends one); a
    /// weight needs a proportional scheduler's file (blkio.bfq.weight, or CFQ's blkio.weight),
    /// and is an error when the kernel has neither; throttles go to blkio.throttle.*.
    /// </summary>
    private static void ApplyBlockIO(string dir, BlockIOSpec blockIO)
    {
        string WeightFile(string bfq, string cfq, string field)
        {
            foreach (var name in new[] { bfq, cfq })
            {
                var file = System.IO.Path.Combine(dir, name);
                if (File.Exists(file))
                {
                    return file;
                }
            }
            throw new CgroupException($"linux.resources.blockIO.{field}: this kernel's blkio controller has no weight file ({bfq} or {cfq}: no BFQ or CFQ I/O scheduler); remove the weight (runc refuses it too)");
        }
        if (blockIO.Weight is > 0 and var weight)
        {
            CgroupFactory.Write(WeightFile("blkio.bfq.weight", "blkio.weight", "weight"), weight.ToString(CultureInfo.InvariantCulture));
        }
        if (blockIO.LeafWeight is > 0 and var leafWeight)
        {
            CgroupFactory.Write(WeightFile("blkio.leaf_weight", "blkio.leaf_weight", "leafWeight"), leafWeight.ToString(CultureInfo.InvariantCulture));
        }
        foreach (var device in blockIO.WeightDevice ?? [])
        {
            var id = $"{device.Major.ToString(CultureInfo.InvariantCulture)}:{device.Minor.ToString(CultureInfo.InvariantCulture)}";
            if (device.Weight is > 0 and var w)
            {
                CgroupFactory.Write(WeightFile("blkio.bfq.weight_device", "blkio.weight_device", "weightDevice"), $"{id} {w.ToString(CultureInfo.InvariantCulture)}");
            }
            if (device.LeafWeight is > 0 and var lw)
            {
                CgroupFactory.Write(WeightFile("blkio.leaf_weight_device", "blkio.leaf_weight_device", "weightDevice.leafWeight"), $"{id} {lw.ToString(CultureInfo.InvariantCulture)}");
            }
        }
        foreach (var (list, file) in new[]
        {
            (blockIO.ThrottleReadBpsDevice, "blkio.throttle.read_bps_device"), (blockIO.ThrottleWriteBpsDevice, "blkio.throttle.write_bps_device"),
            (blockIO.ThrottleReadIopsDevice, "blkio.throttle.read_iops_device"), (blockIO.ThrottleWriteIopsDevice, "blkio.throttle.write_iops_device"),
        })
        {
            foreach (var device in list ?? [])
            {
                CgroupFactory.Write(System.IO.Path.Combine(dir, file), string.Create(CultureInfo.InvariantCulture, $"{device.Major}:{device.Minor} {device.Rate}"));
            }
        }
    }

    private static string V(long value) => value.ToString(CultureInfo.InvariantCulture);

    public void Attach(int pid)
    {
        var text = pid.ToString(CultureInfo.InvariantCulture);
        foreach (var (name, dir) in Dirs())
        {
            if (IsTracking(name))
            {
                Tracking(() => CgroupFactory.Write(System.IO.Path.Combine(dir, "cgroup.procs"), text));
            }
            else
            {
                CgroupFactory.Write(System.IO.Path.Combine(dir, "cgroup.procs"), text);
            }
        }
    }

    public IReadOnlyList<int> Pids() => CgroupFactory.ReadPids(System.IO.Path.Combine(Dir("pids"), "cgroup.procs"));

    public CgroupStats Stats()
    {
        var memory = Dir("memory");
        return new CgroupStats(
            CgroupFactory.ReadLong(System.IO.Path.Combine(memory, "memory.usage_in_bytes")),
            CgroupFactory.ReadLong(System.IO.Path.Combine(memory, "memory.max_usage_in_bytes")),
            CgroupFactory.ReadLong(System.IO.Path.Combine(Dir("cpuacct"), "cpuacct.usage")),
            CgroupFactory.ReadLong(System.IO.Path.Combine(Dir("pids"), "pids.current")),
            CgroupFactory.KeyedValue(System.IO.Path.Combine(memory, "memory.oom_control"), "oom_kill"));
    }

    public void Freeze() => CgroupFactory.Write(System.IO.Path.Combine(Dir("freezer"), "freezer.state"), "FROZEN");

    public void Thaw() => CgroupFactory.Write(System.IO.Path.Combine(Dir("freezer"), "freezer.state"), "THAWED");

    public void Remove()
    {
        foreach (var (name, dir) in Dirs().Reverse())
        {
            if (IsTracking(name))
            {
                Tracking(() => CgroupFactory.RemoveDirectory(dir));
            }
            else
            {
                CgroupFactory.RemoveDirectory(dir);
            }
        }
    }
}

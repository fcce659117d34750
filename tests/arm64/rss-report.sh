#!/bin/bash
# Where a process's resident memory goes (docs/benchmarks.md, "arm64"): what sizes it on this
# machine (page size, transparent huge pages, CPUs, the cache sizes the GC sizes gen0 from), the
# process's status lines, smaps_rollup, and Rss / Anonymous / AnonHugePages (KiB) summed by
# mapping (file name and permissions; anonymous mappings as [anon]). Runs in the arm64 VM
# (tests/arm64/in-vm.sh) and on the x64 host (tests/arm64/vm-e2e.sh) alike.
# Usage: rss-report.sh PID
pid=$1
echo "# $(uname -m), Linux $(uname -r), page size $(getconf PAGESIZE), $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB"
echo "# THP enabled: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo none); defrag: $(cat /sys/kernel/mm/transparent_hugepage/defrag 2>/dev/null || echo none)"
caches=""
for d in /sys/devices/system/cpu/cpu0/cache/index*; do
    [ -e "$d/size" ] && caches="$caches L$(cat "$d/level") $(cat "$d/type") $(cat "$d/size");"
done
echo "# cpu0 caches (sysfs):${caches:- none}"
echo "# $(tr '\0' ' ' < "/proc/$pid/cmdline")"
grep -E '^(VmHWM|VmRSS|RssAnon|RssFile|RssShmem|VmData|VmStk|Threads):' "/proc/$pid/status" | tr -s '\t ' ' '
echo "## smaps_rollup"
sed 1d "/proc/$pid/smaps_rollup"
echo "## by mapping: Rss Anonymous AnonHugePages (KiB), mappings, name"
awk '
    /^[0-9a-f]+-[0-9a-f]+ / {
        name = $6
        if (name == "") name = "[anon]"
        else if (name ~ /^\//) { n = split(name, p, "/"); name = p[n] }
        name = name " " $2
        maps[name]++
        next
    }
    /^Rss:/ { rss[name] += $2 }
    /^Anonymous:/ { anon[name] += $2 }
    /^AnonHugePages:/ { thp[name] += $2 }
    END { for (k in rss) if (rss[k] > 0) printf "%7d %7d %7d %4d %s\n", rss[k], anon[k], thp[k], maps[k], k }
' "/proc/$pid/smaps" | sort -rn

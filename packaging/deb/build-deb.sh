#!/bin/bash
# Builds the orchestrator .deb for one architecture from binaries `make publish` made:
#   packaging/deb/build-deb.sh --bin-dir artifacts/bin --arch amd64 --out artifacts/packages
# Only dpkg-deb (part of dpkg) and gzip are needed; the tree is assembled in a temp dir with
# root ownership given by dpkg-deb --root-owner-group, so no fakeroot either. docs/packaging.md
# lists what goes where.
set -euo pipefail

usage() { echo "usage: $0 --bin-dir DIR --arch amd64|arm64 --out DIR [--version VERSION]" >&2; exit 2; }
bin_dir="" arch="" out="" version=""
while [ $# -gt 0 ]; do
    case "$1" in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --arch) arch=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    *) usage ;;
    esac
done
[ -n "$bin_dir" ] && [ -n "$arch" ] && [ -n "$out" ] || usage
case "$arch" in
amd64) objdump=objdump; qemu=() ;;
arm64) objdump=aarch64-linux-gnu-objdump; qemu=() ;;
*) echo "error: architecture '$arch' is not packaged; use amd64 or arm64" >&2; exit 2 ;;
esac

repo=$(cd "$(dirname "$0")/../.." && pwd)
for f in orchd orchctl orch-runc; do
    [ -x "$bin_dir/$f" ] || { echo "error: $bin_dir/$f is not built; run make publish (amd64) or make publish-arm64 first" >&2; exit 1; }
done
# The binary's own architecture, so that an x64 orchd never ends up in an arm64 package.
# (ELF e_machine, at byte 18: 62 is x86-64, 183 is AArch64.)
case "$(od -An -tu2 -j18 -N2 "$bin_dir/orchd" | tr -d ' ')" in
62) built=amd64 ;;
183) built=arm64 ;;
*) built=unknown ;;
esac
[ "$built" = "$arch" ] || { echo "error: $bin_dir/orchd is built for $built, not $arch; pass the right --bin-dir" >&2; exit 1; }
# orch-runc is a binary of its own (an older tree made it a link to orchd): the same check.
[ ! -L "$bin_dir/orch-runc" ] || { echo "error: $bin_dir/orch-runc is a link (to orchd?), not the orch-runc binary; run make publish again" >&2; exit 1; }
[ "$(od -An -tu2 -j18 -N2 "$bin_dir/orch-runc" | tr -d ' ')" = "$(od -An -tu2 -j18 -N2 "$bin_dir/orchd" | tr -d ' ')" ] \
    || { echo "error: $bin_dir/orch-runc is not built for $arch like orchd; pass the right --bin-dir" >&2; exit 1; }

# Running the package's own orchctl (for its completion scripts): natively, or under qemu-user.
host=$(dpkg --print-architecture)
if [ "$arch" != "$host" ]; then
    case "$arch" in
    arm64) qemu=(qemu-aarch64-static -L /usr/aarch64-linux-gnu) ;;
    esac
    command -v "${qemu[0]}" >/dev/null || { echo "error: ${qemu[0]} is needed to run the $arch orchctl; apt-get install qemu-user-static (make packages does)" >&2; exit 1; }
fi

if [ -z "$version" ]; then
    base=$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' "$repo/Directory.Build.props" | head -n 1)
    # Monotonic between commits (the count) and traceable to one (the hash).
    if count=$(git -C "$repo" rev-list --count HEAD 2>/dev/null) && rev=$(git -C "$repo" rev-parse --short=8 HEAD 2>/dev/null); then
        version="$base+git$count.$rev"
    else
        version="$base"
    fi
fi

# The oldest glibc the binaries accept: the highest GLIBC_x.y symbol version they import.
glibc=$("$objdump" -T "$bin_dir/orchd" "$bin_dir/orchctl" "$bin_dir/orch-runc" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
install -d "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/orchestrator/manifests" \
    "$root/usr/lib/tmpfiles.d" "$root/usr/share/man/man1" "$root/usr/share/man/man8" \
    "$root/usr/share/doc/orchestrator" "$root/usr/share/bash-completion/completions" \
    "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d"

install -m 0755 "$bin_dir/orchd" "$bin_dir/orchctl" "$bin_dir/orch-runc" "$root/usr/bin/"
install -m 0644 "$repo/systemd/orchd.service" "$root/lib/systemd/system/orchd.service"
install -m 0644 "$repo/systemd/orchd-identity.service" "$root/lib/systemd/system/orchd-identity.service"
install -D -m 0755 "$repo/packaging/update/orchd-update-guard" "$root/usr/lib/orchestrator/orchd-update-guard"
install -m 0644 "$repo/packaging/config/orchd.yaml" "$root/etc/orchestrator/orchd.yaml"
install -m 0644 "$repo/packaging/tmpfiles/orchestrator.conf" "$root/usr/lib/tmpfiles.d/orchestrator.conf"
gzip -9n < "$repo/packaging/man/orchd.8" > "$root/usr/share/man/man8/orchd.8.gz"
# orchctl's commands change with every release of it: its page carries its own --help.
"${qemu[@]}" "$bin_dir/orchctl" --help | sed -e 's/\\/\\e/g' -e 's/^[.'"'"']/\\\&&/' -e 's/-/\\-/g' > "$stage/orchctl-help"
sed -e "/@COMMANDS@/{r $stage/orchctl-help" -e 'd}' "$repo/packaging/man/orchctl.1.in" | gzip -9n > "$root/usr/share/man/man1/orchctl.1.gz"
gzip -9n < "$repo/packaging/man/orch-runc.8" > "$root/usr/share/man/man8/orch-runc.8.gz"
install -m 0644 "$repo/README.md" "$root/usr/share/doc/orchestrator/README.md"
install -m 0644 "$repo/docs/packaging.md" "$root/usr/share/doc/orchestrator/packaging.md"
if [ -d "$repo/packaging/grafana" ]; then
    install -d "$root/usr/share/orchestrator/grafana"
    install -m 0644 "$repo"/packaging/grafana/*.json "$root/usr/share/orchestrator/grafana/"
fi
cat > "$root/usr/share/doc/orchestrator/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: orchestrator

Files: *
Copyright: 2025 the Orchestrator authors
License: see the project's repository
COPYRIGHT
printf 'orchestrator (%s) unstable; urgency=medium\n\n  * Built from the project tree.\n\n -- Orchestrator <orchestrator@example.org>  %s\n' \
    "$version" "$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}")" \
    | gzip -9n > "$root/usr/share/doc/orchestrator/changelog.gz"
"${qemu[@]}" "$bin_dir/orchctl" completion bash > "$root/usr/share/bash-completion/completions/orchctl"
"${qemu[@]}" "$bin_dir/orchctl" completion zsh > "$root/usr/share/zsh/vendor-completions/_orchctl"
"${qemu[@]}" "$bin_dir/orchctl" completion fish > "$root/usr/share/fish/vendor_completions.d/orchctl.fish"

# The AOT runtime links its own zlib(-ng) into each binary; there is no shared one to use.
install -d "$root/usr/share/lintian/overrides"
printf 'orchestrator: embedded-library zlib [usr/bin/orchd]\norchestrator: embedded-library zlib [usr/bin/orchctl]\n' > "$root/usr/share/lintian/overrides/orchestrator"
install -m 0755 "$repo"/packaging/deb/maintainer/{postinst,prerm,postrm} "$root/DEBIAN/"
echo /etc/orchestrator/orchd.yaml > "$root/DEBIAN/conffiles"
installed_kb=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: orchestrator
Version: $version
Architecture: $arch
Maintainer: Orchestrator <orchestrator@example.org>
Installed-Size: $installed_kb
Depends: libc6 (>= $glibc), libssl3 | libssl1.1, iproute2, nftables
Recommends: tini
Suggests: nats-server, containerd
Section: admin
Priority: optional
Description: container orchestrator for edge and IoT fleets
 orchd runs containers on this host with its own OCI runtime (or containerd)
 and joins a fleet of such hosts over NATS: deployments placed by an elected
 scheduler, rolling updates in canary waves, signed manifests, live restore
 across daemon restarts. orchctl is the operator's command line; orch-runc is
 the same runtime's runc-compatible command line (a small binary of its own).
 .
 The systemd unit orchd.service is installed but not enabled.
CONTROL

mkdir -p "$out"
deb="$out/orchestrator_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb ($(du -k "$deb" | cut -f1) KiB, installed $installed_kb KiB)"

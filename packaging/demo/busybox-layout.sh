#!/bin/bash
# Builds an OCI image layout of Debian's busybox-static (one layer: /bin/busybox and its applet
# links), so that the demo needs no registry and no network. Usage: busybox-layout.sh DIR
set -euo pipefail
out=${1:?usage: busybox-layout.sh DIR}
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "busybox-layout: $busybox is missing; apt-get install busybox-static" >&2; exit 1; }
case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64|arm64) arch=arm64 ;; armv7l) arch=arm ;; *) arch=$(uname -m) ;; esac
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,etc,proc,sys,tmp,root,var/log} "$out/blobs/sha256"
chmod 755 "$root"
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"; done
echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
echo "root:x:0:" > "$root/etc/group"
tar --sort=name --mtime=2024-01-01 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$root.tar" .
diff_id=$(sha256sum "$root.tar" | cut -d' ' -f1)
gzip -n -9 < "$root.tar" > "$root.tar.gz"
rm -f "$root.tar"
layer=$(sha256sum "$root.tar.gz" | cut -d' ' -f1)
layer_size=$(stat -c %s "$root.tar.gz")
mv "$root.tar.gz" "$out/blobs/sha256/$layer"
blob() { local d; d=$(printf '%s' "$1" | sha256sum | cut -d' ' -f1); printf '%s' "$1" > "$out/blobs/sha256/$d"; echo "$d $(printf '%s' "$1" | wc -c)"; }
read -r config config_size < <(blob "{\"architecture\":\"$arch\",\"os\":\"linux\",\"config\":{\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"],\"Cmd\":[\"sh\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$diff_id\"]}}")
read -r manifest manifest_size < <(blob "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$config\",\"size\":$config_size},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$layer\",\"size\":$layer_size}]}")
echo '{"imageLayoutVersion":"1.0.0"}' > "$out/oci-layout"
echo "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$manifest\",\"size\":$manifest_size,\"annotations\":{\"org.opencontainers.image.ref.name\":\"latest\"}}]}" > "$out/index.json"

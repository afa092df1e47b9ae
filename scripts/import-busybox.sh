#!/usr/bin/env bash
# Imports a local busybox image into the running Docker daemon (no registry is reachable, so
# images are made locally from the busybox-static package): local/busybox:latest, also tagged
# busybox:latest and busybox:stable (the executor's default init image). Does nothing when
# the image exists.
set -euo pipefail
image=local/busybox:latest
if docker image inspect "$image" >/dev/null 2>&1; then
  for tag in busybox:stable busybox:latest; do
    docker image inspect "$tag" >/dev/null 2>&1 || docker tag "$image" "$tag"
  done
  exit 0
fi
busybox_bin=$(command -v busybox || true)
[ -n "$busybox_bin" ] || { echo "import-busybox.sh: busybox is not installed (apt-get install busybox-static)" >&2; exit 1; }
rootfs="$(mktemp -d /tmp/agola-busybox.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc" "$rootfs/root"
cp "$busybox_bin" "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
echo 'root:x:0:' >"$rootfs/etc/group"
tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/sh"]' - "$image" >/dev/null
docker tag "$image" busybox:stable
docker tag "$image" busybox:latest
echo "import-busybox.sh: imported $image (also busybox:stable, busybox:latest)" >&2

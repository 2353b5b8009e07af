#!/bin/sh
# Build nestor's test guest: a real x86-64 Linux guest made from Debian
# packages (linux-image-amd64's kernel, busybox-static), small enough to boot
# in about 5 s under TCG. It stands in for a legacy app image:
#   - prints NESTOR-READY on its first serial port (ttyS0) once up;
#   - draws a coloured "legacy app" screen on the VGA text console and echoes
#     what is typed on the keyboard there (input is visible from outside);
#   - answers "PING <token>" with "PONG <token>" on its second serial port;
#   - writes a stamp to its disk (/dev/vda) so tests can prove the base
#     image is never written.
#
# usage: build-guest.sh OUTDIR [CACHEDIR]
# OUTDIR receives vmlinuz, initrd.gz and base.qcow2. CACHEDIR (default
# $NESTOR_CACHE or ~/.cache/nestor) keeps the downloaded .debs.
set -eu

out=${1:?usage: build-guest.sh OUTDIR [CACHEDIR]}
cache=${2:-${NESTOR_CACHE:-${XDG_CACHE_HOME:-${HOME:-/var/tmp}/.cache}/nestor}}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out" "$cache"
out=$(cd "$out" && pwd)
cache=$(cd "$cache" && pwd)

if [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.gz" ] && [ -s "$out/base.qcow2" ] &&
	[ "$out/initrd.gz" -nt "$here/init" ] && [ "$out/initrd.gz" -nt "$0" ]; then
	exit 0
fi

kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$kpkg" ] || {
	echo "build-guest: cannot resolve linux-image-amd64 (run apt-get update)" >&2
	exit 1
}

fetch() { # fetch PACKAGE -> path of its .deb in the cache
	deb=$(ls "$cache/$1"_*.deb 2>/dev/null | head -n 1 || true)
	if [ -z "$deb" ]; then
		(cd "$cache" && apt-get download "$1" >/dev/null 2>&1) ||
			{ echo "build-guest: apt-get download $1 failed" >&2; exit 1; }
		deb=$(ls "$cache/$1"_*.deb | head -n 1)
	fi
	echo "$deb"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

dpkg-deb -x "$(fetch "$kpkg")" "$work/k"
dpkg-deb -x "$(fetch busybox-static)" "$work/bb"

root="$work/root"
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/lib/modules"
cp "$work/bb/bin/busybox" "$root/bin/busybox"
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk \
	failover net_failover virtio_net ${EXTRA_MODULES:-}; do
	f=$(find "$work/k/lib/modules" -name "$m.ko" | head -n 1)
	[ -n "$f" ] || { echo "build-guest: module $m not found in $kpkg" >&2; exit 1; }
	cp "$f" "$root/lib/modules/"
done
cp "$here/init" "$root/init"
chmod 755 "$root/init" "$root/bin/busybox"
# Guest variants (build-rdp-guest.sh) add kernel modules (EXTRA_MODULES) and
# files (EXTRA_ROOT).
if [ -n "${EXTRA_ROOT:-}" ]; then cp -a "$EXTRA_ROOT/." "$root/"; fi

(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$work/initrd.gz"
cp "$work/k/boot/vmlinuz-"* "$work/vmlinuz"
rm -f "$work/base.qcow2"
qemu-img create -q -f qcow2 "$work/base.qcow2" 64M

mv -f "$work/vmlinuz" "$out/vmlinuz"
mv -f "$work/base.qcow2" "$out/base.qcow2"
mv -f "$work/initrd.gz" "$out/initrd.gz"
echo "build-guest: $out (kernel from $kpkg)" >&2

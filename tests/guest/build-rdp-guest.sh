#!/bin/sh
# Build the rdp variant of nestor's test guest: the same kernel and init as
# build-guest.sh, plus nestor-test-rdpsrv (tests/rdpsrv) serving RDP on port
# 3389 inside the guest. libfreerdp drags in ~160 MB of shared libraries
# (codecs), too much for an initramfs, so the server and every library it
# loads live on the guest's disk: an ext4 file system (mke2fs -d, no root
# needed) that the guest mounts read-only. The disk is the image's base.
# OUTDIR receives rdp-vmlinuz, rdp-initrd.gz and rdp-base.qcow2.
#
# usage: build-rdp-guest.sh OUTDIR RDPSRV [CACHEDIR]
set -eu

out=${1:?usage: build-rdp-guest.sh OUTDIR RDPSRV [CACHEDIR]}
srv=${2:?usage: build-rdp-guest.sh OUTDIR RDPSRV [CACHEDIR]}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The initramfs: the ordinary test guest plus ext4 and a marker for init.
mkdir -p "$work/extra/etc"
: > "$work/extra/etc/nestor-rdp-guest"
EXTRA_ROOT="$work/extra" EXTRA_MODULES="crc16 crc32c_generic mbcache jbd2 ext4" \
	"$here/build-guest.sh" "$work/g" ${3:+"$3"}

# The disk: the server, its loader and libraries, a key and certificate.
fs="$work/fs"
mkdir -p "$fs/bin" "$fs/lib" "$fs/etc"
cp "$srv" "$fs/bin/nestor-test-rdpsrv"
ldd "$srv" | awk '/=> \// { print $3 } /^\t\/.*ld-linux/ { print $1 }' | while read -r lib; do
	cp -L "$lib" "$fs/lib/"
done
# standard RDP security needs RC4: OpenSSL 3 keeps it in the legacy provider
mkdir -p "$fs/lib/ossl-modules"
cp /usr/lib/x86_64-linux-gnu/ossl-modules/legacy.so "$fs/lib/ossl-modules/"
[ -e "$fs/lib/ld-linux-x86-64.so.2" ] || { echo "build-rdp-guest: no ld-linux in ldd output" >&2; exit 1; }
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$fs/etc/key.pem" -out "$fs/etc/cert.pem" \
	-days 3650 -subj /CN=nestor-test-guest 2>/dev/null
chmod 644 "$fs/etc/key.pem"
size=$(du -sm "$fs" | awk '{ print $1 + 64 }')
mke2fs -q -F -t ext4 -O ^has_journal -L nestor-rdp -d "$fs" "$work/disk.raw" "${size}M" >/dev/null
qemu-img convert -q -f raw -O qcow2 "$work/disk.raw" "$work/g/base.qcow2"

mv -f "$work/g/vmlinuz" "$out/rdp-vmlinuz"
mv -f "$work/g/initrd.gz" "$out/rdp-initrd.gz"
mv -f "$work/g/base.qcow2" "$out/rdp-base.qcow2"
echo "build-rdp-guest: $out (${size} MB disk)" >&2

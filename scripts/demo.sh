#!/usr/bin/env bash
# The first minute: makes a small btrfs volume on a loop file, writes data,
# takes a shadow copy with vssadmin, changes the data, shows that the shadow
# copy kept the old content, reverts the volume to it, and cleans up.
# Without btrfs (no tools and no way to install them, or no kernel module)
# it uses an ext4 volume and the complete-copy provider, and says so.
#
#   sudo ./scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
find_go
if [ "$(id -u)" -ne 0 ]; then
	echo "run as root: the demo makes a filesystem on a loop device and mounts it" >&2
	exit 1
fi

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
run() { printf '\033[36m$ %s\033[0m\n' "$*"; "$@"; }

bold "Building vssadmin"
mkdir -p bin
go build -o bin/vssadmin ./cmd/vssadmin
export PATH="$PWD/bin:$PATH"

work=$(mktemp -d /tmp/vss-demo.XXXXXX)
mnt=$work/volume
mkdir -p "$mnt"
# A private state directory, so that the demo leaves nothing behind
# (vssadmin's default is /var/lib/vss).
export VSS_STATE_DIR=$work/state
cleanup() {
	vssadmin --embedded delete shadows /all /quiet >/dev/null 2>&1 || true
	cleanup_under "$work"
	rm -rf "$work"
}
trap cleanup EXIT

fstype=btrfs
need_packages mkfs.btrfs:btrfs-progs || fstype=ext4
modprobe btrfs 2>/dev/null || true
grep -qw btrfs /proc/filesystems || fstype=ext4
truncate -s 512M "$work/volume.img"
if [ "$fstype" = btrfs ] && mkfs.btrfs -q "$work/volume.img" >/dev/null 2>&1; then
	bold "A 512 MiB btrfs volume on a loop device, mounted at $mnt"
else
	fstype=ext4
	mkfs.ext4 -q -F "$work/volume.img"
	bold "btrfs is not available here: using an ext4 volume and the complete-copy provider"
fi
mount -o loop "$work/volume.img" "$mnt"

bold "Some data: a small 'database' and a 64 MiB file"
echo "balance=100" >"$mnt/accounts.db"
head -c 64M /dev/urandom >"$mnt/big.bin"
run cat "$mnt/accounts.db"

bold "Take a shadow copy (the provider is chosen by volume type)"
run vssadmin create shadow /for="$mnt"

bold "Change the data after the shadow copy"
echo "balance=0" >"$mnt/accounts.db"
rm "$mnt/big.bin"
run cat "$mnt/accounts.db"

bold "The shadow copy kept the point in time"
run vssadmin list shadows /for="$mnt"
shadow=$(vssadmin list shadows /for="$mnt" --format json | sed -n 's/.*"shadow_volume": *"\([^"]*\)".*/\1/p' | head -1)
id=$(vssadmin list shadows /for="$mnt" --format json | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -1)
run cat "$shadow/accounts.db"
run ls -l "$shadow"
run vssadmin list shadowstorage /for="$mnt"

bold "Revert the volume to the shadow copy"
run vssadmin revert shadow /shadow="{$id}" /quiet
run cat "$mnt/accounts.db"
run ls -l "$mnt"

bold "Delete the shadow copies"
run vssadmin delete shadows /for="$mnt" /all /quiet
bold "Done: the volume, its loop device and the demo's state directory are removed on exit."

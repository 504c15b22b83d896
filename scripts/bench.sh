#!/usr/bin/env bash
# Runs the benchmark of the shadow copy service against what a user would do
# instead, and prints a table of medians and ratios measured in this run.
#
#   sudo scripts/bench.sh --quick            # a couple of minutes
#   sudo scripts/bench.sh                    # the full benchmark
#   sudo scripts/bench.sh --json out.json    # also write the results as JSON
#
# Every option is passed to vssbench (see `vssbench -h`): --quick, --json FILE,
# --workdir DIR, --reps N, --only create,hold,reflink,copy,list,writers,pgbench,wbadmin, --verbose.
#
# It must run as root (filesystems on loop devices). It installs what is
# missing with apt-get (btrfs-progs, xfsprogs, e2fsprogs, snapper, restic), builds
# vssadmin and vssbench into a temporary directory and runs the benchmark.
# The benchmark removes every filesystem, loop device and configuration it
# made, also on an error or Ctrl-C.
set -euo pipefail

cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
	echo "bench.sh: run as root (the benchmark makes filesystems on loop devices)" >&2
	exit 1
fi

# command → Debian package that provides it. snapper and dbus-daemon are
# optional (without them the snapper row says "not measured"); dbus-daemon
# lets the benchmark run snapper through a snapperd of its own on machines
# whose system bus is not running.
declare -A need=(
	[mkfs.btrfs]=btrfs-progs
	[btrfs]=btrfs-progs
	[mkfs.xfs]=xfsprogs
	[mkfs.ext4]=e2fsprogs
	[losetup]=mount
)
declare -A want=(
	['/usr/lib/postgresql/*/bin/pgbench']=postgresql
	[snapper]=snapper
	[dbus-daemon]=dbus-daemon
	[restic]=restic
)
missing() {
	local -n map=$1
	local c
	for c in "${!map[@]}"; do
		if [[ $c == /* ]]; then
			compgen -G "$c" >/dev/null || echo "${map[$c]}"
		else
			command -v "$c" >/dev/null 2>&1 || echo "${map[$c]}"
		fi
	done | sort -u
}
mapfile -t required < <(missing need)
mapfile -t optional < <(missing want)
if ((${#required[@]} + ${#optional[@]} > 0)); then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	if ((${#required[@]} > 0)); then
		echo "bench.sh: installing ${required[*]}" >&2
		apt-get install -y -q --no-install-recommends "${required[@]}"
	fi
	if ((${#optional[@]} > 0)); then
		echo "bench.sh: installing ${optional[*]}" >&2
		apt-get install -y -q --no-install-recommends "${optional[@]}" ||
			echo "bench.sh: could not install ${optional[*]}; the benchmark reports what it cannot measure" >&2
	fi
fi

if ! command -v go >/dev/null 2>&1; then
	echo "bench.sh: the Go toolchain is needed to build the binaries (https://go.dev/dl/)" >&2
	exit 1
fi

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
echo "bench.sh: building into $bin" >&2
go build -o "$bin/vssadmin" ./cmd/vssadmin
go build -o "$bin/vssbench" ./cmd/vssbench

# Not exec: the trap removes the binaries afterwards. vssbench handles
# SIGINT/SIGTERM itself (it cleans up before it exits).
status=0
"$bin/vssbench" --vssadmin "$bin/vssadmin" "$@" || status=$?
exit "$status"

# Shared by the scripts: find Go, install missing Debian packages.
# shellcheck shell=bash

find_go() {
	if ! command -v go >/dev/null 2>&1; then
		for d in /usr/local/go/bin /usr/lib/go/bin "$HOME/go/bin"; do
			if [ -x "$d/go" ]; then
				export PATH="$PATH:$d"
				break
			fi
		done
	fi
	command -v go >/dev/null 2>&1 || { echo "Go is not installed (https://go.dev/dl/)" >&2; exit 1; }
}

# need_packages CMD:PACKAGE … installs the packages whose command is
# missing. CMD may also be an absolute path or glob (/usr/lib/postgresql/*/bin/initdb).
need_packages() {
	local missing=()
	local pair cmd
	for pair in "$@"; do
		cmd=${pair%%:*}
		if [[ $cmd == /* ]]; then
			compgen -G "$cmd" >/dev/null || missing+=("${pair#*:}")
		else
			command -v "$cmd" >/dev/null 2>&1 || missing+=("${pair#*:}")
		fi
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		echo "missing packages: ${missing[*]} (install them, or run as root on Debian)" >&2
		return 1
	fi
	echo "installing ${missing[*]} …"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null || true
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# cleanup_under DIR unmounts everything mounted below DIR and detaches the
# loop devices whose backing files are below it (what a killed test left).
cleanup_under() {
	local dir=$1
	[ -n "$dir" ] || return 0
	awk -v d="$dir" '$2 ~ "^"d {print $2}' /proc/mounts | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	losetup -a 2>/dev/null | awk -F'[:()]' -v d="$dir" 'index($0, d) {print $1}' | while read -r l; do
		losetup -d "$l" 2>/dev/null || true
	done
}

#!/bin/sh
# Connect benchmark: one user at a time, warm guest, idle host. COUNT
# connects through nestor-gateway (nestor-storm, one session each); the
# handshake and the first guest frame per connect, next to the floor: a bare
# X.224 + TLS handshake on the same port (bench/tls_ping). With a second
# gateway binary (BEFORE), the same runs against it too, in the same run.
# Results recorded in docs/performance.md.
#
# usage: bench/connect-bench.sh [BUILD_DIR] [COUNT] [BEFORE_GATEWAY]
set -eu
. "$(dirname "$0")/env.sh"
bench_env connect "${1:-}"
count=${2:-20}
before=${3:-}

# each connect's user, and nestor-storm's canary (it connects first, to a warm guest of its own)
users=$(i=1; while [ $i -le "$count" ]; do echo "user$i:pass$i"; echo "canary$i:pass$i"; i=$((i + 1)); done)
bench_start "$users" "[images]
auto_template = false
[auth]
max_failures = 0
[sessions]
stop_grace = 1" ""
cp "$guest/base.qcow2" "$work/fast.qcow2"
"$ctl" images add fast --base "$work/fast.qcow2" --memory 256 --kernel "$guest/vmlinuz" \
	--initrd "$guest/initrd.gz" --append "console=ttyS0 quiet panic=-1" \
	--ready serial:NESTOR-READY >/dev/null
"$ctl" apps add fast --image fast --title "Ledger" >/dev/null
"$ctl" images template fast >/dev/null
"$ctl" images set fast --warm-pool 2 >/dev/null

warm_ready() {
	for _ in $(seq 600); do
		"$ctl" --json images show fast | grep -q '"warm_ready": 2' && return 0
		sleep 0.1
	done
	echo "connect-bench: the warm guest did not come back" >&2
	return 1
}

# p50 of a column of numbers on stdin
p50() { sort -n | awk '{v[NR]=$1} END {if (NR) printf "%.0f", v[int((NR+1)/2)] * 1000}'; }

run() { # run LABEL GATEWAY_BINARY
	kill "$gw" 2>/dev/null || true
	wait "$gw" 2>/dev/null || true
	"$2" --config "$work/gateway.conf" 2>>"$work/gateway.log" &
	gw=$!
	for _ in $(seq 100); do
		"$build/bench/tls_ping" 127.0.0.1 "$port" 1 >/dev/null 2>&1 && break
		sleep 0.1
	done
	floor=$("$build/bench/tls_ping" 127.0.0.1 "$port" "$count")
	: >"$work/phases"
	i=1
	while [ "$i" -le "$count" ]; do
		warm_ready
		"$build/storm/nestor-storm" --gateway 127.0.0.1:$port --users /dev/stdin \
			--sessions 1 --app fast --hold 1 --baseline 0 >"$work/one.txt" 2>/dev/null \
			<<USERS || true
user$i:pass$i
canary$i:pass$i
USERS
		grep -E '^(handshake|first_guest_frame) ' "$work/one.txt" >>"$work/phases" || true
		for id in $("$ctl" --json sessions | sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p'); do
			"$ctl" session end "$id" >/dev/null 2>&1 || true
		done
		i=$((i + 1))
	done
	hs=$(awk '$1 == "handshake" {print $3}' "$work/phases" | p50)
	ff=$(awk '$1 == "first_guest_frame" {print $3}' "$work/phases" | p50)
	n=$(grep -c '^first_guest_frame' "$work/phases" || true)
	echo "$1: $floor"
	echo "$1: $n of $count connects reached the guest; handshake p50 ${hs} ms, first guest frame p50 ${ff} ms"
}

[ -n "$before" ] && run before "$before"
run after "$build/rdp-gateway/nestor-gateway"

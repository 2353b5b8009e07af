#!/bin/sh
# rdp backend benchmark: one guest running nestor-test-rdpsrv (the rdp test
# guest, from a template), seen directly through its 127.0.0.1 forward and
# through nestor-gateway, in one run: input round trip and frame throughput
# (bench/proxy_bench.c). Runs a private nestord and gateway (pam_wrapper
# user). Results: OUT/proxy-FRAME_RATE.txt. Recorded in docs/performance.md.
#
# usage: bench/proxy-bench.sh [BUILD_DIR] [OUT_DIR] [FRAME_RATE]
set -eu
. "$(dirname "$0")/env.sh"
bench_env proxy "${1:-}"
out=${2:-$top/docs/storm}
rate=${3:-30}
mkdir -p "$out"
out=$(cd "$out" && pwd)

bench_start "bench:bench-pw" "[images]
auto_template = false
[sessions]
stop_grace = 1" "[display]
remotefx = false
frame_rate = $rate"
bench_rdp_app
{
	echo "# proxy_bench, $(date -u +%Y-%m-%d), $(nproc) cores, gateway frame_rate = $rate"
	"$build/bench/proxy_bench" --socket "$NESTOR_SOCKET" --gateway 127.0.0.1:$port \
		--user bench:bench-pw --app xp --direct-user guestacct:guest-pw --keys 50 --seconds 5
	echo "# the gateway's own connection to the guest (its log):"
	grep -o 'guest RDP .*' "$work/gateway.log" || true
} | tee "$out/proxy-$rate.txt"

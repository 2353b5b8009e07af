#!/bin/sh
# The browser path next to RDP, in one run: one guest running
# nestor-test-rdpsrv (the rdp test guest, from a template), seen through
# nestor-gateway by an RDP client (bench/proxy_bench.c) and by noVNC in
# headless Chromium through the gateway's browser door
# (bench/browser_bench.py): input round trip and frames per second. Runs a
# private nestord, gateway and portal. Results: OUT/browser-FRAME_RATE.txt,
# recorded in docs/performance.md.
#
# usage: bench/browser-bench.sh [BUILD_DIR] [OUT_DIR] [FRAME_RATE]
set -eu
. "$(dirname "$0")/env.sh"
bench_env browser "${1:-}"
out=${2:-$top/docs/storm}
rate=${3:-30}
mkdir -p "$out"
out=$(cd "$out" && pwd)
wport=$((port + 1))
pport=$((port + 2))

bench_start "bench:bench-pw" "[images]
auto_template = false
[sessions]
stop_grace = 1" "web_port = $wport
[portal]
port = $pport
[display]
remotefx = false
frame_rate = $rate"
for _ in $(seq 100); do [ -s "$work/gw/tls.key" ] && break; sleep 0.1; done
"$build/portal/nestor-portal" --config "$work/gateway.conf" 2>"$work/portal.log" &
pt=$!
bench_rdp_app
{
	echo "# browser_bench, $(date -u +%Y-%m-%d), $(nproc) cores, gateway frame_rate = $rate"
	echo "# RDP (the gateway's own client library, bench/proxy_bench.c):"
	"$build/bench/proxy_bench" --socket "$NESTOR_SOCKET" --gateway 127.0.0.1:$port \
		--user bench:bench-pw --app xp --direct-user guestacct:guest-pw --keys 50 --seconds 5
	echo "# the browser (Chromium $(chromium --version 2>/dev/null | awk '{print $2}'), noVNC $(dpkg-query -W -f='${Version}' novnc 2>/dev/null)), the same session:"
	/usr/bin/python3 "$top/bench/browser_bench.py" --port $pport --user bench \
		--password bench-pw --app xp --keys 50 --seconds 5
} | tee "$out/browser-$rate.txt"

#!/bin/sh
# Storm benchmark: 16 users arriving at once through nestor-gateway, for each
# start path (cold boot, template clone, warm pool), with a canary session
# measuring input-to-screen round trips throughout. Runs a private nestord and
# gateway (pam_wrapper users, the test guest). Results: OUT/{cold,template,
# warm}.{txt,json,svg}. Recorded in docs/performance.md.
#
# usage: bench/storm-bench.sh [BUILD_DIR] [OUT_DIR] [SESSIONS]
set -eu
. "$(dirname "$0")/env.sh"
bench_env storm "${1:-}"
out=${2:-$top/docs/storm}
n=${3:-16}
mkdir -p "$out"
out=$(cd "$out" && pwd)

users=$(i=1; while [ $i -le $((n + 1)) ]; do echo "user$i:pass$i"; i=$((i + 1)); done)
# the storm's N users plus the canary
bench_start "$users" "[images]
auto_template = false
[caps]
max_sessions = $((n + 1))
[auth]
max_failures = 0
[sessions]
stop_grace = 1" "[limits]
max_per_address = 0
rate_per_address = 0"
for name in cold fast; do
	cp "$guest/base.qcow2" "$work/$name.qcow2"
	"$ctl" images add "$name" --base "$work/$name.qcow2" --memory 256 --kernel "$guest/vmlinuz" \
		--initrd "$guest/initrd.gz" --append "console=ttyS0 quiet panic=-1" \
		--ready serial:NESTOR-READY >/dev/null
	"$ctl" apps add "$name" --image "$name" --title "Ledger ($name)" >/dev/null
done
"$ctl" images template fast >/dev/null
"$ctl" status | tail -1

end_all() {
	for id in $("$ctl" --json sessions | sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p'); do
		"$ctl" session end "$id" >/dev/null 2>&1 || true
	done
	for _ in $(seq 300); do
		[ "$("$ctl" --json sessions | grep -c '"id"')" -eq 0 ] && break
		sleep 0.2
	done
	sleep 2
}

storm() { # storm NAME APP
	"$build/storm/nestor-storm" --gateway 127.0.0.1:$port --user-pattern 'user%d:pass%d' \
		--sessions "$n" --arrival burst --app "$2" --hold 5 --baseline 5 \
		--socket "$NESTOR_SOCKET" --json "$out/$1.json" --svg "$out/$1.svg" \
		> "$out/$1.txt" 2>/dev/null || true
	cat "$out/$1.txt"
	end_all
}

storm cold cold
storm template fast
"$ctl" images set fast --warm-pool "$n" >/dev/null
for _ in $(seq 600); do
	"$ctl" --json images | grep -q "\"warm_ready\": $n" && break
	sleep 0.2
done
sleep 2
storm warm fast

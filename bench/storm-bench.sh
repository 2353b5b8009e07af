#!/bin/sh
# Storm benchmark: 16 users arriving at once through nestor-gateway, for each
# start path (cold boot, template clone, warm pool), with a canary session
# measuring input-to-screen round trips throughout. Runs a private nestord and
# gateway (pam_wrapper users, the test guest). Results: OUT/{cold,template,
# warm}.{txt,json,svg}. Recorded in docs/performance.md.
#
# usage: bench/storm-bench.sh [BUILD_DIR] [OUT_DIR] [SESSIONS]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$top/build}" && pwd)
out=${2:-$top/docs/storm}
n=${3:-16}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/nestor-storm-XXXXXX)
guest=$build/tests
ctl="$build/broker/nestorctl"
export NESTOR_SOCKET=$work/run/api.sock
port=$((30000 + $$ % 20000))

cleanup() {
	[ -n "${gw:-}" ] && kill "$gw" 2>/dev/null || true
	[ -n "${brk:-}" ] && kill "$brk" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

mkdir -p "$work/pam"
i=1
while [ $i -le $((n + 1)) ]; do echo "user$i:pass$i:nestor"; i=$((i + 1)); done > "$work/passdb"
m=/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so
printf 'auth required %s passdb=%s/passdb\naccount required %s passdb=%s/passdb\n' \
	"$m" "$work" "$m" "$work" > "$work/pam/nestor"
cat > "$work/nestor.conf" <<CONF
[nestord]
state_dir = $work/state
run_dir = $work/run
[images]
auto_template = false
[caps]
# the storm's N users plus the canary
max_sessions = $((n + 1))
[auth]
max_failures = 0
[sessions]
stop_grace = 1
CONF
cat > "$work/gateway.conf" <<CONF
[gateway]
port = $port
api_socket = $work/run/api.sock
state_dir = $work/gw
[limits]
max_per_address = 0
rate_per_address = 0
CONF

LD_PRELOAD=libpam_wrapper.so PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR=$work/pam \
	"$build/broker/nestord" --config "$work/nestor.conf" 2>"$work/nestord.log" &
brk=$!
for _ in $(seq 100); do "$ctl" status >/dev/null 2>&1 && break; sleep 0.1; done
"$build/rdp-gateway/nestor-gateway" --config "$work/gateway.conf" 2>"$work/gateway.log" &
gw=$!
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

#!/bin/sh
# rdp backend benchmark: one guest running nestor-test-rdpsrv (the rdp test
# guest, from a template), seen directly through its 127.0.0.1 forward and
# through nestor-gateway, in one run: input round trip and frame throughput
# (bench/proxy_bench.c). Runs a private nestord and gateway (pam_wrapper
# user). Results: OUT/proxy.txt. Recorded in docs/performance.md.
#
# usage: bench/proxy-bench.sh [BUILD_DIR] [OUT_DIR] [FRAME_RATE]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$top/build}" && pwd)
out=${2:-$top/docs/storm}
rate=${3:-30}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/nestor-proxy-XXXXXX)
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
echo "bench:bench-pw:nestor" > "$work/passdb"
m=/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so
printf 'auth required %s passdb=%s/passdb\naccount required %s passdb=%s/passdb\n' \
	"$m" "$work" "$m" "$work" > "$work/pam/nestor"
cat > "$work/nestor.conf" <<CONF
[nestord]
state_dir = $work/state
run_dir = $work/run
[images]
auto_template = false
[sessions]
stop_grace = 1
CONF
cat > "$work/gateway.conf" <<CONF
[gateway]
port = $port
api_socket = $work/run/api.sock
state_dir = $work/gw
[display]
remotefx = false
frame_rate = $rate
CONF

LD_PRELOAD=libpam_wrapper.so PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR=$work/pam \
	"$build/broker/nestord" --config "$work/nestor.conf" 2>"$work/nestord.log" &
brk=$!
for _ in $(seq 100); do "$ctl" status >/dev/null 2>&1 && break; sleep 0.1; done
"$build/rdp-gateway/nestor-gateway" --config "$work/gateway.conf" 2>"$work/gateway.log" &
gw=$!
cp "$guest/rdp-base.qcow2" "$work/rdp.qcow2"
echo guest-pw > "$work/guest-pw"
"$ctl" images add xp --base "$work/rdp.qcow2" --memory 384 --kernel "$guest/rdp-vmlinuz" \
	--initrd "$guest/rdp-initrd.gz" \
	--append "console=ttyS0 quiet panic=-1 nestor.rdpsec=rdp nestor.rdpuser=guestacct nestor.rdppass=guest-pw" \
	--backend rdp --rdp-port 3389 --rdp-security rdp --guest-user guestacct \
	--guest-password-file "$work/guest-pw" >/dev/null
"$ctl" apps add xp --image xp --title "XP (test RDP server)" >/dev/null
"$ctl" images template xp >/dev/null
{
	echo "# proxy_bench, $(date -u +%Y-%m-%d), $(nproc) cores, gateway frame_rate = $rate"
	"$build/bench/proxy_bench" --socket "$NESTOR_SOCKET" --gateway 127.0.0.1:$port \
		--user bench:bench-pw --app xp --direct-user guestacct:guest-pw --keys 50 --seconds 5
	echo "# the gateway's own connection to the guest (its log):"
	grep -o 'guest RDP .*' "$work/gateway.log" || true
} | tee "$out/proxy-$rate.txt"

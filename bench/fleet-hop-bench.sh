#!/bin/sh
# What the fleet's extra hop costs: one rdp test guest (nestor-test-rdpsrv)
# on host h2 of a two-host fleet, looked at by bench/proxy_bench through
# h2's own gateway (one gateway, as on a single host) and then through h1's
# gateway, which relays h2's gateway (a ticket, pinned TLS): input round
# trip and frame throughput of both, each against the guest's own RDP in
# the same run. Private PostgreSQL (run as nobody when root), nestords and
# gateways; removed on exit. Results: OUT/fleet-hop.txt (docs/performance.md).
#
# usage: bench/fleet-hop-bench.sh [BUILD_DIR] [OUT_DIR]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$top/build}" && pwd)
out=${2:-$top/docs/storm}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/nestor-hop-XXXXXX)
chmod 755 "$work"
guest=$build/tests
ctl=$build/broker/nestorctl
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
runas=""
[ "$(id -u)" -eq 0 ] && runas="runuser -u nobody --"
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	$runas "$pgbin/pg_ctl" -D "$work/pg/data" -m fast -w stop >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

mkdir -p "$work/pg" "$work/pam"
[ -n "$runas" ] && chown nobody "$work/pg"
$runas "$pgbin/initdb" -D "$work/pg/data" -U nestor --auth=trust >/dev/null
$runas "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w \
	-o "-k $work/pg -c listen_addresses=''" start >/dev/null
db="host=$work/pg user=nestor dbname=postgres"
"$ctl" fleet init --db "$db" >/dev/null

echo "bench:bench-pw:nestor" > "$work/passdb"
m=/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so
printf 'auth required %s passdb=%s/passdb\naccount required %s passdb=%s/passdb\n' \
	"$m" "$work" "$m" "$work" > "$work/pam/nestor"
echo guest-pw > "$work/guest-pw"
base=$((30000 + $$ % 20000))
for n in 1 2; do
	h=$work/h$n
	mkdir -p "$h"
	printf '[nestord]\nstate_dir = %s/state\nrun_dir = %s/run\n[images]\nauto_template = false\n[sessions]\nstop_grace = 1\n[fleet]\ndb = %s\nname = h%s\ngateway = 127.0.0.1:%s\ngateway_cert = %s/gw/tls.crt\n' \
		"$h" "$h" "$db" "$n" $((base + n)) "$h" > "$h/nestor.conf"
	printf '[gateway]\nport = %s\napi_socket = %s/run/api.sock\nstate_dir = %s/gw\nweb_port = 0\n[display]\nremotefx = false\n' \
		$((base + n)) "$h" "$h" > "$h/gateway.conf"
	LD_PRELOAD=libpam_wrapper.so PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR=$work/pam \
		"$build/broker/nestord" --config "$h/nestor.conf" 2>"$h/nestord.log" &
	pids="$pids $!"
	export NESTOR_SOCKET=$h/run/api.sock
	for _ in $(seq 100); do "$ctl" status >/dev/null 2>&1 && break; sleep 0.1; done
	"$build/rdp-gateway/nestor-gateway" --config "$h/gateway.conf" 2>"$h/gateway.log" &
	pids="$pids $!"
	cp "$guest/rdp-base.qcow2" "$h/rdp.qcow2"
	"$ctl" images add xp --base "$h/rdp.qcow2" --memory 384 --kernel "$guest/rdp-vmlinuz" \
		--initrd "$guest/rdp-initrd.gz" \
		--append "console=ttyS0 quiet panic=-1 nestor.rdpsec=rdp nestor.rdpuser=guestacct nestor.rdppass=guest-pw" \
		--backend rdp --rdp-port 3389 --rdp-security rdp --guest-user guestacct \
		--guest-password-file "$work/guest-pw" >/dev/null
	"$ctl" apps add xp --image xp --title "XP (test RDP server)" >/dev/null
done
NESTOR_SOCKET=$work/h2/run/api.sock "$ctl" images template xp >/dev/null
NESTOR_SOCKET=$work/h1/run/api.sock "$ctl" hosts drain h1 >/dev/null
# both hosts heartbeating, h2's certificate known
for _ in $(seq 100); do
	NESTOR_SOCKET=$work/h1/run/api.sock "$ctl" hosts 2>/dev/null | grep -q '^h2 .* up ' && break
	sleep 0.2
done
sleep 3

run() { # LABEL GATEWAY_PORT
	echo "## $1"
	"$build/bench/proxy_bench" --socket "$work/h2/run/api.sock" --gateway 127.0.0.1:$2 \
		--user bench:bench-pw --app xp --direct-user guestacct:guest-pw --keys 50 --seconds 5
}
{
	echo "# fleet-hop-bench, $(date -u +%Y-%m-%d), $(nproc) cores; the guest runs on h2"
	run "one gateway: h2's own (as a single host)" $((base + 2))
	sleep 2
	run "two gateways: h1's, relaying h2's (ticket, pinned TLS)" $((base + 1))
	echo "# h1's connection to h2's gateway (its log):"
	grep -o 'guest RDP .*' "$work/h1/gateway.log" || true
} | tee "$out/fleet-hop.txt"

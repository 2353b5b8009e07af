# Sourced by the benchmark scripts: a private nestord and nestor-gateway
# (pam_wrapper users, scratch state, a port of their own), stopped and
# removed on exit.
#
#   bench_env NAME BUILD_DIR       sets top, build, work, guest, ctl, port,
#                                  NESTOR_SOCKET; the cleanup trap
#   bench_start USERS NESTORD_CONF GATEWAY_CONF
#                                  USERS: "user:password" lines; the two
#                                  strings: extra config sections
#   bench_rdp_app                  app "xp": the rdp test guest (its own RDP
#                                  server, account guestacct), from a template
bench_env() {
	top=$(cd "$(dirname "$0")/.." && pwd)
	build=$(cd "${2:-$top/build}" && pwd)
	work=$(mktemp -d "/tmp/nestor-$1-XXXXXX")
	guest=$build/tests
	ctl="$build/broker/nestorctl"
	export NESTOR_SOCKET=$work/run/api.sock
	port=$((30000 + $$ % 20000))
	trap bench_cleanup EXIT INT TERM
}

bench_cleanup() {
	[ -n "${gw:-}" ] && kill "$gw" 2>/dev/null || true
	[ -n "${brk:-}" ] && kill "$brk" 2>/dev/null || true
	[ -n "${pt:-}" ] && kill "$pt" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}

bench_start() {
	mkdir -p "$work/pam"
	printf '%s\n' "$1" | sed 's/$/:nestor/' > "$work/passdb"
	m=/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so
	printf 'auth required %s passdb=%s/passdb\naccount required %s passdb=%s/passdb\n' \
		"$m" "$work" "$m" "$work" > "$work/pam/nestor"
	printf '[nestord]\nstate_dir = %s/state\nrun_dir = %s/run\n%s\n' "$work" "$work" "$2" \
		> "$work/nestor.conf"
	printf '[gateway]\nport = %s\napi_socket = %s/run/api.sock\nstate_dir = %s/gw\nweb_port = 0\n%s\n' \
		"$port" "$work" "$work" "$3" > "$work/gateway.conf"
	LD_PRELOAD=libpam_wrapper.so PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR=$work/pam \
		"$build/broker/nestord" --config "$work/nestor.conf" 2>"$work/nestord.log" &
	brk=$!
	for _ in $(seq 100); do "$ctl" status >/dev/null 2>&1 && break; sleep 0.1; done
	"$build/rdp-gateway/nestor-gateway" --config "$work/gateway.conf" 2>"$work/gateway.log" &
	gw=$!
}

bench_rdp_app() {
	cp "$guest/rdp-base.qcow2" "$work/rdp.qcow2"
	echo guest-pw > "$work/guest-pw"
	"$ctl" images add xp --base "$work/rdp.qcow2" --memory 384 --kernel "$guest/rdp-vmlinuz" \
		--initrd "$guest/rdp-initrd.gz" \
		--append "console=ttyS0 quiet panic=-1 nestor.rdpsec=rdp nestor.rdpuser=guestacct nestor.rdppass=guest-pw" \
		--backend rdp --rdp-port 3389 --rdp-security rdp --guest-user guestacct \
		--guest-password-file "$work/guest-pw" >/dev/null
	"$ctl" apps add xp --image xp --title "XP (test RDP server)" >/dev/null
	"$ctl" images template xp >/dev/null
}

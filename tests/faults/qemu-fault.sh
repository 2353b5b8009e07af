#!/bin/sh
# A stand-in for qemu-system-x86_64 in the fault tests: the real QEMU
# ($NESTOR_FAULT_REAL_QEMU) with a KVM that misbehaves the way nested KVM
# does on some hosts. "-accel kvm" runs under TCG here (so the test never
# depends on this machine's KVM), and NESTOR_FAULT_KVM says what KVM does:
#   pass  the accelerator probe passes, guests run
#   hang  the probe passes, but every guest started under "KVM" hangs: its
#         CPUs never run (-S), like a nested guest stuck in the hypervisor
# NESTOR_FAULT_PROBE=hang makes the accelerator probe itself hang;
# NESTOR_FAULT_PROBE_DELAY=S makes it take S seconds longer (then pass).
real=${NESTOR_FAULT_REAL_QEMU:?NESTOR_FAULT_REAL_QEMU is not set}
probe=0 kvm=0
for a; do
	case "$a" in
	*nestor.accel_probe=1*) probe=1 ;;
	kvm) kvm=1 ;;
	esac
done
n=$#
for a; do
	[ "$a" = kvm ] && a=tcg
	set -- "$@" "$a"
done
shift "$n"
if [ "$probe" = 1 ]; then
	[ "${NESTOR_FAULT_PROBE:-pass}" = hang ] && exec sleep 600
	sleep "${NESTOR_FAULT_PROBE_DELAY:-0}"
	exec "$real" "$@"
fi
if [ "$kvm" = 1 ] && [ "${NESTOR_FAULT_KVM:-pass}" = hang ]; then
	exec "$real" "$@" -S
fi
exec "$real" "$@"

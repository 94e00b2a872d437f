#!/bin/sh
# Let every user read the RAPL energy counters (root-only since Linux 5.10), as
# `lett rapl-access --apply [--persistent]` does. Run as root:
#
#   sudo sh scripts/rapl_access.sh               # until the next reboot
#   sudo sh scripts/rapl_access.sh --persistent  # and a udev rule for every boot
#
# Security: readable counters let local users watch power use, which leaks secrets through
# power side channels (CVE-2020-8694, PLATYPUS). Grant it only on machines you trust.
# LET_RAPL_ROOT (default /sys/class/powercap) and LET_UDEV_RULE
# (default /etc/udev/rules.d/99-let-rapl.rules) change where it works.
set -eu

root="${LET_RAPL_ROOT:-/sys/class/powercap}"
rule="${LET_UDEV_RULE:-/etc/udev/rules.d/99-let-rapl.rules}"

count=0
for counter in "$root"/*rapl*:*/energy_uj; do
    [ -e "$counter" ] || continue
    if ! chmod a+r "$counter"; then
        echo "cannot change $counter; run this script as root (sudo)" >&2
        exit 1
    fi
    count=$((count + 1))
done
if [ "$count" -eq 0 ]; then
    echo "no RAPL counters under $root (is intel_rapl_msr loaded? sudo modprobe intel_rapl_msr)" >&2
    exit 1
fi
echo "made $count RAPL counter file(s) under $root readable by every user"

if [ "${1:-}" = "--persistent" ]; then
    mkdir -p "$(dirname "$rule")"
    cat > "$rule.tmp" <<'RULE'
# LET: let every user read RAPL energy counters (see `lett rapl-access`)
ACTION=="add", SUBSYSTEM=="powercap", KERNEL=="intel-rapl:*", RUN+="/bin/chmod a+r /sys%p/energy_uj"
ACTION=="add", SUBSYSTEM=="powercap", KERNEL=="intel-rapl-mmio:*", RUN+="/bin/chmod a+r /sys%p/energy_uj"
RULE
    mv "$rule.tmp" "$rule"
    echo "wrote udev rule $rule; it applies at every boot"
fi

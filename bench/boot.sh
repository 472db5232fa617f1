#!/usr/bin/env bash
# Boot time of the rescue environment under QEMU (TCG): seconds from starting QEMU to the
# LIFEBOAT-READY line (printed just before the console starts), median of N runs, for each
# flavour booted from its ISO as a CD under SeaBIOS (GRUB's 3 s menu timeout included) and
# directly with -kernel/-initrd (no firmware menu, no boot loader). Needs ./build.sh --flavour all.
# Usage: bench/boot.sh [RUNS]   (default 3). This machine is noisy: compare medians.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
disk=$(mktemp); truncate -s 16M "$disk"
trap 'rm -f "$disk"' EXIT

# one_boot ARGS...: prints seconds to READY (or "fail")
one_boot() {
  local start t
  start=$(date +%s.%N)
  if timeout 120 qemu/run.sh --headless --disk "$disk" "$@" < /dev/null 2>/dev/null |
     grep -a -m1 -q 'LIFEBOAT-READY'; then
    t=$(echo "$(date +%s.%N) - $start" | bc)
    printf '%.1f\n' "$t"
  else
    echo fail
  fi
  pkill -f "qemu-system-x86_64.*$disk" 2>/dev/null || true
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

printf '%-36s %8s   %s\n' "boot" "median_s" "runs"
for flavour in mini standard; do
  iso=out/lifeboat.iso; [ "$flavour" = mini ] && iso=out/lifeboat-mini.iso
  for how in iso-bios-cd kernel-direct; do
    times=()
    for _ in $(seq "$runs"); do
      if [ "$how" = kernel-direct ]; then
        times+=("$(one_boot --kernel "out/$flavour" --append 'lifeboat.then=poweroff')")
      else
        times+=("$(one_boot --iso "$iso" --boot cd --firmware bios)")
      fi
    done
    med=$(printf '%s\n' "${times[@]}" | grep -v fail | median || true)
    printf '%-36s %8s   %s\n' "$flavour $how" "${med:-fail}" "${times[*]}"
  done
done

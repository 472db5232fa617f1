#!/usr/bin/env bash
# Boot time of the rescue environment under QEMU (TCG): seconds from starting QEMU to the
# LIFEBOAT-READY line (printed just before the console starts), median of N runs, for each
# flavour booted from its ISO as a CD under SeaBIOS (GRUB's 2 s menu timeout included) and
# directly with -kernel/-initrd (no firmware menu, no boot loader). Needs ./build.sh --flavour all.
# Usage: bench/boot.sh [RUNS]   (default 3). This machine is noisy: compare medians.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
disk=$(mktemp); truncate -s 16M "$disk"
trap 'rm -f "$disk"' EXIT

# one_boot ARGS...: prints seconds to READY (or "fail")
one_boot() {
  local start log pid t
  log=$(mktemp)
  start=$(date +%s.%N)
  qemu/run.sh --headless --disk "$disk" --pidfile "$log.pid" "$@" < /dev/null > "$log" 2>&1 &
  pid=$!
  t=fail
  for _ in $(seq 1200); do
    if grep -a -q 'LIFEBOAT-READY' "$log"; then
      t=$(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)")
      break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -s "$log.pid" ] && kill "$(cat "$log.pid")" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$log" "$log.pid"
  echo "$t"
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

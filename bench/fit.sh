#!/usr/bin/env bash
# `--fit` benchmark for issue 17: a fitted restore (filesystems shrunk on overlays, partitions
# moved) against a plain restore of the same image onto a disk of the source's size.
#
# Usage: sudo bench/fit.sh DISK_IMAGE [--runs N] [--ratio PCT] [--work DIR] [--memory SIZE]
#
#   --runs N       rounds; each times both rows once, in alternating order (default 3)
#   --ratio PCT    the fitted target's size, in percent of the source (default 75)
#   --work DIR     where the image and the targets go (default: a new dir in /var/tmp)
#   --memory SIZE  --overlay-memory of the fitted restore, with --scratch WORK/scratch (default:
#                  lifeboat's, no --scratch)
#   LIFEBOAT       the binary (default target/release/lifeboat)
#
# Setup, once: lifeboat image DISK_IMAGE -o WORK/d.lbi; lifeboat restore --fit --dry-run
# --json for the plan (printed). Rows (the page cache is dropped before each; /usr/bin/time
# -f '%e %U %S %M' gives wall, user, system seconds and peak RSS in KiB):
#   plain   lifeboat restore d.lbi WORK/plain.img --yes --json   (a new file, the source's size)
#   fit     lifeboat restore d.lbi WORK/fit.img --fit --yes --json  (a file of PCT% of the source)
# Both verify what they write (read back with O_DIRECT). The report gives the medians and the
# median of the per-round ratio fit / plain, and the bytes each restore wrote.
set -euo pipefail
export LC_ALL=C
usage() { sed -n 5,12p "$0" >&2; exit 2; }
[ $# -ge 1 ] || usage
disk=$1; shift
runs=3 ratio=75 work="" memory=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --ratio) ratio=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --memory) memory=$2; shift 2 ;;
    *) usage ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "fit.sh: needs root (drop_caches, FUSE)" >&2; exit 1; }
here=$(cd "$(dirname "$0")/.." && pwd)
lb=${LIFEBOAT:-$here/target/release/lifeboat}
[ -x "$lb" ] || { echo "fit.sh: $lb missing (cargo build --release)" >&2; exit 1; }
[ -n "$work" ] || work=$(mktemp -d /var/tmp/lifeboat-fit-bench.XXXXXX)
mkdir -p "$work"
size=$(stat -c %s "$disk")
small=$(( size * ratio / 100 / 1048576 * 1048576 ))
echo "fit.sh: $disk ($size bytes) onto $small bytes ($ratio%), $runs rounds, work $work"
rm -f "$work/d.lbi"
"$lb" image "$disk" -o "$work/d.lbi" >/dev/null
fit_args=(--fit)
if [ -n "$memory" ]; then
  mkdir -p "$work/scratch"
  fit_args+=(--overlay-memory "$memory" --scratch "$work/scratch")
fi
rm -f "$work/fit.img"; truncate -s "$small" "$work/fit.img"
"$lb" restore "$work/d.lbi" "$work/fit.img" "${fit_args[@]}" --dry-run | sed -n '/--fit/,/smallest/p'
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
row() { # NAME: one timed restore; prints "NAME wall user sys rss_kib written"
  local name=$1 out=$work/$1.json
  case "$name" in
    plain) rm -f "$work/plain.img"; set -- "$lb" restore "$work/d.lbi" "$work/plain.img" --yes --json ;;
    fit) rm -f "$work/fit.img"; truncate -s "$small" "$work/fit.img"
         set -- "$lb" restore "$work/d.lbi" "$work/fit.img" "${fit_args[@]}" --yes --json ;;
  esac
  drop
  local t
  t=$( { /usr/bin/time -f '%e %U %S %M' "$@" >"$out"; } 2>&1 | tail -1)
  local written
  written=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e=json.loads(l)
    if e.get("event")=="finished": print(e["summary"]["written_bytes"])' "$out")
  echo "$name $t $written"
}
results=$work/rows.txt
: >"$results"
for r in $(seq 1 "$runs"); do
  if [ $((r % 2)) -eq 1 ]; then order="plain fit"; else order="fit plain"; fi
  for n in $order; do row "$n" | tee -a "$results"; done
done
python3 - "$results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
by = {}
for name, wall, user, sys_, rss, written in rows:
    by.setdefault(name, []).append((float(wall), float(user), float(sys_), int(rss), int(written)))
print("| row | wall s (median) | user s | sys s | peak RSS MiB (max) | written MiB |")
print("|---|---|---|---|---|---|")
for name in ("plain", "fit"):
    v = by[name]
    med = lambda i: statistics.median(x[i] for x in v)
    print(f"| {name} | {med(0):.2f} | {med(1):.2f} | {med(2):.2f} | {max(x[3] for x in v)/1024:.0f} | {v[0][4]/2**20:.0f} |")
ratios = [f[0] / p[0] for p, f in zip(by["plain"], by["fit"])]
print(f"\nfit / plain wall time, median of per-round ratios: {statistics.median(ratios):.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
PY

#!/usr/bin/env bash
# Encryption benchmark (issue 20): imaging and restoring an encrypted image against the same
# jobs on a plain one, in one run, on local files.
#
# Usage: sudo bench/encrypt.sh DISK_IMAGE [--runs N] [--work DIR] [--keep]
#
#   --runs N    rounds; each round times every row once, in a rotated order; the report
#               gives medians and the ratio of the medians (default 5)
#   --work DIR  where the images and the target go (default: a new dir in /var/tmp)
#   --keep      keep the work directory
#   LIFEBOAT    the binary (default target/release/lifeboat)
#
# Rows (the page cache is dropped before each; wall seconds; each image job includes its
# read-back verification, as always):
#   image plain        lifeboat image DISK -o WORK/p.lbi
#   image encrypted    lifeboat --key-file K image DISK -o WORK/e.lbi --encrypt
#   restore plain      lifeboat restore WORK/p.lbi WORK/t.img --yes
#   restore encrypted  lifeboat --key-file K restore WORK/e.lbi WORK/t.img --yes
# Target: image encrypted >= 0.90 x the speed of image plain.
# Output: a Markdown report on stdout and in bench/results/encrypt-DATE.md.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
usage() { sed -n '5,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
case "$1" in -h | --help) usage ;; esac
disk=$(readlink -f "$1"); shift
runs=5 work="" keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) usage ;;
  esac
done
lb=${LIFEBOAT:-$repo/target/release/lifeboat}
[ -x "$lb" ] || { echo "encrypt.sh: $lb not built (cargo build --release)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "encrypt.sh: run as root (drop_caches)" >&2; exit 1; }
[ -n "$work" ] || work=$(mktemp -d /var/tmp/lifeboat-encrypt.XXXXXX)
mkdir -p "$work"
cleanup() { [ "$keep" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT
printf 'bench passphrase, not secret\n' > "$work/key"
size=$(stat -c %s "$disk")

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
fresh_target() { rm -f "$work/t.img"; fallocate -l "$size" "$work/t.img"; }
timed() { /usr/bin/time -f '%e' -o "$work/time" "$@" >"$work/out" 2>&1 || { cat "$work/out" >&2; return 1; }; cat "$work/time"; }

row_image_plain() { rm -f "$work/p.lbi"; drop; timed "$lb" image "$disk" -o "$work/p.lbi"; }
row_image_encrypted() {
  rm -f "$work/e.lbi"; drop
  timed "$lb" --key-file "$work/key" image "$disk" -o "$work/e.lbi" --encrypt
}
row_restore_plain() {
  [ -f "$work/p.lbi" ] || row_image_plain >/dev/null
  fresh_target; drop; timed "$lb" restore "$work/p.lbi" "$work/t.img" --yes
}
row_restore_encrypted() {
  [ -f "$work/e.lbi" ] || row_image_encrypted >/dev/null
  fresh_target; drop; timed "$lb" --key-file "$work/key" restore "$work/e.lbi" "$work/t.img" --yes
}
rows=(image_plain image_encrypted restore_plain restore_encrypted)

declare -A times
for ((r = 0; r < runs; r++)); do
  n=${#rows[@]}
  for ((k = 0; k < n; k++)); do
    row=${rows[$(((k + r) % n))]}
    t=$("row_$row")
    times[$row]="${times[$row]:-} $t"
    echo "encrypt.sh: round $((r + 1)) $row ${t}s" >&2
  done
done

report=$(
  {
    echo "disk $disk ($size bytes), plain image $(stat -c %s "$work/p.lbi") bytes, encrypted $(stat -c %s "$work/e.lbi") bytes, $runs rounds"
    for row in "${rows[@]}"; do echo "$row ${times[$row]}"; done
  } | /usr/bin/python3 -c '
import sys, statistics
lines = sys.stdin.read().splitlines()
print("# Encrypted images, " + lines[0]); print()
med = {}
print("| row | median s | runs |"); print("|---|---:|---|")
for l in lines[1:]:
    name, *ts = l.split(); ts = [float(t) for t in ts]
    med[name] = statistics.median(ts)
    each = " ".join("%.2f" % t for t in ts)
    print(f"| {name} | {med[name]:.2f} | {each} |")
print()
def ratio(a, b, what):
    print(f"- {what}: {med[a]/med[b]:.2f} x the plain speed")
ratio("image_plain", "image_encrypted", "imaging encrypted (target >= 0.90)")
ratio("restore_plain", "restore_encrypted", "restoring encrypted")
'
)
echo "$report"
mkdir -p "$here/results"
echo "$report" > "$here/results/encrypt-$(date -u +%Y-%m-%d).md"

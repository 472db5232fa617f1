#!/usr/bin/env bash
# bench/chain.sh: the chain scenario. A full image of the bench disk, then ROUNDS nights of
# changes (about PCT% of each filesystem's used data modified, added and deleted by
# bench/mutate.py), each followed by an incremental image. Then a restore of the last
# incremental (a chain of ROUNDS+1 images) against a restore of a full image of the same state
# (made with `lifeboat merge`).
#
# usage: sudo bench/chain.sh DISK.img [--rounds 4] [--pct 1] [--runs 3] [--block-kib 64]
#                             [--work DIR] [--keep]
#
# DISK.img is copied first (it is changed). Timings are medians of RUNS; the machine is noisy.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
src=$1; shift
rounds=4 pct=1 runs=3 work="" keep=0 block=64
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=${2:?}; shift 2 ;;
    --pct) pct=${2:?}; shift 2 ;;
    --runs) runs=${2:?}; shift 2 ;;
    --work) work=${2:?}; shift 2 ;;
    --keep) keep=1; shift ;;
    --block-kib) block=${2:?}; shift 2 ;;
    -h | --help) usage ;;
    *) echo "chain.sh: unknown argument $1" >&2; usage ;;
  esac
done
[ -f "$src" ] || { echo "chain.sh: $src is not a file" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "chain.sh: needs root (loop devices, mounts, drop_caches)" >&2; exit 1; }
for t in losetup partx blkid zstd ntfs-3g python3; do
  command -v "$t" >/dev/null || { echo "chain.sh: $t is missing (bash .ci/install-deps.sh)" >&2; exit 1; }
done
lifeboat=${LIFEBOAT:-$repo/target/release/lifeboat}
[ -x "$lifeboat" ] || { echo "chain.sh: build first: cargo build --release (or set LIFEBOAT=)" >&2; exit 1; }
[ -n "$work" ] || work=$(mktemp -d /var/tmp/lifeboat-chain.XXXXXX)
mkdir -p "$work/images" "$work/mnt"
work=$(cd "$work" && pwd)
loops=()
cleanup() {
  umount "$work/mnt" 2>/dev/null || true
  for l in "${loops[@]}"; do partx -d "$l" 2>/dev/null || true; losetup -d "$l" 2>/dev/null || true; done
  [ "$keep" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

disk="$work/disk.img"
cp --sparse=always "$src" "$disk"
loop=$(losetup --find --show "$disk"); loops+=("$loop")
partx -a "$loop" 2>/dev/null || true
size=$(blockdev --getsize64 "$loop")

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# timed RUNS CMD...: runs CMD RUNS times with cold caches, prints the median seconds. CMD may
# use $try (1..RUNS) to pick a fresh output name.
timed() {
  local n=$1; shift
  for try in $(seq 1 "$n"); do
    drop
    local t0; t0=$(now)
    "$@" >/dev/null 2>"$work/last.err" || { cat "$work/last.err" >&2; exit 1; }
    echo "$(now) - $t0" | bc -l
  done | median
}

echo "disk: $src ($(numfmt --to=iec "$size")), $rounds rounds of ${pct}% changes, medians of $runs runs"
full="$work/images/bench.lbi"
full_img() { rm -f "$full"; "$lifeboat" image "$loop" -o "$full" --block-kib "$block"; }
t_full=$(timed "$runs" full_img)
full_bytes=$(stat -c %s "$full")
# Reading and hashing every used block: an image of the unchanged disk against its own full
# image reads and hashes everything and finds every block in the chain (nothing to compress).
base_img() { "$lifeboat" image "$loop" -o "$work/base-$try.lbi" --parent "$full"; }
t_base=$(timed "$runs" base_img)
base_bytes=$(stat -c %s "$work/base-1.lbi")
rm -f "$work"/base-*.lbi
printf 'full image: %.2f s, %s bytes; read+hash of the used blocks (unchanged disk): %.2f s\n' "$t_full" "$full_bytes" "$t_base"

parts=$(ls "${loop}"p* 2>/dev/null | sort)
printf '%-6s %12s %12s %12s %12s %8s %8s %8s\n' round changed changed_zst incr_bytes index_b size_x time_s time_x
prev="$full"
for r in $(seq 1 "$rounds"); do
  cap="$work/changed-$r.bin"; : >"$cap"
  i=0
  for p in $parts; do
    i=$((i + 1))
    fs=$(blkid -o value -s TYPE "$p" || true)
    case "$fs" in
      ext4) mount "$p" "$work/mnt" ;;
      vfat) mount -t vfat "$p" "$work/mnt" 2>/dev/null || {
          [ "$r" != 1 ] || echo "note: $p (FAT) cannot be mounted on this kernel (no vfat); it stays unchanged" >&2
          continue
        } ;;
      ntfs) ntfs-3g "$p" "$work/mnt" ;;
      *) continue ;;
    esac
    python3 "$here/mutate.py" "$work/mnt" --pct "$pct" --seed "$((r * 10 + i))" --capture "$cap" >/dev/null
    umount "$work/mnt"
  done
  sync
  changed=$(stat -c %s "$cap")
  changed_zst=$(zstd -3 -T0 -c "$cap" | wc -c)
  incr() { "$lifeboat" image "$loop" -o "$work/images/r$r-$try.lbi" --parent "$prev"; }
  t=$(timed "$runs" incr)
  for k in $(seq 2 "$runs"); do rm -f "$work/images/r$r-$k.lbi"; done
  prev="$work/images/r$r-1.lbi"
  bytes=$(stat -c %s "$prev")
  index=$("$lifeboat" info --json "$prev" | python3 -c 'import json,sys; print(json.load(sys.stdin)["chunk_count"]*64)')
  printf '%-6s %12s %12s %12s %12s %8.2f %8.2f %8.2f\n' "$r" "$changed" "$changed_zst" "$bytes" "$index" \
    "$(echo "$bytes / $changed_zst" | bc -l)" "$t" "$(echo "$t / $t_base" | bc -l)"
  rm -f "$cap"
done

"$lifeboat" verify "$prev" >/dev/null
merged="$work/images/merged.lbi"
"$lifeboat" merge "$prev" -o "$merged" >/dev/null
target="$work/target.img"
truncate -s "$size" "$target"
tl=$(losetup --find --show "$target"); loops+=("$tl")
rest_chain() { "$lifeboat" restore "$prev" "$tl" --yes; }
rest_full() { "$lifeboat" restore "$merged" "$tl" --yes; }
t_chain=$(timed "$runs" rest_chain)
t_fullr=$(timed "$runs" rest_full)
printf 'restore: chain of %d images %.2f s, full image of the same state %.2f s: chain/full = %.2f\n' \
  "$((rounds + 1))" "$t_chain" "$t_fullr" "$(echo "$t_chain / $t_fullr" | bc -l)"

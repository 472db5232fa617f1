#!/usr/bin/env bash
# Clone benchmark: lifeboat clone against partclone -b per partition and dd of the whole
# disk, side by side in one run, and against the two disks' sequential speeds.
#
# Usage: sudo bench/clone.sh DISK_IMAGE [--runs N] [--work DIR] [--keep]
#
#   --runs N   timed runs per tool; the report uses medians (default 3)
#   --work DIR where the target file goes (default: a new dir in /var/tmp). Put it on
#              another device (e.g. /dev/shm) so that source and target are two disks
#   --keep     keep the work directory
#   LIFEBOAT   the binary (default target/release/lifeboat)
#
# The source is a read-only loop device over a dense (non-sparse) copy of DISK_IMAGE, the
# target a loop device over a preallocated file of the same size; both use --direct-io=on,
# so neither side is served by the page cache of its backing file, and the page cache is
# dropped before every run.
#   seq-read    dd if=SOURCE of=/dev/null bs=4M iflag=direct (whole disk)
#   seq-write   dd if=/dev/zero of=TARGET bs=4M oflag=direct (whole disk)
#   lifeboat    lifeboat clone SOURCE TARGET --yes (verification on, its default), and again
#               with --no-verify (what the peers do: none of them reads back); the copy
#               phase alone (its copy_seconds) is what the sequential speeds compare with
#   partclone   sfdisk -d SOURCE | sfdisk TARGET, partx -a, then per partition
#               partclone.<fs> -b -s SP -o TP (device to device), then sync
#   dd          dd if=SOURCE of=TARGET bs=4M conv=fsync
# "Used data" is the bytes lifeboat copies (its --dry-run --json copy_bytes): the rate each
# tool achieves over it is compared with the slower disk's sequential speed.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
usage() { sed -n '3,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
disk=$(readlink -f "$1"); shift
runs=3 work="" keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=${2:?}; shift 2 ;;
    --work) work=${2:?}; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage ;;
    *) echo "clone.sh: unknown argument $1" >&2; usage ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "clone.sh: needs root (loop devices)" >&2; exit 1; }
lifeboat=${LIFEBOAT:-$repo/target/release/lifeboat}
[ -x "$lifeboat" ] || { echo "clone.sh: build first: cargo build --release" >&2; exit 1; }
work=${work:-$(mktemp -d /var/tmp/lifeboat-clone-bench.XXXXXX)}
mkdir -p "$work"
src="" dst=""
cleanup() {
  [ -n "$dst" ] && { partx -d "$dst" 2>/dev/null || true; losetup -d "$dst" 2>/dev/null || true; }
  [ -n "$src" ] && { partx -d "$src" 2>/dev/null || true; losetup -d "$src" 2>/dev/null || true; }
  [ "$keep" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

# A sparse source reads its holes without touching the disk, which would make the measured
# sequential read speed look better than the disk: clone from a dense copy (kept next to
# the image, remade when the image is newer).
dense="${disk%.img}.dense.img"
if [ ! -f "$dense" ] || [ "$disk" -nt "$dense" ]; then
  cp --sparse=never "$disk" "$dense.tmp" && mv "$dense.tmp" "$dense"
fi
disk=$dense
size=$(stat -c %s "$disk")
fallocate -l "$size" "$work/target.img"
src=$(losetup --find --show --read-only --direct-io=on "$disk")
partx -a "$src" 2>/dev/null || true
dst=$(losetup --find --show --direct-io=on "$work/target.img")

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# secs CMD...: wall seconds of CMD, quiet
secs() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >"$work/last.log" 2>&1 || { echo "clone.sh: failed: $*" >&2; tail -5 "$work/last.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
wipe_target() { partx -d "$dst" 2>/dev/null || true; dd if=/dev/zero of="$dst" bs=1M count=2 oflag=direct status=none; }

used=$("$lifeboat" clone "$src" "$dst" --dry-run --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["copy_bytes"])')

partclone_all() {
  sfdisk -d "$src" | sfdisk -q "$dst" >/dev/null
  partx -a "$dst" 2>/dev/null || partx -u "$dst"
  dd if="$src" of="$dst" bs=1M count=1 oflag=direct status=none   # boot code and gap
  local n fs
  for n in $(partx -g -o NR "$src"); do
    fs=$(blkid -p -o value -s TYPE "${src}p$n" 2>/dev/null || true)
    case "$fs" in
      ext2|ext3|ext4) partclone.extfs -b -q -s "${src}p$n" -o "${dst}p$n" ;;
      vfat) partclone.vfat -b -q -s "${src}p$n" -o "${dst}p$n" ;;
      ntfs) partclone.ntfs -b -q -s "${src}p$n" -o "${dst}p$n" ;;
      *) partclone.dd -b -q -s "${src}p$n" -o "${dst}p$n" ;;
    esac
  done
  sync
}

declare -A t
ratio=""
for name in seq-read seq-write lifeboat lifeboat-copy lifeboat-noverify partclone dd; do t[$name]=""; done
copy_secs() { python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e=json.loads(l)
    if e.get("event")=="finished": print(e["summary"]["copy_seconds"])' "$work/last.log"; }
for r in $(seq 1 "$runs"); do
  drop; t[seq-read]+="$(secs dd if="$src" of=/dev/null bs=4M iflag=direct status=none)"$'\n'
  drop; t[seq-write]+="$(secs dd if=/dev/zero of="$dst" bs=4M count=$((size / 4194304)) oflag=direct status=none)"$'\n'
  wipe_target; drop; t[lifeboat]+="$(secs "$lifeboat" clone "$src" "$dst" --yes --json)"$'\n'
  t[lifeboat-copy]+="$(copy_secs)"$'\n'
  wipe_target; drop; t[lifeboat-noverify]+="$(secs "$lifeboat" clone "$src" "$dst" --yes --no-verify)"$'\n'
  wipe_target; drop; t[partclone]+="$(secs partclone_all)"$'\n'
  wipe_target; drop; t[dd]+="$(secs dd if="$src" of="$dst" bs=4M conv=fsync status=none)"$'\n'
  # this run's copy rate over this run's slower disk: noise on this VM moves both together
  last() { printf '%s' "${t[$1]}" | grep . | tail -1; }
  ratio+="$(echo "r = $size / $(last seq-read); w = $size / $(last seq-write); if (w < r) r = w; 100 * ($used / $(last lifeboat-copy)) / r" | bc -l)"$'\n'
  echo "run $r of $runs done" >&2
done

m() { printf '%s' "${t[$1]}" | grep . | median; }
rd=$(m seq-read) wr=$(m seq-write)
rd_rate=$(echo "$size / $rd" | bc -l) wr_rate=$(echo "$size / $wr" | bc -l)
slow=$(echo "if ($rd_rate < $wr_rate) $rd_rate else $wr_rate" | bc -l)
echo "# clone benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, medians of $runs runs"
echo "disk: $disk ($((size >> 20)) MiB), used data lifeboat copies: $((used >> 20)) MiB"
printf 'seq read %.0f MiB/s, seq write %.0f MiB/s; slower disk %.0f MiB/s\n' \
  "$(echo "$rd_rate / 1048576" | bc -l)" "$(echo "$wr_rate / 1048576" | bc -l)" "$(echo "$slow / 1048576" | bc -l)"
echo
printf '%-18s %8s %14s %14s %12s\n' tool seconds "used MiB/s" "of slower disk" "lifeboat x"
lb=$(m lifeboat)
for name in lifeboat-copy lifeboat lifeboat-noverify partclone dd; do
  s=$(m "$name")
  rate=$(echo "$used / $s" | bc -l)
  printf '%-18s %8.2f %14.0f %13.0f%% %11.2fx\n' "$name" "$s" \
    "$(echo "$rate / 1048576" | bc -l)" "$(echo "100 * $rate / $slow" | bc -l)" "$(echo "$s / $lb" | bc -l)"
done
echo
printf 'lifeboat copy phase over the slower disk, median of the per-run ratios: %.0f%%\n' "$(printf '%s' "$ratio" | grep . | median)"
echo
echo "lifeboat-copy is the copy phase of the verified runs (summary.copy_seconds: data and tables"
echo "up to the final sync; without planning, read-back and partition nodes)."
echo "\"lifeboat x\" is the tool's time over lifeboat's (with verification): above 1 means lifeboat is faster."
echo "The machine is a noisy 2-core VM; read the ratios, not the absolute rates."

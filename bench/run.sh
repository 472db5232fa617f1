#!/usr/bin/env bash
# Runs lifeboat and its peers side by side on one disk image and reports time, size, memory.
#
# Usage: sudo bench/run.sh DISK_IMAGE [--runs N] [--level L] [--work DIR] [--no-restore] [--keep]
#
#   --runs N      timed runs per tool; the report uses medians (default 3)
#   --level L     zstd level for every tool: lifeboat --level L, zstd -L, fsarchiver -Z L (3)
#   --work DIR    where images and the restore target go (default: a new dir in /var/tmp)
#   --no-restore  only measure imaging
#   --keep        keep the images and logs instead of deleting them
#   LIFEBOAT      the binary (default target/release/lifeboat); skipped if `image --help` fails
#
# Imaging (the disk is attached read-only as a loop device):
#   lifeboat    lifeboat image LOOP -o FILE --level L
#   partclone   per partition: partclone.<fs> -c -s PART -o - | zstd -T0 -L, plus the partition
#               table (sfdisk -d) and the first MiB (dd); times and sizes summed over partitions
#   dd+zstd     dd if=LOOP bs=4M | zstd -T0 -L
#   fsarchiver  fsarchiver savefs -x -j NPROC -Z L over the partitions it supports (-x: NTFS)
# Restore (onto a loop device over a preallocated file of the disk's size):
#   seq-write   dd if=/dev/zero of=TARGET bs=4M oflag=direct: the target's sequential speed
#   lifeboat    lifeboat restore FILE TARGET --yes
#   partclone   sfdisk TARGET < table; per partition zstd -dc | partclone.<fs> -r -s - -o TPART
#   dd+zstd     zstd -dc | dd of=TARGET bs=4M oflag=direct
#   fsarchiver  sfdisk TARGET < table; fsarchiver restfs -j NPROC (it runs mkfs itself)
#
# Before every timed run the page cache is dropped (echo 3 > /proc/sys/vm/drop_caches), so each
# tool reads its source from the disk. Peak RSS comes from /usr/bin/time -f %M; for a pipeline
# it is the SUM of the peaks of its processes (an upper bound of what it needs at once); the
# JSON also has the largest single process. Results: a Markdown table on stdout and the raw
# numbers in bench/results/LATEST.json.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
python=/usr/bin/python3

usage() {
  sed -n '3,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
[ $# -ge 1 ] || usage
disk=$1
shift
runs=3
level=3
work=""
do_restore=1
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=${2:?}; shift 2 ;;
    --level) level=${2:?}; shift 2 ;;
    --work) work=${2:?}; shift 2 ;;
    --no-restore) do_restore=0; shift ;;
    --keep) keep=1; shift ;;
    -h | --help) usage ;;
    *) echo "run.sh: unknown argument $1" >&2; usage ;;
  esac
done
case "$runs" in '' | *[!0-9]* | 0) echo "run.sh: --runs needs a positive number" >&2; exit 2 ;; esac
case "$level" in '' | *[!0-9]*) echo "run.sh: --level needs a number" >&2; exit 2 ;; esac
[ -f "$disk" ] || { echo "run.sh: $disk is not a file" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "run.sh: needs root (loop devices, drop_caches)" >&2; exit 1; }
for tool in losetup partx blkid sfdisk dd zstd /usr/bin/time fallocate; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing (bash .ci/install-deps.sh)" >&2; exit 1; }
done
lifeboat=${LIFEBOAT:-$repo/target/release/lifeboat}
threads=$(nproc)

if [ -z "$work" ]; then
  work=$(mktemp -d /var/tmp/lifeboat-bench.XXXXXX)
else
  mkdir -p "$work"
  work=$(cd "$work" && pwd)
fi
logs="$work/logs"
mkdir -p "$logs"
records="$work/records.tsv"
: >"$records"
src=""
tgt=""

detach() { # detach LOOPDEV
  partx -d "$1" 2>/dev/null || true
  losetup -d "$1" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  [ -n "$src" ] && detach "$src"
  [ -n "$tgt" ] && detach "$tgt"
  if [ "$keep" -eq 1 ] || [ "$rc" -ne 0 ]; then
    echo "run.sh: images and logs kept in $work" >&2
    rm -f "$work/target.img"
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

add_partitions() { # add_partitions LOOPDEV COUNT
  partx -a "$1" 2>/dev/null || partx -u "$1"
  udevadm settle 2>/dev/null || true
  for _ in $(seq 50); do [ -b "$1p$2" ] && return 0; sleep 0.1; done
  echo "run.sh: no partition nodes for $1" >&2
  return 1
}

# --- the source disk --------------------------------------------------------------------------
disk_bytes=$(stat -c %s "$disk")
src=$(losetup -f --show -r "$disk")
nparts=$(partx -g -o NR "$src" | wc -l)
[ "$nparts" -ge 1 ] || { echo "run.sh: $disk has no partition table" >&2; exit 1; }
add_partitions "$src" "$nparts"
parts=()  # partition numbers
fstypes=() # blkid TYPE per partition
for n in $(partx -g -o NR "$src"); do
  parts+=("$n")
  fs=""
  for _ in $(seq 30); do # a fresh partition node can briefly fail to open
    fs=$(blkid -p -o value -s TYPE "${src}p$n" 2>/dev/null) && [ -n "$fs" ] && break
    sleep 0.1
  done
  fstypes+=("${fs:-unknown}")
done
sfdisk -d "$src" >"$work/table.sfdisk" 2>/dev/null

partclone_for() { # partclone_for FSTYPE: the partclone binary, or "" (then partclone.dd)
  case "$1" in
    ext2 | ext3 | ext4) echo "partclone.$1" ;;
    vfat | fat) echo partclone.vfat ;;
    ntfs) echo partclone.ntfs ;;
    xfs) echo partclone.xfs ;;
    btrfs) echo partclone.btrfs ;;
    exfat) echo partclone.exfat ;;
    *) echo partclone.dd ;;
  esac
}
# fsarchiver_supports PART FSTYPE: fsarchiver mounts what it saves, so the filesystem type
# must be one it knows and that this kernel (or ntfs-3g) can mount
fsarchiver_supports() {
  local dir rc=0
  case "$2" in ext2 | ext3 | ext4 | xfs | btrfs | ntfs | vfat | reiserfs | jfs) ;; *) return 1 ;; esac
  dir=$(mktemp -d "$work/probe.XXXXXX")
  if [ "$2" = ntfs ]; then
    ntfs-3g -o ro "$1" "$dir" 2>/dev/null || rc=1
  else
    mount -o ro -t "$2" "$1" "$dir" 2>/dev/null || rc=1
  fi
  if [ "$rc" -eq 0 ]; then umount "$dir"; fi
  rmdir "$dir"
  return "$rc"
}

echo "== disk: $disk ($((disk_bytes / 1048576)) MiB), $threads CPUs, level $level, $runs runs"
for i in "${!parts[@]}"; do
  echo "   p${parts[$i]}: ${fstypes[$i]} -> $(partclone_for "${fstypes[$i]}")"
done

# --- measurement ------------------------------------------------------------------------------
tfile="$work/time.out"
drop_caches() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
}
# t CMD...: run CMD under /usr/bin/time, appending "group wall_s peak_rss_kib" to $tfile.
# Processes that run at the same time (one pipeline) share a group: call next_group before
# each pipeline or command. RSS of a run = max over groups of the sum within a group.
tgroup=0
next_group() { tgroup=$((tgroup + 1)); }
t() { /usr/bin/time -f "$tgroup %e %M" -a -o "$tfile" "$@"; }
now() { date +%s.%N; }

# measure PHASE TOOL RUN FUNCTION [SIZE_GLOB_PREFIX]: drop caches, time FUNCTION, record it.
# The image size is the total size of files named "$work/img/TOOL.*".
measure() {
  local phase=$1 tool=$2 run=$3 fn=$4 start end size=0 rc=0
  drop_caches
  : >"$tfile"
  start=$(now)
  "$fn" >>"$logs/$phase-$tool.log" 2>&1 || rc=$?
  end=$(now)
  if [ "$rc" -ne 0 ]; then
    echo "   $phase $tool run $run FAILED (exit $rc); log: $logs/$phase-$tool.log" >&2
    tail -5 "$logs/$phase-$tool.log" >&2 || true
    return 1
  fi
  if [ "$phase" = image ]; then
    size=$(find "$work/img" -maxdepth 1 -name "$tool.*" -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  fi
  awk -v phase="$phase" -v tool="$tool" -v run="$run" -v start="$start" -v end="$end" \
    -v size="$size" '
    !/^[0-9]+ [0-9.]+ [0-9]+$/ { next } # e.g. "Command exited with non-zero status"
    { g[$1] += $3; if ($3 > max) max = $3; n++ }
    END {
      for (k in g) if (g[k] > sum) sum = g[k]
      printf "%s\t%s\t%s\t%.3f\t%d\t%d\t%d\t%d\n", phase, tool, run, end - start, sum, max, n, size
    }
  ' "$tfile" >>"$records"
  awk -v p="$phase" -v t="$tool" -v r="$run" -v s="$start" -v e="$end" \
    'BEGIN { printf "   %-8s %-11s run %d: %7.2f s\n", p, t, r, e - s }'
}

mkdir -p "$work/img"
clean_img() { find "$work/img" -maxdepth 1 -name "$1.*" -delete; }

# --- imaging ----------------------------------------------------------------------------------
image_lifeboat() {
  clean_img lifeboat
  next_group
  t "$lifeboat" image "$src" -o "$work/img/lifeboat.lbi" --level "$level"
}
image_partclone() {
  clean_img partclone
  next_group
  t sfdisk -d "$src" >"$work/img/partclone.table.sfdisk"
  next_group
  t dd if="$src" of="$work/img/partclone.first-mib.bin" bs=1M count=1 iflag=direct status=none
  local i n pc
  for i in "${!parts[@]}"; do
    n=${parts[$i]}
    pc=$(partclone_for "${fstypes[$i]}")
    next_group
    t "$pc" -c -q -s "${src}p$n" -o - |
      t zstd -T0 "-$level" -q -c >"$work/img/partclone.p$n.pc.zst"
  done
}
image_dd() {
  clean_img dd
  next_group
  t dd if="$src" bs=4M status=none | t zstd -T0 "-$level" -q -c >"$work/img/dd.img.zst"
}
fsa_parts=()
fsa_cover=""
notes=()
image_fsarchiver() {
  clean_img fsarchiver
  # -x: fsarchiver calls NTFS support experimental and refuses it without -x
  next_group
  t fsarchiver savefs -o -x -j "$threads" -Z "$level" "$work/img/fsarchiver.fsa" "${fsa_parts[@]}"
}

have_lifeboat=0
if "$lifeboat" image --help >/dev/null 2>&1; then
  have_lifeboat=1
else
  echo "== SKIP lifeboat: '$lifeboat image --help' fails (set LIFEBOAT= or build with" \
    "cargo build --release); measuring the peers only"
fi
have_lifeboat_restore=0
if [ "$have_lifeboat" -eq 1 ] && "$lifeboat" restore --help >/dev/null 2>&1; then
  have_lifeboat_restore=1
fi
have_partclone=1
for i in "${!parts[@]}"; do
  command -v "$(partclone_for "${fstypes[$i]}")" >/dev/null || have_partclone=0
done
[ "$have_partclone" -eq 1 ] || echo "== SKIP partclone: not installed (apt-get install partclone)"
have_fsarchiver=0
if command -v fsarchiver >/dev/null; then
  for i in "${!parts[@]}"; do
    if fsarchiver_supports "${src}p${parts[$i]}" "${fstypes[$i]}"; then
      fsa_parts+=("${src}p${parts[$i]}")
      fsa_cover+="p${parts[$i]} "
    else
      notes+=("fsarchiver skips p${parts[$i]} (${fstypes[$i]}): not mountable here, so its time and size cover less of the disk than the other tools")
    fi
  done
  [ ${#fsa_parts[@]} -gt 0 ] && have_fsarchiver=1
else
  echo "== SKIP fsarchiver: not installed (apt-get install fsarchiver)"
fi

echo "== imaging (page cache dropped before every run)"
tools=()
[ "$have_lifeboat" -eq 1 ] && tools+=(lifeboat)
[ "$have_partclone" -eq 1 ] && tools+=(partclone)
tools+=(dd)
[ "$have_fsarchiver" -eq 1 ] && tools+=(fsarchiver)
failed=()
for run in $(seq "$runs"); do
  for tool in "${tools[@]}"; do
    measure image "$tool" "$run" "image_$tool" || failed+=("image:$tool")
  done
done

# --- restore ----------------------------------------------------------------------------------
restore_table() { # the partition table of the source onto the target, with partition nodes
  partx -d "$tgt" 2>/dev/null || true
  next_group
  t sfdisk -q --no-reread --no-tell-kernel "$tgt" <"$work/table.sfdisk"
  add_partitions "$tgt" "$nparts"
}
restore_seqwrite() {
  next_group
  t dd if=/dev/zero of="$tgt" bs=4M count=$((disk_bytes / 4194304)) oflag=direct status=none
}
restore_lifeboat() {
  partx -d "$tgt" 2>/dev/null || true
  next_group
  t "$lifeboat" restore "$work/img/lifeboat.lbi" "$tgt" --yes
}
restore_partclone() {
  restore_table
  next_group
  t dd if="$work/img/partclone.first-mib.bin" of="$tgt" bs=1M count=1 conv=notrunc,fsync \
    status=none
  local i n pc
  for i in "${!parts[@]}"; do
    n=${parts[$i]}
    pc=$(partclone_for "${fstypes[$i]}")
    next_group
    t zstd -dc -q "$work/img/partclone.p$n.pc.zst" | t "$pc" -r -q -s - -o "${tgt}p$n"
  done
  sync
}
restore_dd() {
  partx -d "$tgt" 2>/dev/null || true
  next_group
  t zstd -dc -q "$work/img/dd.img.zst" | t dd of="$tgt" bs=4M iflag=fullblock oflag=direct \
    status=none
}
restore_fsarchiver() {
  restore_table
  local args=() i=0 p
  for p in "${fsa_parts[@]}"; do
    args+=("id=$i,dest=${tgt}${p#"$src"}")
    i=$((i + 1))
  done
  next_group
  t fsarchiver restfs -x -j "$threads" "$work/img/fsarchiver.fsa" "${args[@]}"
  sync
}

if [ "$do_restore" -eq 1 ]; then
  echo "== restore onto a loop device over a preallocated $((disk_bytes / 1048576)) MiB file"
  fallocate -l "$disk_bytes" "$work/target.img"
  tgt=$(losetup -f --show "$work/target.img")
  rtools=(seqwrite)
  [ "$have_lifeboat_restore" -eq 1 ] && rtools+=(lifeboat)
  [ "$have_lifeboat" -eq 1 ] && [ "$have_lifeboat_restore" -eq 0 ] &&
    echo "== SKIP lifeboat restore: '$lifeboat restore --help' fails"
  for tool in partclone dd fsarchiver; do
    case " ${failed[*]:-} " in *" image:$tool "*) continue ;; esac
    case " ${tools[*]} " in *" $tool "*) rtools+=("$tool") ;; esac
  done
  for run in $(seq "$runs"); do
    for tool in "${rtools[@]}"; do
      measure restore "$tool" "$run" "restore_$tool" || failed+=("restore:$tool")
    done
  done
fi

# --- report -----------------------------------------------------------------------------------
mkdir -p "$here/results"
"$python" "$here/report.py" "$records" "$here/results/LATEST.json" \
  --disk "$disk" --disk-bytes "$disk_bytes" --level "$level" --runs "$runs" \
  --threads "$threads" --lifeboat "$lifeboat" --parts "$(
    for i in "${!parts[@]}"; do printf 'p%s:%s ' "${parts[$i]}" "${fstypes[$i]}"; done
  )" --failed "${failed[*]:-}" --fsarchiver-parts "$fsa_cover" \
  --note "${notes[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "run.sh: some runs failed: ${failed[*]} (logs kept in $logs)" >&2
  keep=1
fi

#!/usr/bin/env bash
# Getting data out of an image without restoring it: lifeboat mount against what a partclone
# (Clonezilla) user must do, on the bench disk, side by side in one run.
#
# Usage: sudo bench/access.sh DISK_IMAGE [--runs N] [--work DIR] [--cache-mib N]
#
#   --runs N       timed runs of each measurement; medians are reported (default 5)
#   --work DIR     where the images go (default: a new dir in /var/tmp)
#   --cache-mib N  lifeboat mount's cache of decoded frames (default: lifeboat's, 256)
#   LIFEBOAT       the binary (default target/release/lifeboat)
#
# Setup (untimed): `lifeboat image DISK` (level 3), and for the ext4 partition (p2) the
# partclone image a Clonezilla user has: partclone.ext4 -c | zstd -T0.
#
# Measured, after dropping the page cache before every run:
#   one small file  lifeboat:  mount IMAGE M; cp M/p2/FILE OUT; umount M
#                   partclone: zstd -dc | partclone.ext4 -r -C -O RAW; truncate RAW to the
#                              partition's size; mount -o loop,ro RAW M; cp; umount; rm RAW
#   first ls        from starting `lifeboat mount` to the end of `ls M/p2`
#   sequential      cat M/p2/LARGEST > /dev/null through a fresh mount, MB/s, against
#                   restore's decode rate for the same image: lifeboat restore IMAGE onto a
#                   file in /dev/shm (bytes the image describes / seconds), and verify's
#                   and of the whole ext4 partition's raw file (DIR/raw/p2), more than the cache
#   peak RSS        VmHWM of the mount server after both reads, against its cache
# Results: a Markdown table on stdout, raw numbers in bench/results/access-LATEST.json.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
usage() { sed -n '3,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
disk=$1; shift
runs=5; work=""; cache_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=${2:?}; shift 2 ;;
    --work) work=${2:?}; shift 2 ;;
    --cache-mib) cache_args=(--cache-mib "${2:?}"); shift 2 ;;
    -h | --help) usage ;;
    *) echo "access.sh: unknown argument $1" >&2; usage ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "access.sh: run as root (loop devices, mounts, drop_caches)" >&2; exit 1; }
lb=${LIFEBOAT:-$repo/target/release/lifeboat}
[ -x "$lb" ] || { echo "access.sh: no $lb (cargo build --release)" >&2; exit 1; }
work=${work:-$(mktemp -d /var/tmp/lb-access.XXXXXX)}
mkdir -p "$work"
m=$work/mnt; pm=$work/pmnt; out=$work/out
mkdir -p "$m" "$pm" "$out"
loop=""
cleanup() {
  "$lb" umount "$m" >/dev/null 2>&1 || true
  umount "$pm" 2>/dev/null || true
  [ -n "$loop" ] && { partx -d "$loop" 2>/dev/null || true; losetup -d "$loop" 2>/dev/null || true; }
}
trap cleanup EXIT
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "== setup: images of $disk in $work" >&2
img=$work/disk.lbi
[ -f "$img" ] || "$lb" image "$disk" -o "$img" --level 3 >/dev/null
loop=$(losetup -f --show -r "$disk")
partx -a "$loop"
psize=$(blockdev --getsize64 "${loop}p2")
[ -f "$work/p2.pc.zst" ] || partclone.ext4 -c -s "${loop}p2" -o - 2>/dev/null | zstd -T0 -q -3 > "$work/p2.pc.zst"

# the files: a small one and the largest, found through a first mount
"$lb" mount "$img" "$m" "${cache_args[@]}" >/dev/null
small=$(cd "$m/p2" && find . -type f -size -16k -size +1k | sort | sed -n 1p)
large=$(cd "$m/p2" && find . -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
large_bytes=$(stat -c %s "$m/p2/$large")
cmp "$m/p2/$small" <(mount -o ro "${loop}p2" "$pm" && cat "$pm/$small"; umount "$pm")
"$lb" umount "$m"
echo "== small file: $small; large file: $large ($large_bytes bytes)" >&2

lb_small=(); pc_small=(); first_ls=(); seq_mbs=(); raw_mbs=(); rss=(); restore_mbs=(); verify_mbs=()
raw_bytes=$("$lb" info "$img" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("raw_bytes") or d["chain"][0]["raw_bytes"])')
for r in $(seq 1 "$runs"); do
  echo "== run $r/$runs" >&2
  drop; t0=$(now)
  "$lb" mount "$img" "$m" "${cache_args[@]}" >/dev/null
  cp "$m/p2/$small" "$out/small"
  "$lb" umount "$m"
  lb_small+=("$(echo "$(now) - $t0" | bc)")

  drop; t0=$(now)
  zstd -dc "$work/p2.pc.zst" | partclone.ext4 -r -C -s - -O "$work/p2.raw" >/dev/null 2>&1
  truncate -s "$psize" "$work/p2.raw"
  mount -o loop,ro "$work/p2.raw" "$pm"
  cp "$pm/$small" "$out/small-pc"
  umount "$pm"; rm -f "$work/p2.raw"
  pc_small+=("$(echo "$(now) - $t0" | bc)")
  cmp "$out/small" "$out/small-pc"

  drop; t0=$(now)
  "$lb" mount "$img" "$m" "${cache_args[@]}" >/dev/null
  ls "$m/p2" >/dev/null
  first_ls+=("$(echo "$(now) - $t0" | bc)")
  t0=$(now)
  cat "$m/p2/$large" > /dev/null
  seq_mbs+=("$(echo "$large_bytes / ($(now) - $t0) / 1000000" | bc -l)")
  # then the whole ext4 partition as a file, more than the cache holds
  t0=$(now)
  cat "$m/raw/p2" > /dev/null
  raw_mbs+=("$(echo "$psize / ($(now) - $t0) / 1000000" | bc -l)")
  # the server's pid, from the state file `lifeboat mount` keeps for umount
  pid=$(python3 -c 'import glob, json, sys
for f in glob.glob("/run/lifeboat/mounts/*.json"):
    d = json.load(open(f))
    if d.get("dir") == sys.argv[1]: print(d["pid"])' "$m")
  rss+=("$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)")
  "$lb" umount "$m"

  drop; t0=$(now)
  "$lb" restore "$img" /dev/shm/lb-access-target.img --yes >/dev/null 2>&1
  restore_mbs+=("$(echo "$raw_bytes / ($(now) - $t0) / 1000000" | bc -l)")
  rm -f /dev/shm/lb-access-target.img
  drop; t0=$(now)
  "$lb" verify "$img" >/dev/null 2>&1
  verify_mbs+=("$(echo "$raw_bytes / ($(now) - $t0) / 1000000" | bc -l)")
done

med() { printf '%s\n' "$@" | median; }
list() { printf '%.4f\n' "$@" | paste -sd, -; }
LB=$(med "${lb_small[@]}"); PC=$(med "${pc_small[@]}"); LS=$(med "${first_ls[@]}")
SEQ=$(med "${seq_mbs[@]}"); RAW=$(med "${raw_mbs[@]}"); RES=$(med "${restore_mbs[@]}"); VER=$(med "${verify_mbs[@]}")
RSS=$(med "${rss[@]}")
cache_mib=${cache_args[1]:-256}
printf '\n## Getting data out of an image (%s, medians of %s runs, %s)\n\n' "$(basename "$disk")" "$runs" "$(date -u +%F)"
printf '| measurement | lifeboat | peer | ratio |\n|---|---|---|---|\n'
printf '| one small file (s) | %.2f (mount + cp + umount) | %.2f (zstd -d \\| partclone.ext4 -r, loop mount, cp) | %.1fx faster |\n' "$LB" "$PC" "$(echo "$PC / $LB" | bc -l)"
printf '| mount to first ls (s) | %.2f | | |\n' "$LS"
printf '| sequential read of a %s MB file (MB/s) | %.0f through the mount | %.0f restore decode, %.0f verify | %.0f%% of restore |\n' \
  "$((large_bytes / 1000000))" "$SEQ" "$RES" "$VER" "$(echo "100 * $SEQ / $RES" | bc -l)"
printf '| sequential read of DIR/raw/p2, %s MB (MB/s) | %.0f | %.0f restore decode | %.0f%% of restore |\n' \
  "$((psize / 1000000))" "$RAW" "$RES" "$(echo "100 * $RAW / $RES" | bc -l)"
printf '| peak RSS of the mount server after both reads (MiB) | %.0f | cache limit %s MiB | |\n' "$(echo "$RSS / 1024" | bc -l)" "$cache_mib"
python3 - "$repo/bench/results/access-LATEST.json" <<EOF
import json, sys
json.dump({"disk": "$disk", "runs": $runs, "small_file": "$small", "large_file": "$large",
  "large_bytes": $large_bytes, "lifeboat_small_s": [$(list "${lb_small[@]}")],
  "partclone_small_s": [$(list "${pc_small[@]}")], "first_ls_s": [$(list "${first_ls[@]}")],
  "seq_mb_s": [$(list "${seq_mbs[@]}")], "raw_p2_mb_s": [$(list "${raw_mbs[@]}")], "restore_mb_s": [$(list "${restore_mbs[@]}")],
  "verify_mb_s": [$(list "${verify_mbs[@]}")], "server_vmhwm_kib": [$(list "${rss[@]}")],
  "cache_mib": $cache_mib}, open(sys.argv[1], "w"), indent=1)
EOF

#!/usr/bin/env bash
# Builds a deterministic, realistic multi-partition disk image for bench/run.sh.
#
# Usage: sudo bench/make-disk.sh OUT_FILE [SIZE_MIB]          (default 2048; 512 for quick runs)
#
#   GPT with fixed GUIDs
#   p1  ESP, FAT32, 100 MiB: boot-loader-like binaries, kernel/initrd-like random files, text
#   p2  ext4, 60% of the rest: binaries, text, large random files, many small files, a
#       mostly-zero file, and deleted files whose blocks stay behind as garbage
#   p3  NTFS, the rest: the same mix with Windows-like paths, and deleted files
#
# Each filesystem is filled to about 50-60% (printed at the end). The data comes from
# bench/gen-tree.py with fixed seeds and from host files in sorted order, and UUIDs, serials,
# hash seeds and timestamps are fixed where the tools allow it, so the same host and size give
# the same files in the same places. (NTFS and FAT metadata may still differ in a few bytes.)
set -euo pipefail
export LC_ALL=C

usage() { echo "usage: $0 OUT_FILE [SIZE_MIB]   (SIZE_MIB >= 384, default 2048)" >&2; exit 2; }
if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
out=$1
size_mib=${2:-2048}
case "$size_mib" in '' | *[!0-9]*) usage ;; esac
[ "$size_mib" -ge 384 ] || usage
[ "$(id -u)" -eq 0 ] || { echo "make-disk: needs root (loop devices, mounts)" >&2; exit 1; }
for tool in sgdisk losetup partx mkfs.fat mcopy mdel mkfs.ext4 debugfs e2fsck mkntfs ntfslabel \
  ntfs-3g; do
  command -v "$tool" >/dev/null || {
    echo "make-disk: $tool is missing (bash .ci/install-deps.sh)" >&2
    exit 1
  }
done

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
python=/usr/bin/python3
seed=42
fixed_time=1700000000 # 2023-11-14 22:13:20 UTC

work=$(mktemp -d /tmp/lifeboat-make-disk.XXXXXX)
stage="$work/stage"
mnt="$work/mnt"
loopdev=""
trap 'disk_cleanup make-disk' EXIT
trap 'exit 130' INT TERM

MiB=$((1024 * 1024))
esp_mib=100
rest_mib=$((size_mib - esp_mib - 2)) # 1 MiB before p1, the backup GPT after the last one
ext_mib=$((rest_mib * 60 / 100))

echo "== $out: ${size_mib} MiB disk (ESP ${esp_mib} MiB, ext4 ${ext_mib} MiB, NTFS the rest)"
rm -f "$out"
truncate -s $((size_mib * MiB)) "$out"
sgdisk -Z "$out" >/dev/null 2>&1 || true
sgdisk \
  -U 4C494645-424F-4154-0000-000000000000 \
  -n 1:1M:+${esp_mib}M -t 1:EF00 -c 1:"EFI System" -u 1:4C494645-424F-4154-0000-000000000001 \
  -n 2:0:+${ext_mib}M -t 2:8300 -c 2:"Linux data" -u 2:4C494645-424F-4154-0000-000000000002 \
  -n 3:0:0 -t 3:0700 -c 3:"Windows data" -u 3:4C494645-424F-4154-0000-000000000003 \
  "$out" >/dev/null

# Trees are staged on a private tmpfs: its directory order is the creation order, so
# mkfs.ext4 -d, mcopy -s and cp -r see the files in the same order on every run.
mkdir -p "$stage" "$mnt"
stage_tree() { # stage_tree PROFILE PART_BYTES: fresh tmpfs with the tree in $stage/root
  mountpoint -q "$stage" && umount "$stage"
  mount -t tmpfs -o size=$(($2 * 9 / 10 / MiB + 64))m,mode=0755 lifeboat-stage "$stage"
  "$python" "$here/gen-tree.py" "$stage/root" "$2" "$seed" "$1"
}
part_bytes() { blockdev --getsize64 "$1"; }

# --- p1: ESP (FAT32), written through the image file before any loop device exists ------------
# --invariant fixes the volume ID (1234-ABCD) and boot-sector times.
# (mtools cannot use a loop partition: it wants a disk geometry ioctl; image@@offset works)
# 512-byte clusters: a 100 MiB FAT32 needs >= 65525 clusters (Windows does the same on 512e disks)
echo "== p1: FAT32 ESP"
esp_off=$((1 * MiB))
mkfs.fat -F 32 -s 1 -S 512 -n LIFEBOATESP --invariant --offset $((esp_off / 512)) \
  "$out" $((esp_mib * 1024)) >/dev/null 2>&1
stage_tree esp $((esp_mib * MiB))
export MTOOLS_SKIP_CHECK=1
(shopt -s dotglob && cd "$stage/root" && mcopy -D a -s -m -Q -i "$out@@$esp_off" ./* ::/)
while IFS= read -r rel; do mdel -i "$out@@$esp_off" "::/$rel"; done <"$stage/esp.trash"
fat_free=$(mdir -i "$out@@$esp_off" ::/ | sed -n 's/ bytes free//p' | tr -dc '0-9')

loopdev=$(losetup -f --show "$out")
partx -a "$loopdev"
udevadm settle 2>/dev/null || true
for _ in $(seq 50); do [ -b "${loopdev}p3" ] && break; sleep 0.1; done
[ -b "${loopdev}p3" ] || { echo "make-disk: partx created no partition nodes" >&2; exit 1; }

p1="${loopdev}p1"
fsck.fat -n "$p1" >"$work/fsck.log" 2>&1 || { cat "$work/fsck.log" >&2; exit 1; }

# --- p2: ext4 -------------------------------------------------------------------------------
p2="${loopdev}p2"
echo "== p2: ext4"
stage_tree ext4 "$(part_bytes "$p2")"
E2FSPROGS_FAKE_TIME=$fixed_time mkfs.ext4 -q -F -b 4096 -L lifeboat-data \
  -U 4c494645-424f-4154-0000-0000000000e4 \
  -E hash_seed=4c494645-424f-4154-0000-0000000000a5,lazy_itable_init=0,lazy_journal_init=0 \
  -d "$stage/root" "$p2"
{
  echo "set_current_time $(date -u -d "@$((fixed_time + 86400))" +%Y%m%d%H%M%S)"
  sed 's|^|rm /|' "$stage/ext4.trash"
} >"$work/debugfs.cmds"
E2FSPROGS_FAKE_TIME=$((fixed_time + 86400)) debugfs -w -f "$work/debugfs.cmds" "$p2" >/dev/null 2>&1
E2FSPROGS_FAKE_TIME=$((fixed_time + 86400)) e2fsck -fn "$p2" >"$work/fsck.log" 2>&1 ||
  { cat "$work/fsck.log" >&2; exit 1; }

# --- p3: NTFS -------------------------------------------------------------------------------
p3="${loopdev}p3"
echo "== p3: NTFS"
stage_tree ntfs "$(part_bytes "$p3")"
p3_start=$(cat "/sys/class/block/$(basename "$p3")/start")
mkntfs -Q -T -q -L lifeboat-ntfs -p "$p3_start" -H 255 -S 63 "$p3"
ntfslabel --new-serial=4C49464542544E46 "$p3" >/dev/null 2>&1 || true
ntfs-3g -o big_writes "$p3" "$mnt"
cp -r --preserve=timestamps "$stage/root/." "$mnt/"
while IFS= read -r rel; do rm -f "$mnt/$rel"; done <"$stage/ntfs.trash"
sync
umount "$mnt"
umount "$stage"

# --- summary --------------------------------------------------------------------------------
echo "== fill levels (used / size)"
report() { printf '  %-5s %6d / %6d MiB  (%d%%)\n' "$1" $(($2 / MiB)) $(($3 / MiB)) $(($2 * 100 / $3)); }
fat_size=$(part_bytes "$p1")
report ESP $((fat_size - fat_free)) "$fat_size"
bs=$(dumpe2fs -h "$p2" 2>/dev/null | awk -F: '/^Block size/ {print $2+0}')
blocks=$(dumpe2fs -h "$p2" 2>/dev/null | awk -F: '/^Block count/ {print $2+0}')
free=$(dumpe2fs -h "$p2" 2>/dev/null | awk -F: '/^Free blocks/ {print $2+0}')
report ext4 $(((blocks - free) * bs)) $((blocks * bs))
ntfs-3g -o ro "$p3" "$mnt"
read -r ntfs_size ntfs_avail < <(df -B1 --output=size,avail "$mnt" | tail -1)
umount "$mnt"
report NTFS $((ntfs_size - ntfs_avail)) "$ntfs_size"
echo "== done: $out"

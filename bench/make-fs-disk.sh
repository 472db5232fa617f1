#!/usr/bin/env bash
# Builds a bench disk with one partition of another filesystem, for bench/run.sh.
#
# Usage: sudo bench/make-fs-disk.sh FS OUT_FILE [SIZE_MIB]     (FS: xfs, exfat, btrfs; default 1536 MiB)
#
#   GPT with fixed GUIDs, one partition from 1 MiB to the end, filled from bench/gen-tree.py's
#   "ext4" profile (binaries, text, large random files, many small files, a mostly-zero file)
#   to about 50-60%, then the profile's deleted files removed, so their blocks stay behind
#   as garbage in free space, as on a used disk. exFAT is filled through exfat-fuse (this
#   kernel has no exfat driver), following symlinks (exFAT has none). btrfs is mounted as
#   Fedora mounts it (compress=zstd:1), with DUP metadata (mkfs.btrfs's default).
set -euo pipefail
export LC_ALL=C

usage() { echo "usage: $0 xfs|exfat|btrfs OUT_FILE [SIZE_MIB]   (SIZE_MIB >= 400, default 1536)" >&2; exit 2; }
if [ $# -lt 2 ] || [ $# -gt 3 ]; then usage; fi
fs=$1 out=$2 size_mib=${3:-1536}
case "$fs" in xfs | exfat | btrfs) ;; *) usage ;; esac
case "$size_mib" in '' | *[!0-9]*) usage ;; esac
[ "$size_mib" -ge 400 ] || usage
[ "$(id -u)" -eq 0 ] || { echo "make-fs-disk: needs root (loop devices, mounts)" >&2; exit 1; }
for tool in sgdisk losetup partx mkfs.$fs "$([ "$fs" = btrfs ] && echo btrfs || echo "fsck.$fs")"; do
  command -v "$tool" >/dev/null || {
    echo "make-fs-disk: $tool is missing (bash .ci/install-deps.sh)" >&2
    exit 1
  }
done

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
python=/usr/bin/python3
seed=42
MiB=$((1024 * 1024))
work=$(mktemp -d /tmp/lifeboat-make-fs-disk.XXXXXX)
stage="$work/stage" mnt="$work/mnt" loopdev=""
trap 'disk_cleanup make-fs-disk' EXIT
trap 'exit 130' INT TERM

echo "== $out: ${size_mib} MiB disk, one $fs partition"
rm -f "$out"
truncate -s $((size_mib * MiB)) "$out"
sgdisk -U 4C494645-424F-4154-0000-000000000010 \
  -n 1:1M:0 -t 1:8300 -c 1:"Linux data" -u 1:4C494645-424F-4154-0000-000000000011 \
  "$out" >/dev/null
loopdev=$(losetup -f --show "$out")
partx -a "$loopdev"
udevadm settle 2>/dev/null || true
for _ in $(seq 50); do [ -b "${loopdev}p1" ] && break; sleep 0.1; done
p1="${loopdev}p1"
[ -b "$p1" ] || { echo "make-fs-disk: partx created no partition nodes" >&2; exit 1; }
bytes=$(blockdev --getsize64 "$p1")

mkdir -p "$stage" "$mnt"
mount -t tmpfs -o size=$((bytes * 9 / 10 / MiB + 64))m,mode=0755 lifeboat-stage "$stage"
"$python" "$here/gen-tree.py" "$stage/root" "$bytes" "$seed" ext4
case "$fs" in
  xfs) mkfs.xfs -q -f -L lifeboat-xfs -m uuid=4c494645-424f-4154-0000-0000000000f5 "$p1" ;;
  exfat) mkfs.exfat -c 4K -L LBEXFAT "$p1" >/dev/null ;; # 4 KiB clusters hold the small files
  btrfs) mkfs.btrfs -q -f -L lifeboat-btrfs -U 4c494645-424f-4154-0000-0000000000b7 "$p1" ;;
esac
case "$fs" in
  exfat) mount.exfat-fuse "$p1" "$mnt" ;;
  btrfs) mount -o compress=zstd:1 "$p1" "$mnt" ;;
  *) mount "$p1" "$mnt" ;;
esac
case "$fs" in
  exfat) # names that differ only in case collide on exFAT: the first one stays
    cp -rL "$stage/root/." "$mnt/" 2>"$work/cp.log" || true
    if grep -v 'File exists' "$work/cp.log" >&2; then exit 1; fi ;;
  *) cp -r --preserve=timestamps "$stage/root/." "$mnt/" ;;
esac
sync
while IFS= read -r rel; do rm -f "$mnt/$rel"; done <"$stage/ext4.trash"
read -r size avail < <(df -B1 --output=size,avail "$mnt" | tail -1)
umount "$mnt"
umount "$stage"
case "$fs" in
  xfs) xfs_repair -n "$p1" >"$work/check.log" 2>&1 || { cat "$work/check.log" >&2; exit 1; } ;;
  exfat) fsck.exfat -n "$p1" >"$work/check.log" 2>&1 || { cat "$work/check.log" >&2; exit 1; } ;;
  btrfs) btrfs check --readonly "$p1" >"$work/check.log" 2>&1 || { cat "$work/check.log" >&2; exit 1; } ;;
esac
printf '== %s: %d / %d MiB used (%d%%)\n' "$fs" $(((size - avail) / MiB)) $((size / MiB)) \
  $(((size - avail) * 100 / size))
echo "== done: $out"

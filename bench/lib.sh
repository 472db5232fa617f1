# Shell functions shared by bench scripts; sourced (`. "$here/lib.sh"`), not run.

# disk_cleanup NAME: the EXIT trap of the disk builders (make-disk.sh, make-fs-disk.sh).
# Unmounts $mnt and $stage (lazily when busy), removes the partitions and detaches $loopdev
# when one was attached, deletes $work, and when the script failed says, as NAME, that a
# partial image is left at $out. Exits with the script's exit status.
#   trap 'disk_cleanup make-disk' EXIT
disk_cleanup() {
  local rc=$?
  mountpoint -q "$mnt" 2>/dev/null && { umount "$mnt" || umount -l "$mnt" || true; }
  mountpoint -q "$stage" 2>/dev/null && { umount "$stage" || umount -l "$stage" || true; }
  if [ -n "$loopdev" ]; then
    partx -d "$loopdev" 2>/dev/null || true
    losetup -d "$loopdev" 2>/dev/null || true
  fi
  rm -rf "$work"
  [ "$rc" -eq 0 ] || echo "$1: FAILED (partial image left at $out)" >&2
  exit "$rc"
}

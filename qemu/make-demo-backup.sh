#!/usr/bin/env bash
# Makes the demo's "USB backup drive" without root: an MBR disk with one exFAT partition
# labelled USB-BACKUP, empty, where the menu keeps the images it takes.
# Usage: qemu/make-demo-backup.sh OUT.img [SIZE_MIB]
set -euo pipefail
out=${1:?usage: make-demo-backup.sh OUT.img [SIZE_MIB]}
size_mib=${2:-256}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
truncate -s "${size_mib}M" "$out.tmp"
echo 'start=2048, type=7' | sfdisk -q "$out.tmp"
truncate -s $(( size_mib - 1 ))M "$tmp/part.img"
mkfs.exfat -L USB-BACKUP "$tmp/part.img" >/dev/null
dd if="$tmp/part.img" of="$out.tmp" bs=1M seek=1 conv=notrunc,sparse status=none
mv "$out.tmp" "$out"
echo "backup drive: $out (${size_mib} MiB, MBR: exFAT labelled USB-BACKUP)"

#!/usr/bin/env bash
# Makes a small demo disk without root: GPT, a 32 MiB EFI system partition (FAT32) and an
# ext4 partition, both with files. Usage: qemu/make-demo-disk.sh OUT.img [SIZE_MIB]
set -euo pipefail
out=${1:?usage: make-demo-disk.sh OUT.img [SIZE_MIB]}
size_mib=${2:-128}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
esp_mib=40
ext_mib=$(( size_mib - esp_mib - 2 ))
truncate -s "${size_mib}M" "$out.tmp"
sfdisk -q "$out.tmp" <<EOT
label: gpt
start=1MiB, size=${esp_mib}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI system"
start=$(( 1 + esp_mib ))MiB, size=${ext_mib}MiB, type=0FC63DAF-8483-4772-8E3D-693D47DE4784, name="demo root"
EOT
# ext4 with a little tree of files
mkdir -p "$tmp/root/etc" "$tmp/root/home/demo"
echo "lifeboat-demo" > "$tmp/root/etc/hostname"
for i in $(seq 1 20); do head -c $(( i * 7919 )) /dev/urandom > "$tmp/root/home/demo/file$i.bin"; done
seq 1 50000 > "$tmp/root/home/demo/numbers.txt"
mkfs.ext4 -q -F -L demo-root -d "$tmp/root" "$tmp/ext4.img" "${ext_mib}M" 2>/dev/null
# FAT32 ESP with a file
mkfs.vfat -F 32 -s 1 -n DEMO-ESP -C "$tmp/esp.img" $(( esp_mib * 1024 )) >/dev/null
echo "demo boot loader config" > "$tmp/loader.conf"
mcopy -i "$tmp/esp.img" "$tmp/loader.conf" ::/loader.conf
dd if="$tmp/esp.img" of="$out.tmp" bs=1M seek=1 conv=notrunc status=none
dd if="$tmp/ext4.img" of="$out.tmp" bs=1M seek=$(( 1 + esp_mib )) conv=notrunc status=none
mv "$out.tmp" "$out"
echo "demo disk: $out (${size_mib} MiB, GPT: FAT32 ESP + ext4)"

#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to Lifeboat running in QEMU: installs the
# packages (build.sh and QEMU's), builds the standard ISO (cached after the first time),
# makes a demo disk and boots the ISO with it. Extra arguments go to qemu/run.sh, e.g.
#   sudo qemu/demo.sh --firmware secureboot
# Quit QEMU with Ctrl-A then X.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "qemu/demo.sh: run as root (apt, and mknod for the initramfs)" >&2; exit 1; }
bash .ci/install-deps.sh
./build.sh
echo
echo "Booting out/lifeboat.iso with a demo disk (/dev/sda: GPT, FAT32 + ext4) and a blank"
echo "512 MiB target (/dev/nvme0n1). Lifeboat's console appears on this terminal."
echo "Try: list, then image /dev/sda -o /tmp/demo.lbi, then restore /tmp/demo.lbi /dev/nvme0n1"
echo
exec qemu/run.sh --demo "$@"

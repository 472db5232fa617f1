#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to Lifeboat running in QEMU: installs the
# packages (build.sh and QEMU's), builds the standard ISO (cached after the first time),
# makes the demo's disks and boots the ISO with them. Run it as root (`qemu/demo.sh`), or
# with sudo from another user. Extra arguments go to qemu/run.sh, e.g.
#   qemu/demo.sh --firmware secureboot
# Quit QEMU with Ctrl-A then X.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "qemu/demo.sh: run it as root, or as sudo qemu/demo.sh (it installs packages with apt)" >&2; exit 1; }
bash .ci/install-deps.sh
./build.sh
cat <<'EOT'

Booting out/lifeboat.iso with three disks:
  /dev/sda      the disk to back up (GPT: FAT32 + ext4 with files)
  USB-BACKUP    a USB backup drive (exFAT), empty: the images go there
  /dev/nvme0n1  a blank 512 MiB disk to restore onto
The menu appears on this terminal. Image /dev/sda and restore it, in four steps:
  s  storage: choose USB-BACKUP, Enter
  i  image: choose /dev/sda, Enter, Enter (the file name), Enter (start)
  r  restore: Enter (the image), choose /dev/nvme0n1, g (grow the last partition), Enter,
     type nvme0n1 and Enter to confirm
  v  verify: Enter (the image)
Enter goes back to the menu after each result; p powers off. Quit QEMU with Ctrl-A then X.

EOT
exec qemu/run.sh --demo "$@"

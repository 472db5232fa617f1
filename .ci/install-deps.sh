#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian 12 machine (root required for
# apt). The Rust toolchain, gcc and python3 are assumed present. python3-fusepy is for
# tests/helpers/faultfs.py, which must run under Debian's /usr/bin/python3. grub2-common is
# grub-install and grub-pc-bin (its i386-pc modules), for the BIOS-boot clone test in
# tests/root_clone.rs. grub-common (grub-mkimage), grub-efi-amd64-bin and busybox-static are
# for tests/helpers/boot-fixtures.sh, which builds the boot-test disks without root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: not root; assuming the test tools are installed" >&2
  exit 0
fi
bash "$here/apt.sh" \
  e2fsprogs dosfstools ntfs-3g exfatprogs xfsprogs btrfs-progs cryptsetup-bin lvm2 \
  gdisk fdisk util-linux mount mtools xorriso file kmod udev attr partclone \
  python3-fusepy fuse3 grub2-common grub-pc-bin tmux fusefat exfat-fuse \
  grub-common grub-efi-amd64-bin busybox-static
# image --rescue: its ddrescue mapfiles are checked with ddrescuelog, and bench/ runs ddrescue
bash "$here/apt.sh" gddrescue
# tier 3 (QEMU); build.sh installs its own build tools. procps is /bin/kill, with which
# tests/qemu_e2e.rs stops a QEMU it started (not in a minimal Debian 12: priority important).
bash "$here/apt.sh" qemu-system-x86 ovmf procps
# tests/nbd.rs (qemu-img, qemu-io) and tests/root_nbd.rs (nbd-client, where the kernel has nbd)
bash "$here/apt.sh" qemu-utils nbd-client
# bench/ (not run by CI, but its tools must install cleanly): peers and measurement tools
bash "$here/apt.sh" \
  fsarchiver zstd time openssl bc

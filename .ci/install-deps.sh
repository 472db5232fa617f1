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
# tests/qemu_e2e.rs stops a QEMU it started (not in a minimal Debian 12: priority important);
# cpio puts the network test's credentials file in front of the initramfs
bash "$here/apt.sh" qemu-system-x86 ovmf procps cpio
# tests/nbd.rs (qemu-img, qemu-io) and tests/root_nbd.rs (nbd-client, where the kernel has nbd)
bash "$here/apt.sh" qemu-utils nbd-client
# bench/ (not run by CI, but its tools must install cleanly): peers and measurement tools
bash "$here/apt.sh" \
  fsarchiver zstd time openssl bc
# tests/common/servers.rs and tests/root_servers.rs: real network servers the tests start on
# 127.0.0.1 with their own configs, ports and temp dirs (issue 19): samba (smbd, smbpasswd)
# and smbclient to check it; nfs-ganesha with its VFS backend (an NFSv4 server in user space:
# the host kernel has no nfsd) and libnfs-utils (nfs-ls, a user-space client: no kernel nfs
# either); openssh-server (sshd, ssh-keygen), sshfs (mounts over FUSE) and sshpass (password
# logins); nginx-light (Range requests and TLS; python's http.server has no Range), curl and
# openssl (the test CA). None of the tests uses a system service: where there is no
# policy-rc.d, one refusing every start is in place while they install, so the postinsts do
# not leave smbd, nmbd, sshd, nginx or ganesha listening on public addresses.
server_pkgs=(samba smbclient nfs-ganesha nfs-ganesha-vfs libnfs-utils openssh-server
  openssh-client sshfs sshpass nginx-light curl openssl)
if [ -e /usr/sbin/policy-rc.d ]; then
  bash "$here/apt.sh" "${server_pkgs[@]}"
else
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  bash "$here/apt.sh" "${server_pkgs[@]}"
  rm -f /usr/sbin/policy-rc.d
  trap - EXIT
fi

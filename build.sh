#!/usr/bin/env bash
# Builds the Lifeboat rescue ISO. Run ./build.sh --help for the options.
set -euo pipefail
cd "$(dirname "$0")"
root=$(pwd)

usage() {
  cat <<'EOF'
Usage: ./build.sh [--flavour standard|mini|all] [--out DIR] [--cache DIR] [--no-deps]

Builds the static lifeboat binary, a kernel, an initramfs and a hybrid ISO that boots from
CD or USB stick under BIOS and UEFI.

Flavours:
  standard  (default) Debian's signed kernel with the module closure listed in
            kernel-config/standard.modules, Debian's signed shim and GRUB: Secure Boot works.
            NTFS stores are written through ntfs-3g (both flavours carry it).
            Output: out/lifeboat.iso (and out/standard/{vmlinuz,initrd.zst})
  mini      a kernel built from Debian's linux-source with tinyconfig plus
            kernel-config/mini.config: everything built in, no modules, smallest ISO and
            fastest boot. Boots with Secure Boot off only (the kernel is not signed).
            Output: out/lifeboat-mini.iso (and out/mini/{bzImage,initrd.zst})
  all       both.

Options:
  --out DIR     where the ISOs go (default: ./out)
  --cache DIR   downloaded .debs and kernel builds, keyed on their inputs
                (default: $LIFEBOAT_CACHE or /var/cache/lifeboat-build)
  --no-deps     do not run apt (the build tools are already installed)
  -h, --help    this text

Needs root for apt and for the /dev/console node in the initramfs. The first mini build
compiles a kernel (about 6 minutes on 2 cores); later builds reuse it from the cache.
EOF
}

flavour=standard
out=$root/out
cache=${LIFEBOAT_CACHE:-/var/cache/lifeboat-build}
deps=1
while [ $# -gt 0 ]; do
  case "$1" in
    --flavour|--flavor) flavour=${2:?--flavour needs a value}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --cache) cache=${2:?--cache needs a directory}; shift 2 ;;
    --no-deps) deps=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$flavour" in
  standard|mini) flavours=("$flavour") ;;
  all) flavours=(standard mini) ;;
  *) echo "build.sh: unknown flavour '$flavour': use standard, mini or all" >&2; exit 2 ;;
esac
mkdir -p "$out" "$cache/debs"
log() { echo "build: $*"; }

# ---- build tools -------------------------------------------------------------------------
if [ "$deps" = 1 ]; then
  [ "$(id -u)" -eq 0 ] || { echo "build.sh: run as root (apt and mknod), or pass --no-deps" >&2; exit 1; }
  bash .ci/apt.sh xorriso mtools grub-common grub-pc-bin grub-efi-amd64-bin cpio zstd kmod \
    file ntfs-3g e2fsprogs util-linux dosfstools bc bison flex libelf-dev libssl-dev make gcc xz-utils \
    sshfs openssh-client
fi

# ---- Debian packages we take files from (never installed on the host) -------------------
kernel_version=$(cat kernel-config/debian-kernel)       # e.g. 6.1.0-56-amd64
# fetch PKG: downloads the candidate .deb once into the cache and unpacks it; prints the dir
fetch() {
  local pkg=$1 ver deb dir
  ver=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
  if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    ver=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
  fi
  [ -n "$ver" ] && [ "$ver" != "(none)" ] || { echo "build.sh: no Debian package $pkg" >&2; exit 1; }
  dir="$cache/unpacked/${pkg}_${ver//:/%3a}"
  if [ ! -e "$dir/.done" ]; then
    deb=$(ls "$cache/debs/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -n1 || true)
    if [ -z "$deb" ]; then
      (cd "$cache/debs" && apt-get download "$pkg=$ver" >&2 2>/dev/null || apt-get download "$pkg=$ver" >&2)
      deb=$(ls "$cache/debs/${pkg}_${ver//:/%3a}_"*.deb | head -n1)
    fi
    rm -rf "$dir"; mkdir -p "$dir"
    dpkg-deb -x "$deb" "$dir"
    touch "$dir/.done"
  fi
  echo "$dir"
}

# ---- the static binary ----------------------------------------------------------------------
log "static lifeboat binary"
bash scripts/build-static.sh >&2
lifeboat_bin=$root/target/x86_64-unknown-linux-gnu/release/lifeboat

# ---- mini kernel ------------------------------------------------------------------------------
# The fragment's trailing "# reason" comments are stripped before Kconfig sees it.
clean_fragment() { sed -e 's/[[:space:]]*#.*$//' -e '/^$/d' kernel-config/mini.config; }
build_mini_kernel() {
  local srcdir tarball key kdir
  srcdir=$(fetch linux-source-6.1)
  tarball=$(ls "$srcdir"/usr/src/linux-source-*.tar.xz | head -n1)
  key=$( { basename "$tarball"; clean_fragment; sed -n '/^build_mini_kernel/,/^}/p' "$0"; } | sha256sum | cut -c1-16)
  kdir="$cache/kernel-mini-$key"
  if [ -e "$kdir/bzImage" ]; then
    log "mini kernel: cached ($kdir)" >&2
    echo "$kdir"; return
  fi
  log "mini kernel: building from $(basename "$tarball") (cache key $key)" >&2
  rm -rf "$kdir.build"; mkdir -p "$kdir.build"
  tar -C "$kdir.build" -xJf "$tarball" --strip-components=1
  clean_fragment > "$kdir.build/lifeboat.fragment"
  (
    cd "$kdir.build"
    make -s tinyconfig >&2
    scripts/kconfig/merge_config.sh -m .config lifeboat.fragment >&2
    make -s olddefconfig >&2
    # merge_config.sh drops options with unmet dependencies silently: check every one.
    missing=0
    while IFS= read -r line; do
      if ! grep -qxF "$line" .config; then
        echo "build.sh: mini kernel option '$line' is not in the final .config (unmet dependency?)" >&2
        missing=1
      fi
    done < lifeboat.fragment
    [ "$missing" = 0 ] || exit 1
    make -s -j"$(nproc)" bzImage >&2
  )
  mkdir -p "$kdir"
  cp "$kdir.build/arch/x86/boot/bzImage" "$kdir.build/.config" "$kdir/"
  rm -rf "$kdir.build"
  echo "$kdir"
}


# ---- standard kernel: Debian's signed kernel and a module closure ---------------------------
# Prints the directory holding vmlinuz and lib/modules/VERSION (closure, depmod-ed).
standard_kernel() {
  local kpkg key kdir full
  kpkg=$(fetch "linux-image-$kernel_version")
  key=$( { echo "$kpkg"; cat kernel-config/standard.modules; sed -n '/^standard_kernel/,/^}/p' "$0"; cat scripts/module-closure.py; } | sha256sum | cut -c1-16)
  kdir="$cache/kernel-standard-$key"
  if [ -e "$kdir/.done" ]; then echo "$kdir"; return; fi
  log "standard kernel: module closure for $kernel_version" >&2
  rm -rf "$kdir" "$kdir.full"; mkdir -p "$kdir.full/lib/modules" "$kdir/lib/modules/$kernel_version"
  cp -al "$kpkg/lib/modules/$kernel_version" "$kdir.full/lib/modules/"
  depmod -b "$kdir.full" "$kernel_version"
  full="$kdir.full/lib/modules/$kernel_version"
  /usr/bin/python3 scripts/module-closure.py "$full" kernel-config/standard.modules \
    > "$kdir/modules.list"
  (cd "$full" && xargs -a "$kdir/modules.list" cp --parents -t "$kdir/lib/modules/$kernel_version")
  cp "$full"/modules.builtin "$full"/modules.builtin.modinfo "$full"/modules.order \
    "$kdir/lib/modules/$kernel_version/"
  depmod -b "$kdir" "$kernel_version"
  cp "$kpkg/boot/vmlinuz-$kernel_version" "$kdir/vmlinuz"
  rm -rf "$kdir.full"
  touch "$kdir/.done"
  echo "$kdir"
}

# ---- initramfs ------------------------------------------------------------------------------
# make_initramfs FLAVOUR BUILD_ID OUTFILE [MODULES_ROOT]
make_initramfs() {
  local flavour=$1 build_id=$2 outfile=$3 modroot=${4:-} st bb
  st=$(mktemp -d "$cache/initramfs.XXXXXX")
  mkdir -p "$st"/{bin,sbin,dev,proc,sys,run,tmp,store,root,etc,usr/bin,usr/sbin,lib,lib64}
  install -m 0755 "$lifeboat_bin" "$st/init"
  ln -s /init "$st/bin/lifeboat"
  ln -s /init "$st/sbin/modprobe"          # the kernel's module requests
  mknod -m 600 "$st/dev/console" c 5 1     # the kernel opens it for PID 1 before /dev exists
  mknod -m 666 "$st/dev/null" c 1 3
  bb=$(fetch busybox-static)
  install -m 0755 "$bb/bin/busybox" "$st/bin/busybox"
  # a shell and the usual tools, except the ones lifeboat provides
  for applet in $("$bb/bin/busybox" --list); do
    case "$applet" in busybox|init|modprobe|depmod|linuxrc) continue ;; esac
    [ -e "$st/bin/$applet" ] || ln -s busybox "$st/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\n' > "$st/etc/passwd"
  printf 'root:x:0:\ntty:x:5:\ndisk:x:6:\n' > "$st/etc/group"
  ln -s /proc/self/mounts "$st/etc/mtab"
  printf '127.0.0.1 localhost\n' > "$st/etc/hosts"
  # DHCP (src/net/dhcp.rs): busybox udhcpc runs its default script for every lease event,
  # and that script is lifeboat, which applies the lease and records it under
  # /run/lifeboat/net; a plain `udhcpc -i eth0` in the shell works the same way
  mkdir -p "$st/etc/udhcpc"
  ln -s /init "$st/etc/udhcpc/default.script"
  # PID 1 finds its boot medium by this ID, which is also the ISO's /.disk/info
  echo "$build_id" > "$st/etc/lifeboat-build"
  if [ -n "$modroot" ]; then
    mkdir -p "$st/lib/modules"
    cp -a "$modroot/lib/modules/$kernel_version" "$st/lib/modules/"
  fi
  # NTFS stores are written through ntfs-3g in both flavours: Debian's kernel has no NTFS
  # driver, and the mini kernel's ntfs3 (6.1) fails "no free space to extend mft" on freshly
  # formatted volumes
  copy_with_libs "$st" /usr/bin/ntfs-3g
  ln -s /usr/bin/ntfs-3g "$st/sbin/mount.ntfs-3g"
  # `restore|clone --grow-last` grows the last filesystem with Debian's own tools
  # (src/resize/mod.rs): e2fsck + resize2fs for ext2/3/4, ntfsresize for NTFS; FAT is grown
  # by lifeboat itself; losetup reaches a partition inside a disk-image file target
  for tool in /usr/sbin/e2fsck /usr/sbin/resize2fs /usr/sbin/ntfsresize /usr/sbin/losetup; do
    copy_with_libs "$st" "$tool"
  done
  # sftp:// stores are mounted with sshfs over OpenSSH's client (src/store/net.rs); ssh-keyscan
  # and ssh-keygen show an unknown server's key fingerprint before it is trusted. Standard
  # flavour only: with OpenSSL, Kerberos and GLib they add 3.5 MB (zstd) and the mini ISO
  # would pass its 12 MB target; mini has SMB and NFS, which are in its kernel
  if [ "$flavour" = standard ]; then
    for tool in /usr/bin/sshfs /usr/bin/ssh /usr/bin/ssh-keyscan /usr/bin/ssh-keygen; do
      copy_with_libs "$st" "$tool"
    done
  fi
  (cd "$st" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
    cpio --null -o -H newc --reproducible -R 0:0 --quiet) | zstd -q -19 -T0 > "$outfile"
  rm -rf "$st"
}

# copy_with_libs ROOT BINARY: the binary and the shared libraries ldd says it loads
copy_with_libs() {
  local root=$1 bin=$2 lib
  install -D -m 0755 "$bin" "$root$bin"
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    [ -e "$root$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
}

# ---- ISO ----------------------------------------------------------------------------------------
grub_cfg() {
  cat <<'EOF_CFG'
# Lifeboat boot menu (BIOS and UEFI). The default entry shows Lifeboat on the screen; the
# serial entry puts it on ttyS0 at 115200 baud. Press e on an entry to edit its options:
# docs/BOOT.md lists the lifeboat.* words.
set timeout=2
set default=0
if [ "$grub_platform" = "efi" ]; then
  insmod efi_gop
  insmod efi_uga
fi
if serial --unit=0 --speed=115200; then
  terminal_input console serial
  terminal_output console serial
fi
menuentry "Lifeboat" --hotkey=l {
  linux /boot/vmlinuz console=ttyS0,115200 console=tty0 quiet
  initrd /boot/initrd.zst
}
menuentry "Lifeboat on the serial console (ttyS0, 115200 baud)" --hotkey=s {
  linux /boot/vmlinuz console=tty0 console=ttyS0,115200
  initrd /boot/initrd.zst
}
menuentry "Lifeboat unattended: image /dev/sda to the drive labelled LIFEBOAT, then power off" --hotkey=u {
  linux /boot/vmlinuz console=ttyS0,115200 console=tty0 lifeboat.store=LABEL=LIFEBOAT lifeboat.run="image /dev/sda -o /store/sda.lbi" lifeboat.then=poweroff
  initrd /boot/initrd.zst
}
menuentry "Reboot" --hotkey=r {
  reboot
}
menuentry "Power off" --hotkey=p {
  halt
}
EOF_CFG
}

# Where GRUB finds its root, embedded in our own GRUB images (Debian's signed GRUB has the
# same logic built in, looking for /.disk/info).
grub_early_cfg() {
  cat <<'EOF_CFG'
search --no-floppy --file --set=root /.disk/info
set prefix=($root)/boot/grub
EOF_CFG
}

GRUB_MODULES="normal configfile linux echo test search search_fs_file iso9660 part_msdos part_gpt fat serial terminal ls cat halt reboot sleep video gfxterm"

# make_iso FLAVOUR BUILD_ID KERNEL INITRD OUT.iso
make_iso() {
  local flavour=$1 build_id=$2 kernel=$3 initrd=$4 iso=$5 work esp
  work=$(mktemp -d "$cache/iso.XXXXXX")
  mkdir -p "$work/root/boot/grub" "$work/root/.disk" "$work/esp/EFI/BOOT"
  cp "$kernel" "$work/root/boot/vmlinuz"
  cp "$initrd" "$work/root/boot/initrd.zst"
  grub_cfg > "$work/root/boot/grub/grub.cfg"
  echo "$build_id" > "$work/root/.disk/info"
  grub_early_cfg > "$work/early.cfg"
  # BIOS: an El Torito GRUB core with everything built in
  grub-mkimage -O i386-pc-eltorito -c "$work/early.cfg" -p /boot/grub \
    -o "$work/root/boot/grub/bios.img" biosdisk $GRUB_MODULES vga vbe
  # UEFI: the ESP, as a FAT image appended to the ISO (GPT partition 2, El Torito alt boot)
  if [ "$flavour" = standard ]; then
    local shim grubs
    shim=$(fetch shim-signed); grubs=$(fetch grub-efi-amd64-signed)
    local helpers; helpers=$(fetch shim-helpers-amd64-signed)
    cp "$shim/usr/lib/shim/shimx64.efi.signed" "$work/esp/EFI/BOOT/BOOTX64.EFI"
    cp "$grubs/usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed" "$work/esp/EFI/BOOT/grubx64.efi"
    cp "$helpers/usr/lib/shim/mmx64.efi.signed" "$work/esp/EFI/BOOT/mmx64.efi"
  else
    grub-mkimage -O x86_64-efi -c "$work/early.cfg" -p /boot/grub \
      -o "$work/esp/EFI/BOOT/BOOTX64.EFI" $GRUB_MODULES efi_gop efi_uga
  fi
  esp="$work/efi.img"
  local kib=$(( $(du -sk "$work/esp" | cut -f1) + 256 ))
  mkfs.vfat -C -n LIFEBOATEFI "$esp" "$kib" >/dev/null
  mcopy -s -i "$esp" "$work/esp/EFI" ::/
  xorriso -as mkisofs -quiet -r -J -V LIFEBOAT -o "$iso.tmp" \
    --grub2-mbr /usr/lib/grub/i386-pc/boot_hybrid.img -partition_offset 16 --mbr-force-bootable \
    -append_partition 2 0xef "$esp" -appended_part_as_gpt \
    -c /boot/boot.cat \
    -b /boot/grub/bios.img -no-emul-boot -boot-load-size 4 -boot-info-table --grub2-boot-info \
    -eltorito-alt-boot -e --interval:appended_partition_2:all:: -no-emul-boot \
    "$work/root"
  mv "$iso.tmp" "$iso"
  rm -rf "$work"
}

lifeboat_version() { grep -m1 '^version' Cargo.toml | cut -d'"' -f2; }

# ---- the flavours ---------------------------------------------------------------------------------
for f in "${flavours[@]}"; do
  mkdir -p "$out/$f"
  build_id="Lifeboat $(lifeboat_version) $f $(date -u +%Y%m%dT%H%M%SZ) $(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  if [ "$f" = standard ]; then
    kdir=$(standard_kernel)
    cp "$kdir/vmlinuz" "$out/$f/vmlinuz"
    log "standard initramfs"
    make_initramfs standard "$build_id" "$out/$f/initrd.zst" "$kdir"
    iso=$out/lifeboat.iso
  else
    kdir=$(build_mini_kernel)
    cp "$kdir/bzImage" "$out/$f/vmlinuz"
    log "mini initramfs"
    make_initramfs mini "$build_id" "$out/$f/initrd.zst"
    iso=$out/lifeboat-mini.iso
  fi
  log "$f ISO"
  make_iso "$f" "$build_id" "$out/$f/vmlinuz" "$out/$f/initrd.zst" "$iso"
  log "$iso: $(stat -c %s "$iso") bytes (kernel $(stat -c %s "$out/$f/vmlinuz"), initramfs $(stat -c %s "$out/$f/initrd.zst"))"
done

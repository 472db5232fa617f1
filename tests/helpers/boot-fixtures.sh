#!/usr/bin/env bash
# boot-fixtures.sh KERNEL OUTDIR: builds the bootable (and deliberately broken) disk images that
# `lifeboat boot-test` is tested against, without root, loop devices or mounts.
#
# KERNEL is a bzImage with AHCI/virtio/NVMe, ext4, the serial console and the EFI stub built in
# (the tests pass out/mini/vmlinuz). The userland is /bin/busybox from Debian's busybox-static.
# Every image is a sparse raw file of a few tens of MiB, so QEMU under TCG boots it in seconds.
#
# The fixtures (OUTDIR/NAME.img):
#   good-gpt     GPT: p1 BIOS-boot (EF02) holding GRUB's i386-pc core.img, p2 ESP (FAT, EF00)
#                with EFI/BOOT/BOOTX64.EFI (GRUB x86_64-efi), p3 ext4 root (8300). Sector 0 is
#                GRUB's boot.img over the protective MBR. Boots under SeaBIOS and OVMF to
#                "fixture login:" on the serial console.
#   good-mbr     MBR: p1 bootable ext4 root at 1 MiB, core.img in the post-MBR gap (LBA 1..),
#                boot.img in sector 0. BIOS only.
#   wiped        good-gpt with sector 0's boot code (bytes 0..439) and the BIOS-boot partition
#                zeroed and BOOTX64.EFI deleted. OVMF finds no loader and starts its UEFI shell;
#                SeaBIOS sees the intact 0x55aa signature, jumps into the zeros and the screen
#                stays on "Booting from Hard Disk...".
#   no-signature wiped with the 0x55aa signature cleared too: SeaBIOS prints "No bootable
#                device." (screen and debug console). Linux ignores the GPT (invalid protective
#                MBR), so this one is for the firmware's no-boot-device sign only.
#   no-kernel    good-gpt without /boot/vmlinuz: GRUB runs, fails to load the kernel, prints
#                the error and "fixture: cannot boot, GRUB stops here", and sleeps (screen still).
#   panic        good-gpt whose GRUB passes root=/dev/sda9: the kernel loads and panics with
#                "VFS: Unable to mount root fs", then hangs (no panic= on the command line).
#   reboot-loop  good-gpt whose /sbin/init runs `reboot -f` at once: the machine reboots forever.
# Boot them with -nic none: otherwise both firmwares go on to PXE boot from the default NIC.
# OUTDIR/layout.json lists every fixture's partitions (number, start and size in bytes, type,
# filesystem), which partition is root/ESP/BIOS-boot, the files of interest and the verdict a
# boot test must reach.
#
# How it is built: each filesystem is made in its own file (mkfs.ext4 -d from a staged
# directory, with /dev/console added by debugfs; mkfs.vfat + mmd/mcopy), then dd'ed into the
# disk at its partition's offset; sgdisk/sfdisk write the partition tables. GRUB's BIOS boot
# chain is installed by hand, as grub-bios-setup would: boot.img's code goes into bytes 0..439
# of sector 0 (the partition table and disk signature stay), its kernel-sector field (0x5c)
# points at core.img's first sector, its boot-drive check (0x66) is nopped so the drive the
# BIOS passes in DL is used (boot drive 0x64 stays 0xff), and the first blocklist at the end of
# core.img's first sector (diskboot.img: start at 0x1f4, length at 0x1fc, filled in by
# grub-mkimage) points at the sector after it. Both GRUBs carry an embedded config (-c) that
# finds the root filesystem by UUID and boots /boot/vmlinuz with root=PARTUUID=..., so the
# fixtures boot on AHCI, virtio and NVMe alike. The init is a `#!/bin/sh` script (busybox sh).
#
# Tools: sgdisk (gdisk), sfdisk (fdisk), mkfs.ext4 and debugfs (e2fsprogs), mkfs.vfat
# (dosfstools), mtools, grub-mkimage (grub2-common) with grub-pc-bin and grub-efi-amd64-bin,
# busybox-static, python3. Idempotent: every image is rebuilt from scratch and renamed into place.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 KERNEL OUTDIR" >&2
  exit 2
fi
kernel=$1
out=$2
[ -r "$kernel" ] || { echo "boot-fixtures: cannot read kernel $kernel" >&2; exit 1; }
busybox=/bin/busybox
grub_pc=/usr/lib/grub/i386-pc
grub_efi=/usr/lib/grub/x86_64-efi
for f in "$busybox" "$grub_pc/boot.img" "$grub_pc/diskboot.img" "$grub_efi/linux.mod"; do
  [ -r "$f" ] || { echo "boot-fixtures: missing $f (run .ci/install-deps.sh)" >&2; exit 1; }
done
PATH=$PATH:/usr/sbin:/sbin
mkdir -p "$out"
work=$(mktemp -d "$out/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

MiB=1048576
# Fixed identifiers, so the images (and layout.json) are the same on every run.
root_uuid=5b1e6c1a-0f1c-4f6e-9d6a-6c6966656230
gpt_disk_guid=6c696665-626f-4174-a000-000000000001
gpt_root_partuuid=6c696665-626f-4174-a000-000000000103
mbr_disk_id=0x6c696665
mbr_root_partuuid=6c696665-01
esp_volid=4c494645
export E2FSPROGS_FAKE_TIME=1700000000

# stage_root DIR INIT_KIND WITH_KERNEL: the root filesystem's tree.
#   INIT_KIND: up (mount, write /var/booted, print the login prompt, wait) or reboot.
stage_root() {
  local dir=$1 init_kind=$2 with_kernel=$3 applet
  mkdir -p "$dir"/{bin,sbin,usr/bin,usr/sbin,boot,dev,proc,sys,tmp,etc,var,root}
  cp "$busybox" "$dir/bin/busybox"
  # Every applet as a symlink to /bin/busybox, at the path busybox itself lists.
  while read -r applet; do
    [ "$applet" = bin/busybox ] && continue
    ln -sf "$(realpath -m --relative-to="$dir/$(dirname "$applet")" "$dir/bin/busybox")" \
      "$dir/$applet"
  done < <("$busybox" --list-full)
  [ "$with_kernel" = yes ] && cp "$kernel" "$dir/boot/vmlinuz"
  echo fixture >"$dir/etc/hostname"
  echo 'root::0:0:root:/root:/bin/sh' >"$dir/etc/passwd"
  echo 'root:x:0:' >"$dir/etc/group"
  # busybox lists sbin/init as an applet: drop that symlink, or the script would overwrite
  # /bin/busybox through it.
  rm -f "$dir/sbin/init"
  case $init_kind in
    up)
      cat >"$dir/sbin/init" <<'EOF'
#!/bin/sh
# Fixture init: mount what the kernel does not (DEVTMPFS_MOUNT is off), make / writable, leave
# evidence of the boot on disk, show a login prompt on the serial console and the screen, wait.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -o remount,rw /
hostname fixture
if date >/var/booted && sync; then
  echo "fixture: userland up, wrote /var/booted"
else
  echo "fixture: userland up, but writing /var/booted failed"
fi
while :; do
  for t in /dev/ttyS0 /dev/tty0; do
    printf '\nfixture login: ' >"$t" 2>/dev/null
  done
  sleep 3600
done
EOF
      ;;
    reboot)
      cat >"$dir/sbin/init" <<'EOF'
#!/bin/sh
# Fixture init that reboots at once, so the machine boots in a loop.
echo "fixture: rebooting"
/bin/busybox reboot -f
EOF
      ;;
  esac
  chmod 755 "$dir/sbin/init"
}

# make_ext4 DIR FILE SIZE_MIB: an ext4 filesystem populated from DIR, with /dev/console and
# /dev/null as device nodes (debugfs writes them; mknod would need root).
make_ext4() {
  local dir=$1 file=$2 size=$3
  rm -f "$file"
  mkfs.ext4 -q -F -L fixture-root -U "$root_uuid" -E root_owner=0:0 -d "$dir" "$file" "${size}M" \
    >/dev/null
  debugfs -w -f - "$file" >/dev/null 2>&1 <<'EOF'
cd /dev
mknod console c 5 1
sif console mode 020600
mknod null c 1 3
sif null mode 020666
EOF
  # debugfs gives up silently; prove the nodes are there.
  debugfs -R 'stat /dev/console' "$file" 2>/dev/null | grep -q 'Mode:  0600' ||
    { echo "boot-fixtures: debugfs did not create /dev/console" >&2; exit 1; }
}

# grub_config ROOT_ARG: the embedded config both GRUBs run. When `linux` or `boot` fails, the
# errors stay on screen and GRUB sleeps (68 years): i386-pc's linux.mod pulls in normal.mod,
# whose prompt would clear the screen, and x86_64-efi would drop to "grub rescue>".
grub_config() {
  cat <<EOF
echo "fixture: GRUB started"
search --no-floppy --fs-uuid --set=root $root_uuid
echo "fixture: loading /boot/vmlinuz"
linux /boot/vmlinuz root=$1 rw console=tty0 console=ttyS0,115200
boot
echo "fixture: cannot boot, GRUB stops here"
sleep 2000000000
EOF
}

# grub_bios CFG OUT: GRUB's i386-pc core.img with CFG embedded; output on screen and serial.
grub_bios() {
  local cfg=$1 img=$2 full=$work/bios.cfg
  { printf 'serial --unit=0 --speed=115200\nterminal_input console serial\n'
    printf 'terminal_output console serial\n'; cat "$cfg"; } >"$full"
  grub-mkimage -O i386-pc -d "$grub_pc" -o "$img" -c "$full" -p /boot/grub \
    biosdisk part_gpt part_msdos ext2 search search_fs_uuid linux boot echo sleep serial terminal
}

# grub_efi CFG OUT: GRUB's x86_64-efi image with CFG embedded (OVMF mirrors it on serial).
grub_efi() {
  grub-mkimage -O x86_64-efi -d "$grub_efi" -o "$2" -c "$1" -p /EFI/BOOT \
    part_gpt part_msdos fat ext2 search search_fs_uuid linux boot echo sleep efi_gop
}

# install_bios_boot DISK CORE LBA: boot.img into sector 0 (keeping bytes 440..511, the disk
# signature and partition table) pointing at CORE written at LBA, CORE's blocklist patched.
install_bios_boot() {
  python3 - "$1" "$2" "$3" "$grub_pc/boot.img" <<'EOF'
import struct, sys
disk, core_path, lba, boot_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
boot = bytearray(open(boot_path, "rb").read())
core = bytearray(open(core_path, "rb").read())
assert len(boot) == 512 and len(core) >= 1024
struct.pack_into("<Q", boot, 0x5c, lba)        # GRUB_BOOT_MACHINE_KERNEL_SECTOR
assert boot[0x64] == 0xff                      # boot drive: the one the BIOS passes in DL
assert boot[0x66] == 0xeb                      # drive check jump: nop it, as grub-bios-setup
boot[0x66:0x68] = b"\x90\x90"                  # does for hard disks
start, length, seg = struct.unpack_from("<QHH", core, 0x1f4)
sectors = (len(core) + 511) // 512
assert length == sectors - 1 and seg == 0x820, (start, length, seg)
struct.pack_into("<Q", core, 0x1f4, lba + 1)  # the rest of core.img follows its first sector
core += bytes(sectors * 512 - len(core))
with open(disk, "r+b") as f:
    f.seek(0)
    f.write(boot[:440])
    f.seek(lba * 512)
    f.write(core)
EOF
}

# place DISK FILE BYTE_OFFSET: copy a filesystem file into the disk without truncating it.
place() {
  dd if="$2" of="$1" bs=1M seek="$(($3 / MiB))" conv=notrunc,sparse status=none
}

# GPT layout (MiB): p1 BIOS-boot 1..2, p2 ESP 2..10, p3 root 10..34, disk 35 MiB.
gpt_bios_start=1 gpt_bios_size=1 gpt_esp_start=2 gpt_esp_size=8 gpt_root_start=10
gpt_root_size=24 gpt_disk_size=35
# MBR layout (MiB): p1 root 1..25, disk 25 MiB.
mbr_root_start=1 mbr_root_size=24 mbr_disk_size=25

# make_esp DIR: DIR/esp.fat, the ESP holding DIR/bootx64.efi as the fallback loader.
make_esp() {
  local d=$1
  rm -f "$d/esp.fat"
  mkfs.vfat -n ESP -i "$esp_volid" -C "$d/esp.fat" $((gpt_esp_size * 1024)) >/dev/null
  mmd -i "$d/esp.fat" ::EFI ::EFI/BOOT
  mcopy -i "$d/esp.fat" "$d/bootx64.efi" ::EFI/BOOT/BOOTX64.EFI
}

# build_gpt NAME INIT_KIND WITH_KERNEL ROOT_ARG
build_gpt() {
  local name=$1 init_kind=$2 with_kernel=$3 root_arg=$4 d=$work/$1
  mkdir -p "$d"
  stage_root "$d/root" "$init_kind" "$with_kernel"
  make_ext4 "$d/root" "$d/root.ext4" "$gpt_root_size"
  grub_config "$root_arg" >"$d/grub.cfg"
  grub_bios "$d/grub.cfg" "$d/core.img"
  grub_efi "$d/grub.cfg" "$d/bootx64.efi"
  make_esp "$d"
  local disk=$d/disk.img
  rm -f "$disk"
  truncate -s $((gpt_disk_size * MiB)) "$disk"
  sgdisk -U "$gpt_disk_guid" \
    -n 1:$((gpt_bios_start * 2048)):+${gpt_bios_size}M -t 1:EF02 -c 1:bios-boot \
    -u 1:6c696665-626f-4174-a000-000000000101 \
    -n 2:$((gpt_esp_start * 2048)):+${gpt_esp_size}M -t 2:EF00 -c 2:esp \
    -u 2:6c696665-626f-4174-a000-000000000102 \
    -n 3:$((gpt_root_start * 2048)):+${gpt_root_size}M -t 3:8300 -c 3:root \
    -u 3:"$gpt_root_partuuid" "$disk" >/dev/null
  place "$disk" "$d/esp.fat" $((gpt_esp_start * MiB))
  place "$disk" "$d/root.ext4" $((gpt_root_start * MiB))
  install_bios_boot "$disk" "$d/core.img" $((gpt_bios_start * 2048))
  mv -f "$disk" "$out/$name.img"
}

# build_mbr NAME: the BIOS-only MBR disk.
build_mbr() {
  local name=$1 d=$work/$1
  mkdir -p "$d"
  stage_root "$d/root" up yes
  make_ext4 "$d/root" "$d/root.ext4" "$mbr_root_size"
  grub_config "PARTUUID=$mbr_root_partuuid" >"$d/grub.cfg"
  grub_bios "$d/grub.cfg" "$d/core.img"
  local sectors
  sectors=$(( ($(stat -c %s "$d/core.img") + 511) / 512 ))
  [ $((1 + sectors)) -le $((mbr_root_start * 2048)) ] ||
    { echo "boot-fixtures: core.img ($sectors sectors) does not fit the MBR gap" >&2; exit 1; }
  local disk=$d/disk.img
  rm -f "$disk"
  truncate -s $((mbr_disk_size * MiB)) "$disk"
  printf 'label: dos\nlabel-id: %s\nstart=%d, size=%d, type=83, bootable\n' "$mbr_disk_id" \
    $((mbr_root_start * 2048)) $((mbr_root_size * 2048)) | sfdisk -q "$disk" >/dev/null
  place "$disk" "$d/root.ext4" $((mbr_root_start * MiB))
  install_bios_boot "$disk" "$d/core.img" 1
  mv -f "$disk" "$out/$name.img"
}

# build_wiped: good-gpt with every piece of boot code removed.
build_wiped() {
  local disk=$work/wiped.img
  cp --sparse=always "$out/good-gpt.img" "$disk"
  dd if=/dev/zero of="$disk" bs=440 count=1 conv=notrunc status=none
  dd if=/dev/zero of="$disk" bs=1M seek="$gpt_bios_start" count="$gpt_bios_size" conv=notrunc \
    status=none
  mdel -i "$disk@@$((gpt_esp_start * MiB))" ::EFI/BOOT/BOOTX64.EFI
  mv -f "$disk" "$out/wiped.img"
}

# build_no_signature: wiped, and sector 0's 0x55aa signature cleared too, so SeaBIOS refuses the
# disk ("No bootable device.") instead of jumping into zeroed code (what it does with wiped).
# The GPT headers are intact but the protective MBR is now invalid: Linux ignores such a GPT.
build_no_signature() {
  local disk=$work/no-signature.img
  cp --sparse=always "$out/wiped.img" "$disk"
  printf '\0\0' | dd of="$disk" bs=1 seek=510 conv=notrunc status=none
  mv -f "$disk" "$out/no-signature.img"
}

# build_fit_gpt: good-gpt laid out for `--fit`: the root (with /boot) first and large, then
# the BIOS boot partition and the ESP after it, so that fitting it onto a smaller disk shrinks
# the root and moves core.img's partition (GRUB's pointers must follow) and the ESP.
# Layout (MiB): p3 root 1..49, p1 BIOS-boot 49..50, p2 ESP 50..58, disk 59 MiB.
build_fit_gpt() {
  local name=fit-gpt d=$work/fit-gpt
  mkdir -p "$d"
  stage_root "$d/root" up yes
  make_ext4 "$d/root" "$d/root.ext4" 48
  grub_config "PARTUUID=$gpt_root_partuuid" >"$d/grub.cfg"
  grub_bios "$d/grub.cfg" "$d/core.img"
  grub_efi "$d/grub.cfg" "$d/bootx64.efi"
  make_esp "$d"
  local disk=$d/disk.img
  rm -f "$disk"
  truncate -s $((59 * MiB)) "$disk"
  sgdisk -U "$gpt_disk_guid" \
    -n 3:2048:+48M -t 3:8300 -c 3:root -u 3:"$gpt_root_partuuid" \
    -n 1:$((49 * 2048)):+1M -t 1:EF02 -c 1:bios-boot \
    -u 1:6c696665-626f-4174-a000-000000000101 \
    -n 2:$((50 * 2048)):+${gpt_esp_size}M -t 2:EF00 -c 2:esp \
    -u 2:6c696665-626f-4174-a000-000000000102 "$disk" >/dev/null
  place "$disk" "$d/esp.fat" $((50 * MiB))
  place "$disk" "$d/root.ext4" $((1 * MiB))
  install_bios_boot "$disk" "$d/core.img" $((49 * 2048))
  mv -f "$disk" "$out/$name.img"
}

build_gpt good-gpt up yes "PARTUUID=$gpt_root_partuuid"
build_mbr good-mbr
build_wiped
build_no_signature
build_gpt no-kernel up no "PARTUUID=$gpt_root_partuuid"
build_gpt panic up yes /dev/sda9
build_gpt reboot-loop reboot yes "PARTUUID=$gpt_root_partuuid"
build_fit_gpt

# layout.json: the partition tables as sfdisk reads them, plus what each fixture is for and
# what QEMU showed when it was booted (-nic none; "stage" is the last stage of the issue's four
# that the boot reaches, 0 for none).
for n in good-gpt good-mbr wiped no-kernel panic reboot-loop; do
  sfdisk -J "$out/$n.img" >"$work/$n.json"
done
python3 - "$work" "$out/layout.json" <<'EOF'
import json, sys
work, dest = sys.argv[1], sys.argv[2]
root_files = {"kernel": "/boot/vmlinuz", "init": "/sbin/init", "busybox": "/bin/busybox",
              "written": "/var/booted"}
esp_files = {"loader": "/EFI/BOOT/BOOTX64.EFI"}
gpt = {"label": "gpt", "firmware": ["bios", "uefi"], "bios_boot_part": 1, "esp_part": 2,
       "root_part": 3, "root_files": root_files, "esp_files": esp_files}
booted = {"booted": True, "stage": 4, "serial": "fixture login: "}
no_kernel = {"booted": False, "stage": 1, "sign": "still_screen",
             "serial": "error: file `/boot/vmlinuz' not found."}
panic = {"booted": False, "stage": 2, "sign": "kernel_panic",
         "serial": "Kernel panic - not syncing: VFS: Unable to mount root fs"}
loop = {"booted": False, "stage": 3, "sign": "reboot_loop", "serial": "fixture: rebooting"}
fixtures = {
    "good-gpt": dict(gpt, expect={"bios": booted, "uefi": booted}),
    "good-mbr": {"label": "dos", "firmware": ["bios"], "bios_boot_part": None,
                 "esp_part": None, "root_part": 1, "root_files": root_files, "esp_files": {},
                 "expect": {"bios": booted}},
    # The boot code is gone, so the disk asks for no firmware; booted anyway, SeaBIOS jumps into
    # the zeroed sector 0 (its signature is intact) and the screen stays on "Booting from Hard
    # Disk..."; OVMF finds no loader and starts its built-in UEFI shell.
    "wiped": dict(gpt, firmware=[], esp_files={}, expect={
        "bios": {"booted": False, "stage": 0, "sign": "still_screen",
                 "debugcon": "Booting from 0000:7c00"},
        "uefi": {"booted": False, "stage": 0, "sign": "no_boot_device",
                 "serial": "EFI Internal Shell"}}),
    # wiped with sector 0's signature cleared: SeaBIOS says so. Not a valid GPT disk to Linux.
    "no-signature": dict(gpt, label=None, firmware=[], esp_files={}, expect={
        "bios": {"booted": False, "stage": 0, "sign": "no_boot_device",
                 "debugcon": "No bootable device."}}),
    "no-kernel": dict(gpt, root_files={k: v for k, v in root_files.items() if k != "kernel"},
                      expect={"bios": no_kernel, "uefi": no_kernel}),
    "panic": dict(gpt, kernel_args="root=/dev/sda9", expect={"bios": panic, "uefi": panic}),
    "reboot-loop": dict(gpt, init="reboot -f", expect={"bios": loop, "uefi": loop}),
}
fs_of = {"21686148-6449-6E6F-744E-656564454649": "none",  # BIOS boot: raw core.img
         "C12A7328-F81F-11D2-BA4B-00A0C93EC93B": "vfat",
         "0FC63DAF-8483-4772-8E79-3D69D8477DE4": "ext4", "83": "ext4"}
out = {}
for name, info in fixtures.items():
    src = "wiped" if name == "no-signature" else name
    table = json.load(open(f"{work}/{src}.json"))["partitiontable"]
    ss = table.get("sectorsize", 512)
    parts = [{"number": i, "start": p["start"] * ss, "size": p["size"] * ss, "type": p["type"],
              "uuid": p.get("uuid"), "name": p.get("name"), "fs": fs_of[p["type"].upper()]}
             for i, p in enumerate(table["partitions"], 1)]
    out[name] = dict(info, image=f"{name}.img", partitions=parts)
json.dump(out, open(dest, "w"), indent=2, sort_keys=True)
EOF
ls -ls "$out"/*.img "$out/layout.json"

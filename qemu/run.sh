#!/usr/bin/env bash
# Boots Lifeboat in QEMU with disks attached. Run qemu/run.sh --help for the options.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

usage() {
  cat <<'EOT'
Usage: qemu/run.sh [options]

Boots the Lifeboat ISO (or its kernel and initramfs directly) in QEMU. Without a display
(no $DISPLAY), the serial console is this terminal: Lifeboat runs there too. Quit QEMU with
Ctrl-A then X.

What to boot:
  --iso FILE         the ISO (default: out/lifeboat.iso)
  --boot cd|usb      attach the ISO as a CD (default) or as a USB stick
  --kernel DIR       boot DIR/vmlinuz and DIR/initrd.zst directly, without a boot loader
                     (e.g. out/mini); --append adds kernel command-line words
  --append WORDS     extra kernel command line for --kernel, e.g.
                     'lifeboat.run="list" lifeboat.then=poweroff'
Firmware:
  --firmware bios|uefi|secureboot
                     SeaBIOS (default), OVMF, or OVMF with Secure Boot enforced and
                     Microsoft's keys enrolled. Each run uses a fresh copy of the UEFI
                     variables.
Disks:
  --disk FILE[,bus=BUS][,ro][,blkdebug=RULES]
                     attach a raw disk image; BUS is virtio (default), sata, nvme or usb.
                     Repeat for more disks. blkdebug=RULES puts QEMU's blkdebug driver
                     under it with the rules file RULES (injected read errors, as the
                     tests of image --rescue do: [inject-error] event = "read_aio"
                     errno = "5" sector = "N" once = "off").
  --demo             the demo's three disks, made on first use in qemu/ (or in
                     $LIFEBOAT_DEMO_DIR): demo.img on SATA, /dev/sda (qemu/make-demo-disk.sh:
                     GPT, an EFI system partition and ext4 with files); a blank 512 MiB
                     demo-target.img on NVMe, /dev/nvme0n1, to restore onto; and
                     demo-backup.img on USB, a 256 MiB "USB backup drive" (exFAT labelled
                     USB-BACKUP, qemu/make-demo-backup.sh) where the menu keeps the images
Network:
  --net MODEL|none   one NIC of this QEMU model on QEMU's user network (10.0.2.0/24, DHCP
                     gives 10.0.2.15, gateway 10.0.2.2, DNS 10.0.2.3), e.g. virtio-net-pci,
                     e1000, e1000e; none for no NIC. Default: QEMU's own (an e1000e on q35)
Machine:
  --mem MIB          memory (default 1024)
  --smp N            CPUs (default 2)
  --headless         never open a window, even with $DISPLAY
  --log FILE         also copy the serial console to FILE
  --timeout SECONDS  kill QEMU after this long (for tests; exit code 124)
  --monitor SOCKET   a QEMU monitor on this UNIX socket (for tests)
  --pidfile FILE     write QEMU's process ID to FILE (for tests)
  -h, --help         this text

QEMU runs with -accel tcg (software emulation) unless LIFEBOAT_QEMU_ACCEL=kvm is set, because
KVM does not work on every host; everything still boots, just more slowly.

Examples:
  qemu/run.sh --demo
  qemu/run.sh --firmware secureboot --boot usb --disk pc.img,bus=nvme
  qemu/run.sh --kernel out/mini --disk src.img,bus=sata \
      --append 'lifeboat.run="list" lifeboat.then=poweroff' --headless
EOT
}

iso=$root/out/lifeboat.iso
boot=cd
kernel_dir=
append=
firmware=bios
mem=1024
smp=2
headless=0
log=
timeout_s=
monitor=
pidfile=
disks=()
demo=0
net=
while [ $# -gt 0 ]; do
  case "$1" in
    --iso) iso=${2:?}; shift 2 ;;
    --boot) boot=${2:?}; shift 2 ;;
    --kernel) kernel_dir=${2:?}; shift 2 ;;
    --append) append=${2:?}; shift 2 ;;
    --firmware) firmware=${2:?}; shift 2 ;;
    --disk) disks+=("${2:?}"); shift 2 ;;
    --demo) demo=1; shift ;;
    --net) net=${2:?}; shift 2 ;;
    --mem) mem=${2:?}; shift 2 ;;
    --smp) smp=${2:?}; shift 2 ;;
    --headless) headless=1; shift ;;
    --log) log=${2:?}; shift 2 ;;
    --timeout) timeout_s=${2:?}; shift 2 ;;
    --monitor) monitor=${2:?}; shift 2 ;;
    --pidfile) pidfile=${2:?}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "qemu/run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

if [ "$demo" = 1 ]; then
  dd_dir=${LIFEBOAT_DEMO_DIR:-$here}
  mkdir -p "$dd_dir"
  [ -e "$dd_dir/demo.img" ] || bash "$here/make-demo-disk.sh" "$dd_dir/demo.img"
  [ -e "$dd_dir/demo-target.img" ] || truncate -s 512M "$dd_dir/demo-target.img"
  [ -e "$dd_dir/demo-backup.img" ] || bash "$here/make-demo-backup.sh" "$dd_dir/demo-backup.img"
  disks+=("$dd_dir/demo.img,bus=sata" "$dd_dir/demo-target.img,bus=nvme" "$dd_dir/demo-backup.img,bus=usb")
fi

args=(-machine q35 -m "$mem" -smp "$smp" -no-reboot)
if [ "${LIFEBOAT_QEMU_ACCEL:-tcg}" = kvm ]; then args+=(-accel kvm); else args+=(-accel tcg); fi

tmp=$(mktemp -d)
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

case "$firmware" in
  bios) ;;
  uefi)
    cp /usr/share/OVMF/OVMF_VARS_4M.fd "$tmp/vars.fd"
    args+=(-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd
           -drive if=pflash,format=raw,unit=1,file="$tmp/vars.fd") ;;
  secureboot)
    # Secure Boot needs SMM and the secboot code; the .ms vars have Microsoft's keys enrolled
    # and Secure Boot turned on.
    cp /usr/share/OVMF/OVMF_VARS_4M.ms.fd "$tmp/vars.fd"
    args=("${args[@]/q35/q35,smm=on}")
    args+=(-global driver=cfi.pflash01,property=secure,value=on
           -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd
           -drive if=pflash,format=raw,unit=1,file="$tmp/vars.fd") ;;
  *) echo "qemu/run.sh: --firmware must be bios, uefi or secureboot" >&2; exit 2 ;;
esac

# USB controller for USB disks, the USB boot stick and a keyboard
args+=(-device qemu-xhci,id=xhci)
nvme=0; sata=0; usb=0
attach() { # FILE BUS RO [BOOTINDEX]
  local file=$1 bus=$2 ro=$3 id="d$((nvme + sata + usb + ${#args[@]}))" boot=""
  [ -n "${4:-}" ] && boot=",bootindex=$4"
  local ro_opt=""; [ "$ro" = 1 ] && ro_opt=",readonly=on"
  args+=(-drive "if=none,id=$id,format=raw,file=$file,cache=unsafe$ro_opt")
  case "$bus" in
    virtio) args+=(-device "virtio-blk-pci,drive=$id$boot") ;;
    sata) args+=(-device "ide-hd,drive=$id,bus=ide.$sata$boot"); sata=$((sata + 1)) ;;
    nvme) args+=(-device "nvme,drive=$id,serial=LIFEBOAT$nvme$boot"); nvme=$((nvme + 1)) ;;
    usb) args+=(-device "usb-storage,bus=xhci.0,drive=$id,removable=on$boot"); usb=$((usb + 1)) ;;
    cd) args+=(-device "ide-cd,drive=$id,bus=ide.$sata$boot"); sata=$((sata + 1)) ;;
    *) echo "qemu/run.sh: unknown bus '$bus' (virtio, sata, nvme or usb)" >&2; exit 2 ;;
  esac
}

if [ -n "$kernel_dir" ]; then
  [ -e "$kernel_dir/vmlinuz" ] || { echo "qemu/run.sh: no $kernel_dir/vmlinuz (run ./build.sh)" >&2; exit 1; }
  args+=(-kernel "$kernel_dir/vmlinuz" -initrd "$kernel_dir/initrd.zst"
         -append "console=tty0 console=ttyS0,115200 $append")
else
  [ -e "$iso" ] || { echo "qemu/run.sh: no $iso (run ./build.sh)" >&2; exit 1; }
  case "$boot" in
    cd) attach "$iso" cd 1 0 ;;
    usb) attach "$iso" usb 1 0 ;;
    *) echo "qemu/run.sh: --boot must be cd or usb" >&2; exit 2 ;;
  esac
fi

for spec in "${disks[@]}"; do
  file=${spec%%,*}; bus=virtio; ro=0; rules=
  IFS=, read -ra opts <<< "${spec#"$file"}"
  for o in "${opts[@]}"; do
    case "$o" in
      "") ;;
      bus=*) bus=${o#bus=} ;;
      ro) ro=1 ;;
      blkdebug=*) rules=${o#blkdebug=} ;;
      *) echo "qemu/run.sh: unknown disk option '$o'" >&2; exit 2 ;;
    esac
  done
  [ -e "$file" ] || { echo "qemu/run.sh: no disk image $file" >&2; exit 1; }
  if [ -n "$rules" ]; then
    [ -e "$rules" ] || { echo "qemu/run.sh: no blkdebug rules $rules" >&2; exit 1; }
    file="blkdebug:$rules:$file"
  fi
  attach "$file" "$bus" "$ro"
done

case "$net" in
  "") ;;
  none) args+=(-nic none) ;;
  *) args+=(-netdev user,id=n0 -device "$net,netdev=n0") ;;
esac

if [ "$headless" = 1 ] || [ -z "${DISPLAY:-}" ]; then
  args+=(-display none -vga std)
else
  args+=(-vga std -device usb-kbd,bus=xhci.0)
fi
serial=mon:stdio
[ -n "$log" ] && { args+=(-chardev "stdio,id=ser,logfile=$log,signal=off,mux=on" -serial chardev:ser -mon chardev=ser,mode=readline); serial=; }
[ -n "$serial" ] && args+=(-serial "$serial")
[ -n "$monitor" ] && args+=(-monitor "unix:$monitor,server,nowait")
[ -n "$pidfile" ] && args+=(-pidfile "$pidfile")

if [ -n "$timeout_s" ]; then
  timeout --foreground -k 5 "$timeout_s" qemu-system-x86_64 "${args[@]}"
else
  qemu-system-x86_64 "${args[@]}"
fi

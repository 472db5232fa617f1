#!/usr/bin/env bash
# Proving that a backup boots: lifeboat boot-test on an image of the good boot fixture, against
# booting the same disk, restored to a raw file, directly in QEMU, side by side in one run.
#
# Usage: bench/boottest.sh GOOD_GPT_IMG [--runs N] [--work DIR] [--firmware bios|uefi|both]
#                          [--timeout SECS] [--keep]
#
#   GOOD_GPT_IMG   the good-gpt.img fixture of tests/helpers/boot-fixtures.sh (GRUB for BIOS
#                  and UEFI, the mini kernel, a busybox userland that prints "fixture login:")
#   --runs N       timed runs of each measurement per firmware; medians are reported (default 5)
#   --work DIR     where the image, the raw disk and the outputs go (default: a new dir in /var/tmp)
#   --firmware F   bios, uefi or both (default: both, BIOS first)
#   --timeout S    a boot that takes longer fails the benchmark (default 300)
#   --keep         keep the work directory (one given with --work is always kept)
#   LIFEBOAT       the binary (default target/release/lifeboat)
#
# Setup (untimed): lifeboat image GOOD_GPT_IMG -o WORK/good.lbi, then
# lifeboat restore WORK/good.lbi WORK/raw.img --yes; the restored file must equal the fixture.
#
# Measured, per firmware and run (odd runs a then b, even runs b then a):
#   a  lifeboat boot-test WORK/good.lbi --accel tcg --firmware F --out DIR: the wall time of
#      the whole command (opening the image, the disk survey, QEMU over NBD and the overlay,
#      the verdict, stopping QEMU), and the run's `seconds` from DIR/report.json (machine
#      started to verdict). It must say booted.
#   b  qemu-system-x86_64 with boot-test's machine options (q35, -accel tcg, -m 1024, -smp 2,
#      -nodefaults, -no-user-config, -display none, -vga std, isa-debugcon, pvpanic, ide-hd on
#      ide.0; OVMF code and a fresh copy of its variables for UEFI) and WORK/raw.img as a plain
#      file (snapshot=on: nothing is written to it): from starting QEMU until "fixture login:"
#      appears in its serial file (polled every 50 ms); then QEMU is killed.
#   memory  lifeboat's peak_rss_bytes (report.json); VmHWM of QEMU in a (its pid found as the
#      child of lifeboat with `-name lifeboat-boot-test`, status polled every 50 ms until it
#      ends) and in b (read just before QEMU is killed).
# No root needed and no page-cache dropping: the disk is 35 MiB and stays cached after the
# first run in both columns alike. KVM is never used (--accel tcg, -accel tcg).
# Results: a Markdown table on stdout, raw numbers in bench/results/boottest-LATEST.json.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
usage() { sed -n '5,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
fixture=$1; shift
runs=5; work=""; fw_arg=both; timeout=300; keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=${2:?}; shift 2 ;;
    --work) work=${2:?}; shift 2 ;;
    --firmware) fw_arg=${2:?}; shift 2 ;;
    --timeout) timeout=${2:?}; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) usage ;;
    *) echo "boottest.sh: unknown argument $1" >&2; usage ;;
  esac
done
case "$fw_arg" in
  bios) fws=(bios) ;; uefi) fws=(uefi) ;; both) fws=(bios uefi) ;;
  *) echo "boottest.sh: --firmware bios, uefi or both" >&2; exit 2 ;;
esac
[ -f "$fixture" ] || { echo "boottest.sh: no $fixture (tests/helpers/boot-fixtures.sh KERNEL OUTDIR)" >&2; exit 1; }
lb=${LIFEBOAT:-$repo/target/release/lifeboat}
[ -x "$lb" ] || { echo "boottest.sh: no $lb (cargo build --release)" >&2; exit 1; }
qemu=${LIFEBOAT_QEMU:-qemu-system-x86_64}
command -v "$qemu" >/dev/null || { echo "boottest.sh: no $qemu (qemu-system-x86)" >&2; exit 1; }
ovmf_code=/usr/share/OVMF/OVMF_CODE_4M.fd; ovmf_vars=/usr/share/OVMF/OVMF_VARS_4M.fd
[ -n "$work" ] && keep=1
work=${work:-$(mktemp -d /var/tmp/lb-boottest.XXXXXX)}
mkdir -p "$work"
qpid=""; lbpid=""
cleanup() {
  # only the processes this script started, by their pids
  [ -n "$qpid" ] && { kill "$qpid" 2>/dev/null || true; wait "$qpid" 2>/dev/null || true; }
  [ -n "$lbpid" ] && { kill -INT "$lbpid" 2>/dev/null || true; wait "$lbpid" 2>/dev/null || true; }
  [ "$keep" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
vmhwm() { # VmHWM of pid $1 in KiB, or nothing when it is gone
  local k v rest
  while read -r k v rest; do [ "$k" = VmHWM: ] && { echo "$v"; return; }; done 2>/dev/null < "/proc/$1/status" || true
}

echo "== setup in $work" >&2
img=$work/good.lbi; raw=$work/raw.img
[ -f "$img" ] || "$lb" image "$fixture" -o "$img" >/dev/null 2>&1
rm -f "$raw"
"$lb" restore "$img" "$raw" --yes >/dev/null 2>&1
cmp "$fixture" "$raw" || { echo "boottest.sh: the restored disk differs from $fixture" >&2; exit 1; }

# a: lifeboat boot-test; sets A_WALL A_SECONDS A_RSS A_QHWM
run_a() {
  local fw=$1 out=$2 q="" h="" t0 t1 rc=0
  t0=$(now)
  "$lb" boot-test "$img" --accel tcg --firmware "$fw" --out "$out" >"$out.stdout" 2>"$out.stderr" &
  lbpid=$!
  A_QHWM=0
  while kill -0 "$lbpid" 2>/dev/null; do
    if [ -z "$q" ]; then
      q=$(pgrep -P "$lbpid" -f -- '-name lifeboat-boot-test' | head -1 || true)
    fi
    if [ -n "$q" ]; then
      h=$(vmhwm "$q"); [ -n "$h" ] && A_QHWM=$h
    fi
    sleep 0.05
  done
  wait "$lbpid" || rc=$?
  t1=$(now); lbpid=""
  [ "$rc" = 0 ] || { echo "boottest.sh: boot-test $fw exited $rc:" >&2; cat "$out.stderr" >&2; exit 1; }
  A_WALL=$(echo "$t1 - $t0" | bc -l)
  read -r A_SECONDS A_RSS < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
print(d["runs"][0]["seconds"], d["peak_rss_bytes"])' "$out/report.json")
}

# b: the restored raw disk in QEMU directly; sets B_WALL B_QHWM
run_b() {
  local fw=$1 dir=$2 t0 t1 fwargs=()
  mkdir -p "$dir"
  if [ "$fw" = uefi ]; then
    cp "$ovmf_vars" "$dir/OVMF_VARS.fd"
    fwargs=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=$ovmf_code"
            -drive "if=pflash,format=raw,unit=1,file=$dir/OVMF_VARS.fd")
  fi
  : > "$dir/serial.log"
  t0=$(now)
  "$qemu" -name lifeboat-bench-direct -nodefaults -no-user-config -machine q35 -accel tcg \
    -m 1024 -smp 2 -display none -vga std -serial "file:$dir/serial.log" \
    -chardev "file,id=fwlog,path=$dir/firmware.log" -device isa-debugcon,iobase=0x402,chardev=fwlog \
    -device pvpanic \
    -drive "if=none,id=d,file=$raw,format=raw,snapshot=on" -device ide-hd,drive=d,bus=ide.0,bootindex=1 \
    "${fwargs[@]}" </dev/null >/dev/null 2>"$dir/qemu.stderr" &
  qpid=$!
  until grep -q 'fixture login:' "$dir/serial.log"; do
    kill -0 "$qpid" 2>/dev/null || { echo "boottest.sh: QEMU ($fw) stopped:" >&2; cat "$dir/qemu.stderr" >&2; exit 1; }
    [ "$(echo "$(now) - $t0 > $timeout" | bc)" = 0 ] || { echo "boottest.sh: no login prompt within $timeout s ($fw)" >&2; exit 1; }
    sleep 0.05
  done
  t1=$(now)
  B_QHWM=$(vmhwm "$qpid"); B_QHWM=${B_QHWM:-0}
  kill "$qpid"; wait "$qpid" 2>/dev/null || true; qpid=""
  B_WALL=$(echo "$t1 - $t0" | bc -l)
}

declare -A a_wall a_sec a_rss a_qhwm b_wall b_qhwm
for fw in "${fws[@]}"; do
  for r in $(seq 1 "$runs"); do
    echo "== $fw run $r/$runs" >&2
    out=$work/out-$fw-$r; rm -rf "$out" "$out.stdout" "$out.stderr" "$work/direct-$fw-$r"
    if [ $((r % 2)) = 1 ]; then
      run_a "$fw" "$out"; run_b "$fw" "$work/direct-$fw-$r"
    else
      run_b "$fw" "$work/direct-$fw-$r"; run_a "$fw" "$out"
    fi
    a_wall[$fw]+="$A_WALL "; a_sec[$fw]+="$A_SECONDS "; a_rss[$fw]+="$A_RSS "
    a_qhwm[$fw]+="$A_QHWM "; b_wall[$fw]+="$B_WALL "; b_qhwm[$fw]+="$B_QHWM "
    printf '   boot-test %.2f s (run %.2f s), direct %.2f s\n' "$A_WALL" "$A_SECONDS" "$B_WALL" >&2
  done
done

med() { printf '%s\n' $1 | median; }
list() { printf '%.4f\n' $1 | paste -sd, -; }
mib() { echo "$1 / $2" | bc -l; }
printf '\n## boot-test against a direct QEMU boot (%s, TCG, medians of %s runs, %s)\n\n' \
  "$(basename "$fixture")" "$runs" "$(date -u +%F)"
printf '| firmware | boot-test wall (s) | boot-test run (s) | direct QEMU to login (s) | wall / direct | lifeboat peak RSS (MiB) | QEMU VmHWM boot-test (MiB) | QEMU VmHWM direct (MiB) |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for fw in "${fws[@]}"; do
  aw=$(med "${a_wall[$fw]}"); as=$(med "${a_sec[$fw]}"); bw=$(med "${b_wall[$fw]}")
  printf '| %s | %.2f | %.2f | %.2f | %.2f | %.1f | %.0f | %.0f |\n' "${fw^^}" "$aw" "$as" "$bw" \
    "$(echo "$aw / $bw" | bc -l)" "$(mib "$(med "${a_rss[$fw]}")" 1048576)" \
    "$(mib "$(med "${a_qhwm[$fw]}")" 1024)" "$(mib "$(med "${b_qhwm[$fw]}")" 1024)"
done
json=$repo/bench/results/boottest-LATEST.json
{
  printf '{"fixture": "%s", "runs": %s, "date": "%s",\n' "$fixture" "$runs" "$(date -u +%F)"
  printf ' "lifeboat": "%s", "qemu": "%s",\n' "$("$lb" --version 2>/dev/null | head -1)" "$("$qemu" --version | head -1)"
  printf ' "raw_disk": "lifeboat restore of the image, identical to the fixture",\n "firmware": {'
  sep=""
  for fw in "${fws[@]}"; do
    printf '%s\n  "%s": {"boottest_wall_s": [%s], "boottest_run_s": [%s], "direct_to_login_s": [%s],\n' \
      "$sep" "$fw" "$(list "${a_wall[$fw]}")" "$(list "${a_sec[$fw]}")" "$(list "${b_wall[$fw]}")"
    printf '   "lifeboat_peak_rss_bytes": [%s], "qemu_vmhwm_boottest_kib": [%s], "qemu_vmhwm_direct_kib": [%s],\n' \
      "$(printf '%s\n' ${a_rss[$fw]} | paste -sd, -)" "$(printf '%s\n' ${a_qhwm[$fw]} | paste -sd, -)" \
      "$(printf '%s\n' ${b_qhwm[$fw]} | paste -sd, -)"
    aw=$(med "${a_wall[$fw]}"); bw=$(med "${b_wall[$fw]}")
    printf '   "median_boottest_wall_s": %.4f, "median_boottest_run_s": %.4f, "median_direct_s": %.4f, "ratio_wall_over_direct": %.4f}' \
      "$aw" "$(med "${a_sec[$fw]}")" "$bw" "$(echo "$aw / $bw" | bc -l)"
    sep=","
  done
  printf '}}\n'
} > "$json"
python3 -m json.tool "$json" > "$json.tmp" && mv "$json.tmp" "$json"

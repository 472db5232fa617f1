#!/usr/bin/env bash
# Restore, verify and imaging benchmark for issue 24 ("restore and verify at the speed of the
# disks"): each lifeboat command against the floor the disks and zstd set for the same bytes.
#
# Usage: sudo bench/restore.sh DISK_IMAGE [--runs N] [--level L] [--work DIR] [--keep] [--perf] [--rows "R…"]
#
#   --runs N    rounds; every round times every row once, the order rotated by one row per
#               round; the report gives medians, ratios are taken per round (default 3)
#   --level L   zstd level for lifeboat image --level L and zstd -L (default 3)
#   --work DIR  where the dense copy, the images and the targets go (default: a new dir in
#               /var/tmp); about 2 x the disk + 3 x the used bytes
#   --keep      keep the work directory (and the logs of every command)
#   --perf      also profile one restore and one verify with perf record -g
#   --rows "R…" only these rows (names as in the records, e.g. "wfloor_loop lb_restore_shm_nv")
#   LIFEBOAT    the binary (default target/release/lifeboat)
#
# Setup, once: a dense copy of DISK_IMAGE in WORK, attached read-only (--direct-io=on) as a
# loop device LOOP with partition nodes from partx; lifeboat image LOOP -o WORK/d.lbi; per
# partition partclone.<fs> -c | zstd -T0 -L into WORK/pN.pc.zst with sfdisk -d and the first
# MiB; used-bytes.py copies the ranges d.lbi holds from LOOP to /dev/shm (U = their size, the
# bytes every restore writes; it must equal restore's written_bytes); zstd -T0 -L of those
# into WORK/used.zst. T1 is a loop device (--direct-io=on) over a fallocated file of the
# disk's size in WORK; F a new file in WORK. d.lbi is also copied to /dev/shm.
# Rows (the page cache is dropped before each; /usr/bin/time -f '%e %U %S %M' times each):
#   write floor      dd if=/dev/zero bs=4M count=U/4M oflag=direct conv=fsync to T1, and to
#                    a fresh file in WORK
#   read floor       dd if=T1 of=/dev/null bs=4M count=U/4M iflag=direct (reference)
#   duplex floor     both dd at once on T1 (reference): what writing U while reading U back
#                    costs the disk, the least a verified restore can take
#   lifeboat restore d.lbi onto T1 and onto F (--yes --json), and with --no-verify. Targets:
#                    total wall <= 1.5 x the write floor; write rate (U / write_seconds of its
#                    JSON summary) >= 0.80 x the floor's. Also onto T1 from a copy of d.lbi
#                    in /dev/shm, so that only T1's disk works (the same targets)
#   partclone        sfdisk, first MiB, partx -a, zstd -dc pN | partclone.restore onto T1, sync
#   lifeboat verify  d.lbi; floor: dd if=used.zst iflag=direct | zstd -d (one pipeline), and
#                    dd of d.lbi alone beside it. Target <= 1.25 x floor
#   partclone.chkimg zstd -dc pN | partclone.chkimg -s -, all partitions (reference)
#   lifeboat image   LOOP -o WORK/i.lbi --level L; floor: zstd -T0 -L of U from /dev/shm
#                    (warm). Target <= 1.10 x floor for its imaging phase (write_seconds);
#                    the whole command, with its check of the new image, for reference;
#                    and against a cold floor that reads U from the disk like image must:
#                    dd if=WORK/used.raw iflag=direct | zstd -T0 -L (reference)
#   peak RSS         of lifeboat restore, verify and image: target <= 256 MiB
# Output: a Markdown report on stdout and in bench/results/restore-DATE.md, every run in
# bench/results/restore-LATEST.json (with --rows: restore-DATE-rows.md, restore-rows-LATEST.json).
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
python=/usr/bin/python3

usage() {
  sed -n '5,16p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
[ $# -ge 1 ] || usage
case "$1" in -h | --help) usage ;; esac
disk=$(readlink -f "$1")
shift
runs=3
level=3
work=""
keep=0
perf=0
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=${2:?}; shift 2 ;;
    --level) level=${2:?}; shift 2 ;;
    --work) work=${2:?}; shift 2 ;;
    --keep) keep=1; shift ;;
    --perf) perf=1; shift ;;
    --rows) only=${2:?}; shift 2 ;;
    -h | --help) usage ;;
    *) echo "restore.sh: unknown argument $1" >&2; usage ;;
  esac
done
case "$runs" in '' | *[!0-9]* | 0) echo "restore.sh: --runs needs a positive number" >&2; exit 2 ;; esac
case "$level" in '' | *[!0-9]*) echo "restore.sh: --level needs a number" >&2; exit 2 ;; esac
[ -f "$disk" ] || { echo "restore.sh: $disk is not a file" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "restore.sh: needs root (loop devices, drop_caches)" >&2; exit 1; }
for tool in losetup partx blkid sfdisk dd zstd /usr/bin/time fallocate partclone.restore \
  partclone.chkimg; do
  command -v "$tool" >/dev/null || { echo "restore.sh: $tool is missing (bash .ci/install-deps.sh)" >&2; exit 1; }
done
lifeboat=$(readlink -f "${LIFEBOAT:-$repo/target/release/lifeboat}")
"$lifeboat" restore --help >/dev/null 2>&1 ||
  { echo "restore.sh: $lifeboat does not run (build it, or set LIFEBOAT=)" >&2; exit 1; }
threads=$(nproc)

if [ -z "$work" ]; then
  work=$(mktemp -d /var/tmp/lifeboat-restore-bench.XXXXXX)
else
  mkdir -p "$work"
  work=$(cd "$work" && pwd)
fi
logs="$work/logs"
mkdir -p "$logs"
records="$work/records.tsv"
: >"$records"
shm=$(mktemp -d /dev/shm/lifeboat-restore-bench.XXXXXX) # used.raw: RAM, never dropped
img="$work/d.lbi"
ftgt="$work/restore-target.img" # lifeboat's file target, a new file every row
ffloor="$work/floor-target.img" # the file write floor's target
src=""
tgt=""

detach() { # detach LOOPDEV
  partx -d "$1" 2>/dev/null || true
  losetup -d "$1" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  [ -n "$src" ] && detach "$src"
  [ -n "$tgt" ] && detach "$tgt"
  rm -rf "$shm"
  if [ "$keep" -eq 1 ] || [ "$rc" -ne 0 ]; then
    rm -f "$work/disk.img" "$work/t1.img" "$work/used.raw" "$ftgt" "$ffloor" "$work/i.lbi"
    echo "restore.sh: images and logs kept in $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

add_partitions() { # add_partitions LOOPDEV COUNT
  partx -a "$1" 2>/dev/null || partx -u "$1"
  udevadm settle 2>/dev/null || true
  for _ in $(seq 50); do [ -b "$1p$2" ] && return 0; sleep 0.1; done
  echo "restore.sh: no partition nodes for $1" >&2
  return 1
}
partclone_for() { # partclone_for FSTYPE: the partclone that images it (partclone.dd otherwise)
  case "$1" in
    ext2 | ext3 | ext4) echo "partclone.$1" ;;
    vfat | fat) echo partclone.vfat ;;
    ntfs | xfs | btrfs | exfat) echo "partclone.$1" ;;
    *) echo partclone.dd ;;
  esac
}
where() { # where PATH: the filesystem PATH lives on
  df --output=source,fstype,target "$1" | tail -1 | awk '{printf "%s (%s, mounted on %s)", $1, $2, $3}'
}
drop_caches() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
}
mib() { echo $(($1 / 1048576)); }

# --- setup ------------------------------------------------------------------------------------
disk_bytes=$(stat -c %s "$disk")
echo "== disk: $disk ($(mib "$disk_bytes") MiB), $threads CPUs, level $level, $runs runs"
echo "   work: $work on $(where "$work")"
echo "   dense copy of the disk into $work/disk.img"
cp --sparse=never "$disk" "$work/disk.img"
src=$(losetup -f --show -r --direct-io=on "$work/disk.img")
nparts=$(partx -g -o NR "$src" | wc -l)
[ "$nparts" -ge 1 ] || { echo "restore.sh: $disk has no partition table" >&2; exit 1; }
add_partitions "$src" "$nparts"
parts=()
fstypes=()
for n in $(partx -g -o NR "$src"); do
  parts+=("$n")
  fs=""
  for _ in $(seq 30); do # a fresh partition node can briefly fail to open
    fs=$(blkid -p -o value -s TYPE "${src}p$n" 2>/dev/null) && [ -n "$fs" ] && break
    sleep 0.1
  done
  fstypes+=("${fs:-unknown}")
  command -v "$(partclone_for "${fs:-unknown}")" >/dev/null ||
    { echo "restore.sh: $(partclone_for "$fs") is missing" >&2; exit 1; }
done
for i in "${!parts[@]}"; do
  echo "   p${parts[$i]}: ${fstypes[$i]} -> $(partclone_for "${fstypes[$i]}")"
done

echo "   lifeboat image $src -o $img --level $level"
"$lifeboat" image "$src" -o "$img" --level "$level" --json >"$logs/setup-image.out" 2>&1
echo "   partclone images, partition table, first MiB"
sfdisk -d "$src" >"$work/table.sfdisk" 2>/dev/null
dd if="$src" of="$work/first-mib.bin" bs=1M count=1 iflag=direct status=none
for i in "${!parts[@]}"; do
  n=${parts[$i]}
  "$(partclone_for "${fstypes[$i]}")" -c -q -s "${src}p$n" -o - 2>>"$logs/setup-partclone.err" |
    zstd -T0 "-$level" -q -c >"$work/p$n.pc.zst"
done
echo "   used-bytes.py: the ranges d.lbi holds, from $src to $shm/used.raw"
"$python" "$here/used-bytes.py" "$img" "$src" >"$shm/used.raw"
used=$(stat -c %s "$shm/used.raw")
blocks=$((used / 4194304))
[ "$blocks" -ge 1 ] || { echo "restore.sh: only $used used bytes; use a bigger disk" >&2; exit 1; }
zstd -T0 "-$level" -q -f "$shm/used.raw" -o "$work/used.zst"
cp "$shm/used.raw" "$work/used.raw" # for the imaging floor that reads U from the disk
# U must be what restore writes: its plan's write_bytes now, written_bytes of every run later
plan_bytes=$("$lifeboat" restore "$img" "$work/plan-probe.img" --dry-run --json |
  "$python" -c 'import json, sys; print(json.load(sys.stdin)["write_bytes"])')
if [ "$plan_bytes" -ne "$used" ]; then
  echo "restore.sh: used-bytes.py copied $used bytes but restore plans to write $plan_bytes" >&2
  exit 1
fi
img_bytes=$(stat -c %s "$img")
cp "$img" "$shm/d.lbi" # for the restore that reads its image from RAM
pc_bytes=$(cat "$work"/p*.pc.zst | wc -c)
echo "   U = $used bytes ($(mib "$used") MiB); d.lbi $(mib "$img_bytes") MiB," \
  "used.zst $(mib "$(stat -c %s "$work/used.zst")") MiB, partclone $(mib "$pc_bytes") MiB"
need=$((disk_bytes + 3 * used + img_bytes + (1 << 30)))
avail=$(($(df --output=avail -B1 "$work" | tail -1)))
[ "$avail" -ge "$need" ] || {
  echo "restore.sh: $work has $(mib "$avail") MiB free, needs about $(mib "$need") MiB" >&2
  exit 1
}
fallocate -l "$disk_bytes" "$work/t1.img"
tgt=$(losetup -f --show --direct-io=on "$work/t1.img")
echo "   T1: $tgt over $work/t1.img (fallocated, --direct-io=on)"

# --- rows -------------------------------------------------------------------------------------
failed=()
# measure RUN ROW CMD...: drop caches, time CMD, append "run row wall user sys rss_kib" to the
# records; stdout and stderr go to logs/RUN-ROW.{out,err}
measure() {
  local run=$1 row=$2 rc=0 wall user sys rss
  shift 2
  local base="$logs/$run-$row"
  drop_caches
  /usr/bin/time -f '%e %U %S %M' -o "$base.time" "$@" >"$base.out" 2>"$base.err" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "   run $run $row FAILED (exit $rc); log: $base.err" >&2
    tail -5 "$base.err" >&2 || true
    failed+=("$run:$row")
    return 0
  fi
  read -r wall user sys rss <<<"$(tail -1 "$base.time")"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$row" "$wall" "$user" "$sys" "$rss" >>"$records"
  printf '   run %d %-20s %7.2f s wall %7.2f s cpu\n' "$run" "$row" "$wall" \
    "$(echo "$user $sys" | awk '{print $1 + $2}')"
}

# partclone.restore of every partition onto T1 (args: T1 WORK PART_NUMBER...)
# shellcheck disable=SC2016 # expanded by the inner bash
pc_restore='set -euo pipefail
t=$1 w=$2
shift 2
sfdisk -q --no-reread --no-tell-kernel "$t" <"$w/table.sfdisk"
dd if="$w/first-mib.bin" of="$t" bs=1M count=1 conv=notrunc,fsync status=none
partx -a "$t" 2>/dev/null || partx -u "$t"
for n in "$@"; do
  for _ in $(seq 50); do [ -b "${t}p$n" ] && break; sleep 0.1; done
  zstd -dcq "$w/p$n.pc.zst" | partclone.restore -q -s - -o "${t}p$n"
done
sync'
# shellcheck disable=SC2016
pc_chkimg='set -euo pipefail
w=$1
shift
for n in "$@"; do zstd -dcq "$w/p$n.pc.zst" | partclone.chkimg -s -; done'
# shellcheck disable=SC2016
verify_floor='set -euo pipefail
dd if="$1" bs=4M iflag=direct status=none | zstd -dq -T0 -c >/dev/null'

# shellcheck disable=SC2016
duplex_floor='set -euo pipefail
dd if=/dev/zero of="$1" bs=4M count="$2" oflag=direct conv=fsync status=none &
w=$!
dd if="$1" of=/dev/null bs=4M count="$2" iflag=direct status=none
wait "$w"'

row_wfloor_loop() {
  measure "$1" wfloor_loop dd if=/dev/zero of="$tgt" bs=4M count="$blocks" oflag=direct \
    conv=fsync status=none
}
row_rfloor_loop() {
  measure "$1" rfloor_loop dd if="$tgt" of=/dev/null bs=4M count="$blocks" iflag=direct status=none
}
row_wfloor_file() {
  rm -f "$ffloor"
  measure "$1" wfloor_file dd if=/dev/zero of="$ffloor" bs=4M count="$blocks" oflag=direct \
    conv=fsync status=none
  rm -f "$ffloor"
}
row_lb_restore_loop() {
  partx -d "$tgt" 2>/dev/null || true
  measure "$1" lb_restore_loop "$lifeboat" restore "$img" "$tgt" --yes --json
}
row_lb_restore_shm() { # the image in RAM: only T1's disk works
  partx -d "$tgt" 2>/dev/null || true
  measure "$1" lb_restore_shm "$lifeboat" restore "$shm/d.lbi" "$tgt" --yes --json
}
row_lb_restore_shm_nv() { # the write path alone: the image in RAM, no read-back
  partx -d "$tgt" 2>/dev/null || true
  measure "$1" lb_restore_shm_nv "$lifeboat" restore "$shm/d.lbi" "$tgt" --yes --json --no-verify
}
row_duplex_loop() { # what a restore's read-back asks of T1: U written while U is read back
  measure "$1" duplex_loop bash -c "$duplex_floor" duplex_floor "$tgt" "$blocks"
}
row_lb_restore_loop_nv() {
  partx -d "$tgt" 2>/dev/null || true
  measure "$1" lb_restore_loop_nv "$lifeboat" restore "$img" "$tgt" --yes --json --no-verify
}
row_lb_restore_file() {
  rm -f "$ftgt"
  measure "$1" lb_restore_file "$lifeboat" restore "$img" "$ftgt" --yes --json
  rm -f "$ftgt"
}
row_lb_restore_file_nv() {
  rm -f "$ftgt"
  measure "$1" lb_restore_file_nv "$lifeboat" restore "$img" "$ftgt" --yes --json --no-verify
  rm -f "$ftgt"
}
row_pc_restore_loop() {
  partx -d "$tgt" 2>/dev/null || true
  measure "$1" pc_restore_loop bash -c "$pc_restore" pc_restore "$tgt" "$work" "${parts[@]}"
  partx -d "$tgt" 2>/dev/null || true
}
row_lb_verify() { measure "$1" lb_verify "$lifeboat" verify "$img" --json; }
row_vfloor() { measure "$1" vfloor bash -c "$verify_floor" verify_floor "$work/used.zst"; }
row_lbi_read() { measure "$1" lbi_read dd if="$img" of=/dev/null bs=4M iflag=direct status=none; }
row_pc_chkimg() { measure "$1" pc_chkimg bash -c "$pc_chkimg" pc_chkimg "$work" "${parts[@]}"; }
row_lb_image() {
  rm -f "$work/i.lbi"
  measure "$1" lb_image "$lifeboat" image "$src" -o "$work/i.lbi" --level "$level" --json
  rm -f "$work/i.lbi"
}
# shellcheck disable=SC2016
ifloor_cold='set -euo pipefail
dd if="$1" bs=4M iflag=direct status=none | zstd -T0 "-$2" -q -c >/dev/null'
row_ifloor_cold() { measure "$1" ifloor_cold bash -c "$ifloor_cold" ifloor_cold "$work/used.raw" "$level"; }
row_ifloor() { measure "$1" ifloor zstd -T0 "-$level" -q -f "$shm/used.raw" -o /dev/null; }

all_rows=(wfloor_loop lb_restore_loop lb_restore_shm lb_restore_shm_nv duplex_loop lb_restore_loop_nv rfloor_loop pc_restore_loop wfloor_file
  lb_restore_file lb_restore_file_nv vfloor lb_verify lbi_read pc_chkimg ifloor ifloor_cold lb_image)
if [ -n "$only" ]; then
  read -r -a rows <<<"$only"
  for row in "${rows[@]}"; do
    declare -F "row_$row" >/dev/null || { echo "restore.sh: no row $row (rows: ${all_rows[*]})" >&2; exit 2; }
  done
else
  rows=("${all_rows[@]}")
fi
echo "== $runs runs of ${#rows[@]} rows (page cache dropped before each)"
for run in $(seq "$runs"); do
  shift_by=$(((run - 1) % ${#rows[@]}))
  for row in "${rows[@]:$shift_by}" "${rows[@]:0:$shift_by}"; do
    "row_$row" "$run"
  done
done

# --- report -----------------------------------------------------------------------------------
mkdir -p "$here/results"
stamp=$(date -u +%Y-%m-%d)
md="$here/results/restore-$stamp.md"
latest="$here/results/restore-LATEST.json"
if [ -n "$only" ]; then # a partial run does not replace the whole report
  md="$here/results/restore-$stamp-rows.md"
  latest="$here/results/restore-rows-LATEST.json"
fi
"$python" - "$records" "$logs" "$md" "$latest" \
  "here=$here" "disk=$disk" "disk_bytes=$disk_bytes" "level=$level" "runs=$runs" \
  "cpus=$threads" "used=$used" "floor_bytes=$((blocks * 4194304))" "image_bytes=$img_bytes" \
  "used_zst_bytes=$(stat -c %s "$work/used.zst")" "partclone_bytes=$pc_bytes" \
  "lifeboat=$lifeboat" "lifeboat_mtime=$(date -u -r "$lifeboat" +%Y-%m-%dT%H:%MZ)" \
  "work=$work" "work_on=$(where "$work")" "image=$img" "used_raw_on=$(where "$shm")" \
  "t1=$tgt over $work/t1.img" "failed=${failed[*]:-}" \
  "partitions=$(for i in "${!parts[@]}"; do printf 'p%s:%s ' "${parts[$i]}" "${fstypes[$i]}"; done)" \
  <<'EOF'
import datetime, json, platform, statistics, sys

records, logs, md_path, json_path = sys.argv[1:5]
a = dict(kv.split("=", 1) for kv in sys.argv[5:])
sys.path.insert(0, a["here"])
from report import tool_version  # noqa: E402

U, NPROC, RUNS = int(a["used"]), int(a["cpus"]), int(a["runs"])
FLOOR_BYTES = int(a["floor_bytes"])  # what the dd floors move: U rounded down to 4 MiB
MiB = 2**20

rows = {}  # row -> {run: record}
with open(records) as f:
    for line in f:
        run, row, wall, user, sys_, rss = line.rstrip("\n").split("\t")
        r = {"run": int(run), "wall_s": float(wall), "user_s": float(user), "sys_s": float(sys_),
             "rss_kib": int(rss)}
        r["cpu_s"] = round(r["user_s"] + r["sys_s"], 2)
        r["cpu_share"] = r["cpu_s"] / (NPROC * r["wall_s"]) if r["wall_s"] > 0 else None
        if row.startswith("lb_"):  # lifeboat's own summary: the last "finished" event
            r["summary"] = None
            with open(f"{logs}/{run}-{row}.out") as out:
                for l in out:
                    try:
                        e = json.loads(l)
                    except ValueError:
                        continue
                    if isinstance(e, dict) and e.get("event") == "finished":
                        r["summary"] = e.get("summary")
        rows.setdefault(row, {})[int(run)] = r

DD_FLOORS = {"wfloor_loop", "wfloor_file", "rfloor_loop", "duplex_loop"}


def seconds(row, run, field=None):
    """The row's seconds in one run: its wall time, or a field of lifeboat's summary; the dd
    floors are scaled from FLOOR_BYTES to U so that every row stands for the same bytes."""
    r = rows.get(row, {}).get(run)
    if r is None:
        return None
    if field:
        v = (r.get("summary") or {}).get(field)
        return float(v) if isinstance(v, (int, float)) and v > 0 else None
    return r["wall_s"] * U / FLOOR_BYTES if row in DD_FLOORS else r["wall_s"]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# (section, label, row, summary field, floor row, ratio kind, target)
# kind "time": seconds / floor seconds, PASS when <= target; "rate": floor seconds / seconds
# (the rate over U against the floor's), PASS when >= target; "floor": a floor itself;
# None: no ratio. Without a target a ratio is for reference
LINES = [
    ("restore", "write floor, loop: dd oflag=direct to T1", "wfloor_loop", None, None, "floor", None),
    ("restore", "read floor, loop: dd iflag=direct from T1", "rfloor_loop", None, None, "floor", None),
    ("restore", "lifeboat restore, loop (total)", "lb_restore_loop", None, "wfloor_loop", "time", 1.5),
    ("restore", "... its write phase (write_seconds)", "lb_restore_loop", "write_seconds", "wfloor_loop", "rate", 0.80),
    ("restore", "... its read-back (verify_seconds)", "lb_restore_loop", "verify_seconds", "rfloor_loop", "time", None),
    ("restore", "duplex floor, loop: dd oflag=direct to T1 and dd iflag=direct from T1 at once", "duplex_loop", None, None, "floor", None),
    ("restore", "lifeboat restore, loop, image in RAM (/dev/shm): against the write floor", "lb_restore_shm", None, "wfloor_loop", "time", 1.5),
    ("restore", "... the same against the duplex floor", "lb_restore_shm", None, "duplex_loop", "time", None),
    ("restore", "... its write phase (write_seconds)", "lb_restore_shm", "write_seconds", "wfloor_loop", "rate", 0.80),
    ("restore", "lifeboat restore --no-verify, loop, image in RAM: the write path alone", "lb_restore_shm_nv", None, "wfloor_loop", "time", None),
    ("restore", "... its write phase (write_seconds)", "lb_restore_shm_nv", "write_seconds", "wfloor_loop", "rate", 0.80),
    ("restore", "lifeboat restore --no-verify, loop", "lb_restore_loop_nv", None, "wfloor_loop", "time", None),
    ("restore", "partclone.restore, loop (table, first MiB, partitions, sync)", "pc_restore_loop", None, "wfloor_loop", "time", None),
    ("restore", "write floor, file: dd oflag=direct to a new file", "wfloor_file", None, None, "floor", None),
    ("restore", "lifeboat restore, file (total)", "lb_restore_file", None, "wfloor_file", "time", 1.5),
    ("restore", "... its write phase (write_seconds)", "lb_restore_file", "write_seconds", "wfloor_file", "rate", 0.80),
    ("restore", "... its read-back (verify_seconds)", "lb_restore_file", "verify_seconds", None, None, None),
    ("restore", "lifeboat restore --no-verify, file", "lb_restore_file_nv", None, "wfloor_file", "time", None),
    ("verify", "verify floor: dd iflag=direct used.zst \\| zstd -d", "vfloor", None, None, "floor", None),
    ("verify", "lifeboat verify", "lb_verify", None, "vfloor", "time", 1.25),
    ("verify", "dd iflag=direct of d.lbi alone", "lbi_read", None, "vfloor", "time", None),
    ("verify", "partclone.chkimg, all partitions", "pc_chkimg", None, "vfloor", "time", None),
    ("image", "image floor: zstd -T0 of U from /dev/shm (warm)", "ifloor", None, None, "floor", None),
    ("image", "lifeboat image (total, with the check of the written image)", "lb_image", None, "ifloor", "time", None),
    ("image", "... its imaging phase (write_seconds: read, compress, hash, write, seal)", "lb_image", "write_seconds", "ifloor", "time", 1.10),
    ("image", "image floor, cold: dd iflag=direct of U from the disk \\| zstd -T0", "ifloor_cold", None, None, "floor", None),
    ("image", "... its imaging phase against the cold floor", "lb_image", "write_seconds", "ifloor_cold", "time", None),
    ("image", "... its check of the written image (verify_seconds)", "lb_image", "verify_seconds", "vfloor", "time", None),
]
RSS_ROWS = [("lifeboat restore, loop", "lb_restore_loop"), ("lifeboat restore, file", "lb_restore_file"),
            ("lifeboat verify", "lb_verify"), ("lifeboat image", "lb_image")]
RSS_TARGET_MIB = 256

lines = []
for section, label, row, field, floor, kind, target in LINES:
    per_run = {}
    for run in range(1, RUNS + 1):
        s = seconds(row, run, field)
        f = seconds(floor, run) if floor else None
        if s is None or f is None:
            continue
        per_run[run] = round(s / f if kind == "time" else f / s, 4)
    rs = rows.get(row, {})
    secs = med(seconds(row, run, field) for run in rs)
    ratio = med(per_run.values()) if floor else None
    verdict = None
    if target is not None:
        if ratio is None:
            verdict = "n/a"
        elif kind == "time":
            verdict = "PASS" if ratio <= target else "MISS"
        else:
            verdict = "PASS" if ratio >= target else "MISS"
    lines.append({
        "section": section, "label": label, "row": row, "field": field, "floor": floor,
        "ratio_kind": kind, "target": target, "median_s": secs,
        "mb_per_s": U / 1e6 / secs if secs else None, "ratio_per_run": per_run,
        "median_ratio": ratio, "verdict": verdict,
        "median_cpu_s": None if field else med(r["cpu_s"] for r in rs.values()),
        "median_cpu_share": None if field else med(r["cpu_share"] for r in rs.values()),
        "median_rss_kib": None if field else med(r["rss_kib"] for r in rs.values()),
    })
rss = []
for label, row in RSS_ROWS:
    if not rows.get(row):
        continue
    vals = [r["rss_kib"] for r in rows.get(row, {}).values()]
    peak = max(vals) / 1024 if vals else None
    rss.append({"label": label, "row": row, "median_mib": med(vals) / 1024 if vals else None,
                "max_mib": peak, "target_mib": RSS_TARGET_MIB,
                "verdict": "n/a" if peak is None else ("PASS" if peak <= RSS_TARGET_MIB else "MISS")})
# restore must write exactly U (the tables are inside the image's records)
notes = []
written = {}
for row in ("lb_restore_loop", "lb_restore_file", "lb_restore_loop_nv", "lb_restore_file_nv"):
    for run, r in rows.get(row, {}).items():
        w = (r.get("summary") or {}).get("written_bytes")
        written[f"{run}:{row}"] = w
        if w is not None and abs(w - U) > 64 * 1024:
            notes.append(f"run {run} {row}: written_bytes {w} differs from U = {U} by {w - U} bytes")
missing = [ln["label"] for ln in lines if ln["field"] and ln["median_s"] is None and rows.get(ln["row"])]
if missing:
    notes.append("this lifeboat's restore summary has no write_seconds/verify_seconds: those rows are n/a")

result = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
    "kernel": platform.release(), "cpus": NPROC, "runs": RUNS, "level": int(a["level"]),
    "disk": {"path": a["disk"], "bytes": int(a["disk_bytes"]), "partitions": a["partitions"].split()},
    "used_bytes": U, "floor_bytes": FLOOR_BYTES, "image_bytes": int(a["image_bytes"]),
    "used_zst_bytes": int(a["used_zst_bytes"]), "partclone_bytes": int(a["partclone_bytes"]),
    "lifeboat": {"path": a["lifeboat"], "mtime": a["lifeboat_mtime"],
                 "version": tool_version([a["lifeboat"], "--version"])},
    "versions": {"partclone": tool_version(["partclone.restore", "-v"]),
                 "zstd": tool_version(["zstd", "--version"])},
    "work": a["work"], "work_on": a["work_on"], "image": a["image"],
    "used_raw_on": a["used_raw_on"], "t1": a["t1"],
    "lines": lines, "rss": rss, "written_bytes": written,
    "runs_raw": {row: [rs[k] for k in sorted(rs)] for row, rs in rows.items()},
    "failed": a["failed"].split(), "notes": notes,
}
with open(json_path, "w") as f:
    json.dump(result, f, indent=1)
    f.write("\n")


def num(v, fmt):
    return "n/a" if v is None else format(v, fmt)


out = [
    f"# restore benchmark (issue 24), {result['date']}, {NPROC} CPUs, medians of {RUNS} runs",
    "",
    f"- disk: {a['disk']} ({int(a['disk_bytes']) // MiB} MiB; {a['partitions'].strip()}); "
    f"U = {U} bytes ({U // MiB} MiB), the bytes every restore writes",
    f"- lifeboat: {a['lifeboat']} ({result['lifeboat']['version']}, built {a['lifeboat_mtime']})",
    f"- work dir (dense copy of the disk, the images, T1's file, the file targets): {a['work']} "
    f"on {a['work_on']}",
    f"- image: {a['image']} on {a['work_on']}: {int(a['image_bytes']) / MiB:.0f} MiB at level "
    f"{a['level']}; used.zst {int(a['used_zst_bytes']) / MiB:.0f} MiB; partclone images "
    f"{int(a['partclone_bytes']) / MiB:.0f} MiB",
    f"- U's copy for the image floor: {a['used_raw_on']}; T1: {a['t1']} (--direct-io=on)",
    "",
]
titles = {"restore": "Restore", "verify": "Verify", "image": "Imaging"}
for section in ("restore", "verify", "image"):
    out += [f"## {titles[section]}", "",
            "| row | seconds | MB/s over U | ratio to floor | target | result | CPU s | CPU/(nproc×wall) | peak RSS MiB |",
            "|---|---:|---:|---:|---|---|---:|---:|---:|"]
    for ln in lines:
        if ln["section"] != section or not rows.get(ln["row"]):
            continue  # another section's, or a row not run (--rows)
        if ln["floor"] is None:
            ratio, target = ("floor" if ln["ratio_kind"] == "floor" else "-"), "-"
        elif ln["ratio_kind"] == "rate":
            ratio = "rate " + num(ln["median_ratio"], ".2f")
            target = f"rate ≥ {ln['target']:.2f}"
        else:
            ratio = "n/a" if ln["median_ratio"] is None else f"{ln['median_ratio']:.2f}×"
            target = f"≤ {ln['target']:.2f}×" if ln["target"] else "(reference)"
        rss_mib = None if ln["median_rss_kib"] is None else ln["median_rss_kib"] / 1024
        out.append(
            f"| {ln['label']} | {num(ln['median_s'], '.2f')} | {num(ln['mb_per_s'], '.0f')} | "
            f"{ratio} | {target} | {ln['verdict'] or '-'} | "
            f"{'-' if ln['field'] else num(ln['median_cpu_s'], '.2f')} | "
            f"{'-' if ln['field'] else num(ln['median_cpu_share'], '.2f')} | "
            f"{'-' if ln['field'] else num(rss_mib, '.1f')} |")
    out.append("")
out += ["## Peak RSS", "", "| command | median MiB | max MiB | target | result |", "|---|---:|---:|---|---|"]
for r in rss:
    out.append(f"| {r['label']} | {num(r['median_mib'], '.1f')} | {num(r['max_mib'], '.1f')} | "
               f"≤ {RSS_TARGET_MIB} MiB | {r['verdict']} |")
own = {row: med(((r.get("summary") or {}).get("seconds")) for r in rows.get(row, {}).values())
       for row in ("lb_restore_loop", "lb_restore_file")}
out += [
    "",
    "Seconds: wall clock of the command (/usr/bin/time %e), median of the runs; the dd floors "
    f"moved {FLOOR_BYTES} bytes (U rounded down to 4 MiB) and are scaled to U. Ratios are taken "
    "per run (tool and floor of the same run) and the median is shown: time ratios are "
    "tool / floor (lower is better), the write phase's is a rate ratio, "
    "(U / write_seconds) / (U / floor seconds) (higher is better). CPU s = user + system of the "
    "command and its children. The restore summary's own `seconds` (median): "
    f"loop {num(own['lb_restore_loop'], '.2f')}, file {num(own['lb_restore_file'], '.2f')}.",
]
out += [f"\nNote: {n}" for n in notes]
if result["failed"]:
    out.append("\nFailed runs (excluded): " + ", ".join(result["failed"]))
text = "\n".join(out) + "\n"
with open(md_path, "w") as f:
    f.write(text)
print(text, end="")
print(f"\nreport: {md_path}; every run: {json_path}")
EOF

# --- perf -------------------------------------------------------------------------------------
if [ "$perf" -eq 1 ]; then
  if ! command -v perf >/dev/null; then
    echo "perf: not installed (apt-get install linux-perf); skipped" | tee -a "$md"
  elif ! perf record -o "$work/perf-probe.data" -- true >/dev/null 2>"$logs/perf-probe.err"; then
    echo "perf does not work on this kernel ($(uname -r)): $(head -1 "$logs/perf-probe.err"); skipped" |
      tee -a "$md"
  else
    partx -d "$tgt" 2>/dev/null || true
    drop_caches
    perf record -g -o "$work/perf-restore.data" -- "$lifeboat" restore "$img" "$tgt" --yes --json \
      >"$logs/perf-restore.out" 2>"$logs/perf-restore.err"
    drop_caches
    perf record -g -o "$work/perf-verify.data" -- "$lifeboat" verify "$img" --json \
      >"$logs/perf-verify.out" 2>"$logs/perf-verify.err"
    for what in restore verify; do
      {
        echo
        echo "## perf: lifeboat $what (perf record -g; perf report --no-children --percent-limit 2)"
        echo
        echo '```text'
        { perf report -i "$work/perf-$what.data" --no-children --percent-limit 2 --stdio 2>/dev/null ||
          true; } | head -80
        echo '```'
      } | tee -a "$md"
    done
  fi
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "restore.sh: some runs failed: ${failed[*]} (logs kept in $logs)" >&2
  keep=1
fi

#!/usr/bin/env bash
# `image --rescue` benchmark for issue 18: what rescue mode costs on a healthy disk, what 100
# scattered bad sectors cost it, and GNU ddrescue on the same failing disk.
#
# Usage: sudo bench/rescue.sh DISK_IMAGE [--runs N] [--bad N] [--work DIR]
#
#   --runs N   rounds; each times every row once, in alternating order (default 3)
#   --bad N    bad sectors to inject (default 100), one in each of N stored records spread
#              over the used data (fixed seed)
#   --work DIR where images and copies go (default: a new dir in /var/tmp)
#   LIFEBOAT   the binary (default target/release/lifeboat)
#
# Two read-only loop devices with O_DIRECT (--direct-io=on) over the same DISK_IMAGE:
#   plain  straight on the file: the healthy disk
#   fault  on tests/helpers/faultfs.py (a FUSE file), which fails reads of the bad sectors
#          with EIO: the failing disk (FUSE costs both rows on it the same)
# Rows (page cache dropped before each; /usr/bin/time gives wall seconds and peak RSS):
#   image        lifeboat image PLAIN -o a.lbi                 a normal image, healthy disk
#   rescue       lifeboat image PLAIN -o b.lbi --rescue        rescue mode, healthy disk
#   rescue-ok    lifeboat image FAULT -o c.lbi --rescue        rescue mode through FUSE, no faults
#   rescue-bad   lifeboat image FAULT -o d.lbi --rescue        ... with the bad sectors
#   ddrescue-bad ddrescue -d -r1 FAULT dd.img dd.map           the peer: a raw copy of the whole
#                                                              disk, same retries, same faults
# The report gives medians and per-round ratios: rescue/image (target <= 1.05),
# rescue-bad/rescue-ok (target <= 2), rescue-bad/ddrescue-bad; and the missing bytes each
# reported (lifeboat's must be exactly the bad sectors; ddrescue's bad-sector count).
set -euo pipefail
export LC_ALL=C
usage() { sed -n 5,11p "$0" >&2; exit 2; }
[ $# -ge 1 ] || usage
disk=$1; shift
runs=3 bad=100 work=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --bad) bad=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    *) usage ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "rescue.sh: needs root (loop devices, FUSE, drop_caches)" >&2; exit 1; }
command -v ddrescue >/dev/null || { echo "rescue.sh: ddrescue missing (apt install gddrescue)" >&2; exit 1; }
here=$(cd "$(dirname "$0")/.." && pwd)
lb=${LIFEBOAT:-$here/target/release/lifeboat}
[ -x "$lb" ] || { echo "rescue.sh: $lb missing (cargo build --release)" >&2; exit 1; }
[ -n "$work" ] || work=$(mktemp -d /var/tmp/lifeboat-rescue-bench.XXXXXX)
mkdir -p "$work/mnt"
plain="" fault="" fuse_pid=""
cleanup() {
  [ -n "$plain" ] && losetup -d "$plain" 2>/dev/null || true
  [ -n "$fault" ] && losetup -d "$fault" 2>/dev/null || true
  mountpoint -q "$work/mnt" && umount "$work/mnt" 2>/dev/null || true
  [ -n "$fuse_pid" ] && kill "$fuse_pid" 2>/dev/null || true
}
trap cleanup EXIT

# the bad sectors: one in each of `bad` stored records of a reference image, spread evenly
echo '{}' > "$work/control"
"$lb" image "$disk" -o "$work/ref.lbi" >/dev/null
python3 - "$work/ref.lbi" "$bad" > "$work/bad.json" <<'PY'
import json, random, struct, sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "rb") as f:
    f.seek(-128, 2)
    footer = f.read(128)
    index_off, index_len = struct.unpack_from("<QQ", footer, 24)
    f.seek(index_off)
    idx = f.read(index_len)
count = struct.unpack_from("<Q", idx, 8)[0]
recs = []
for i in range(count):
    off, raw, _stored, _foff, codec = struct.unpack_from("<QIIQB", idx, 16 + i * 64)
    if codec in (1, 2) and raw >= 4096:
        recs.append((off, raw))
rnd = random.Random(18)
step = max(1, len(recs) // n)
picked = [recs[i] for i in range(0, len(recs), step)][:n]
bad = [[off + rnd.randrange(raw // 512) * 512, 512] for off, raw in picked]
print(json.dumps({"bad_read": bad}))
PY
echo "rescue.sh: $disk, $bad bad sectors, $runs rounds, work $work"

plain=$(losetup -f --show -r --direct-io=on "$disk")
/usr/bin/python3 "$here/tests/helpers/faultfs.py" "$disk" "$work/mnt" "$work/control" \
  >"$work/faultfs.log" 2>&1 &
fuse_pid=$!
for _ in $(seq 1 50); do [ -e "$work/mnt/disk" ] && break; sleep 0.1; done
fault=$(losetup -f --show -r --direct-io=on "$work/mnt/disk")

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
missing() { # JSON_LINES_FILE: missing bytes of lifeboat's finished event
  python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e=json.loads(l)
    if e.get("event")=="finished": print(e["summary"].get("missing_bytes", 0))' "$1"
}
row() { # NAME: prints "NAME wall rss_kib missing_bytes"
  local name=$1 out=$work/$1.out t m
  rm -f "$work"/*.lbi.partial "$work/$name.lbi" "$work/dd.img" "$work/dd.map"
  case "$name" in
    image|rescue-ok|ddrescue-ok) echo '{}' > "$work/control" ;;
    *) cp "$work/bad.json" "$work/control" ;;
  esac
  drop
  local tf=$work/time.txt
  case "$name" in
    image) /usr/bin/time -o "$tf" -f '%e %M' "$lb" image "$plain" -o "$work/$name.lbi" --json >"$out" 2>/dev/null ;;
    rescue) /usr/bin/time -o "$tf" -f '%e %M' "$lb" image "$plain" -o "$work/$name.lbi" --rescue --json >"$out" 2>/dev/null ;;
    rescue-ok|rescue-bad) /usr/bin/time -o "$tf" -f '%e %M' "$lb" image "$fault" -o "$work/$name.lbi" --rescue --json >"$out" 2>/dev/null ;;
    ddrescue-bad) /usr/bin/time -o "$tf" -f '%e %M' ddrescue -q -d -r1 "$fault" "$work/dd.img" "$work/dd.map" >"$out" 2>&1 || true ;;
  esac
  t=$(tail -1 "$tf")
  case "$name" in
    ddrescue-bad) m=$(ddrescuelog -t "$work/dd.map" | awk '/bad-sector:/ {print $2}') ;;
    *) m=$(missing "$out") ;;
  esac
  rm -f "$work/$name.lbi" "$work/dd.img"
  echo "$name $t $m"
}
results=$work/rows.txt
: >"$results"
names="image rescue rescue-ok rescue-bad ddrescue-bad"
for r in $(seq 1 "$runs"); do
  order=$names
  [ $((r % 2)) -eq 0 ] && order=$(echo "$names" | tr ' ' '\n' | tac | tr '\n' ' ')
  for n in $order; do row "$n" | tee -a "$results"; done
done
python3 - "$results" "$bad" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
bad = int(sys.argv[2])
by = {}
for name, wall, rss, miss in rows:
    by.setdefault(name, []).append((float(wall), int(rss), miss))
med = {k: statistics.median(w for w, _, _ in v) for k, v in by.items()}
print()
print(f"{'row':<14} {'median s':>9} {'peak RSS':>10}  missing")
for k in ["image", "rescue", "rescue-ok", "rescue-bad", "ddrescue-bad"]:
    v = by[k]
    print(f"{k:<14} {med[k]:>9.2f} {max(r for _, r, _ in v) // 1024:>7} MiB  {v[-1][2]}")
def ratio(a, b):
    rs = [x[0] / y[0] for x, y in zip(by[a], by[b])]
    return statistics.median(rs)
print()
print(f"rescue / image (healthy disk)            {ratio('rescue', 'image'):.3f}  (target <= 1.05)")
print(f"rescue-bad / rescue-ok ({bad} bad sectors)  {ratio('rescue-bad', 'rescue-ok'):.3f}  (target <= 2)")
print(f"rescue-bad / ddrescue-bad                {ratio('rescue-bad', 'ddrescue-bad'):.3f}")
print(f"lifeboat missing bytes {by['rescue-bad'][-1][2]} (the bad sectors: {bad * 512})")
PY

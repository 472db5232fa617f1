#!/usr/bin/env bash
# Release-profile benchmark: the same lifeboat built with different Cargo profiles (opt-level
# "z" against 3, per-package overrides), timed side by side on one disk in one run.
#
# Usage: sudo bench/profile.sh DISK_IMAGE NAME=BINARY... [--rounds N] [--level L] [--work DIR]
#                              [--keep]
#
#   NAME=BINARY  a candidate: a short name and its lifeboat binary; the first is the baseline
#                the ratios are taken against
#   --rounds N   rounds (default 3); every round times every candidate once, in the given
#                order in odd rounds and in reverse order in even ones (A B C, C B A, ...)
#   --level L    zstd level for `image --level` (default 3)
#   --work DIR   where the images and the restore target go (default: a new dir in /var/tmp)
#   --keep       keep the work directory
#
# Per round and candidate, each after `sync; echo 3 > /proc/sys/vm/drop_caches`:
#   image    lifeboat image LOOP -o WORK/NAME.lbi --level L --json   (LOOP: DISK_IMAGE
#            attached read-only as a loop device)
#   verify   lifeboat verify WORK/NAME.lbi --json
#   restore  lifeboat restore WORK/NAME.lbi WORK/target.img --yes --json   (a file of the
#            disk's size, preallocated once; restore reads it back, its default)
# Wall time, user and system CPU time and peak RSS come from /usr/bin/time. CPU time is the
# steadier figure on a shared machine: other processes lengthen the wall time of a run but not
# the work the binary itself does.
#
# Build the candidates like scripts/build-static.sh, with profile settings on the command line
# (no Cargo.toml edit) and a separate target directory, e.g.
#   CARGO_TARGET_DIR=/var/tmp/lb-prof/target \
#   CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS='-C target-feature=+crt-static ...' \
#   cargo build --release --locked --target x86_64-unknown-linux-gnu \
#     --config 'profile.release.opt-level=3' --config 'profile.release.package.zstd-sys.opt-level=3'
# and copy each target/x86_64-unknown-linux-gnu/release/lifeboat away before the next build.
# Hold the build lock while measuring (flock /work/build.lock sudo bench/profile.sh ...) so that
# no compiler shares the CPU with the timed runs.
#
# Output: a Markdown table on stdout and in bench/results/profile-DATE-N.md, the raw numbers
# (every run, medians, ratios, binary sizes) in bench/results/profile-DATE-N.json (N: the day's
# first unused number).
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
python=/usr/bin/python3

usage() { sed -n '4,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 2 ] || usage
disk=$(readlink -f "$1")
shift
names=()
bins=()
rounds=3
level=3
work=""
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=${2:?}; shift 2 ;;
    --level) level=${2:?}; shift 2 ;;
    --work) work=${2:?}; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) usage ;;
    -*) echo "profile.sh: unknown argument $1" >&2; usage ;;
    *=*)
      names+=("${1%%=*}")
      bins+=("$(readlink -f "${1#*=}")")
      shift
      ;;
    *) echo "profile.sh: $1 is not NAME=BINARY" >&2; usage ;;
  esac
done
case "$rounds" in '' | *[!0-9]* | 0) echo "profile.sh: --rounds needs a positive number" >&2; exit 2 ;; esac
case "$level" in '' | *[!0-9]*) echo "profile.sh: --level needs a number" >&2; exit 2 ;; esac
[ ${#names[@]} -ge 1 ] || usage
[ -f "$disk" ] || { echo "profile.sh: $disk is not a file" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "profile.sh: needs root (loop devices, drop_caches)" >&2; exit 1; }
for tool in losetup fallocate /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "profile.sh: $tool is missing" >&2; exit 1; }
done
for i in "${!names[@]}"; do
  "${bins[$i]}" image --help >/dev/null 2>&1 ||
    { echo "profile.sh: ${bins[$i]} (${names[$i]}) does not run 'image --help'" >&2; exit 1; }
done

if [ -z "$work" ]; then
  work=$(mktemp -d /var/tmp/lifeboat-profile.XXXXXX)
else
  mkdir -p "$work"
  work=$(cd "$work" && pwd)
fi
logs="$work/logs"
mkdir -p "$logs"
records="$work/records.tsv"
: >"$records"
src=""
cleanup() {
  local rc=$?
  [ -n "$src" ] && { losetup -d "$src" 2>/dev/null || true; }
  if [ "$keep" -eq 1 ] || [ "$rc" -ne 0 ]; then
    rm -f "$work/target.img" "$work"/*.lbi
    echo "profile.sh: logs kept in $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

disk_bytes=$(stat -c %s "$disk")
src=$(losetup -f --show -r "$disk")
fallocate -l "$disk_bytes" "$work/target.img"
echo "== disk: $disk ($((disk_bytes / 1048576)) MiB) on $src, $(nproc) CPUs, level $level," \
  "$rounds rounds"
for i in "${!names[@]}"; do
  echo "   ${names[$i]}: ${bins[$i]} ($(stat -c %s "${bins[$i]}") bytes)"
done

# measure NAME ROUND PHASE CMD...: drop caches, run CMD under /usr/bin/time, append
# "name round phase wall user sys rss_kib out_bytes read_bytes" to the records (the last two
# for image: the .lbi's size and the disk bytes lifeboat read, from its JSON summary)
measure() {
  local name=$1 round=$2 phase=$3 rc=0 tfile="$work/time.out" out=0 rbytes=0
  shift 3
  sync
  echo 3 >/proc/sys/vm/drop_caches
  /usr/bin/time -f "%e %U %S %M" -o "$tfile" "$@" >"$logs/$name-$round-$phase.log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "profile.sh: $phase with $name failed (exit $rc); log: $logs/$name-$round-$phase.log" >&2
    tail -5 "$logs/$name-$round-$phase.log" >&2 || true
    keep=1
    return 1
  fi
  if [ "$phase" = image ]; then
    out=$(stat -c %s "$work/$name.lbi")
    rbytes=$(grep -o '"read_bytes":[0-9]*' "$logs/$name-$round-$phase.log" | tail -1 | tr -dc '0-9')
  fi
  read -r wall user sys rss <"$tfile"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$round" "$phase" "$wall" "$user" \
    "$sys" "$rss" "$out" "${rbytes:-0}" >>"$records"
  printf '   round %d %-8s %-8s %7.2f s wall %7.2f s cpu\n' "$round" "$name" "$phase" "$wall" \
    "$(echo "$user $sys" | awk '{print $1 + $2}')"
}

for round in $(seq "$rounds"); do
  order=("${!names[@]}")
  if [ $((round % 2)) -eq 0 ]; then
    order=()
    for ((i = ${#names[@]} - 1; i >= 0; i--)); do order+=("$i"); done
  fi
  for i in "${order[@]}"; do
    name=${names[$i]}
    bin=${bins[$i]}
    rm -f "$work/$name.lbi"
    measure "$name" "$round" image "$bin" image "$src" -o "$work/$name.lbi" --level "$level" --json
    measure "$name" "$round" verify "$bin" verify "$work/$name.lbi" --json
    measure "$name" "$round" restore "$bin" restore "$work/$name.lbi" "$work/target.img" --yes --json
    rm -f "$work/$name.lbi"
  done
done

# --- report -------------------------------------------------------------------------------------
mkdir -p "$here/results"
stamp=$(date -u +%Y-%m-%d)
n=1 # the first free profile-DATE-N: runs of one day do not overwrite each other
while [ -e "$here/results/profile-$stamp-$n.json" ]; do n=$((n + 1)); done
candidates=()
for i in "${!names[@]}"; do candidates+=("${names[$i]}=${bins[$i]}"); done
"$python" - "$records" "$here/results/profile-$stamp-$n" "$disk" "$disk_bytes" "$level" "$rounds" \
  "${candidates[@]}" <<'EOF'
import datetime, json, os, platform, statistics, subprocess, sys

records, out, disk, disk_bytes, level, rounds = sys.argv[1:7]
cands = [c.split("=", 1) for c in sys.argv[7:]]
names = [n for n, _ in cands]
phases = ["image", "verify", "restore"]
runs = {}
with open(records) as f:
    for line in f:
        name, rnd, phase, wall, user, sys_, rss, outb, readb = line.rstrip("\n").split("\t")
        runs.setdefault((name, phase), []).append({
            "round": int(rnd), "wall_s": float(wall), "cpu_s": round(float(user) + float(sys_), 2),
            "user_s": float(user), "sys_s": float(sys_), "rss_kib": int(rss),
            "out_bytes": int(outb), "read_bytes": int(readb)})

def med(name, phase, key):
    rs = runs.get((name, phase), [])
    return statistics.median(r[key] for r in rs) if rs else None

result = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
    "host": platform.node(), "cpus": os.cpu_count(), "disk": disk, "disk_bytes": int(disk_bytes),
    "level": int(level), "rounds": int(rounds), "baseline": names[0],
    "lifeboat_commit": subprocess.run(["git", "-C", os.path.dirname(out), "rev-parse", "--short",
                                       "HEAD"], capture_output=True, text=True).stdout.strip(),
    "candidates": {},
}
for name, path in cands:
    c = {"binary": path, "binary_bytes": os.path.getsize(path), "phases": {}}
    for p in phases:
        c["phases"][p] = {
            "runs": runs.get((name, p), []),
            "median_wall_s": med(name, p, "wall_s"), "median_cpu_s": med(name, p, "cpu_s"),
            "median_rss_kib": med(name, p, "rss_kib"),
        }
    c["image_bytes"] = med(name, "image", "out_bytes")
    c["read_bytes"] = med(name, "image", "read_bytes")
    result["candidates"][name] = c
base = result["candidates"][names[0]]
for name in names:
    c = result["candidates"][name]
    for p in phases:
        ph, bp = c["phases"][p], base["phases"][p]
        for k in ("wall", "cpu"):
            a, b = ph[f"median_{k}_s"], bp[f"median_{k}_s"]
            ph[f"{k}_ratio"] = round(a / b, 3) if a and b else None
    c["size_ratio"] = round(c["binary_bytes"] / base["binary_bytes"], 3)

with open(out + ".json", "w") as f:
    json.dump(result, f, indent=1)
    f.write("\n")

lines = [
    f"# release profiles, {result['date']}, {result['cpus']} CPUs, lifeboat {result['lifeboat_commit']}",
    f"disk: {disk} ({int(disk_bytes) // 2**20} MiB), image --level {level}, "
    f"medians of {rounds} rounds, ratios against {names[0]}",
    f"data: image reads {int(base['read_bytes']) / 2**30:.2f} GiB of used blocks, writes a "
    f"{int(base['image_bytes']) / 2**30:.2f} GiB image; restore writes and reads back the same",
    "",
    "| candidate | binary bytes | size | image s | verify s | restore s | image cpu s | verify cpu s | restore cpu s |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for name in names:
    c = result["candidates"][name]
    ph = c["phases"]
    cell = lambda p, k: (f"{ph[p][f'median_{k}_s']:.2f} ({ph[p][f'{k}_ratio']:.2f}x)"
                         if ph[p][f"median_{k}_s"] is not None else "-")
    lines.append(f"| {name} | {c['binary_bytes']} | {c['size_ratio']:.2f}x | "
                 + " | ".join(cell(p, "wall") for p in phases) + " | "
                 + " | ".join(cell(p, "cpu") for p in phases) + " |")
lines += ["", "Seconds are wall clock; cpu is user + system time of the process (all its threads),",
          "steadier than the wall clock on a shared machine. Below 1.00x is faster than "
          f"{names[0]}."]
text = "\n".join(lines) + "\n"
with open(out + ".md", "w") as f:
    f.write(text)
print(text, end="")
print(f"raw numbers: {out}.json")
EOF
